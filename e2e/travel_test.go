package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// travel is what TestTravel's checks share: the binary, the tools and the
// digests quinistry serves.
type travel struct {
	q, crane, skopeo, regauth string
	dir                       string // a temp dir for the whole suite
	origin                    *harness.Server
	want, wantOCI             string
	// blobs are the digests of every blob of the served image and its
	// SBOMs (configs, layers, the artifacts' config and documents), read
	// from the origin, not from push: what a complete push must leave.
	blobs []string
}

// TestTravel proves quinistry leaves the machine it runs on. It pushes
// itself to the CNCF registry (filesystem storage of its own) open, behind
// htpasswd basic auth, behind bearer tokens (deploy/internal/regauth) and
// over TLS with a private CA made here (--ca-file); crane and skopeo find
// there the very list, manifests and blobs quinistry serves, and the
// registry's own request log and storage say which blobs arrived, uploaded
// or mounted (push's report is only compared with them). Wrong credentials
// fail with one line and leave no tag. It exports itself as a tar (also to
// standard output) and an OCI layout, which docker load and ctr images
// import name; builds of a copy of the tree serve their commit and release
// tag as tags; and in a private dockerd on a bridge of its own, generation
// 1 (docker load), 2 and 3 (each pulled from the one before) and OCI-format
// images exported or pushed run with docker run and nothing but a published
// port, and serve the same digest. Also bad input, and nothing left behind.
func TestTravel(t *testing.T) {
	dist := harness.Dist(t)
	tr := &travel{
		q:      harness.Binary(dist, "linux/amd64"),
		crane:  harness.Tool(t, "crane"),
		skopeo: harness.Tool(t, "skopeo"),
		dir:    harness.TempDir(t),
	}
	harness.Tool(t, "registry")

	t.Run("deploy manifests decode strictly against the Kubernetes API types", func(t *testing.T) {
		cmd := exec.Command("go", "test", "-count=1", "./...")
		cmd.Dir = filepath.Join(harness.Root(), "deploy")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test in deploy/: %v\n%s", err, out)
		}
	})
	tr.regauth = filepath.Join(tr.dir, "regauth")
	build := exec.Command("go", "build", "-o", tr.regauth, "./internal/regauth")
	build.Dir = filepath.Join(harness.Root(), "deploy")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building deploy/internal/regauth: %v\n%s", err, out)
	}

	tr.origin = harness.Start(t, "origin", tr.q, []string{"--addr", "127.0.0.1:0"})
	originOCI := harness.Start(t, "origin-oci", tr.q, []string{"--addr", "127.0.0.1:0", "--format", "oci"})
	// What quinistry serves, read before any subtest so that each runs alone
	// (go test -run 'TestTravel/docker'): the digests every registry and
	// generation must show, and the blobs a complete push leaves.
	tr.want = harness.ListDigest(t, tr.origin.Addr, "quinistry")
	tr.wantOCI = harness.ListDigest(t, originOCI.Addr, "quinistry")
	kinds := map[string]int{}
	tr.blobs, kinds = servedBlobs(t, tr.origin.Addr)
	t.Run("quinistry serves a list", func(t *testing.T) {
		if !strings.HasPrefix(tr.want, "sha256:") {
			t.Fatalf("quinistry serves digest %q", tr.want)
		}
		t.Logf("quinistry serves %s", tr.want)
	})
	t.Run("the served image and its SBOMs hold 7 blobs: 2 configs, 2 layers, the SBOMs' config and 2 documents", func(t *testing.T) {
		want := map[string]int{"config": 2, "layer": 2, "SBOM config": 1, "SBOM document": 2}
		if len(tr.blobs) != 7 || !maps.Equal(kinds, want) {
			t.Errorf("%d blobs %v: %v", len(tr.blobs), tr.blobs, kinds)
		}
	})
	t.Run("quinistry --format oci serves another list", func(t *testing.T) {
		if !strings.HasPrefix(tr.wantOCI, "sha256:") || tr.wantOCI == tr.want {
			t.Errorf("--format oci serves %q, the default %q", tr.wantOCI, tr.want)
		}
	})

	t.Run("open", tr.open)
	t.Run("basic", tr.basic)
	t.Run("bearer", tr.bearer)
	t.Run("tls", tr.tls)
	t.Run("bad input", tr.badInput)
	t.Run("export", tr.export)
	t.Run("version", tr.version)
	var ports []string
	t.Run("docker", func(t *testing.T) { ports = tr.docker(t) })

	tr.origin.Stop(t)
	originOCI.Stop(t)
	harness.CheckNothingLeft(t)
	t.Run("nothing is left behind: no docker-proxy or listener on the published ports", func(t *testing.T) {
		if len(ports) == 0 {
			t.Skip("no port was published")
		}
		var left []string
		for _, p := range dockerProxies() {
			for _, port := range ports {
				if strings.Contains(p, " -host-port "+port+" ") || strings.HasSuffix(p, " -host-port "+port) {
					left = append(left, "docker-proxy: "+p)
				}
			}
		}
		for _, port := range ports {
			if listening(t, port) {
				left = append(left, "a listener on port "+port)
			}
		}
		if len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
}

// servedBlobs reads, from quinistry at addr, every blob a complete push
// must carry: each platform's config and layers, and the config and layers
// of each SBOM artifact that the referrers API names. It returns their
// digests, sorted, and how many of each kind it found.
func servedBlobs(t *testing.T, addr string) ([]string, map[string]int) {
	t.Helper()
	list, _ := harness.Index(t, addr+"/quinistry:latest")
	kind := map[string]string{}
	add := func(d v1.Hash, k, of string) {
		if _, ok := kind[d.String()]; !ok {
			kind[d.String()] = k
			t.Logf("blob %s: %s%s", d, k, of)
		}
	}
	for _, d := range list.Manifests {
		m := manifestAt(t, addr, "quinistry", d.Digest.String())
		add(m.Config.Digest, "config", " of "+d.Platform.String())
		for _, l := range m.Layers {
			add(l.Digest, "layer", " of "+d.Platform.String())
		}
		r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/referrers/"+d.Digest.String(), "Accept", harness.OCIIndex)
		if r.Status != http.StatusOK {
			t.Fatalf("referrers of the %s manifest %s: status %d", d.Platform, d.Digest, r.Status)
		}
		for _, a := range harness.JSON[v1.IndexManifest](t, "the referrers of "+d.Digest.String(), r.Body).Manifests {
			am := manifestAt(t, addr, "quinistry", a.Digest.String())
			add(am.Config.Digest, "SBOM config", "")
			for _, l := range am.Layers {
				add(l.Digest, "SBOM document", " of "+d.Platform.String())
			}
		}
	}
	counts := map[string]int{}
	var out []string
	for d, k := range kind {
		out = append(out, d)
		counts[k]++
	}
	sort.Strings(out)
	return out, counts
}

// manifestAt fetches and decodes the image manifest repo@digest at addr.
func manifestAt(t *testing.T, addr, repo, digest string) v1.Manifest {
	t.Helper()
	r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/"+repo+"/manifests/"+digest, "Accept", harness.OCIManifest+", "+harness.DockerManifest)
	if r.Status != http.StatusOK {
		t.Fatalf("manifest %s/%s@%s: status %d", addr, repo, digest, r.Status)
	}
	return harness.JSON[v1.Manifest](t, "manifest "+digest, r.Body)
}

// qResult is one run of a quinistry command: what it printed and its exit
// code.
type qResult struct {
	Stdout, Stderr string
	Code           int
}

// line returns the digest it printed.
func (r qResult) digest() string { return strings.TrimSpace(r.Stdout) }

func (r qResult) String() string {
	return fmt.Sprintf("exit %d, stdout %q, stderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// run runs quinistry with args, stdin as its standard input, and an
// environment of only HOME (a directory of the suite's, so that no
// credentials of this machine's user are read).
func (tr *travel) run(t *testing.T, stdin string, args ...string) qResult {
	t.Helper()
	cmd := exec.Command(tr.q, args...)
	cmd.Env = []string{"HOME=" + tr.dir}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := qResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running quinistry %v: %v", args, err)
	}
	return res
}

// push runs quinistry push with args and fails the test unless it exits 0
// and prints a digest.
func (tr *travel) push(t *testing.T, stdin string, args ...string) qResult {
	t.Helper()
	res := tr.run(t, stdin, append([]string{"push"}, args...)...)
	if res.Code != 0 || !strings.HasPrefix(res.digest(), "sha256:") {
		t.Fatalf("quinistry push %s: %s", strings.Join(args, " "), res)
	}
	return res
}

// oneCleanLine checks that res failed with exactly one line of standard
// error holding want, and no stack trace.
func oneCleanLine(t *testing.T, res qResult, want string) {
	t.Helper()
	out := strings.TrimRight(res.Stderr, "\n")
	if res.Code == 0 || strings.Contains(out, "\n") || !strings.Contains(out, want) || strings.Contains(out, "goroutine") {
		t.Errorf("want a non-zero exit and one line with %q; got %s", want, res)
	}
}

// pushReport is push's own summary line, parsed.
var pushReport = regexp.MustCompile(`(?m)^pushed \S+: (\d+) blobs uploaded \((\d+) bytes\), (\d+) mounted, (\d+) already there;`)

// checkLanded compares what the registry saw between the markers m0 and m1
// for repo (its request log) and holds (its storage) with what this push
// should have done: want is "upload" (every blob uploaded once), "none"
// (no blob uploaded, mounted or sent) or "mount" (every blob mounted, none
// sent). push's own report must agree with the registry.
func (tr *travel) checkLanded(t *testing.T, reg *harness.Registry, m0, m1, repo, want string, res qResult) {
	t.Helper()
	bt := harness.Blobs(reg.Requests(m0, m1), repo)
	stored := reg.RepoBlobs(t, repo)
	seen := fmt.Sprintf("the registry saw uploads of %v, mounts of %v, %d upload sessions and %d PATCHes; %s links %d blobs",
		bt.Uploaded, bt.Mounted, bt.Sessions, bt.Chunks, repo, len(stored))
	switch want {
	case "upload":
		if !slices.Equal(bt.Uploaded, tr.blobs) || len(bt.Mounted) != 0 {
			t.Errorf("want each of the %d blobs %v uploaded once; %s", len(tr.blobs), tr.blobs, seen)
		}
	case "none":
		if len(bt.Uploaded) != 0 || len(bt.Mounted) != 0 || bt.Sessions != 0 || bt.Chunks != 0 {
			t.Errorf("want no blob sent; %s", seen)
		}
	case "mount":
		if !slices.Equal(bt.Mounted, tr.blobs) || len(bt.Uploaded) != 0 || bt.Sessions != 0 || bt.Chunks != 0 {
			t.Errorf("want each of the %d blobs %v mounted and none sent; %s", len(tr.blobs), tr.blobs, seen)
		}
	}
	if !slices.Equal(stored, tr.blobs) {
		t.Errorf("the storage of %s links %v, want %v", repo, stored, tr.blobs)
	}
	m := pushReport.FindStringSubmatch(res.Stderr)
	if m == nil {
		t.Fatalf("push printed no report: %s", res)
	}
	if n, _ := strconv.Atoi(m[1]); n != len(bt.Uploaded) {
		t.Errorf("push reports %s blobs uploaded, the registry saw %d", m[1], len(bt.Uploaded))
	}
	if n, _ := strconv.Atoi(m[3]); n != len(bt.Mounted) {
		t.Errorf("push reports %s blobs mounted, the registry saw %d", m[3], len(bt.Mounted))
	}
}

// crane runs crane with args and the test's environment plus env.
func (tr *travel) craneOut(t *testing.T, env []string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tr.crane, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("crane %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// sameContent checks that crane finds at ref the list quinistry serves,
// each platform manifest byte for byte, and every blob with its digest.
// env (DOCKER_CONFIG, SSL_CERT_FILE) reaches crane.
func (tr *travel) sameContent(t *testing.T, ref string, env []string, flags ...string) {
	t.Helper()
	repo := ref[:strings.LastIndex(ref, ":")]
	c := func(args ...string) []byte { return tr.craneOut(t, env, append(args, flags...)...) }
	if d := strings.TrimSpace(string(c("digest", ref))); d != tr.want {
		t.Fatalf("crane digest %s is %s, quinistry serves %s", ref, d, tr.want)
	}
	list := c("manifest", ref)
	if origin := tr.craneOut(t, nil, "manifest", "--insecure", tr.origin.Addr+"/quinistry@"+tr.want); !bytes.Equal(list, origin) {
		t.Fatalf("the list at %s differs from quinistry's:\n%s\n%s", ref, list, origin)
	}
	idx := harness.JSON[v1.IndexManifest](t, "the list at "+ref, list)
	blobs := 0
	for _, d := range idx.Manifests {
		got := c("manifest", repo+"@"+d.Digest.String())
		if origin := tr.craneOut(t, nil, "manifest", "--insecure", tr.origin.Addr+"/quinistry@"+d.Digest.String()); !bytes.Equal(got, origin) {
			t.Errorf("the %s manifest %s differs at %s", d.Platform, d.Digest, ref)
			continue
		}
		m := harness.JSON[v1.Manifest](t, "manifest "+d.Digest.String(), got)
		for _, b := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			sum := sha256.Sum256(c("blob", repo+"@"+b.Digest.String()))
			if "sha256:"+hex.EncodeToString(sum[:]) != b.Digest.String() {
				t.Errorf("blob %s at %s hashes to sha256:%x", b.Digest, repo, sum)
			}
			blobs++
		}
	}
	t.Logf("%s: the list %s, %d manifests and %d blobs as quinistry serves them", ref, tr.want, len(idx.Manifests), blobs)
}

// skopeoDigest returns the digest of the raw manifest skopeo reads at ref.
func (tr *travel) skopeoDigest(t *testing.T, ref string, flags ...string) string {
	t.Helper()
	out, err := harness.RunErr(append(append([]string{tr.skopeo, "inspect", "--tls-verify=false"}, flags...), "--raw", "docker://"+ref)...)
	if err != nil {
		t.Fatalf("skopeo inspect %s: %v", ref, err)
	}
	sum := sha256.Sum256([]byte(out))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// mediaTypes returns the media types stored for ref, counted: the list's,
// then each manifest's, config's and layers'.
func (tr *travel) mediaTypes(t *testing.T, ref string) map[string]int {
	t.Helper()
	repo := ref[:strings.LastIndex(ref, ":")]
	idx := harness.JSON[v1.IndexManifest](t, "the list at "+ref, tr.craneOut(t, nil, "manifest", "--insecure", ref))
	types := map[string]int{string(idx.MediaType): 1}
	for _, d := range idx.Manifests {
		m := harness.JSON[v1.Manifest](t, "manifest "+d.Digest.String(), tr.craneOut(t, nil, "manifest", "--insecure", repo+"@"+d.Digest.String()))
		types[string(m.MediaType)]++
		types[string(m.Config.MediaType)]++
		for _, l := range m.Layers {
			types[string(l.MediaType)]++
		}
	}
	return types
}

// onlyTypes checks that types holds only allowed media types, and must.
func onlyTypes(t *testing.T, types map[string]int, must string, allowed ...string) {
	t.Helper()
	var bad []string
	for mt := range types {
		if !slices.Contains(allowed, mt) {
			bad = append(bad, mt)
		}
	}
	if len(bad) > 0 || types[must] == 0 {
		t.Errorf("stored media types %v: %v not allowed, %s present %d times", types, bad, must, types[must])
	}
}

func (tr *travel) open(t *testing.T) {
	reg := harness.StartRegistry(t, "open", "")
	ref := reg.Addr + "/team/quinistry:v1"
	var first qResult
	var m0, m1 string
	if !t.Run("push succeeds", func(t *testing.T) {
		m0 = reg.Mark(t)
		first = tr.push(t, "", "--insecure", ref)
		m1 = reg.Mark(t)
	}) {
		t.FailNow()
	}
	t.Run("push prints the served list digest", func(t *testing.T) {
		if first.digest() != tr.want {
			t.Errorf("push printed %s, quinistry serves %s", first.digest(), tr.want)
		}
	})
	t.Run("first push uploads every blob, the SBOMs' included", func(t *testing.T) {
		tr.checkLanded(t, reg, m0, m1, "team/quinistry", "upload", first)
	})
	t.Run("the catalog lists team/quinistry and the tag names the list", func(t *testing.T) {
		cat := harness.JSON[struct{ Repositories []string }](t, "the catalog", harness.Do(t, http.MethodGet, "http://"+reg.Addr+"/v2/_catalog").Body)
		if !slices.Contains(cat.Repositories, "team/quinistry") {
			t.Errorf("the catalog lists %v", cat.Repositories)
		}
		r := harness.Do(t, http.MethodHead, "http://"+reg.Addr+"/v2/team/quinistry/manifests/v1", "Accept", harness.ListAccept)
		if d := r.Header.Get("Docker-Content-Digest"); r.Status != http.StatusOK || d != tr.want {
			t.Errorf("HEAD of the tag: status %d, digest %q", r.Status, d)
		}
	})
	t.Run("crane sees the same list, manifests and blobs", func(t *testing.T) {
		tr.sameContent(t, ref, nil, "--insecure")
	})
	t.Run("skopeo sees the same list digest", func(t *testing.T) {
		if d := tr.skopeoDigest(t, ref); d != tr.want {
			t.Errorf("skopeo reads %s", d)
		}
	})
	var second qResult
	t.Run("second push succeeds", func(t *testing.T) {
		m0 = reg.Mark(t)
		second = tr.push(t, "", "--insecure", ref)
		m1 = reg.Mark(t)
		if second.digest() != tr.want {
			t.Errorf("push printed %s", second.digest())
		}
	})
	t.Run("second push uploads no blob", func(t *testing.T) {
		if second.Stdout == "" {
			t.Fatal("the second push failed")
		}
		tr.checkLanded(t, reg, m0, m1, "team/quinistry", "none", second)
	})
	t.Run("push with --mount-from mounts every blob", func(t *testing.T) {
		m0 := reg.Mark(t)
		res := tr.push(t, "", "--insecure", "--mount-from", "team/quinistry", reg.Addr+"/other/quinistry:v1")
		m1 := reg.Mark(t)
		if res.digest() != tr.want {
			t.Errorf("push printed %s", res.digest())
		}
		tr.checkLanded(t, reg, m0, m1, "other/quinistry", "mount", res)
	})
	ociRef := reg.Addr + "/team/quinistry:oci"
	t.Run("--format oci push prints the list quinistry serves with --format oci", func(t *testing.T) {
		res := tr.push(t, "", "--insecure", "--format", "oci", ociRef)
		if res.digest() != tr.wantOCI {
			t.Errorf("push printed %s, quinistry --format oci serves %s", res.digest(), tr.wantOCI)
		}
	})
	t.Run("the registry holds that list under the tag", func(t *testing.T) {
		if d := strings.TrimSpace(string(tr.craneOut(t, nil, "digest", "--insecure", ociRef))); d != tr.wantOCI {
			t.Errorf("the tag names %s, want %s", d, tr.wantOCI)
		}
	})
	t.Run("the OCI push stored only OCI media types", func(t *testing.T) {
		onlyTypes(t, tr.mediaTypes(t, ociRef), harness.OCIIndex, harness.OCIIndex, harness.OCIManifest,
			"application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+gzip")
	})
	t.Run("the registry answers the OCI tag with Content-Type "+harness.OCIIndex, func(t *testing.T) {
		r := harness.Do(t, http.MethodHead, "http://"+reg.Addr+"/v2/team/quinistry/manifests/oci", "Accept", harness.ListAccept)
		if ct := r.Header.Get("Content-Type"); r.Status != http.StatusOK || ct != harness.OCIIndex {
			t.Errorf("status %d, Content-Type %q", r.Status, ct)
		}
	})
	t.Run("the default push stored only Docker media types", func(t *testing.T) {
		onlyTypes(t, tr.mediaTypes(t, ref), harness.DockerList, harness.DockerList, harness.DockerManifest,
			"application/vnd.docker.container.image.v1+json", "application/vnd.docker.image.rootfs.diff.tar.gzip")
	})
}

// dockerConfig writes DIR/config.json with credentials for host and
// returns DIR.
func dockerConfig(t *testing.T, host, user, password string) string {
	t.Helper()
	dir := harness.TempDir(t)
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (tr *travel) basic(t *testing.T) {
	htpasswd := filepath.Join(harness.TempDir(t), "htpasswd")
	cmd := exec.Command(tr.regauth, "htpasswd", "alice")
	cmd.Stdin = strings.NewReader("wonderland\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("regauth htpasswd: %v", err)
	}
	if err := os.WriteFile(htpasswd, out, 0o644); err != nil {
		t.Fatal(err)
	}
	reg := harness.StartRegistry(t, "basic", "auth:\n  htpasswd:\n    realm: quinistry-e2e\n    path: "+htpasswd)
	ref := reg.Addr + "/team/quinistry:v1"
	t.Run("push with --username and --password-stdin", func(t *testing.T) {
		res := tr.push(t, "wonderland\n", "--insecure", "--username", "alice", "--password-stdin", ref)
		if res.digest() != tr.want {
			t.Errorf("pushed %s, quinistry serves %s", res.digest(), tr.want)
		}
	})
	cfg := dockerConfig(t, reg.Addr, "alice", "wonderland")
	var second qResult
	var m0, m1 string
	t.Run("push with credentials from docker's config.json", func(t *testing.T) {
		m0 = reg.Mark(t)
		second = tr.push(t, "", "--insecure", "--docker-config", cfg, ref)
		m1 = reg.Mark(t)
		if second.digest() != tr.want {
			t.Errorf("pushed %s", second.digest())
		}
	})
	t.Run("second push uploads no blob", func(t *testing.T) {
		if m1 == "" {
			t.Fatal("the second push failed")
		}
		tr.checkLanded(t, reg, m0, m1, "team/quinistry", "none", second)
	})
	t.Run("crane (same config.json) sees the same content", func(t *testing.T) {
		tr.sameContent(t, ref, []string{"DOCKER_CONFIG=" + cfg}, "--insecure")
	})
	t.Run("skopeo sees the same list digest", func(t *testing.T) {
		if d := tr.skopeoDigest(t, ref, "--creds", "alice:wonderland"); d != tr.want {
			t.Errorf("skopeo reads %s", d)
		}
	})
	t.Run("wrong password fails with one line", func(t *testing.T) {
		oneCleanLine(t, tr.run(t, "nope\n", "push", "--insecure", "--username", "alice", "--password-stdin", reg.Addr+"/team/wrong:v1"),
			"401 Unauthorized: credentials rejected")
	})
	t.Run("no credentials fails with one line", func(t *testing.T) {
		oneCleanLine(t, tr.run(t, "", "push", "--insecure", "--docker-config", filepath.Join(tr.dir, "nowhere"), reg.Addr+"/team/wrong:v1"),
			"authentication required")
	})
	t.Run("the failed pushes left no tag", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, "http://"+reg.Addr+"/v2/team/wrong/manifests/v1",
			"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:wonderland")), "Accept", harness.ListAccept)
		if r.Status != http.StatusNotFound {
			t.Errorf("an authorized GET of team/wrong:v1 gets %d: %s", r.Status, r.Body)
		}
	})
}

func (tr *travel) bearer(t *testing.T) {
	issuerDir := harness.TempDir(t)
	issuer := harness.StartWith(t, "regauth issuer", harness.Options{NoWaitReady: true, Stdin: strings.NewReader("wonderland\n")},
		tr.regauth, "issuer", issuerDir, "127.0.0.1:0", "alice")
	ready := issuer.Log.Wait(t, 30*time.Second, "the token issuer's ready line", func(r harness.Record) bool { return r.Msg() == "ready" })
	_, port, err := net.SplitHostPort(ready["addr"])
	if err != nil {
		t.Fatalf("the issuer's ready line names %q", ready["addr"])
	}
	// the realm names localhost: crane refuses a realm on a private IP literal
	tokenURL := "http://localhost:" + port + "/token"
	reg := harness.StartRegistry(t, "bearer", "auth:\n  token:\n    realm: "+tokenURL+"\n    service: quinistry-e2e\n"+
		"    issuer: quinistry-e2e-issuer\n    rootcertbundle: "+filepath.Join(issuerDir, "root.crt"))
	ref := reg.Addr + "/team/quinistry:v1"
	var first qResult
	t.Run("push with a token", func(t *testing.T) {
		first = tr.push(t, "wonderland\n", "--insecure", "--username", "alice", "--password-stdin", ref)
	})
	t.Run("pushed the served list digest", func(t *testing.T) {
		if first.digest() != tr.want {
			t.Errorf("pushed %q, quinistry serves %s", first.digest(), tr.want)
		}
	})
	t.Run("second push uploads no blob", func(t *testing.T) {
		m0 := reg.Mark(t)
		res := tr.push(t, "wonderland\n", "--insecure", "--username", "alice", "--password-stdin", ref)
		m1 := reg.Mark(t)
		tr.checkLanded(t, reg, m0, m1, "team/quinistry", "none", res)
	})
	cfg := dockerConfig(t, reg.Addr, "alice", "wonderland")
	t.Run("crane sees the same content", func(t *testing.T) {
		tr.sameContent(t, ref, []string{"DOCKER_CONFIG=" + cfg}, "--insecure")
	})
	t.Run("skopeo sees the same list digest", func(t *testing.T) {
		if d := tr.skopeoDigest(t, ref, "--creds", "alice:wonderland"); d != tr.want {
			t.Errorf("skopeo reads %s", d)
		}
	})
	t.Run("wrong password fails with one line", func(t *testing.T) {
		oneCleanLine(t, tr.run(t, "nope\n", "push", "--insecure", "--username", "alice", "--password-stdin", reg.Addr+"/team/wrong:v1"),
			"credentials rejected")
	})
	t.Run("the failed push left no tag: an authorized GET gets 404 MANIFEST_UNKNOWN", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, tokenURL+"?service=quinistry-e2e&scope=repository:team/wrong:pull",
			"Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:wonderland")))
		tok := harness.JSON[struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
		}](t, "the token answer", r.Body)
		if r.Status != http.StatusOK || tok.Token == "" {
			t.Fatalf("the issuer answered %d: %s", r.Status, r.Body)
		}
		r = harness.Do(t, http.MethodGet, "http://"+reg.Addr+"/v2/team/wrong/manifests/v1", "Authorization", "Bearer "+tok.Token, "Accept", harness.ListAccept)
		errs := harness.JSON[struct{ Errors []struct{ Code string } }](t, "the registry's answer", r.Body)
		code := ""
		if len(errs.Errors) > 0 {
			code = errs.Errors[0].Code
		}
		if r.Status != http.StatusNotFound || code != "MANIFEST_UNKNOWN" {
			t.Errorf("an authorized GET of team/wrong:v1 gets %d %s: %s", r.Status, code, r.Body)
		}
	})
}

func (tr *travel) tls(t *testing.T) {
	dir := harness.TempDir(t)
	authority := harness.NewCA(t, dir, "ca")
	authority.Issue(t, dir, "tls", net.IPv4(127, 0, 0, 1), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	ca, cert, key := authority.File, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	reg := harness.StartRegistry(t, "tls", "  tls:\n    certificate: "+cert+"\n    key: "+key)
	if reg.Scheme != "https" {
		t.Fatalf("the registry does not say it serves TLS: %s", reg.Log.Text())
	}
	ref := reg.Addr + "/team/quinistry:v1"
	var res qResult
	t.Run("push --ca-file with the private CA succeeds", func(t *testing.T) {
		res = tr.push(t, "", "--ca-file", ca, ref)
	})
	t.Run("pushed the served list digest", func(t *testing.T) {
		if res.digest() != tr.want {
			t.Errorf("pushed %q, quinistry serves %s", res.digest(), tr.want)
		}
	})
	t.Run("crane (trusting the CA) sees the same list digest", func(t *testing.T) {
		if d := strings.TrimSpace(string(tr.craneOut(t, []string{"SSL_CERT_FILE=" + ca}, "digest", ref))); d != tr.want {
			t.Errorf("crane digest says %s", d)
		}
	})
	t.Run("without --ca-file the push fails with one line (unknown authority)", func(t *testing.T) {
		oneCleanLine(t, tr.run(t, "", "push", reg.Addr+"/team/untrusted:v1"), "certificate signed by unknown authority")
	})
}

func (tr *travel) badInput(t *testing.T) {
	open := harness.StartRegistry(t, "bad-input", "")
	for _, c := range []struct {
		name, want string
		args       []string
	}{
		{"malformed reference", `invalid reference "127.0.0.1:1/Team/Q"`, []string{"push", "--insecure", "127.0.0.1:1/Team/Q"}},
		{"unreachable registry", "cannot reach 127.0.0.1:1: connection refused", []string{"push", "--insecure", "127.0.0.1:1/q:v1"}},
		{"plain HTTP without --insecure", "speaks plain HTTP (use --insecure)", []string{"push", open.Addr + "/q:v1"}},
		{"a registry that refuses blobs (quinistry is read-only)", "405 Method Not Allowed", []string{"push", "--insecure", tr.origin.Addr + "/elsewhere:latest"}},
		{"export to a full disk", "cannot write /dev/full: no space left on device", []string{"export", "--tar", "/dev/full"}},
		{"export with no destination", "give --oci-layout DIR or --tar FILE", []string{"export"}},
	} {
		t.Run(c.name+" fails with one line", func(t *testing.T) { oneCleanLine(t, tr.run(t, "", c.args...), c.want) })
	}
	t.Run("a registry that refuses manifests (quinistry is read-only; it has every blob) fails, saying so last", func(t *testing.T) {
		res := tr.run(t, "", "push", "--insecure", tr.origin.Addr+"/quinistry:latest")
		lines := strings.Split(strings.TrimRight(res.Stderr, "\n"), "\n")
		want := "registry refused the linux/amd64 manifest (application/vnd.docker.distribution.manifest.v2+json): 405 Method Not Allowed"
		if res.Code == 0 || !strings.Contains(lines[len(lines)-1], want) {
			t.Errorf("want a non-zero exit and a last line with %q; got %s", want, res)
		}
	})
}

// tarFiles reads a tar into a map of file name to content ("dir" for a
// directory).
func tarFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	files := map[string]string{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		if h.Typeflag == tar.TypeDir {
			files[name] = "dir"
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = string(data)
	}
}

// dirFiles reads a directory tree into a map of relative name to content
// ("dir" for a directory).
func dirFiles(t *testing.T, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			files[rel] = "dir"
			return nil
		}
		data, err := os.ReadFile(path)
		files[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// diffFiles lists the names whose presence or content differs.
func diffFiles(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			out = append(out, "only in the first: "+k)
		} else if v != w && !(v == "dir" && w == "dir") {
			out = append(out, "differs: "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, "only in the second: "+k)
		}
	}
	sort.Strings(out)
	return out
}

func (tr *travel) export(t *testing.T) {
	qtar := filepath.Join(tr.dir, "q.tar")
	t.Run("prints the served list digest", func(t *testing.T) {
		res := tr.run(t, "", "export", "--tar", qtar)
		if res.Code != 0 || res.digest() != tr.want {
			t.Errorf("export printed %q, quinistry serves %s; %s", res.digest(), tr.want, res)
		}
	})
	t.Run("a second export is byte for byte the same", func(t *testing.T) {
		q2 := filepath.Join(harness.TempDir(t), "q2.tar")
		if res := tr.run(t, "", "export", "--tar", q2); res.Code != 0 {
			t.Fatal(res)
		}
		a, _ := os.ReadFile(qtar)
		b, _ := os.ReadFile(q2)
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("the exports differ: %d and %d bytes, sha256 %x and %x", len(a), len(b), sha256.Sum256(a), sha256.Sum256(b))
		}
	})
	t.Run("--oci-layout holds the same files as the tar", func(t *testing.T) {
		layout := filepath.Join(harness.TempDir(t), "layout")
		if res := tr.run(t, "", "export", "--oci-layout", layout); res.Code != 0 || res.digest() != tr.want {
			t.Fatalf("export --oci-layout: %s", res)
		}
		inTar, inDir := tarFiles(t, qtar), dirFiles(t, layout)
		if d := diffFiles(inDir, inTar); len(d) > 0 || len(inDir) == 0 {
			t.Errorf("the layout (%d entries) and the tar (%d entries) differ:\n  %s", len(inDir), len(inTar), strings.Join(d, "\n  "))
		}
	})
	t.Run("skopeo reads an OCI-format layout's index, the list quinistry serves with --format oci", func(t *testing.T) {
		layout := filepath.Join(harness.TempDir(t), "oci-layout")
		res := tr.run(t, "", "export", "--format", "oci", "--oci-layout", layout)
		if res.Code != 0 {
			t.Fatal(res)
		}
		out := harness.Run(t, tr.skopeo, "inspect", "--raw", "oci:"+layout+":latest")
		sum := sha256.Sum256([]byte(out))
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != res.digest() || got != tr.wantOCI {
			t.Errorf("skopeo reads an index %s; export printed %s; quinistry --format oci serves %s", got, res.digest(), tr.wantOCI)
		}
	})
	t.Run("--tar - writes the same tar to standard output, and nothing else", func(t *testing.T) {
		res := tr.run(t, "", "export", "--tar", "-")
		a, _ := os.ReadFile(qtar)
		if res.Code != 0 || len(a) == 0 || res.Stdout != string(a) {
			t.Errorf("exit %d; standard output holds %d bytes (sha256 %x), the tar %d (sha256 %x)",
				res.Code, len(res.Stdout), sha256.Sum256([]byte(res.Stdout)), len(a), sha256.Sum256(a))
		}
	})
	t.Run("an unknown --platform is one line and exit 2, and writes nothing", func(t *testing.T) {
		never := filepath.Join(harness.TempDir(t), "never.tar")
		res := tr.run(t, "", "export", "--tar", never, "--platforms", "linux/amd64", "--platform", "linux/arm64")
		want := "quinistry: export: --platform linux/arm64: the image has no such platform (it has linux/amd64)\n"
		_, err := os.Stat(never)
		if res.Code != 2 || res.Stderr != want || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s; the tar: %v", res, err)
		}
	})
}

// copyTree copies the files git knows of in the repository (tracked, and
// untracked but not ignored) into dst, skipping those deleted in the work
// tree.
func copyTree(t *testing.T, dst string) {
	t.Helper()
	out := harness.Run(t, "git", "-C", harness.Root(), "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	for _, name := range strings.Split(strings.TrimRight(out, "\x00"), "\x00") {
		src := filepath.Join(harness.Root(), name)
		st, err := os.Lstat(src)
		if err != nil {
			continue
		}
		target := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			link, err := os.Readlink(src)
			if err == nil {
				err = os.Symlink(link, target)
			}
			if err != nil {
				t.Fatal(err)
			}
		case st.Mode().IsRegular():
			data, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(target, data, st.Mode().Perm())
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// versionTagServed builds quinistry in repo for linux/amd64 as
// scripts/build.sh does, starts it and checks that it lists the tags tag and
// latest, and serves its list under tag.
func versionTagServed(t *testing.T, repo, tag string) {
	t.Helper()
	dist := filepath.Join(harness.TempDir(t), "dist")
	cmd := exec.Command("go", "run", "./crossbuild/cmd/crossbuild", "-out", dist, "-platforms", "linux/amd64")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building in the copy: %v\n%s", err, out)
	}
	s := harness.Start(t, "version "+tag, harness.Binary(dist, "linux/amd64"), []string{"--addr", "127.0.0.1:0"})
	r := harness.Do(t, http.MethodGet, s.URL("/v2/quinistry/tags/list"))
	tags := harness.JSON[struct{ Tags []string }](t, "the tag list", r.Body).Tags
	h := harness.Do(t, http.MethodHead, s.URL("/v2/quinistry/manifests/"+tag), "Accept", harness.ListAccept)
	byTag := h.Header.Get("Docker-Content-Digest")
	list := harness.ListDigest(t, s.Addr, "quinistry")
	sorted := slices.Sorted(slices.Values(tags))
	wantTags := slices.Sorted(slices.Values([]string{tag, "latest"}))
	if !slices.Equal(sorted, wantTags) || h.Status != http.StatusOK || byTag != list || list == "" {
		t.Errorf("tags %v; %s names %q (status %d); latest names %s", tags, tag, byTag, h.Status, list)
	}
}

func (tr *travel) version(t *testing.T) {
	// A copy of this tree, committed (then tagged) in a git repository of
	// its own: a worktree or a dirty tree gives no stable VCS stamp.
	repo := filepath.Join(harness.TempDir(t), "repo")
	copyTree(t, repo)
	git := func(args ...string) string {
		return strings.TrimSpace(harness.Run(t, append([]string{"git", "-C", repo, "-c", "user.name=e2e", "-c", "user.email=e2e@quinistry.invalid"}, args...)...))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-qm", "e2e", "--date=2026-11-27T12:00:00Z")
	rev := git("rev-parse", "HEAD")
	t.Run("a build of a commit serves the commit's short revision as a tag for its list", func(t *testing.T) {
		t.Logf("commit %s", rev[:12])
		versionTagServed(t, repo, rev[:12])
	})
	git("tag", "v0.99.1")
	t.Run("a build of tag v0.99.1 serves tag v0.99.1 for its list", func(t *testing.T) {
		versionTagServed(t, repo, "v0.99.1")
	})
}

// inspected is what docker inspect says of a container.
type inspected struct {
	ID    string
	State struct {
		Running  bool
		Status   string
		ExitCode int
	}
	Config          containerConfig
	NetworkSettings struct {
		IPAddress string
		Networks  map[string]struct{ IPAddress string }
		Ports     map[string][]struct{ HostIP, HostPort string }
	}
}

// containerConfig is the part of a container's or image's config that says
// how it starts.
type containerConfig struct {
	Entrypoint, Cmd, Env []string
	User                 string
}

// container is a generation docker runs.
type container struct {
	ID, Port, IP string
	Config       containerConfig
	Log          *harness.Log
}

// dockerEnv is the private dockerd's CLI and environment.
type dockerEnv struct {
	cli string
	env []string
	// owner is the test that the daemon lives as long as: containers'
	// log followers stop when it ends.
	owner *testing.T
}

// run runs the docker CLI with args against the private daemon.
func (d dockerEnv) run(args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(d.cli, args...)
	cmd.Env = append(os.Environ(), d.env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// must runs docker with args and fails the test on a non-zero exit.
func (d dockerEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := d.run(args...)
	if err != nil {
		t.Fatalf("docker %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

// runGen starts image as the README says and as nothing else: docker run -d
// with the container's port 8080 published on 127.0.0.1 (a port docker
// picks), no other flag. It checks that the container runs on the bridge
// with the image's own entrypoint, command, environment and user, and
// follows its log.
func (d dockerEnv) runGen(t *testing.T, image, subnetPrefix string) *container {
	t.Helper()
	out, errOut, err := d.run("run", "-d", "-p", "127.0.0.1::8080", image)
	if err != nil {
		t.Fatalf("docker run: %v: %s", err, errOut)
	}
	id := strings.TrimSpace(out)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("docker run printed %q", out)
	}
	c := &container{ID: id}
	logs := exec.Command(d.cli, "logs", "--follow", id)
	logs.Env = append(os.Environ(), d.env...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	logs.Stdout, logs.Stderr = pw, pw
	if err := logs.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	c.Log = harness.FollowLog(pr)
	d.owner.Cleanup(func() { _ = logs.Process.Kill(); _ = logs.Wait(); pr.Close() })

	ins := harness.JSON[[]inspected](t, "docker inspect", []byte(d.must(t, "inspect", id)))
	if len(ins) != 1 {
		t.Fatalf("docker inspect %s: %d containers", id, len(ins))
	}
	in := ins[0]
	c.Config = in.Config
	c.IP = in.NetworkSettings.IPAddress
	for _, n := range in.NetworkSettings.Networks {
		if c.IP == "" {
			c.IP = n.IPAddress
		}
	}
	if p := in.NetworkSettings.Ports["8080/tcp"]; len(p) > 0 {
		c.Port = p[0].HostPort
	}
	if !in.State.Running || !strings.HasPrefix(c.IP, subnetPrefix) || c.Port == "" {
		logs, _, _ := d.run("logs", id)
		t.Fatalf("container %s: running %v (%s, exit %d), address %q (want one in %s*), published port %q; its log:\n%s",
			id[:12], in.State.Running, in.State.Status, in.State.ExitCode, c.IP, subnetPrefix, c.Port, logs)
	}
	imgs := harness.JSON[[]struct{ Config containerConfig }](t, "docker image inspect", []byte(d.must(t, "image", "inspect", image)))
	if len(imgs) != 1 || !slices.Equal(imgs[0].Config.Entrypoint, c.Config.Entrypoint) || !slices.Equal(imgs[0].Config.Cmd, c.Config.Cmd) ||
		!slices.Equal(imgs[0].Config.Env, c.Config.Env) || imgs[0].Config.User != c.Config.User {
		t.Errorf("the container runs with %+v, the image says %+v", c.Config, imgs)
	}
	t.Logf("container %s at %s, published on 127.0.0.1:%s, runs %+v", id[:12], c.IP, c.Port, c.Config)
	return c
}

// serves waits for the generation's ready line and returns the list digest
// it serves on its published port.
func (c *container) serves(t *testing.T) string {
	t.Helper()
	c.Log.Wait(t, 60*time.Second, "container "+c.ID[:12]+"'s ready line", func(r harness.Record) bool { return r.Msg() == "ready" })
	return harness.ListDigest(t, "127.0.0.1:"+c.Port, "quinistry")
}

// containerdSocket finds the socket of the private dockerd's containerd.
func containerdSocket(t *testing.T, dir string) string {
	t.Helper()
	var sock string
	_ = filepath.WalkDir(filepath.Join(dir, "exec"), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "containerd.sock" && d.Type()&fs.ModeSocket != 0 && sock == "" {
			sock = path
		}
		return nil
	})
	if sock == "" {
		t.Fatalf("no containerd.sock under %s/exec", dir)
	}
	return sock
}

// docker runs the checks that need a private dockerd on a bridge of its
// own (so that -p publishes ports for real, through docker-proxy into the
// container's network namespace). It returns the host ports published.
func (tr *travel) docker(t *testing.T) []string {
	sub := harness.ClaimSubnet(t)
	bridge := sub.ID
	br := harness.BringUp(t, "bridge", bridge, sub.Prefix)
	harness.AddLeftoverCheck(func() []string {
		if _, err := os.Stat("/sys/class/net/" + bridge); err == nil {
			return []string{"link " + bridge}
		}
		return nil
	})
	subnetPrefix := strings.TrimSuffix(br["SUBNET"], "0/24")
	t.Setenv("DOCKERD_BRIDGE", bridge)
	ddir := filepath.Join(harness.TempDir(t), "docker")
	denv := harness.BringUp(t, "dockerd", ddir)
	d := dockerEnv{cli: denv["DOCKER"], env: []string{"DOCKER_HOST=" + denv["DOCKER_HOST"]}, owner: t}
	if d.cli == "" || denv["DOCKER_HOST"] == "" {
		t.Fatalf("dockerd.sh printed %v", denv)
	}
	var ports []string
	qtar := filepath.Join(tr.dir, "q.tar")
	if _, err := os.Stat(qtar); err != nil {
		// the export subtests did not run (go test -run 'TestTravel/docker')
		if res := tr.run(t, "", "export", "--tar", qtar); res.Code != 0 {
			t.Fatalf("export --tar: %s", res)
		}
	}

	t.Run("docker load names the export quinistry:latest", func(t *testing.T) {
		out := d.must(t, "load", "-i", qtar)
		if !slices.Contains(strings.Split(out, "\n"), "Loaded image: quinistry:latest") {
			t.Errorf("docker load printed %q", out)
		}
	})

	// containerd (the daemon's own, in a namespace of this run) imports the
	// export by the names in its index.json, every platform.
	t.Run("containerd", func(t *testing.T) {
		sock := containerdSocket(t, ddir)
		ns := fmt.Sprintf("quinistry-e2e-%d", os.Getpid())
		ctr := func(args ...string) (string, error) {
			return harness.RunErr(append([]string{"ctr", "--address", sock, "--namespace", ns}, args...)...)
		}
		if !t.Run("ctr images import reads the export", func(t *testing.T) {
			if out, err := ctr("images", "import", "--all-platforms", "--no-unpack", qtar); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		}) {
			return
		}
		t.Run("the import is named docker.io/library/quinistry:latest with the list digest, both platforms", func(t *testing.T) {
			out, err := ctr("images", "ls")
			if err != nil {
				t.Fatal(err)
			}
			// REF TYPE DIGEST SIZE (a number and a unit) PLATFORMS LABELS
			var got []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
				if f := strings.Fields(line); len(f) >= 6 {
					got = append(got, f[0]+" "+f[2]+" "+f[5])
				}
			}
			want := []string{"docker.io/library/quinistry:latest " + tr.want + " linux/amd64,linux/arm64/v8"}
			if !slices.Equal(got, want) {
				t.Errorf("ctr images ls: %q, want %q", got, want)
			}
		})
		t.Run("the host platform's manifest, config and layers are all there", func(t *testing.T) {
			out, err := ctr("images", "check")
			if err != nil {
				t.Fatal(err)
			}
			// REF TYPE DIGEST STATUS SIZE UNPACKED
			var status []string
			for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
				if f := strings.Fields(line); len(f) >= 4 {
					status = append(status, f[3])
				}
			}
			if !slices.Equal(status, []string{"complete"}) {
				t.Errorf("ctr images check: %s", out)
			}
		})
	})

	// generations: each started with docker run and a published port only,
	// generation 2 pulled from generation 1, generation 3 from generation 2
	var prev *container
	gen := func(n int, image, label string) {
		var c *container
		t.Run(fmt.Sprintf("generation %d: docker run -d -p 127.0.0.1::8080 %s, and nothing else, runs on the bridge as the image says", n, label), func(t *testing.T) {
			c = d.runGen(t, image, subnetPrefix)
			ports = append(ports, c.Port)
		})
		t.Run(fmt.Sprintf("generation %d serves the same list digest on its published port", n), func(t *testing.T) {
			if c == nil {
				t.Fatal("the container did not start")
			}
			if got := c.serves(t); got != tr.want {
				t.Errorf("generation %d (%s, 127.0.0.1:%s) serves %s, want %s", n, image, c.Port, got, tr.want)
			}
		})
		prev = c
	}
	gen(1, "quinistry:latest", "quinistry:latest")
	t.Run("generation 1 logs that it listens on :8080 inside its container", func(t *testing.T) {
		if prev == nil {
			t.Fatal("generation 1 did not start")
		}
		r := prev.Log.Wait(t, 60*time.Second, "the ready line", func(r harness.Record) bool { return r.Msg() == "ready" })
		if r["addr"] != "[::]:8080" {
			t.Errorf("generation 1's ready line: %s", r)
		}
	})
	for n := 2; n <= 3; n++ {
		if prev == nil {
			t.Fatalf("generation %d did not start", n-1)
		}
		from := "localhost:" + prev.Port + "/quinistry:latest"
		t.Run(fmt.Sprintf("generation %d pulled from generation %d", n, n-1), func(t *testing.T) {
			d.must(t, "pull", "-q", from)
		})
		if n == 3 {
			t.Run("generation 3's repo digest is the same list digest", func(t *testing.T) {
				var digests []string
				for _, img := range harness.JSON[[]struct{ RepoDigests []string }](t, "docker image inspect", []byte(d.must(t, "image", "inspect", from))) {
					digests = append(digests, img.RepoDigests...)
				}
				want := "localhost:" + prev.Port + "/quinistry@" + tr.want
				if !slices.Contains(digests, want) {
					t.Errorf("repo digests %v, want %s", digests, want)
				}
			})
		}
		gen(n, from, fmt.Sprintf("generation %d's image", n-1))
	}
	t.Run("bad input: docker run -d of an image that is not there fails, and says so", func(t *testing.T) {
		if prev == nil {
			t.Fatal("generation 3 did not start")
		}
		_, errOut, err := d.run("run", "-d", "localhost:"+prev.Port+"/quinistry:nope")
		if err == nil || !strings.Contains(errOut, "manifest unknown") {
			t.Errorf("docker run: %v: %s", err, errOut)
		}
	})

	// An OCI-format image, exported or pushed, then loaded or pulled and run
	// with no flag at all, serves the digest exported or pushed: the image
	// carries its format.
	t.Run("oci", func(t *testing.T) {
		ociTar := filepath.Join(harness.TempDir(t), "oci.tar")
		exported := tr.run(t, "", "export", "--format", "oci", "--tag", "oci", "--tar", ociTar)
		t.Run("export --format oci prints the list quinistry serves with --format oci", func(t *testing.T) {
			if exported.Code != 0 || exported.digest() != tr.wantOCI {
				t.Errorf("%s; quinistry --format oci serves %s", exported, tr.wantOCI)
			}
		})
		t.Run("docker load names the OCI export quinistry:oci", func(t *testing.T) {
			out := d.must(t, "load", "-i", ociTar)
			if !slices.Contains(strings.Split(out, "\n"), "Loaded image: quinistry:oci") {
				t.Errorf("docker load printed %q", out)
			}
		})
		var loaded *container
		t.Run("docker run -d -p 127.0.0.1::8080 quinistry:oci, and nothing else, runs as the image says", func(t *testing.T) {
			loaded = d.runGen(t, "quinistry:oci", subnetPrefix)
			ports = append(ports, loaded.Port)
		})
		t.Run("the loaded image, run plainly, serves the exported OCI index", func(t *testing.T) {
			if loaded == nil {
				t.Fatal("the container did not start")
			}
			if got := loaded.serves(t); got != exported.digest() {
				t.Errorf("it serves %s, export printed %s", got, exported.digest())
			}
		})
		reg := harness.StartRegistry(t, "oci", "")
		ref := reg.Addr + "/team/quinistry:oci-run"
		var pushed qResult
		t.Run("the pushed digest is the exported one", func(t *testing.T) {
			pushed = tr.push(t, "", "--insecure", "--format", "oci", ref)
			if pushed.digest() != exported.digest() {
				t.Errorf("push printed %s, export %s", pushed.digest(), exported.digest())
			}
		})
		t.Run("docker pull of the pushed OCI image", func(t *testing.T) { d.must(t, "pull", "-q", ref) })
		var pulled *container
		t.Run("docker run -d -p 127.0.0.1::8080 of the pulled OCI image, and nothing else, runs as the image says", func(t *testing.T) {
			pulled = d.runGen(t, ref, subnetPrefix)
			ports = append(ports, pulled.Port)
		})
		t.Run("the pulled image, run plainly, serves the pushed OCI index", func(t *testing.T) {
			if pulled == nil || pushed.Stdout == "" {
				t.Fatal("the push or the container failed")
			}
			if got := pulled.serves(t); got != pushed.digest() {
				t.Errorf("it serves %s, push printed %s", got, pushed.digest())
			}
		})
	})
	return ports
}

// dockerProxies returns the command lines of the docker-proxy processes on
// this machine.
func dockerProxies() []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if filepath.Base(args[0]) == "docker-proxy" {
			out = append(out, strings.Join(args, " "))
		}
	}
	return out
}

// listening reports whether something listens on TCP port on this
// machine's network namespace (from /proc/net/tcp and tcp6).
func listening(t *testing.T, port string) bool {
	t.Helper()
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	hexPort := fmt.Sprintf(":%04X", p)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			// local_address rem_address st: 0A is LISTEN
			if len(fields) > 3 && strings.HasSuffix(fields[1], hexPort) && fields[3] == "0A" {
				return true
			}
		}
	}
	return false
}

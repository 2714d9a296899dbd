package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/quinistry/quinistry/e2e/harness"
)

// served is what generation 1 serves, fetched and decoded once per format:
// the list's bytes and digest, and each platform's manifest.
type served struct {
	addr, ref  string
	list       string // the list digest
	listBytes  []byte
	index      *v1.IndexManifest
	manifests  map[string]v1.Descriptor // by architecture: the list's entries
	images     map[string]*v1.Manifest  // by architecture
	blobs      []string                 // every config and layer digest, sorted
	listType   string
	listName   string // the list type in words, for subtest names
	childTypes string
}

// TestClients drives real registry clients against quinistry, in both
// formats (docker and oci): a private dockerd pulls both platforms, runs
// the pulled images locked down (read-only, user 65532, no capabilities,
// no_new_privs, host network) as generations 2 and 3 that serve the same
// list digest, the arm64 one under qemu (binfmt); docker manifest inspect,
// crane and skopeo read the list, the images and their blobs; and the OCI
// distribution-spec conformance suite runs its read-only pull workflow.
func TestClients(t *testing.T) {
	dist := harness.Dist(t)
	amd64 := harness.Binary(dist, "linux/amd64")
	conformanceBin := harness.Tool(t, "conformance.test")
	for _, argv := range [][]string{{harness.Tool(t, "crane"), "version"}, {harness.Tool(t, "skopeo"), "--version"},
		{harness.Tool(t, "qemu-aarch64-static"), "--version"}, {harness.Tool(t, "dockerd"), "--version"}} {
		t.Logf("%s", strings.SplitN(harness.Run(t, argv...), "\n", 2)[0])
	}
	for _, l := range strings.Split(harness.Run(t, "go", "version", "-m", conformanceBin), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "mod" {
			t.Logf("conformance: %s@%s", f[1], f[2])
		}
	}
	var leftovers []string
	for _, format := range []string{"docker", "oci"} {
		t.Run(format, func(t *testing.T) { leftovers = append(leftovers, clients(t, format, amd64)...) })
	}
	harness.CheckNothingLeft(t)
	// the harness's check above compares the whole machine before and after,
	// so suites running at the same time show up there; this one looks only
	// for what this suite made
	t.Run("nothing of dockerd, its containers or binfmt is left behind", func(t *testing.T) {
		var left, ids []string
		for _, l := range leftovers {
			if !strings.HasPrefix(l, "/") {
				ids = append(ids, l)
			} else if _, err := os.Stat(l); err == nil {
				left = append(left, l)
			}
		}
		left = append(left, harness.ProcessesNaming(leftovers...)...)
		left = append(left, cgroupsNaming(t, ids)...)
		left = append(left, mountsUnder(t, leftovers)...)
		if len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
}

// clients runs every client against a generation 1 that serves format. It
// returns what must be gone once it has ended: the binfmt handler it
// registered, if it did, the dockerd directory (no process may still name
// it) and the IDs of the containers it ran (no process or cgroup may still
// name them).
func clients(t *testing.T, format, bin string) (leftovers []string) {
	args := []string{"--addr", "127.0.0.1:0"}
	if format == "oci" {
		args = append(args, "--format", "oci")
	}
	gen1 := harness.Start(t, "gen1-"+format, bin, args)
	s := &served{addr: gen1.Addr, ref: gen1.Addr + "/quinistry:latest",
		listType: harness.DockerList, listName: "a Docker manifest list", childTypes: harness.DockerManifest}
	if format == "oci" {
		s.listType, s.listName, s.childTypes = harness.OCIIndex, "an OCI image index", harness.OCIManifest
	}
	fetchServed(t, s)
	t.Logf("list %s; amd64 %s; arm64 %s; %d blobs", s.list, s.manifests["amd64"].Digest, s.manifests["arm64"].Digest, len(s.blobs))

	t.Run("docker", func(t *testing.T) { leftovers = dockerClient(t, s) })
	t.Run("crane", func(t *testing.T) { craneClient(t, s) })
	t.Run("skopeo", func(t *testing.T) { skopeoClient(t, s, format) })
	t.Run("conformance", func(t *testing.T) { conformance(t, s) })
	return leftovers
}

// fetchServed reads the list as docker asks for it, then each platform's
// manifest by digest, checking that each hashes to its digest.
func fetchServed(t *testing.T, s *served) {
	s.list = harness.ListDigest(t, s.addr, "quinistry")
	t.Run("HEAD gives a list digest", func(t *testing.T) {
		if !strings.HasPrefix(s.list, "sha256:") || len(s.list) != len("sha256:")+64 {
			t.Fatalf("HEAD gave Docker-Content-Digest %q", s.list)
		}
	})
	r := harness.Do(t, http.MethodGet, "http://"+s.addr+"/v2/quinistry/manifests/latest", "Accept", harness.ListAccept)
	if r.Status != http.StatusOK {
		t.Fatalf("GET the list: status %d", r.Status)
	}
	s.listBytes = r.Body
	t.Run("the list's bytes hash to the list digest", func(t *testing.T) {
		if got := harness.DigestOf(s.listBytes); got != s.list {
			t.Errorf("the list's %d bytes hash to %s, HEAD said %s", len(s.listBytes), got, s.list)
		}
	})
	idx, err := v1.ParseIndexManifest(bytes.NewReader(s.listBytes))
	if err != nil {
		t.Fatalf("decoding the list: %v\n%s", err, s.listBytes)
	}
	s.index = idx
	t.Run("the list is "+s.listName, func(t *testing.T) {
		if string(idx.MediaType) != s.listType || r.Header.Get("Content-Type") != s.listType {
			t.Errorf("the list says mediaType %s and is served as %s", idx.MediaType, r.Header.Get("Content-Type"))
		}
	})
	s.manifests, s.images = map[string]v1.Descriptor{}, map[string]*v1.Manifest{}
	blobs := map[string]bool{}
	var wrong []string
	for _, d := range idx.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" {
			t.Fatalf("the list has an entry without a linux platform: %+v", d)
		}
		arch := d.Platform.Architecture
		m := harness.Do(t, http.MethodGet, "http://"+s.addr+"/v2/quinistry/manifests/"+d.Digest.String(), "Accept", harness.ListAccept)
		if m.Status != http.StatusOK {
			t.Fatalf("GET the %s manifest %s: status %d", arch, d.Digest, m.Status)
		}
		if got := harness.DigestOf(m.Body); got != d.Digest.String() {
			wrong = append(wrong, fmt.Sprintf("the %s manifest's bytes hash to %s, the list names %s", arch, got, d.Digest))
		}
		man, err := v1.ParseManifest(bytes.NewReader(m.Body))
		if err != nil {
			t.Fatalf("decoding the %s manifest: %v", arch, err)
		}
		if string(man.MediaType) != s.childTypes || string(d.MediaType) != s.childTypes {
			wrong = append(wrong, fmt.Sprintf("the %s manifest is a %s, named in the list as a %s", arch, man.MediaType, d.MediaType))
		}
		s.manifests[arch], s.images[arch] = d, man
		blobs[man.Config.Digest.String()] = true
		for _, l := range man.Layers {
			blobs[l.Digest.String()] = true
		}
	}
	t.Run("each platform's manifest hashes to the digest the list names and is of the list's format", func(t *testing.T) {
		for _, w := range wrong {
			t.Error(w)
		}
	})
	if _, ok := s.manifests["amd64"]; !ok {
		t.Fatalf("the list has no amd64 entry: %v", harness.Platforms(idx))
	}
	if _, ok := s.manifests["arm64"]; !ok {
		t.Fatalf("the list has no arm64 entry: %v", harness.Platforms(idx))
	}
	for b := range blobs {
		s.blobs = append(s.blobs, b)
	}
	sort.Strings(s.blobs)
}

func inspectImage(t *testing.T, d *harness.Docker, ref string) harness.DockerImage {
	t.Helper()
	imgs := harness.JSON[[]harness.DockerImage](t, "docker image inspect "+ref, []byte(d.Run(t, "image", "inspect", ref)))
	if len(imgs) != 1 {
		t.Fatalf("docker image inspect %s gave %d images", ref, len(imgs))
	}
	return imgs[0]
}

// lockdown is how every container here runs: host network, read-only root,
// user 65532, no capabilities, no new privileges, and no pull.
var lockdown = []string{"--network", "host", "--read-only", "--user", "65532", "--cap-drop", "ALL",
	"--security-opt", "no-new-privileges", "--pull", "never"}

// dockerClient: pulls, runs and inspects with a private dockerd. It returns
// what must be gone once the daemon is down.
func dockerClient(t *testing.T, s *served) (leftovers []string) {
	d := harness.StartDocker(t)
	t.Logf("docker CLI %s, dockerd %s", strings.TrimSpace(d.Run(t, "version", "--format", "{{.Client.Version}}")),
		strings.TrimSpace(d.Run(t, "version", "--format", "{{.Server.Version}}, API {{.Server.APIVersion}}")))
	leftovers = append(leftovers, d.Dir)
	t.Run("the new daemon's image store is empty", func(t *testing.T) {
		if got := strings.Fields(d.Run(t, "images", "--all", "--quiet")); len(got) != 0 {
			t.Errorf("the daemon holds images %v before any pull", got)
		}
	})

	// Each action runs in the body and its subtest only judges it, so that
	// `go test -run` can pick any one check and what it needs still happens.
	pulled := map[string]harness.DockerImage{}
	for _, arch := range []string{"amd64", "arm64"} {
		args := []string{"pull"}
		name := "docker pull of generation 1's tag"
		if arch == "arm64" {
			args = append(args, "--platform", "linux/arm64")
			name = "docker pull --platform linux/arm64 of generation 1's tag"
		}
		out, errOut, err := d.RunErr(append(args, s.ref)...)
		t.Logf("docker %s:\n%s", strings.Join(args, " "), out+errOut)
		if !succeeds(t, name, err) {
			continue
		}
		man := s.images[arch]
		if arch == "amd64" {
			// the arm64 image's layers are the amd64 image's (each holds both
			// binaries): only the first pull downloads
			t.Run("the pull downloaded every layer of the amd64 manifest", func(t *testing.T) {
				for _, l := range man.Layers {
					if want := l.Digest.Hex[:12] + ": Pull complete"; !slices.Contains(lines(out), want) {
						t.Errorf("no %q line for layer %s; the pull said:\n%s", want, l.Digest, out)
					}
				}
			})
		}
		t.Run("the "+arch+" pull reports the list digest", func(t *testing.T) {
			if want := "Digest: " + s.list; !slices.Contains(lines(out), want) {
				t.Errorf("no %q line; the pull said:\n%s", want, out)
			}
		})
		img := inspectImage(t, d, s.ref)
		pulled[arch] = img
		t.Run("the pulled image is linux/"+arch+", its config's digest, entrypoint /quinistry-linux-"+arch+", user 65532, port 8080", func(t *testing.T) {
			var ports []string
			for p := range img.Config.ExposedPorts {
				ports = append(ports, p)
			}
			got := fmt.Sprintf("%s/%s %s %q %s %v", img.Os, img.Architecture, img.ID, img.Config.Entrypoint, img.Config.User, ports)
			want := fmt.Sprintf("linux/%s %s %q 65532 [8080/tcp]", arch, man.Config.Digest, []string{"/quinistry-linux-" + arch})
			if got != want {
				t.Errorf("the image is %s, want %s", got, want)
			}
		})
		d.Run(t, "tag", img.ID, "qtest/"+arch)
		if arch == "amd64" {
			// dockerd keeps one image per REPO@DIGEST and the amd64 image holds it
			// already, so the arm64 image gets none: its pull reported the digest
			t.Run("the amd64 image's RepoDigest is the list digest", func(t *testing.T) {
				if want := s.addr + "/quinistry@" + s.list; !slices.Contains(img.RepoDigests, want) {
					t.Errorf("RepoDigests %v, want %s among them", img.RepoDigests, want)
				}
			})
		}
	}
	if _, ok := pulled["amd64"]; !ok {
		t.Fatal("no amd64 image was pulled: nothing to run")
	}

	t.Run("generation 2 runs the amd64 image locked down", func(t *testing.T) {
		gen2, err := d.RunContainer(t, "gen2-amd64", append(append([]string{}, lockdown...), "qtest/amd64", "--addr", "127.0.0.1:0")...)
		if !succeeds(t, "it logs its ready line", err) {
			return
		}
		leftovers = append(leftovers, gen2.ID)
		lockedDown(t, gen2, "amd64")
		sameDigest(t, s.list, gen2)
		ref2 := gen2.Addr + "/quinistry:latest"
		out, errOut, err := d.RunErr("pull", ref2)
		if !succeeds(t, "docker pull from generation 2", err, out+errOut) {
			return
		}
		t.Run("the image pulled from generation 2 has the same RepoDigest and image ID", func(t *testing.T) {
			img := inspectImage(t, d, ref2)
			if want := gen2.Addr + "/quinistry@" + s.list; !slices.Contains(img.RepoDigests, want) {
				t.Errorf("RepoDigests %v, want %s among them", img.RepoDigests, want)
			}
			if img.ID != pulled["amd64"].ID {
				t.Errorf("the image pulled from generation 2 is %s, from generation 1 %s", img.ID, pulled["amd64"].ID)
			}
		})
		t.Run("docker manifest inspect of generation 2 shows "+s.listName+" with both platforms", func(t *testing.T) {
			manifestInspect(t, d, s, ref2)
		})
		t.Run("generation 3, pulled from generation 2, runs locked down with no flag but the address", func(t *testing.T) {
			gen3, err := d.RunContainer(t, "gen3-amd64", append(append([]string{}, lockdown...), ref2, "--addr", "127.0.0.1:0")...)
			if !succeeds(t, "it logs its ready line", err) {
				return
			}
			leftovers = append(leftovers, gen3.ID)
			lockedDown(t, gen3, "amd64")
			sameDigest(t, s.list, gen3)
			t.Run("docker manifest inspect of generation 3 shows "+s.listName, func(t *testing.T) {
				manifestInspect(t, d, s, gen3.Addr+"/quinistry:latest")
			})
		})
	})

	t.Run("generation 2 runs the arm64 image locked down under qemu (binfmt)", func(t *testing.T) {
		if _, ok := pulled["arm64"]; !ok {
			t.Fatal("no arm64 image was pulled")
		}
		notes := harness.TempDir(t)
		harness.BringUp(t, "binfmt", notes)
		if _, err := os.Stat(filepath.Join(notes, "binfmt.registered")); err == nil {
			leftovers = append(leftovers, "/proc/sys/fs/binfmt_misc/quinistry-aarch64")
		}
		c, err := d.RunContainer(t, "gen2-arm64", append(append([]string{}, lockdown...), "--platform", "linux/arm64", "qtest/arm64", "--addr", "127.0.0.1:0")...)
		if !succeeds(t, "it logs its ready line", err) {
			return
		}
		leftovers = append(leftovers, c.ID)
		lockedDown(t, c, "arm64")
		sameDigest(t, s.list, c)
	})

	t.Run("docker manifest inspect --insecure of generation 1 names linux/amd64 and linux/arm64", func(t *testing.T) {
		manifestInspect(t, d, s, s.ref)
	})
	return leftovers
}

// lockedDown checks, from /proc of the container's process, that it runs
// arch's quinistry as uid 65532 with no capabilities, no_new_privs, a
// read-only root and the host's network namespace.
func lockedDown(t *testing.T, c *harness.Container, arch string) {
	t.Helper()
	p := harness.ReadConfinement(t, c.PID(t))
	t.Logf("%s: %s", c.Name, p)
	host := harness.ReadConfinement(t, os.Getpid())
	t.Run("its process is quinistry-linux-"+arch, func(t *testing.T) {
		if !slices.Contains(p.Cmdline, "/quinistry-linux-"+arch) {
			t.Errorf("%s runs %q", c.Name, p.Cmdline)
		}
	})
	t.Run("its process runs as uid 65532", func(t *testing.T) {
		if p.Uid != [4]uint32{65532, 65532, 65532, 65532} {
			t.Errorf("%s runs as uid %v", c.Name, p.Uid)
		}
	})
	t.Run("its process has no capabilities", func(t *testing.T) {
		if p.CapEff != 0 || p.CapPrm != 0 || p.CapInh != 0 || p.CapAmb != 0 || p.CapBnd != 0 {
			t.Errorf("%s has CapEff %016x CapPrm %016x CapInh %016x CapAmb %016x CapBnd %016x", c.Name, p.CapEff, p.CapPrm, p.CapInh, p.CapAmb, p.CapBnd)
		}
	})
	t.Run("its process has no_new_privs", func(t *testing.T) {
		if !p.NoNewPrivs {
			t.Errorf("%s has NoNewPrivs 0", c.Name)
		}
	})
	t.Run("its root file system is read-only", func(t *testing.T) {
		if !p.RootReadOnly() {
			t.Errorf("%s's root is mounted %s", c.Name, strings.Join(p.RootOptions, ","))
		}
		if p.MntNS == host.MntNS {
			t.Errorf("%s shares the host's mount namespace %s", c.Name, p.MntNS)
		}
	})
	t.Run("it is on the host's network", func(t *testing.T) {
		if p.NetNS != host.NetNS {
			t.Errorf("%s is in %s, the host in %s", c.Name, p.NetNS, host.NetNS)
		}
	})
}

// sameDigest checks that the container c serves the list digest want.
func sameDigest(t *testing.T, want string, c *harness.Container) {
	t.Helper()
	t.Run("it serves the same list digest", func(t *testing.T) {
		if got := harness.ListDigest(t, c.Addr, "quinistry"); got != want {
			t.Errorf("%s (%s) serves %s, generation 1 %s", c.Name, c.Addr, got, want)
		}
	})
}

// succeeds runs a subtest named name that fails, showing err and what the
// action printed, when the action done before it failed; it reports
// whether the action succeeded.
func succeeds(t *testing.T, name string, err error, printed ...string) bool {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		if err != nil {
			t.Fatalf("%v\n%s", err, strings.Join(printed, "\n"))
		}
	})
	return err == nil
}

// manifestInspect: `docker manifest inspect --insecure` gives the list's
// media type and platforms, and with -v each platform's manifest digest, as
// generation 1 serves them.
func manifestInspect(t *testing.T, d *harness.Docker, s *served, ref string) {
	t.Helper()
	out := d.Run(t, "manifest", "inspect", "--insecure", ref)
	list := harness.JSON[v1.IndexManifest](t, "docker manifest inspect "+ref, []byte(out))
	if string(list.MediaType) != s.listType {
		t.Errorf("docker manifest inspect %s says mediaType %s, want %s", ref, list.MediaType, s.listType)
	}
	var got []string
	for _, m := range list.Manifests {
		got = append(got, m.Platform.OS+"/"+m.Platform.Architecture)
	}
	if want := []string{"linux/amd64", "linux/arm64"}; !slices.Equal(got, want) {
		t.Errorf("docker manifest inspect %s names %v, want %v", ref, got, want)
	}
	out = d.Run(t, "manifest", "inspect", "--insecure", "--verbose", ref)
	verbose := harness.JSON[[]struct{ Descriptor v1.Descriptor }](t, "docker manifest inspect --verbose "+ref, []byte(out))
	got = nil
	for _, v := range verbose {
		got = append(got, platformAt(v.Descriptor))
	}
	var want []string
	for _, m := range s.index.Manifests {
		want = append(want, platformAt(m))
	}
	if !slices.Equal(got, want) {
		t.Errorf("docker manifest inspect --verbose %s names %v, generation 1's list %v", ref, got, want)
	}
}

func platformAt(d v1.Descriptor) string {
	if d.Platform == nil {
		return "(no platform)@" + d.Digest.String()
	}
	return d.Platform.OS + "/" + d.Platform.Architecture + "@" + d.Digest.String()
}

// craneClient: crane reads the list, pulls and validates.
func craneClient(t *testing.T, s *served) {
	crane := harness.Tool(t, "crane")
	cr := func(t *testing.T, args ...string) string {
		t.Helper()
		return harness.Run(t, append([]string{crane, "--insecure"}, args...)...)
	}
	t.Run("crane manifest gives the served bytes", func(t *testing.T) {
		if got := cr(t, "manifest", s.ref); got != string(s.listBytes) {
			t.Errorf("crane manifest gave %d bytes hashing to %s, served %d bytes (%s)", len(got), harness.DigestOf([]byte(got)), len(s.listBytes), s.list)
		}
	})
	t.Run("crane digest is the list digest", func(t *testing.T) {
		if got := strings.TrimSpace(cr(t, "digest", s.ref)); got != s.list {
			t.Errorf("crane digest says %s, HEAD %s", got, s.list)
		}
	})
	t.Run("crane pull --platform linux/arm64 gives a tarball of the arm64 image", func(t *testing.T) {
		tar := filepath.Join(harness.TempDir(t), "arm64.tar")
		cr(t, "pull", "--platform", "linux/arm64", s.ref, tar)
		img, err := tarball.ImageFromPath(tar, nil)
		if err != nil {
			t.Fatalf("reading the tarball: %v", err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		name, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		if p := cfg.OS + "/" + cfg.Architecture; p != "linux/arm64" || name != s.images["arm64"].Config.Digest {
			t.Errorf("the tarball holds a %s image with config %s, want linux/arm64 with %s", p, name, s.images["arm64"].Config.Digest)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatalf("hashing a layer of the tarball: %v", err)
			}
			got = append(got, d.String())
		}
		for _, l := range s.images["arm64"].Layers {
			want = append(want, l.Digest.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("the tarball's layers are %v, the arm64 manifest's %v", got, want)
		}
	})
	t.Run("crane validate --remote checks every platform and every blob", func(t *testing.T) {
		if out, err := harness.RunErr(crane, "--insecure", "validate", "--remote", s.ref); err != nil {
			t.Errorf("crane validate: %v\n%s", err, out)
		}
	})
	t.Run("crane ls lists latest", func(t *testing.T) {
		if got := lines(cr(t, "ls", s.addr+"/quinistry")); !slices.Contains(got, "latest") {
			t.Errorf("crane ls lists %q", got)
		}
	})
}

// skopeoClient: skopeo copies single platforms and whole lists. The copies
// run in the body, their checks in subtests.
func skopeoClient(t *testing.T, s *served, format string) {
	skopeo := harness.Tool(t, "skopeo")
	dir := harness.TempDir(t)
	src := "docker://" + s.ref
	copyTo := func(dst string, flags ...string) error {
		_, err := harness.RunErr(append(append([]string{skopeo, "copy", "-q", "--src-tls-verify=false"}, flags...), src, dst)...)
		return err
	}

	arm64 := filepath.Join(dir, "arm64")
	if succeeds(t, "skopeo copy --override-arch arm64 to an OCI layout", copyTo("oci:"+arm64+":latest", "--override-arch", "arm64")) {
		t.Run("the copied image is linux/arm64 with verified blobs", func(t *testing.T) {
			m := layoutManifest(t, arm64, layoutRef(t, arm64, "latest"))
			cfg := harness.JSON[v1.ConfigFile](t, "the copied config", layoutBlob(t, arm64, m.Config.Digest))
			if p := cfg.OS + "/" + cfg.Architecture; p != "linux/arm64" {
				t.Errorf("the copied image is %s", p)
			}
			for _, l := range m.Layers {
				layoutBlob(t, arm64, l.Digest)
			}
			if len(m.Layers) != len(s.images["arm64"].Layers) {
				t.Errorf("the copied image has %d layers, the arm64 manifest %d", len(m.Layers), len(s.images["arm64"].Layers))
			}
		})
		if format == "oci" {
			t.Run("the arm64 copy keeps the arm64 manifest digest", func(t *testing.T) {
				if got, want := layoutRef(t, arm64, "latest"), s.manifests["arm64"].Digest; got != want {
					t.Errorf("the layout names %s, the list's arm64 entry %s", got, want)
				}
			})
		}
	}

	allDir := filepath.Join(dir, "all-dir")
	if succeeds(t, "skopeo copy --all --preserve-digests to a dir", copyTo("dir:"+allDir, "--all", "--preserve-digests")) {
		t.Run("the copied list's digest is the list digest", func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(allDir, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			if got := harness.DigestOf(b); got != s.list {
				t.Errorf("the copied list hashes to %s, served %s", got, s.list)
			}
		})
	}

	allOCI := filepath.Join(dir, "all-oci")
	if format == "oci" {
		if succeeds(t, "skopeo copy --all --preserve-digests to an OCI layout", copyTo("oci:"+allOCI+":latest", "--all", "--preserve-digests")) {
			t.Run("the OCI layout's index.json names the list digest", func(t *testing.T) {
				if got := layoutRef(t, allOCI, "latest"); got.String() != s.list {
					t.Errorf("index.json names %s, served %s", got, s.list)
				}
			})
		}
	} else if succeeds(t, "skopeo copy --all to an OCI layout (converted to an OCI index)", copyTo("oci:"+allOCI+":latest", "--all")) {
		// an OCI layout holds OCI types only: skopeo converts the Docker list (a
		// new digest, by design)
		t.Run("the converted index has both platforms", func(t *testing.T) {
			idx := harness.JSON[v1.IndexManifest](t, "the converted index", layoutBlob(t, allOCI, layoutRef(t, allOCI, "latest")))
			if string(idx.MediaType) != harness.OCIIndex {
				t.Errorf("the converted list is a %s", idx.MediaType)
			}
			if got := harness.Platforms(&idx); len(got) != 2 || !strings.HasPrefix(got[0], "linux/amd64") || !strings.HasPrefix(got[1], "linux/arm64") {
				t.Errorf("the converted index names %v", got)
			}
		})
	}

	t.Run("skopeo inspect --raw gives the served bytes", func(t *testing.T) {
		got := harness.Run(t, skopeo, "inspect", "--tls-verify=false", "--raw", src)
		if got != string(s.listBytes) {
			t.Errorf("skopeo inspect --raw gave %d bytes hashing to %s, served %d bytes (%s)", len(got), harness.DigestOf([]byte(got)), len(s.listBytes), s.list)
		}
	})
}

// layoutRef returns the digest that the OCI layout dir's index.json names
// for tag.
func layoutRef(t *testing.T, dir, tag string) v1.Hash {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	idx := harness.JSON[v1.IndexManifest](t, "index.json of "+dir, b)
	for _, m := range idx.Manifests {
		if m.Annotations["org.opencontainers.image.ref.name"] == tag {
			return m.Digest
		}
	}
	t.Fatalf("index.json of %s names no %s: %s", dir, tag, b)
	return v1.Hash{}
}

// layoutBlob reads a blob of the OCI layout dir and checks that it hashes to
// its name.
func layoutBlob(t *testing.T, dir string, d v1.Hash) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
	if err != nil {
		t.Fatalf("blob %s: %v", d, err)
	}
	if got := harness.DigestOf(b); got != d.String() {
		t.Fatalf("blob %s of %s hashes to %s", d, dir, got)
	}
	return b
}

func layoutManifest(t *testing.T, dir string, d v1.Hash) *v1.Manifest {
	t.Helper()
	m, err := v1.ParseManifest(bytes.NewReader(layoutBlob(t, dir, d)))
	if err != nil {
		t.Fatalf("manifest %s of %s: %v", d, dir, err)
	}
	return m
}

// conformanceTests are the conformance suite's tests that must each pass
// (read-only pull workflow, tag listing and referrers on).
var conformanceTests = []string{
	"OCI Conformance Test/ping",
	"OCI Conformance Test/empty/tag list",
	"OCI Conformance Test/empty/referrers",
	"OCI Conformance Test/read-only/tag-list",
	"OCI Conformance Test/read-only/head/manifest-head-by-tag",
	"OCI Conformance Test/read-only/head/manifest-head-by-digest",
	"OCI Conformance Test/read-only/head/blob-head",
	"OCI Conformance Test/read-only/pull/manifest-by-tag",
	"OCI Conformance Test/read-only/pull/manifest-by-digest",
	"OCI Conformance Test/read-only/pull/blob-get",
	"OCI Conformance Test/read-only/referrers",
	"OCI Conformance Test/missing-manifest/by-digest",
	"OCI Conformance Test/missing-manifest/by-tag",
	"OCI Conformance Test/invalid-digest-format/manifest-get",
}

// conformance: the OCI distribution-spec suite, read-only pull workflow,
// with tag listing and referrers, all green.
func conformance(t *testing.T, s *served) {
	digests := []string{s.list, s.manifests["amd64"].Digest.String(), s.manifests["arm64"].Digest.String()}
	r := harness.Conformance(t, harness.ConformanceOptions{Addr: s.addr, Repo: "quinistry", Tag: "latest",
		Manifests: digests, Blobs: s.blobs, Referrers: digests})
	t.Logf("conformance: %s: %v", r.Result, r.Counts)
	t.Run("the OCI distribution-spec pull workflow (read-only) is all green", func(t *testing.T) {
		if r.Result != "Pass" || r.Counts["Pass"] == 0 || r.Counts["FAIL"] != 0 || r.Counts["Error"] != 0 || r.Counts["Skip"] != 0 {
			var why []string
			for _, l := range strings.Split(r.Output, "\n") {
				if l = strings.TrimSpace(l); strings.HasPrefix(l, "- ") {
					why = append(why, l)
				}
			}
			t.Errorf("result %s, counts %v; not passed: %v\n%s", r.Result, r.Counts, r.Failures(), strings.Join(why, "\n"))
		}
	})
	for _, name := range conformanceTests {
		t.Run(strings.TrimPrefix(name, "OCI Conformance Test/")+" passes", func(t *testing.T) {
			if st, ok := r.Tests[name]; !ok || st != "Pass" {
				t.Errorf("conformance test %q: %q (printed: %v)", name, st, ok)
			}
		})
	}
}

// cgroupsNaming returns a line for each cgroup whose name holds one of ids
// (a container's cgroup that outlived it).
func cgroupsNaming(t *testing.T, ids []string) []string {
	var out []string
	if len(ids) == 0 {
		return nil
	}
	root := "/sys/fs/cgroup"
	_ = filepath.WalkDir(root, func(path string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		if strings.Count(strings.TrimPrefix(path, root), "/") > 4 {
			return filepath.SkipDir
		}
		for _, id := range ids {
			if strings.Contains(e.Name(), id) {
				out = append(out, "cgroup "+path)
			}
		}
		return nil
	})
	return out
}

// mountsUnder returns a line for each mount point at or under one of the
// paths (the dockerd directory's data and exec roots).
func mountsUnder(t *testing.T, paths []string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		for _, p := range paths {
			if strings.HasPrefix(p, "/") && (f[4] == p || strings.HasPrefix(f[4], p+"/")) {
				out = append(out, "mount "+f[4])
			}
		}
	}
	return out
}

// processesNaming returns a line for each process whose command line names
// one of paths (a dockerd, containerd or shim of ours still running).
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		out = append(out, strings.TrimSpace(l))
	}
	return out
}

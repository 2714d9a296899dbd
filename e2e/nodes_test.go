package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// nodesTimeout bounds each client command of TestNodes (pulls under qemu
// are slow on a loaded machine).
const nodesTimeout = 5 * time.Minute

// nodes is what TestNodes brings up: three hosts on a private network, their
// daemons, and the four servers on a.
type nodes struct {
	scope   *harness.Scope
	net     *harness.Network
	a, b, c *harness.Node
	pki     string
	ca      *harness.CA
	other   *harness.CA

	tlsAddr, tlsCAddr, httpAddr, expAddr, bAddr string

	tls, tlsC, http, expired *harness.Server

	dockerHost, docker, dockerConfig string
	ctrB                             string // b's containerd socket
	ctrC                             string // c's arm64 containerd socket
	ctrCPID                          int
	arm64, qemu                      string // the arm64 root (QEMU_LD_PREFIX) and c's emulator
	hostsB                           string // b's containerd hosts directory
	binfmtName                       string

	// what a serves
	list, amd64M, arm64M, amd64Cfg, arm64Cfg string
	layers                                   []string
}

// TestNodes proves pulls across hosts over TLS, and an arm64 node that picks
// arm64 by itself, on three throw-away hosts (network namespaces on a
// private bridge, harness.NewNetwork):
//
//   - a serves quinistry over HTTPS with a certificate from a CA made for
//     this run (IP SAN = its address), over plain HTTP on another port, and
//     with an expired certificate on a third;
//   - b is an amd64 node: a private dockerd (plain HTTP allowed for a's HTTP
//     port only) and a private containerd;
//   - c is an arm64 node: Debian's arm64 containerd, ctr and skopeo under
//     qemu-user 10.x, through a binfmt_misc registration made in a private
//     user and mount namespace (the host's binfmt_misc is not touched).
//
// Needs root and scripts/install-tools.sh (which runs install-nodes.sh).
func TestNodes(t *testing.T) {
	scope := harness.NewScope(t)
	n := upNodes(t, scope)

	n.whatAServes(t)
	cwork := n.startCWork()
	n.dockerOnB(t)
	n.containerOnB(t, scope)
	n.ctrOnB(t)
	n.rotation(t)
	n.plainHTTP(t)
	n.badInput(t)
	n.arm64Node(t, cwork)

	start := time.Now()
	scope.Close()
	t.Logf("teardown took %s", time.Since(start).Round(time.Millisecond))
	// only this run's: other suites bring up namespaces and mounts on this machine meanwhile
	harness.CheckNothingLeft(t)
}

// upNodes brings the network, the daemons and the servers up in scope, the
// build and the daemons side by side.
func upNodes(t *testing.T, scope *harness.Scope) *nodes {
	n := &nodes{scope: scope}
	n.net = harness.NewNetwork(scope, "a", "b", "c")
	n.a, n.b, n.c = n.net.Nodes["a"], n.net.Nodes["b"], n.net.Nodes["c"]
	// every port of a fresh namespace is free: any distinct ones do
	ports := rand.Perm(40000)[:5]
	port := func(i int) string { return strconv.Itoa(20000 + ports[i]) }
	n.tlsAddr, n.tlsCAddr = n.a.IP+":"+port(0), n.a.IP+":"+port(1)
	n.httpAddr, n.expAddr = n.a.IP+":"+port(2), n.a.IP+":"+port(3)
	n.bAddr = n.b.IP + ":" + port(4)

	n.pki = filepath.Join(n.net.Dir, "pki")
	if err := os.MkdirAll(n.pki, 0o700); err != nil {
		t.Fatal(err)
	}
	n.ca = harness.NewCA(t, n.pki, "ca")
	n.other = harness.NewCA(t, n.pki, "other")
	ip := net.ParseIP(n.a.IP)
	n.ca.Issue(t, n.pki, "a", ip, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	n.ca.Issue(t, n.pki, "expired", ip, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC))
	t.Logf("run %s: nodes a=%s b=%s c=%s; a serves https://%s (and https://%s for c), http://%s, expired https://%s",
		n.net.ID, n.a.IP, n.b.IP, n.c.IP, n.tlsAddr, n.tlsCAddr, n.httpAddr, n.expAddr)

	n.binfmtName = n.net.ID + "-aarch64"
	start := time.Now()
	dockerd := harness.BringUpAsync(scope, "dockerd", filepath.Join(n.net.Dir, "b-docker"), n.b.NS,
		"--insecure-registry", n.httpAddr)
	ctrdB := harness.BringUpAsync(scope, "containerd", filepath.Join(n.net.Dir, "b-ctrd"), n.b.NS)
	ctrdC := harness.BringUpAsync(scope, "containerd", filepath.Join(n.net.Dir, "c-arm64"), n.c.NS, "arm64", n.binfmtName)
	dist := harness.Dist(t)
	t.Logf("built in %s", time.Since(start).Round(time.Second))

	d := dockerd()
	n.dockerHost, n.docker = d["DOCKER_HOST"], d["DOCKER"]
	n.net.Track("b's dockerd", atoi(t, d["PID"]))
	cb := ctrdB()
	n.ctrB = cb["CONTAINERD_ADDRESS"]
	n.net.Track("b's containerd", atoi(t, cb["PID"]))
	cc := ctrdC()
	n.ctrC, n.arm64, n.qemu = cc["CONTAINERD_ADDRESS"], cc["ARM64"], cc["QEMU"]
	n.ctrCPID = atoi(t, cc["PID"])
	n.net.Track("c's arm64 containerd", n.ctrCPID)
	n.dockerConfig = harness.TempDir(scope)

	amd64 := harness.Binary(dist, "linux/amd64")
	serve := func(name string, args ...string) *harness.Server {
		return harness.StartWith(scope, name, harness.Options{Runner: n.a.Runner(), NoWaitReady: true}, append([]string{amd64}, args...)...)
	}
	crt, key := filepath.Join(n.pki, "a.crt"), filepath.Join(n.pki, "a.key")
	// one server per client node, so that each access log holds one node's requests (c works alongside b)
	n.tls = serve("tls", "--addr", n.tlsAddr, "--tls-cert", crt, "--tls-key", key)
	n.tlsC = serve("tls-c", "--addr", n.tlsCAddr, "--tls-cert", crt, "--tls-key", key)
	n.http = serve("http", "--addr", n.httpAddr)
	n.expired = serve("expired", "--addr", n.expAddr, "--tls-cert", filepath.Join(n.pki, "expired.crt"), "--tls-key", filepath.Join(n.pki, "expired.key"))
	for _, s := range []*harness.Server{n.tls, n.tlsC, n.http, n.expired} {
		s.WaitReady(t)
	}
	t.Logf("servers, dockerd, containerd and arm64 containerd ready after %s", time.Since(start).Round(time.Second))
	return n
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	i, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a PID: %q", s)
	}
	return i
}

// clientOf returns an HTTP client that connects from node and trusts this
// run's CA.
func (n *nodes) clientOf(node *harness.Node) *http.Client {
	return node.Client(&tls.Config{RootCAs: n.ca.Pool()})
}

// get sends a GET (or HEAD) for path to addr from node, over TLS when tlsOn,
// asking for every manifest type.
func (n *nodes) get(node *harness.Node, method, base, path string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", harness.ListAccept)
	resp, err := n.clientOf(node).Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s %s%s: status %d", method, base, path, resp.StatusCode)
	}
	return resp, body, err
}

// listDigest returns the list digest a serves over TLS, asked from node.
func (n *nodes) listDigest(node *harness.Node) (string, error) {
	resp, _, err := n.get(node, http.MethodHead, "https://"+n.tlsAddr, "/v2/quinistry/manifests/latest")
	if err != nil {
		return "", err
	}
	return resp.Header.Get("Docker-Content-Digest"), nil
}

// aServes fails t unless a's TLS server, the process started at first,
// still serves the list digest to node.
func (n *nodes) aServes(t *testing.T, node *harness.Node) {
	select {
	case <-n.tls.Exited():
		t.Fatalf("quinistry on a (pid %d) is gone: %s", n.tls.PID(), n.tls.ExitStatus())
	default:
	}
	got, err := n.listDigest(node)
	if err != nil || got != n.list {
		t.Errorf("a (pid %d) serves %q to %s (%v), want %s", n.tls.PID(), got, node.Name, err, n.list)
	}
}

func (n *nodes) whatAServes(t *testing.T) {
	t.Run("a serves the list over TLS to c", func(t *testing.T) {
		d, err := n.listDigest(n.c)
		if err != nil || !strings.HasPrefix(d, "sha256:") {
			t.Fatalf("HEAD https://%s/v2/quinistry/manifests/latest from c: digest %q, %v", n.tlsAddr, d, err)
		}
		n.list = d
		t.Logf("list %s", d)
	})
	t.Run("the platform images share their layers", func(t *testing.T) {
		base := "https://" + n.tlsAddr
		_, body, err := n.get(n.b, http.MethodGet, base, "/v2/quinistry/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(body))
		if err != nil {
			t.Fatalf("decoding the list: %v\n%s", err, body)
		}
		var arm64Platform string
		for _, m := range idx.Manifests {
			switch {
			case m.Platform == nil:
			case m.Platform.Architecture == "amd64":
				n.amd64M = m.Digest.String()
			case m.Platform.Architecture == "arm64":
				n.arm64M = m.Digest.String()
				arm64Platform = m.Platform.String()
			}
		}
		if n.amd64M == "" || n.arm64M == "" {
			t.Fatalf("the list names no amd64 or no arm64 manifest: %v", harness.Platforms(idx))
		}
		manifest := func(d string) *v1.Manifest {
			_, body, err := n.get(n.b, http.MethodGet, base, "/v2/quinistry/manifests/"+d)
			if err != nil {
				t.Fatal(err)
			}
			m, err := v1.ParseManifest(bytes.NewReader(body))
			if err != nil {
				t.Fatalf("decoding manifest %s: %v", d, err)
			}
			return m
		}
		am, arm := manifest(n.amd64M), manifest(n.arm64M)
		n.amd64Cfg, n.arm64Cfg = am.Config.Digest.String(), arm.Config.Digest.String()
		layers := func(m *v1.Manifest) []string {
			var out []string
			for _, l := range m.Layers {
				out = append(out, l.Digest.String())
			}
			sort.Strings(out)
			return out
		}
		n.layers = layers(am)
		if got := layers(arm); !slices.Equal(got, n.layers) || len(got) == 0 {
			t.Errorf("the arm64 image has layers %v, the amd64 image %v", short(got), short(n.layers))
		}
		t.Logf("amd64 %s (config %s), %s %s (config %s), layers %v", n.amd64M, n.amd64Cfg, arm64Platform, n.arm64M, n.arm64Cfg, short(n.layers))
	})
	if n.list == "" || n.amd64M == "" || n.arm64Cfg == "" {
		t.Fatal("what a serves is unknown: the checks below would have nothing to compare with")
	}
}

// short cuts each digest to 19 characters.
func short(ds []string) []string {
	var out []string
	for _, d := range ds {
		if len(d) > 19 {
			d = d[:19]
		}
		out = append(out, d)
	}
	return out
}

// nameOf says which served object a digest is.
func (n *nodes) nameOf(d string) string {
	switch d {
	case n.list:
		return "list"
	case n.amd64M:
		return "amd64-manifest"
	case n.arm64M:
		return "arm64-manifest"
	case n.amd64Cfg:
		return "amd64-config"
	case n.arm64Cfg:
		return "arm64-config"
	}
	if slices.Contains(n.layers, d) {
		return "layer"
	}
	return "other:" + short([]string{d})[0]
}

// names says what digests are, sorted, repeats counted: "2xlayer,list".
func (n *nodes) names(ds []string) string {
	count := map[string]int{}
	for _, d := range ds {
		count[n.nameOf(d)]++
	}
	var out []string
	for name, c := range count {
		if c > 1 {
			name = strconv.Itoa(c) + "x" + name
		}
		out = append(out, name)
	}
	sort.Slice(out, func(i, j int) bool {
		return strings.TrimLeft(out[i], "0123456789x") < strings.TrimLeft(out[j], "0123456789x")
	})
	return strings.Join(out, ",")
}

// fetched returns the digests of the manifests or blobs (kind) that s
// served with 200 or 206 to GETs by digest between two marker requests,
// each once, sorted.
func fetched(s *harness.Server, after, before, kind string) []string {
	prefix := "/v2/quinistry/" + kind + "/sha256:"
	seen := map[string]bool{}
	var out []string
	for _, r := range s.Requests(after, before) {
		p := r["path"]
		if r["method"] != http.MethodGet || !strings.HasPrefix(p, prefix) || (r["status"] != "200" && r["status"] != "206") {
			continue
		}
		d := strings.TrimPrefix(p, "/v2/quinistry/"+kind+"/")
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// mark sends a marker request to s from node, failing t if it does not
// come back in the log.
func (n *nodes) mark(t testing.TB, s *harness.Server, node *harness.Node, addr string) string {
	t.Helper()
	m, err := s.MarkVia(n.clientOf(node), "https://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// result is a finished client command: its exit status (0, or -1 when it
// could not run), combined output and error.
type result struct {
	code int
	out  string
	err  error
	took time.Duration
}

func (r result) String() string {
	out := strings.TrimSpace(r.out)
	lines := strings.Split(out, "\n")
	if len(lines) > 4 {
		lines = lines[len(lines)-4:]
	}
	return fmt.Sprintf("status %d, output: %s", r.code, strings.Join(lines, "\n  "))
}

// run runs cmd with a timeout and returns how it ended.
func run(cmd *exec.Cmd) result {
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(nodesTimeout):
			cmd.Process.Kill()
			err = fmt.Errorf("timed out after %s: %w", nodesTimeout, <-done)
		}
	}
	r := result{out: buf.String(), err: err, took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() >= 0:
		r.code = ee.ExitCode()
	default:
		r.code = -1
	}
	return r
}

// failsSaying fails t unless r failed and its output says text.
func failsSaying(t *testing.T, r result, text string) {
	t.Helper()
	if r.code == 0 {
		t.Errorf("it succeeded: %s", r)
	} else if !strings.Contains(r.out, text) {
		t.Errorf("no %q in what it said: %s", text, r)
	}
}

// x509Says returns the first "x509: ..." error in a docker command's output.
func x509Says(out string) string {
	i := strings.Index(out, "x509: ")
	if i < 0 {
		return "(no x509 error)"
	}
	s := out[i:]
	if j := strings.IndexAny(s, "\"\n"); j >= 0 {
		s = s[:j]
	}
	return s
}

// dk runs the docker CLI against b's dockerd.
func (n *nodes) dk(args ...string) result {
	cmd := exec.Command(n.docker, append([]string{"-H", n.dockerHost}, args...)...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+n.dockerConfig)
	return run(cmd)
}

func (n *nodes) inspect(t *testing.T, ref string) harness.DockerImage {
	t.Helper()
	r := n.dk("image", "inspect", ref)
	if r.code != 0 {
		t.Fatalf("docker image inspect %s: %s", ref, r)
	}
	imgs := harness.JSON[[]harness.DockerImage](t, "docker image inspect "+ref, []byte(r.out))
	if len(imgs) != 1 {
		t.Fatalf("docker image inspect %s: %d images", ref, len(imgs))
	}
	return imgs[0]
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ctrb runs ctr on b against b's containerd.
func (n *nodes) ctrb(args ...string) result {
	cmd := n.b.Command(append([]string{"ctr", "--address", n.ctrB}, args...)...)
	cmd.Env = append(os.Environ(), "CONTAINERD_SNAPSHOTTER=native")
	return run(cmd)
}

// arm64Cmd runs argv (an arm64 program: ctr, skopeo) inside c's user and
// mount namespace, where its binfmt_misc registration lives, on c's network.
func (n *nodes) arm64Cmd(env []string, argv ...string) *exec.Cmd {
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(n.ctrCPID), "--user", "--mount",
		"--net=" + filepath.Join("/run/netns", n.c.NS), "--"}, argv...)...)
	cmd.Env = append(os.Environ(), append(env, "QEMU_LD_PREFIX="+n.arm64,
		"PATH="+n.arm64+"/usr/bin:"+n.arm64+"/usr/sbin:"+os.Getenv("PATH"))...)
	return cmd
}

func (n *nodes) ctrc(args ...string) result {
	return run(n.arm64Cmd([]string{"CONTAINERD_SNAPSHOTTER=native"}, append([]string{"ctr", "--address", n.ctrC}, args...)...))
}

// hostsToml writes a containerd hosts directory entry (DIR/HOSTPORT/hosts.toml)
// trusting ca.
func hostsToml(t testing.TB, dir, hostport, ca string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, hostport), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"https://%s\"\n\n[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", hostport, hostport, ca)
	if err := os.WriteFile(filepath.Join(dir, hostport, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// unpacking returns the platform of ctr's "unpacking PLATFORM sha256:..." line.
func unpacking(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "unpacking" {
			return f[1]
		}
	}
	return "(none)"
}

// contentLs returns the digests in a containerd's content store (ctr content ls -q).
func contentLs(r result) []string {
	var out []string
	for _, l := range strings.Split(r.out, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "sha256:") {
			out = append(out, l)
		}
	}
	return out
}

// ---------- docker on b, over TLS

func (n *nodes) dockerOnB(t *testing.T) {
	ref := n.tlsAddr + "/quinistry:latest"
	mark := func(t *testing.T) string { return n.mark(t, n.tls, n.b, n.tlsAddr) }
	// fetchedBetween: what the access log shows between two markers, for
	// the subtest after a pull; "" markers when the pull's subtest stopped
	fetchedBetween := func(t *testing.T, m1, m2 string) (manifests, blobs []string) {
		t.Helper()
		if m1 == "" || m2 == "" {
			t.Fatal("no marker requests around the pull")
		}
		return fetched(n.tls, m1, m2, "manifests"), fetched(n.tls, m1, m2, "blobs")
	}

	var m1, m2 string
	t.Run("b: docker pull with no CA fails with x509: certificate signed by unknown authority", func(t *testing.T) {
		m1 = mark(t)
		r := n.dk("pull", ref)
		m2 = mark(t)
		t.Logf("%s", x509Says(r.out))
		failsSaying(t, r, "x509: certificate signed by unknown authority")
	})
	t.Run("b: nothing was served to it (a's access log)", func(t *testing.T) {
		if m1 == "" || m2 == "" {
			t.Fatal("no marker requests around the pull")
		}
		if got := n.tls.Requests(m1, m2); len(got) != 0 {
			t.Errorf("a logged %d requests: %v", len(got), got)
		}
	})
	t.Run("b: docker pull with another CA in certs.d fails with x509: certificate signed by unknown authority", func(t *testing.T) {
		n.net.TrustDockerCA(t, n.scope, n.tlsAddr, n.other.File)
		r := n.dk("pull", ref)
		t.Logf("%s", x509Says(r.out))
		failsSaying(t, r, "x509: certificate signed by unknown authority")
	})
	copyFile(t, n.ca.File, filepath.Join("/etc/docker/certs.d", n.tlsAddr, "ca.crt"))

	m1, m2 = "", ""
	t.Run("b: docker pull with the CA in certs.d gets linux/amd64 by the list digest", func(t *testing.T) {
		m1 = mark(t)
		r := n.dk("pull", ref)
		m2 = mark(t)
		if r.code != 0 {
			t.Fatalf("docker pull %s: %s", ref, r)
		}
		img := n.inspect(t, ref)
		want := n.tlsAddr + "/quinistry@" + n.list
		if got := img.Os + "/" + img.Architecture; got != "linux/amd64" || len(img.RepoDigests) == 0 || img.RepoDigests[0] != want {
			t.Errorf("docker pull got %s %v, want linux/amd64 %s", got, img.RepoDigests, want)
		}
		if r := n.dk("tag", ref, "q:amd64"); r.code != 0 {
			t.Fatalf("docker tag: %s", r)
		}
	})
	t.Run("b: it fetched the list, the amd64 manifest, its config and the layers (a's access log)", func(t *testing.T) {
		m, bl := fetchedBetween(t, m1, m2)
		wantM := sorted(n.list, n.amd64M)
		wantB := sorted(append([]string{n.amd64Cfg}, n.layers...)...)
		if !slices.Equal(m, wantM) || !slices.Equal(bl, wantB) {
			t.Errorf("it fetched manifests [%s] and blobs [%s], want [%s] and [%s]", n.names(m), n.names(bl), n.names(wantM), n.names(wantB))
		}
	})

	m1, m2 = "", ""
	t.Run("b: docker pull --platform linux/arm64 gets linux/arm64/v8 with the arm64 config", func(t *testing.T) {
		m1 = mark(t)
		r := n.dk("pull", "--platform", "linux/arm64", ref)
		m2 = mark(t)
		if r.code != 0 {
			t.Fatalf("docker pull --platform linux/arm64 %s: %s", ref, r)
		}
		if r := n.dk("tag", ref, "q:arm64"); r.code != 0 {
			t.Fatalf("docker tag: %s", r)
		}
		img := n.inspect(t, "q:arm64")
		if got := img.Os + "/" + img.Architecture + "/" + img.Variant; got != "linux/arm64/v8" || img.ID != n.arm64Cfg {
			t.Errorf("docker pull --platform linux/arm64 got %s (config %s), want linux/arm64/v8 (config %s)", got, img.ID, n.arm64Cfg)
		}
	})
	t.Run("b: the arm64 pull fetched only the arm64 manifest and config, layers shared (a's access log)", func(t *testing.T) {
		m, bl := fetchedBetween(t, m1, m2)
		if !slices.Equal(m, []string{n.arm64M}) || !slices.Equal(bl, []string{n.arm64Cfg}) {
			t.Errorf("it fetched manifests [%s] and blobs [%s], want [arm64-manifest] and [arm64-config]", n.names(m), n.names(bl))
		}
	})
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// ---------- the pulled image, locked down on b's network

func nsInode(path string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return "", err
	}
	return fmt.Sprintf("net:[%d]", st.Ino), nil
}

func (n *nodes) containerOnB(t *testing.T, scope *harness.Scope) {
	name := "q-" + n.net.ID
	// docker run, attached: the container's log is the CLI's standard error, read by the harness
	ctr := harness.StartWith(scope, "container on b", harness.Options{Env: []string{"DOCKER_CONFIG=" + n.dockerConfig}, NoWaitReady: true},
		n.docker, "-H", n.dockerHost, "run", "--rm", "--name", name, "--network", "host", "--read-only", "--user", "65532:65532",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--pull", "never", "q:amd64", "--addr", n.bAddr)
	defer ctr.Stop(t)
	running := false
	t.Run("b: the amd64 image runs as a container on b's host network and logs ready there", func(t *testing.T) {
		ctr.WaitReady(t)
		if ctr.Addr != n.bAddr {
			t.Errorf("the container logged ready on %s, want %s", ctr.Addr, n.bAddr)
		}
		running = true
	})
	t.Run("b: the container's process is locked down (read from /proc: uid and gid 65532, no capabilities, no_new_privs, seccomp, read-only root, b's network)", func(t *testing.T) {
		if !running {
			t.Skip("the container did not start")
		}
		r := n.dk("inspect", "-f", "{{.State.Pid}}", name)
		pid, err := strconv.Atoi(strings.TrimSpace(r.out))
		if r.code != 0 || err != nil || pid <= 0 {
			t.Fatalf("docker inspect names no PID: %s", r)
		}
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if !strings.Contains(string(cmdline), "\x00"+n.bAddr) {
			t.Fatalf("pid %d is not the container's server: %q", pid, cmdline)
		}
		c := harness.ReadConfinement(t, pid)
		ids := [4]uint32{65532, 65532, 65532, 65532}
		if c.Uid != ids || c.Gid != ids {
			t.Errorf("/proc/%d/status: uid %v, gid %v, want 65532 throughout", pid, c.Uid, c.Gid)
		}
		for _, g := range c.Groups {
			if g != 65532 {
				t.Errorf("/proc/%d/status: Groups is %v: group %d besides 65532", pid, c.Groups, g)
			}
		}
		if c.CapInh|c.CapPrm|c.CapEff|c.CapBnd|c.CapAmb != 0 {
			t.Errorf("/proc/%d/status: capabilities left: %s", pid, c)
		}
		if !c.NoNewPrivs || c.Seccomp != 2 {
			t.Errorf("/proc/%d/status: NoNewPrivs %v, Seccomp %d, want true and 2 (a filter)", pid, c.NoNewPrivs, c.Seccomp)
		}
		if !c.RootReadOnly() {
			t.Errorf("/proc/%d/mountinfo: its root is mounted %v, not ro", pid, c.RootOptions)
		}
		got, err1 := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
		wantNS, err2 := nsInode(filepath.Join("/run/netns", n.b.NS))
		if err1 != nil || err2 != nil || got != wantNS {
			t.Errorf("pid %d is in network namespace %s, b's is %s (%v %v)", pid, got, wantNS, err1, err2)
		}
		t.Logf("%s", c)
	})
	t.Run("a: the container on b serves the same list digest", func(t *testing.T) {
		if !running {
			t.Skip("the container did not start")
		}
		resp, _, err := n.get(n.a, http.MethodHead, "http://"+n.bAddr, "/v2/quinistry/manifests/latest")
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("Docker-Content-Digest"); got != n.list {
			t.Errorf("the container on b serves %s, a %s", got, n.list)
		}
	})
}

// ---------- ctr on b, with hosts.toml

func (n *nodes) ctrOnB(t *testing.T) {
	ref := n.tlsAddr + "/quinistry:latest"
	hosts := filepath.Join(n.net.Dir, "hosts-b")
	hostsToml(t, hosts, n.tlsAddr, n.ca.File)
	n.hostsB = hosts
	t.Run("b: ctr images pull (hosts.toml) unpacks linux/amd64 and stores the list, the amd64 manifest, config and layers", func(t *testing.T) {
		r := n.ctrb("images", "pull", "--hosts-dir", hosts, ref)
		if r.code != 0 || unpacking(r.out) != "linux/amd64" {
			t.Fatalf("ctr images pull: unpacking %s, %s", unpacking(r.out), r)
		}
		got := sorted(contentLs(n.ctrb("content", "ls", "-q"))...)
		want := sorted(append([]string{n.list, n.amd64M, n.amd64Cfg}, n.layers...)...)
		if !slices.Equal(got, want) {
			t.Errorf("b's content store has [%s], want [%s]", n.names(got), n.names(want))
		}
	})
	t.Run("b: ctr images pull --platform linux/arm64 (hosts.toml) unpacks linux/arm64 and adds the arm64 manifest and config", func(t *testing.T) {
		r := n.ctrb("images", "pull", "--hosts-dir", hosts, "--platform", "linux/arm64", ref)
		if r.code != 0 || unpacking(r.out) != "linux/arm64" {
			t.Fatalf("ctr images pull --platform linux/arm64: unpacking %s, %s", unpacking(r.out), r)
		}
		got := sorted(contentLs(n.ctrb("content", "ls", "-q"))...)
		want := sorted(append([]string{n.list, n.amd64M, n.amd64Cfg, n.arm64M, n.arm64Cfg}, n.layers...)...)
		if !slices.Equal(got, want) {
			t.Errorf("b's content store has [%s], want [%s]", n.names(got), n.names(want))
		}
	})
}

// ---------- certificate rotation on a

// servedFingerprint returns the SHA-256 fingerprint of the certificate a's
// TLS server presents to b.
func (n *nodes) servedFingerprint() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw, err := n.b.DialContext(ctx, "tcp", n.tlsAddr)
	if err != nil {
		return "", err
	}
	conn := tls.Client(raw, &tls.Config{RootCAs: n.ca.Pool(), ServerName: n.a.IP})
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return harness.Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw), nil
}

func (n *nodes) rotation(t *testing.T) {
	ref := n.tlsAddr + "/quinistry:latest"
	t.Run("a: after kill -HUP, the same process serves the new certificate", func(t *testing.T) {
		old, err := n.servedFingerprint()
		if err != nil {
			t.Fatal(err)
		}
		fp := n.ca.Issue(t, n.pki, "a", net.ParseIP(n.a.IP), time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
		n.tls.Signal(t, syscall.SIGHUP)
		n.tls.Log.Wait(t, time.Minute, "TLS certificate reloaded", func(r harness.Record) bool { return r.Msg() == "TLS certificate reloaded" })
		got, err := n.servedFingerprint()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case <-n.tls.Exited():
			t.Fatalf("pid %d is gone: %s", n.tls.PID(), n.tls.ExitStatus())
		default:
		}
		if got != fp || got == old {
			t.Errorf("pid %d serves %.16s..., the new certificate is %.16s..., the old %.16s...", n.tls.PID(), got, fp, old)
		}
	})
	t.Run("b: the next docker pull, no restart on either side, gets linux/amd64 by the list digest", func(t *testing.T) {
		n.dk("rmi", "-f", "q:amd64", "q:arm64", ref)
		m1 := n.mark(t, n.tls, n.b, n.tlsAddr)
		r := n.dk("pull", ref)
		m2 := n.mark(t, n.tls, n.b, n.tlsAddr)
		if r.code != 0 {
			t.Fatalf("docker pull: %s", r)
		}
		img := n.inspect(t, ref)
		want := n.tlsAddr + "/quinistry@" + n.list
		if got := img.Os + "/" + img.Architecture; got != "linux/amd64" || len(img.RepoDigests) == 0 || img.RepoDigests[0] != want {
			t.Errorf("docker pull got %s %v, want linux/amd64 %s", got, img.RepoDigests, want)
		}
		t.Logf("%d requests", len(n.tls.Requests(m1, m2)))
	})
	t.Run("b: the next ctr pull resolves the list over the new certificate", func(t *testing.T) {
		r := n.ctrb("images", "pull", "--hosts-dir", n.hostsB, ref)
		if r.code != 0 || !strings.Contains(r.out, n.list) {
			t.Errorf("ctr images pull: no %s in %s", n.list, r)
		}
	})
}

// ---------- plain HTTP between nodes, with insecure-registries

func (n *nodes) plainHTTP(t *testing.T) {
	t.Run("b: docker pull over plain HTTP (insecure-registries) gets linux/amd64 by the list digest", func(t *testing.T) {
		ref := n.httpAddr + "/quinistry:latest"
		r := n.dk("pull", ref)
		if r.code != 0 {
			t.Fatalf("docker pull %s: %s", ref, r)
		}
		img := n.inspect(t, ref)
		want := n.httpAddr + "/quinistry@" + n.list
		if got := img.Os + "/" + img.Architecture; got != "linux/amd64" || !slices.Contains(img.RepoDigests, want) {
			t.Errorf("docker pull got %s %v, want linux/amd64 and %s", got, img.RepoDigests, want)
		}
	})
}

// ---------- bad input from b: a clear client error each time, and a keeps serving c

func (n *nodes) badInput(t *testing.T) {
	curl := func(args ...string) result {
		return run(n.b.Command(append([]string{"curl", "-sS", "--max-time", "20", "-o", "/dev/null"}, args...)...))
	}
	port := n.tlsAddr[strings.LastIndexByte(n.tlsAddr, ':')+1:]
	steps := []struct {
		name string
		do   func(t *testing.T)
	}{
		{"b: curl with a wrong CA fails: unable to get local issuer certificate", func(t *testing.T) {
			failsSaying(t, curl("--cacert", n.other.File, "https://"+n.tlsAddr+"/v2/"), "unable to get local issuer certificate")
		}},
		{"a: still serves c after the wrong CA", func(t *testing.T) { n.aServes(t, n.c) }},
		{"b: curl with a wrong host name fails: no alternative certificate subject name matches", func(t *testing.T) {
			host := "wrong-" + n.net.ID + ".invalid"
			failsSaying(t, curl("--cacert", n.ca.File, "--resolve", host+":"+port+":"+n.a.IP, "https://"+host+":"+port+"/v2/"),
				"no alternative certificate subject name matches")
		}},
		{"a: still serves c after the wrong host name", func(t *testing.T) { n.aServes(t, n.c) }},
		{"b: curl against the expired certificate fails: certificate has expired", func(t *testing.T) {
			failsSaying(t, curl("--cacert", n.ca.File, "https://"+n.expAddr+"/v2/"), "certificate has expired")
		}},
		{"b: docker pull against the expired certificate fails: x509: certificate has expired", func(t *testing.T) {
			n.net.TrustDockerCA(t, n.scope, n.expAddr, n.ca.File)
			r := n.dk("pull", n.expAddr+"/quinistry:latest")
			t.Logf("%s", x509Says(r.out))
			failsSaying(t, r, "x509: certificate has expired")
		}},
		{"a: still serves c after the expired certificate", func(t *testing.T) { n.aServes(t, n.c) }},
		{"b: plain HTTP to the TLS port fails: error: 400", func(t *testing.T) {
			failsSaying(t, run(n.b.Command("curl", "-sS", "--max-time", "20", "-f", "http://"+n.tlsAddr+"/v2/")), "error: 400")
		}},
		{"b: ... with a body that says why: HTTP request to an HTTPS server", func(t *testing.T) {
			r := run(n.b.Command("curl", "-sS", "--max-time", "20", "http://"+n.tlsAddr+"/v2/"))
			if !strings.Contains(r.out, "HTTP request to an HTTPS server") {
				t.Errorf("the body does not say why: %s", r)
			}
		}},
		{"a: still serves c after plain HTTP on the TLS port", func(t *testing.T) { n.aServes(t, n.c) }},
	}
	for _, s := range steps {
		t.Run(s.name, s.do)
	}
}

// ---------- the arm64 node: no platform given anywhere

// cWork is what the arm64 node did in the background while b worked.
type cWork struct {
	done                          chan struct{}
	err                           error // a marker request that failed
	version, pull, content, snaps result
	skopeo                        result
	markCtr, markSkopeo, markEnd  string
	skopeoDir                     string
}

// startCWork runs ctr images pull and skopeo copy on c, with no platform
// anywhere, between marker requests to tls-c, in the background.
func (n *nodes) startCWork() *cWork {
	w := &cWork{done: make(chan struct{}), skopeoDir: filepath.Join(n.net.Dir, "skopeo-dir")}
	ref := n.tlsCAddr + "/quinistry:latest"
	hosts := filepath.Join(n.net.Dir, "hosts-c")
	certs := filepath.Join(n.net.Dir, "skopeo-certs")
	tmp := filepath.Join(n.net.Dir, "skopeo-tmp")
	policy := filepath.Join(n.net.Dir, "policy.json")
	client := n.clientOf(n.c)
	go func() {
		defer close(w.done)
		for _, d := range []string{filepath.Join(hosts, n.tlsCAddr), certs, tmp} {
			if w.err = os.MkdirAll(d, 0o755); w.err != nil {
				return
			}
		}
		toml := fmt.Sprintf("server = \"https://%s\"\n\n[host.\"https://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n", n.tlsCAddr, n.tlsCAddr, n.ca.File)
		ca, _ := os.ReadFile(n.ca.File)
		for f, data := range map[string]string{filepath.Join(hosts, n.tlsCAddr, "hosts.toml"): toml,
			policy: `{"default": [{"type": "insecureAcceptAnything"}]}`, filepath.Join(certs, "ca.crt"): string(ca)} {
			if w.err = os.WriteFile(f, []byte(data), 0o644); w.err != nil {
				return
			}
		}
		w.version = n.ctrc("version")
		if w.markCtr, w.err = n.tlsC.MarkVia(client, "https://"+n.tlsCAddr); w.err != nil {
			return
		}
		w.pull = n.ctrc("images", "pull", "--hosts-dir", hosts, ref)
		w.content = n.ctrc("content", "ls", "-q")
		w.snaps = n.ctrc("snapshots", "--snapshotter", "native", "ls")
		if w.markSkopeo, w.err = n.tlsC.MarkVia(client, "https://"+n.tlsCAddr); w.err != nil {
			return
		}
		w.skopeo = run(n.arm64Cmd([]string{"TMPDIR=" + tmp}, "skopeo", "--policy", policy, "copy", "-q",
			"--src-cert-dir", certs, "docker://"+ref, "dir:"+w.skopeoDir))
		w.markEnd, w.err = n.tlsC.MarkVia(client, "https://"+n.tlsCAddr)
	}()
	return w
}

func (n *nodes) arm64Node(t *testing.T, w *cWork) {
	t.Run("c: containerd is an arm64 program run by qemu-aarch64", func(t *testing.T) {
		exe, err := os.Readlink("/proc/" + strconv.Itoa(n.ctrCPID) + "/exe")
		if err != nil || exe != n.qemu {
			t.Errorf("pid %d runs %q (%v), want %s", n.ctrCPID, exe, err, n.qemu)
		}
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(n.ctrCPID) + "/cmdline")
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if !slices.Contains(args, filepath.Join(n.arm64, "usr/bin/containerd")) {
			t.Errorf("pid %d is not the arm64 containerd: %q", n.ctrCPID, args)
		}
	})
	<-w.done
	if w.err != nil {
		t.Errorf("the arm64 node's work stopped: %v", w.err)
	}
	t.Run("c: arm64 ctr talks to arm64 containerd (the server's version and UUID)", func(t *testing.T) {
		server := serverSection(w.version.out)
		if w.version.code != 0 || server["Version"] == "" || server["UUID"] == "" {
			t.Fatalf("ctr version: no answer from the server: %s", w.version)
		}
		t.Logf("server %s revision %s, UUID %s", server["Version"], server["Revision"], server["UUID"])
	})
	t.Run("c: its own binfmt_misc has the aarch64 registration (enabled, qemu-aarch64, flags PF)", func(t *testing.T) {
		// the registration lives in c's mount namespace: read it through its root there
		p := filepath.Join("/proc", strconv.Itoa(n.ctrCPID), "root", n.net.Dir, "c-arm64", "binfmt", n.binfmtName)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "enabled") || strings.HasPrefix(l, "interpreter") || strings.HasPrefix(l, "flags") {
				got = append(got, l)
			}
		}
		want := []string{"enabled", "interpreter " + n.qemu, "flags: PF"}
		if !slices.Equal(got, want) {
			t.Errorf("%s says %q, want %q", p, got, want)
		}
	})
	t.Run("c: the host's binfmt_misc has no such registration", func(t *testing.T) {
		p := filepath.Join("/proc/sys/fs/binfmt_misc", n.binfmtName)
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			entries, _ := os.ReadDir("/proc/sys/fs/binfmt_misc")
			t.Errorf("%s: %v (%d entries there)", p, err, len(entries))
		}
	})
	t.Run("c: ctr images pull with no --platform unpacks linux/arm64/v8", func(t *testing.T) {
		if got := unpacking(w.pull.out); w.pull.code != 0 || got != "linux/arm64/v8" {
			t.Errorf("unpacking %s (%s): %s", got, w.pull.took.Round(time.Second), w.pull)
		}
		t.Logf("took %s", w.pull.took.Round(time.Second))
	})
	t.Run("c: a's access log: ctr fetched the list, the arm64 manifest, config and layers, nothing of amd64", func(t *testing.T) {
		if w.markCtr == "" || w.markSkopeo == "" {
			t.Fatal("no marker requests around the pull")
		}
		m, bl := fetched(n.tlsC, w.markCtr, w.markSkopeo, "manifests"), fetched(n.tlsC, w.markCtr, w.markSkopeo, "blobs")
		wantM, wantB := sorted(n.list, n.arm64M), sorted(append([]string{n.arm64Cfg}, n.layers...)...)
		if !slices.Equal(m, wantM) || !slices.Equal(bl, wantB) {
			t.Errorf("it fetched manifests [%s] and blobs [%s], want [%s] and [%s]", n.names(m), n.names(bl), n.names(wantM), n.names(wantB))
		}
	})
	t.Run("c: ctr content ls holds the list, the arm64 manifest, config and layers", func(t *testing.T) {
		got := sorted(contentLs(w.content)...)
		want := sorted(append([]string{n.list, n.arm64M, n.arm64Cfg}, n.layers...)...)
		if w.content.code != 0 || !slices.Equal(got, want) {
			t.Errorf("c's content store has [%s], want [%s] (%s)", n.names(got), n.names(want), w.content)
		}
	})
	t.Run("c: the image was unpacked (snapshots)", func(t *testing.T) {
		lines := strings.Split(strings.TrimSpace(w.snaps.out), "\n")
		if w.snaps.code != 0 || len(lines) < 2 {
			t.Errorf("ctr snapshots ls: %s", w.snaps)
		}
		t.Logf("%d snapshots", len(lines)-1)
	})
	t.Run("c: arm64 skopeo copy with no override picks linux/arm64/v8", func(t *testing.T) {
		if w.skopeo.code != 0 {
			t.Fatalf("skopeo copy: %s", w.skopeo)
		}
		mf, err := os.ReadFile(filepath.Join(w.skopeoDir, "manifest.json"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(mf)
		got := "sha256:" + hex.EncodeToString(sum[:])
		m, err := v1.ParseManifest(bytes.NewReader(mf))
		if err != nil {
			t.Fatalf("decoding skopeo's manifest.json: %v", err)
		}
		cfgData, err := os.ReadFile(filepath.Join(w.skopeoDir, m.Config.Digest.Hex))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgData))
		if err != nil {
			t.Fatalf("decoding the config: %v", err)
		}
		plat := cfg.OS + "/" + cfg.Architecture + "/" + cfg.Variant
		if plat != "linux/arm64/v8" || got != n.arm64M {
			t.Errorf("skopeo copied %s (%s %s), want linux/arm64/v8 (arm64-manifest %s)", plat, n.nameOf(got), got, n.arm64M)
		}
		t.Logf("took %s", w.skopeo.took.Round(time.Second))
	})
	t.Run("c: a's access log: skopeo fetched the arm64 manifest, config and layers, nothing of amd64", func(t *testing.T) {
		if w.markSkopeo == "" || w.markEnd == "" {
			t.Fatal("no marker requests around the copy")
		}
		m, bl := fetched(n.tlsC, w.markSkopeo, w.markEnd, "manifests"), fetched(n.tlsC, w.markSkopeo, w.markEnd, "blobs")
		wantB := sorted(append([]string{n.arm64Cfg}, n.layers...)...)
		if !slices.Equal(m, []string{n.arm64M}) || !slices.Equal(bl, wantB) {
			t.Errorf("it fetched manifests [%s] and blobs [%s], want [arm64-manifest] and [%s]", n.names(m), n.names(bl), n.names(wantB))
		}
	})
}

// serverSection returns the key: value lines of the "Server:" section of
// ctr version's output, which only the daemon's answer fills in.
func serverSection(out string) map[string]string {
	m := map[string]string{}
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.TrimSpace(line) == "Server:":
			in = true
		case in && strings.HasPrefix(line, " "):
			if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				m[k] = strings.TrimSpace(v)
			}
		case in && strings.TrimSpace(line) != "":
			in = false
		}
	}
	return m
}

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// soakOpTimeout bounds any one client command.
const soakOpTimeout = 120 * time.Second

// TestSoak: many real clients pull the image from one server at once, for
// SOAK_SECONDS (default 20), and every download is checked against its
// digest: SOAK_CRANE (default 4) loops of crane pull --format oci, SOAK_SKOPEO
// (default 2) loops of skopeo copy to a dir (every other one with --all),
// SOAK_CURL (default 4) loops of curl GETs of every manifest and blob by
// digest; the platforms alternate between linux/amd64 and linux/arm64. The
// server's VmRSS is sampled every second; it may grow by at most
// SOAK_RSS_GROWTH_MIB (default 32) from the sample after SOAK_WARMUP
// (default 3) seconds to the last. The server answers no 5xx, logs no
// panic, and has no stream in flight at the end. Example of a longer run:
// SOAK_SECONDS=120 go test -run '^TestSoak$' .
func TestSoak(t *testing.T) {
	seconds := envInt(t, "SOAK_SECONDS", 20)
	nCrane, nSkopeo, nCurl := envInt(t, "SOAK_CRANE", 4), envInt(t, "SOAK_SKOPEO", 2), envInt(t, "SOAK_CURL", 4)
	warmup, growthMiB := envInt(t, "SOAK_WARMUP", 3), envInt(t, "SOAK_RSS_GROWTH_MIB", 32)
	crane, skopeo, curl := harness.Tool(t, "crane"), harness.Tool(t, "skopeo"), harness.Tool(t, "curl")

	dist := harness.Dist(t)
	s := harness.Start(t, "soak", harness.Binary(dist, "linux/amd64"), []string{"--addr", "127.0.0.1:0"})
	sv := readServed(t, s.Addr)
	t.Logf("soak: %s/quinistry:latest, list %s, %d blobs; %d crane, %d skopeo and %d curl loops for %d s",
		s.Addr, sv.list, len(sv.blobs), nCrane, nSkopeo, nCurl, seconds)

	tmp := harness.TempDir(t)
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	results := map[string]*soakResults{"crane": {}, "skopeo": {}, "curl": {}}
	var wg sync.WaitGroup
	loop := func(kind string, i int, op func(i, n int) (string, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				what, err := op(i, n)
				results[kind].add(what, err)
			}
		}()
	}
	for i := range nCrane {
		loop("crane", i, func(i, n int) (string, error) {
			return sv.cranePull(crane, filepath.Join(tmp, fmt.Sprintf("crane.%d.%d", i, n)), i, n)
		})
	}
	for i := range nSkopeo {
		loop("skopeo", i, func(i, n int) (string, error) {
			return sv.skopeoCopy(skopeo, filepath.Join(tmp, fmt.Sprintf("skopeo.%d.%d", i, n)), i, n)
		})
	}
	for i := range nCurl {
		loop("curl", i, func(i, n int) (string, error) {
			return sv.curlGet(curl, filepath.Join(tmp, fmt.Sprintf("curl.%d", i)), i, n)
		})
	}
	// The server's VmRSS in KiB, one sample a second, until the end.
	var rss []int64
	for tick := time.NewTicker(time.Second); time.Now().Before(end); <-tick.C {
		v, err := harness.ProcStatus(s.PID(), "VmRSS")
		if err != nil {
			break
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
		if err != nil {
			t.Fatalf("VmRSS %q: %v", v, err)
		}
		rss = append(rss, kib)
	}
	wg.Wait()

	for _, kind := range []string{"crane", "skopeo", "curl"} {
		r := results[kind]
		t.Logf("soak: %-6s %6d pulls, %d errors, %d digest mismatches", kind, r.ok, len(r.errors), len(r.mismatches))
	}
	check := func(kind, what string) {
		t.Run(kind+" "+what, func(t *testing.T) {
			r := results[kind]
			if r.ok == 0 {
				t.Errorf("no %s pull passed", kind)
			}
			for _, e := range r.summary() {
				t.Error(e)
			}
		})
	}
	check("crane", "pulls each get the served platform manifest and blobs that hash to their names")
	check("skopeo", "copies each get the served list or manifest and blobs that hash to their names")
	check("curl", "GETs of every manifest and blob by digest each hash to that digest")

	t.Run("no blob stream is left in flight", func(t *testing.T) {
		harness.WaitMetric(t, s.URL("/metrics"), 30*time.Second, 0, "quinistry_blob_streams_in_flight")
	})
	t.Run("the server answered no request with a 5xx", func(t *testing.T) {
		m, _ := harness.FetchMetrics(t, s.URL("/metrics"))
		var requests, fivexx float64
		for _, x := range m.Series("quinistry_requests_total") {
			requests += x.Value
			if strings.HasPrefix(x.Labels["status"], "5") {
				fivexx += x.Value
				t.Errorf("%s is %g", x.Key(), x.Value)
			}
		}
		bytes, _ := m.Value("quinistry_response_bytes_total")
		t.Logf("soak: the server answered %g requests, %.0f MiB, %g with a 5xx", requests, bytes/(1<<20), fivexx)
		if requests == 0 {
			t.Error("the server counted no requests")
		}
	})
	t.Run("the server logged no panic", func(t *testing.T) {
		for _, l := range s.Log.Lines() {
			if strings.Contains(l, "panic") {
				t.Errorf("the log says: %s", l)
			}
		}
	})
	t.Run(fmt.Sprintf("resident memory grows by at most %d MiB after the warm-up", growthMiB), func(t *testing.T) {
		if len(rss) <= warmup+1 {
			t.Fatalf("only %d RSS samples: run for longer than SOAK_WARMUP=%d s", len(rss), warmup)
		}
		mib := func(k int64) string { return fmt.Sprintf("%.1f", float64(k)/1024) }
		var curve []string
		for _, k := range rss {
			curve = append(curve, mib(k))
		}
		sorted := append([]int64(nil), rss...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		base, last := rss[warmup], rss[len(rss)-1]
		t.Logf("soak: VmRSS MiB, one sample a second: %s", strings.Join(curve, " "))
		t.Logf("soak: VmRSS first %s, after %d s warm-up %s, min %s, max %s, last %s MiB; growth %s MiB (limit %d)",
			mib(rss[0]), warmup, mib(base), mib(sorted[0]), mib(sorted[len(sorted)-1]), mib(last), mib(last-base), growthMiB)
		if last-base > int64(growthMiB)*1024 {
			t.Errorf("resident memory grew by %s MiB, more than %d", mib(last-base), growthMiB)
		}
	})
	s.Stop(t)
	harness.CheckNothingLeft(t)
}

// envInt reads a whole number from the environment: def when unset or
// empty, a failed test when it is not a number.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q is not a whole number", name, v)
	}
	return n
}

// soakResults counts one kind of client's results.
type soakResults struct {
	mu         sync.Mutex
	ok         int
	errors     []string
	mismatches []string
}

// soakMismatch is a download that arrived but is not what is served.
type soakMismatch struct{ msg string }

func (m soakMismatch) Error() string { return m.msg }

func (r *soakResults) add(what string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch err := err.(type) {
	case nil:
		r.ok++
	case soakMismatch:
		r.mismatches = append(r.mismatches, "mismatch "+what+": "+err.msg)
	default:
		r.errors = append(r.errors, "error "+what+": "+err.Error())
	}
}

// summary lists the distinct failures with their counts, at most 20.
func (r *soakResults) summary() []string {
	count := map[string]int{}
	for _, e := range append(append([]string(nil), r.errors...), r.mismatches...) {
		count[e]++
	}
	var out []string
	for e, n := range count {
		out = append(out, fmt.Sprintf("%d× %s", n, e))
	}
	sort.Strings(out)
	if len(out) > 20 {
		out = out[:20]
	}
	return out
}

// servedContent is what the server serves, read from the server itself:
// the list, each platform's manifest, and every config and layer.
type servedContent struct {
	addr      string
	list      string
	manifests map[string]string // arch -> digest
	blobs     []string
	layers    int
}

func readServed(t *testing.T, addr string) *servedContent {
	t.Helper()
	get := func(path string) []byte {
		r := harness.Do(t, http.MethodGet, "http://"+addr+path, "Accept", harness.ListAccept)
		if r.Status != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, r.Status)
		}
		return r.Body
	}
	body := get("/v2/quinistry/manifests/latest")
	sv := &servedContent{addr: addr, list: harness.DigestOf(body), manifests: map[string]string{}}
	list := harness.JSON[v1.IndexManifest](t, "the list", body)
	blobs := map[string]bool{}
	for _, d := range list.Manifests {
		if d.Platform == nil || d.Platform.OS != "linux" || (d.Platform.Architecture != "amd64" && d.Platform.Architecture != "arm64") {
			continue
		}
		sv.manifests[d.Platform.Architecture] = d.Digest.String()
		m := harness.JSON[v1.Manifest](t, "the "+d.Platform.Architecture+" manifest", get("/v2/quinistry/manifests/"+d.Digest.String()))
		blobs[m.Config.Digest.String()] = true
		for _, l := range m.Layers {
			blobs[l.Digest.String()] = true
		}
		sv.layers = len(m.Layers)
	}
	for b := range blobs {
		sv.blobs = append(sv.blobs, b)
	}
	sort.Strings(sv.blobs)
	if sv.manifests["amd64"] == "" || sv.manifests["arm64"] == "" || len(sv.blobs) < 4 {
		t.Fatalf("could not read what the server serves: list %s, manifests %v, blobs %v", sv.list, sv.manifests, sv.blobs)
	}
	return sv
}

func (sv *servedContent) ref() string { return sv.addr + "/quinistry:latest" }

// runTool runs a client command, bounded by soakOpTimeout, and returns its
// last line of error output on failure.
func runTool(argv ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), soakOpTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("%v: %s", err, lines[len(lines)-1])
	}
	return nil
}

// cranePull pulls one platform as an OCI layout: its index names the served
// platform manifest, and its blobs (that manifest, its config and the
// layers) each hash to their names.
func (sv *servedContent) cranePull(crane, dir string, i, n int) (string, error) {
	arch := []string{"amd64", "arm64"}[(i+n)%2]
	what := "crane linux/" + arch
	defer os.RemoveAll(dir)
	if err := runTool(crane, "pull", "--insecure", "--platform", "linux/"+arch, "--format", "oci", sv.ref(), dir); err != nil {
		return what, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return what, err
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(data, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != sv.manifests[arch] {
		return what, soakMismatch{fmt.Sprintf("index.json names %s (%v), not %s", manifestDigests(idx), err, sv.manifests[arch])}
	}
	return what, shaNames(filepath.Join(dir, "blobs", "sha256"), sv.layers+2)
}

// skopeoCopy copies to a dir, every other time with --all: manifest.json is
// the served list (or platform manifest), and the other files (layers,
// configs and, with --all, the platform manifests) each hash to their names.
func (sv *servedContent) skopeoCopy(skopeo, dir string, i, n int) (string, error) {
	var args []string
	var want, what string
	var count int
	if (i+n)%2 == 0 {
		args, want, what, count = []string{"--all"}, sv.list, "skopeo all", sv.layers+4
	} else {
		arch := "arm64"
		if (i+n)%4 == 1 {
			arch = "amd64"
		}
		args, want, what, count = []string{"--override-os", "linux", "--override-arch", arch}, sv.manifests[arch], "skopeo linux/"+arch, sv.layers+1
	}
	defer os.RemoveAll(dir)
	argv := append(append([]string{skopeo, "copy", "-q"}, args...), "--src-tls-verify=false", "docker://"+sv.ref(), "dir:"+dir)
	if err := runTool(argv...); err != nil {
		return what, err
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return what, err
	}
	if got := harness.DigestOf(data); got != want {
		return what, soakMismatch{fmt.Sprintf("manifest.json is %s, not %s", got, want)}
	}
	return what, shaNames(dir, count)
}

// curlGet GETs one manifest or blob by digest with curl and hashes it.
func (sv *servedContent) curlGet(curl, file string, i, n int) (string, error) {
	all := append(append([]string(nil), sv.blobs...), sv.list, sv.manifests["amd64"], sv.manifests["arm64"])
	d := all[(i+n)%len(all)]
	path := "blobs/" + d
	if d == sv.list || d == sv.manifests["amd64"] || d == sv.manifests["arm64"] {
		path = "manifests/" + d
	}
	what := "curl " + path
	defer os.Remove(file)
	if err := runTool(curl, "-fsS", "-H", "Accept: "+harness.ListAccept, "-o", file, "http://"+sv.addr+"/v2/quinistry/"+path); err != nil {
		return what, err
	}
	got, err := fileDigest(file)
	if err != nil {
		return what, err
	}
	if got != d {
		return what, soakMismatch{"got " + got}
	}
	return what, nil
}

var shaName = regexp.MustCompile(`^([0-9a-f]{64})(\.manifest\.json)?$`)

// shaNames checks that dir holds count files named by a sha256 (hex, or
// hex.manifest.json), each hashing to its name.
func shaNames(dir string, count int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var bad []string
	n := 0
	for _, e := range entries {
		m := shaName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		n++
		got, err := fileDigest(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		if got != "sha256:"+m[1] {
			bad = append(bad, e.Name()+" hashes to "+got)
		}
	}
	if n != count {
		return soakMismatch{fmt.Sprintf("%d blobs, not %d", n, count)}
	}
	if len(bad) > 0 {
		return soakMismatch{strings.Join(bad, "; ")}
	}
	return nil
}

func fileDigest(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func manifestDigests(idx v1.IndexManifest) []string {
	var out []string
	for _, m := range idx.Manifests {
		out = append(out, m.Digest.String())
	}
	return out
}

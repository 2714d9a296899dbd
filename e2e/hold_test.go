package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/quinistry/quinistry/e2e/harness"
)

// TestHold drives the real binary under shutdown, load caps and probes:
// SIGTERM and SIGINT with a download in flight, --shutdown-timeout with one
// that does not finish, /healthz, /readyz and /metrics while packing (held
// open by a FIFO among the siblings) and after, requests that wait for
// packing, the self-check before ready, the log flush while idle,
// --max-streams 2 and 0, a binary that cannot read itself, and TLS with its
// certificate reloaded on SIGHUP.
func TestHold(t *testing.T) {
	dist := harness.Dist(t)
	amd64 := harness.Binary(dist, "linux/amd64")

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		name := map[syscall.Signal]string{syscall.SIGTERM: "sigterm", syscall.SIGINT: "sigint"}[sig]
		t.Run(name, func(t *testing.T) { drain(t, amd64, name, sig) })
	}
	t.Run("shutdown timeout", func(t *testing.T) { shutdownTimeout(t, amd64) })
	t.Run("probes", func(t *testing.T) { probes(t, amd64) })
	t.Run("max-streams 2", func(t *testing.T) { maxStreams(t, amd64) })
	t.Run("max-streams 0", func(t *testing.T) { noStreamCap(t, amd64) })
	t.Run("unreadable binary", func(t *testing.T) { unreadable(t, dist) })
	t.Run("tls", func(t *testing.T) { tlsReload(t, amd64) })
	// TestHold starts quinistry processes and nothing else; the slow
	// downloads close their connections when their subtests end.
	harness.CheckNothingLeft(t)
}

// largestLayer returns the digest and size of the largest layer of the
// image served for repo's tag latest, asked for as a single Docker manifest
// (the server's default platform): exactly one manifest request.
func largestLayer(t testing.TB, addr string) (string, int64) {
	t.Helper()
	r := harness.Do(t, http.MethodGet, "http://"+addr+"/v2/quinistry/manifests/latest", "Accept", harness.DockerManifest)
	if r.Status != http.StatusOK {
		t.Fatalf("GET the manifest: status %d: %s", r.Status, r.Body)
	}
	m := harness.JSON[v1.Manifest](t, "the manifest", r.Body)
	if len(m.Layers) == 0 {
		t.Fatalf("the manifest has no layers: %s", r.Body)
	}
	best := m.Layers[0]
	for _, l := range m.Layers[1:] {
		if l.Size > best.Size {
			best = l
		}
	}
	return best.Digest.String(), best.Size
}

// waitInFlight waits until the server counts n blob streams in flight.
func waitInFlight(t testing.TB, s *harness.Server, n float64) {
	t.Helper()
	harness.WaitMetric(t, s.URL("/metrics"), 30*time.Second, n, "quinistry_blob_streams_in_flight")
}

// recordIndex returns the position of the first of recs for which match
// holds, or -1.
func recordIndex(recs []harness.Record, match func(harness.Record) bool) int {
	return slices.IndexFunc(recs, match)
}

// waitRequests waits until s has logged n request lines for path with
// status: the registry counts a request in /metrics before it logs it, so
// its metrics then include them.
func waitRequests(t testing.TB, s *harness.Server, n int, path, status string) {
	t.Helper()
	seen := 0
	s.Log.Wait(t, 60*time.Second, fmt.Sprintf("%d request lines for %s with status %s", n, path, status), func(r harness.Record) bool {
		if r.Msg() == "request" && r["path"] == path && r["status"] == status {
			seen++
		}
		return seen == n
	})
}

func msgIs(msg string) func(harness.Record) bool {
	return func(r harness.Record) bool { return r.Msg() == msg }
}

const (
	msgShuttingDown = "shutting down"
	msgStopped      = "stopped"
	msgCut          = "in-flight requests cut off at the shutdown timeout"
)

// drain: a signal while a download is held in flight closes the listener
// at once, the download then completes whole, and the process exits 0.
func drain(t *testing.T, bin, name string, sig syscall.Signal) {
	s := harness.Start(t, "drain-"+name, bin, []string{"--addr", "127.0.0.1:0"})
	layer, _ := largestLayer(t, s.Addr)
	dl := startSlow(t, s.Addr, "/v2/quinistry/blobs/"+layer)
	dl.Held(t)
	if !t.Run("the slow download is in flight", func(t *testing.T) { waitInFlight(t, s, 1) }) {
		return
	}
	s.Signal(t, sig)
	t.Run("the listener closes at once", func(t *testing.T) {
		deadline := time.Now().Add(10 * time.Second)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for ; ; <-tick.C {
			c, err := net.DialTimeout("tcp", s.Addr, 2*time.Second)
			if errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
			if c != nil {
				c.Close()
			}
			if time.Now().After(deadline) {
				t.Fatalf("a new connection to %s still gets %v 10 s after %s", s.Addr, err, sig)
			}
		}
	})
	t.Run("the process waits for the download", func(t *testing.T) {
		s.Log.Wait(t, 10*time.Second, "the shutting down line", msgIs(msgShuttingDown))
		select {
		case <-s.Exited():
			t.Fatalf("the process exited (%s) with the download held", s.ExitStatus())
		case <-dl.done:
			t.Fatalf("the download ended while held: %s", dl)
		default:
		}
	})
	dl.Release()
	t.Run("the process exits 0", func(t *testing.T) {
		if code := s.WaitExit(t, 60*time.Second); code != 0 {
			t.Errorf("exit %d (%s); log:\n%s", code, s.ExitStatus(), s.Log.Text())
		}
	})
	dl.Wait(t)
	t.Run("the download completes", func(t *testing.T) {
		if dl.err != nil || dl.got != dl.want {
			t.Errorf("the download: %s", dl)
		}
	})
	t.Run("the download has the right sha256", func(t *testing.T) {
		if dl.digest != layer {
			t.Errorf("the download hashes to %s, not %s (%s)", dl.digest, layer, dl)
		}
	})
	t.Run("logs shutting down, then stopped", func(t *testing.T) {
		recs := s.Log.Records()
		a, b := recordIndex(recs, msgIs(msgShuttingDown)), recordIndex(recs, msgIs(msgStopped))
		if a < 0 || b < 0 || a > b {
			t.Errorf("%q is record %d, %q record %d; log:\n%s", msgShuttingDown, a, msgStopped, b, s.Log.Text())
		}
	})
	t.Run("no download was cut", func(t *testing.T) {
		if cut := s.Log.Find(msgIs(msgCut)); len(cut) > 0 {
			t.Errorf("logged %v", cut)
		}
	})
}

// shutdownTimeout: with --shutdown-timeout 1s and a download that does not
// finish, the process exits 0, cutting the download, and by its own log
// the cut came no sooner than 1 s after shutting down began.
func shutdownTimeout(t *testing.T, bin string) {
	s := harness.Start(t, "cut", bin, []string{"--addr", "127.0.0.1:0", "--shutdown-timeout", "1s"})
	layer, size := largestLayer(t, s.Addr)
	dl := startSlow(t, s.Addr, "/v2/quinistry/blobs/"+layer)
	dl.Held(t)
	if !t.Run("the slow download is in flight", func(t *testing.T) { waitInFlight(t, s, 1) }) {
		return
	}
	s.Signal(t, syscall.SIGTERM)
	t.Run("the process exits 0", func(t *testing.T) {
		if code := s.WaitExit(t, 60*time.Second); code != 0 {
			t.Errorf("exit %d (%s); log:\n%s", code, s.ExitStatus(), s.Log.Text())
		}
	})
	<-s.Exited()
	recs := s.Log.Records()
	t.Run("logs the 1s timeout it shuts down with", func(t *testing.T) {
		got := s.Log.Find(msgIs(msgShuttingDown))
		if len(got) != 1 || got[0]["timeout"] != "1s" {
			t.Errorf("the shutting down lines: %v", got)
		}
	})
	t.Run("logs shutting down, then that in-flight requests were cut off, then stopped", func(t *testing.T) {
		a, b, c := recordIndex(recs, msgIs(msgShuttingDown)), recordIndex(recs, msgIs(msgCut)), recordIndex(recs, msgIs(msgStopped))
		if a < 0 || b < 0 || c < 0 || a > b || b > c {
			t.Errorf("records %d, %d and %d; log:\n%s", a, b, c, s.Log.Text())
		}
	})
	// The server's own clock: a timer never fires early, so this holds
	// however busy the machine is; no upper bound is bet on.
	t.Run("the server waited the timeout before cutting, by its own log", func(t *testing.T) {
		began, err1 := recordTime(s.Log.Find(msgIs(msgShuttingDown)))
		cut, err2 := recordTime(s.Log.Find(msgIs(msgCut)))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		waited := cut.Sub(began)
		t.Logf("the server cut the download %s after shutting down began", waited)
		if waited < time.Second {
			t.Errorf("the cut came %s after shutting down began, before the 1s timeout", waited)
		}
	})
	dl.Release()
	dl.Wait(t)
	t.Run("the download is cut", func(t *testing.T) {
		if dl.err == nil {
			t.Errorf("the download completed: %s", dl)
		}
	})
	t.Run("the download stopped short", func(t *testing.T) {
		if dl.got >= size {
			t.Errorf("got %d of %d bytes", dl.got, size)
		}
	})
}

// recordTime returns the time the server stamped on the first of recs.
func recordTime(recs []harness.Record) (time.Time, error) {
	if len(recs) == 0 {
		return time.Time{}, errors.New("no such line")
	}
	ts, err := time.Parse(time.RFC3339Nano, recs[0]["time"])
	if err != nil {
		return time.Time{}, fmt.Errorf("the line %v has no time: %w", recs[0], err)
	}
	return ts, nil
}

// probes: /readyz is 503 while packing (the server listens first), then
// 200; /healthz; /metrics; a request made while packing reaches the server
// and waits; the self-check reads every layer back before ready; the log is
// flushed while the server idles. Packing is held open by an event, not
// raced: a FIFO named like the arm64 sibling blocks the server's open of it
// until the test opens the other end.
func probes(t *testing.T, bin string) {
	gate := filepath.Join(harness.TempDir(t), "gate")
	if err := os.Mkdir(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(gate, "quinistry-linux-arm64")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	s := harness.StartWith(t, "probe", harness.Options{NoWaitReady: true}, bin, "--addr", "127.0.0.1:0", "--siblings", gate)
	var addr string
	if !t.Run("listens while packing (the FIFO holds it)", func(t *testing.T) {
		addr = harness.WaitListening(t, s, 30*time.Second)
	}) {
		return
	}
	url := func(path string) string { return "http://" + addr + path }
	t.Run("readyz answers 503 packing while packing", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, url("/readyz"))
		if r.Status != http.StatusServiceUnavailable || string(r.Body) != "packing\n" {
			t.Errorf("/readyz answers %d %q", r.Status, r.Body)
		}
	})
	t.Run("healthz answers 200 while packing", func(t *testing.T) {
		if r := harness.Do(t, http.MethodGet, url("/healthz")); r.Status != http.StatusOK {
			t.Errorf("/healthz answers %d %q", r.Status, r.Body)
		}
	})
	t.Run("metrics says quinistry_ready 0 while packing", func(t *testing.T) {
		m, _ := harness.FetchMetrics(t, url("/metrics"))
		if v, ok := m.Value("quinistry_ready"); !ok || v != 0 {
			t.Errorf("quinistry_ready is %s", m.Show("quinistry_ready"))
		}
	})

	// What the server has read so far: packing reads the running binary
	// into its layer, and the self-check reads that layer back.
	readBefore, err := harness.ReadChars(s.PID())
	if err != nil {
		t.Fatal(err)
	}

	type answer struct {
		r   harness.Response
		err error
	}
	waiter := make(chan answer, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url("/v2/quinistry/manifests/latest"), nil)
		req.Header.Set("Accept", harness.ListAccept)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			waiter <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		waiter <- answer{harness.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, err}
	}()
	t.Run("a manifest request made while packing reaches the server and waits", func(t *testing.T) {
		harness.WaitMetric(t, url("/metrics"), 30*time.Second, 1, "quinistry_requests_waiting")
		// one page, so one moment: the request is in and packing is not done
		m, _ := harness.FetchMetrics(t, url("/metrics"))
		if w, r := m.Show("quinistry_requests_waiting"), m.Show("quinistry_ready"); w != "1" || r != "0" {
			t.Errorf("/metrics says quinistry_requests_waiting %s, quinistry_ready %s", w, r)
		}
		if r := harness.Do(t, http.MethodGet, url("/readyz")); r.Status != http.StatusServiceUnavailable {
			t.Errorf("/readyz answers %d while the FIFO holds packing", r.Status)
		}
		select {
		case a := <-waiter:
			waiter <- a
			t.Errorf("the request was answered while packing: %d %v", a.r.Status, a.err)
		default:
		}
	})

	// Open the FIFO's writing end: the server's open returns. Bounded, should
	// the server never open it.
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			err = f.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("opening the FIFO: %v", err)
		}
	case <-time.After(60 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close() // lets the blocked open return
		}
		t.Fatalf("the server did not open the FIFO within 60 s; its log:\n%s", s.Log.Text())
	}
	// Packing is done once the waiting request is answered: the front door
	// opens after the self-check. The log is not needed to know it, so the
	// log's own checks below stand on their own.
	answered := t.Run("the waiting manifest request is answered 200 with the list", func(t *testing.T) {
		var a answer
		select {
		case a = <-waiter:
		case <-time.After(120 * time.Second):
			t.Fatalf("the waiting request is not answered 120 s after the FIFO was opened; the log:\n%s", s.Log.Text())
		}
		if a.err != nil || a.r.Status != http.StatusOK {
			t.Fatalf("the waiting request: status %d, %v", a.r.Status, a.err)
		}
		sum := sha256.Sum256(a.r.Body)
		list := harness.JSON[v1.IndexManifest](t, "the list", a.r.Body)
		if d := "sha256:" + hex.EncodeToString(sum[:]); d != a.r.Header.Get("Docker-Content-Digest") ||
			string(list.MediaType) != harness.DockerList || !slices.Equal(harness.Platforms(&list), []string{"linux/amd64"}) {
			t.Errorf("the answer hashes to %s, is said to be %s, is a %s naming %v; want a Docker list of linux/amd64 (the FIFO is no sibling)",
				d, a.r.Header.Get("Docker-Content-Digest"), list.MediaType, harness.Platforms(&list))
		}
	})
	if !answered {
		return
	}
	readAfter, err := harness.ReadChars(s.PID())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("no request waits once ready", func(t *testing.T) {
		m, _ := harness.FetchMetrics(t, url("/metrics"))
		if v, ok := m.Value("quinistry_requests_waiting"); !ok || v != 0 {
			t.Errorf("quinistry_requests_waiting is %s", m.Show("quinistry_requests_waiting"))
		}
	})
	t.Run("it logs ready, naming the address it listens on", func(t *testing.T) {
		s.WaitReady(t)
		if s.Addr != addr {
			t.Errorf("the ready line names %s, the process listens on %s", s.Addr, addr)
		}
	})
	t.Run("the FIFO is skipped with one warning", func(t *testing.T) {
		warning := "skipping " + fifo + ": not a regular file"
		s.Log.Wait(t, 30*time.Second, "the FIFO's warning", msgIs(warning))
		got := s.Log.Find(func(r harness.Record) bool { return strings.Contains(r.Msg(), fifo) })
		if len(got) != 1 || got[0].Msg() != warning || got[0]["level"] != "WARN" {
			t.Errorf("lines naming the FIFO: %v; want one warning %q", got, warning)
		}
	})

	layer, layerSize := largestLayer(t, addr) // the second manifest request
	t.Run("the self-check reads every layer back before ready", func(t *testing.T) {
		st, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		// Packing reads the binary (st.Size bytes) to make its layer; the
		// self-check reads the layer back from its memory file (layerSize).
		// Without the self-check, the few reads besides (requests, ELF
		// headers) come nowhere near a layer.
		read := readAfter - readBefore
		want := st.Size() + layerSize
		t.Logf("while packing the server read %d bytes; the binary is %d bytes, its layer %d", read, st.Size(), layerSize)
		if read < want {
			t.Errorf("the server read %d bytes while packing, less than the binary and its layer (%d + %d): the layer was not read back",
				read, st.Size(), layerSize)
		}
	})
	t.Run("readyz says ready", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, url("/readyz"))
		if r.Status != http.StatusOK || string(r.Body) != "ready\n" {
			t.Errorf("/readyz answers %d %q", r.Status, r.Body)
		}
	})
	t.Run("healthz is 200", func(t *testing.T) {
		if r := harness.Do(t, http.MethodGet, url("/healthz")); r.Status != http.StatusOK {
			t.Errorf("/healthz answers %d", r.Status)
		}
	})
	blobPath := "/v2/quinistry/blobs/" + layer
	blob := harness.Do(t, http.MethodGet, url(blobPath))
	if blob.Status != http.StatusOK {
		t.Fatalf("GET %s: %d", blobPath, blob.Status)
	}
	// Log lines are buffered and flushed at least every 100 ms: with no more
	// traffic and no shutdown, the request's line still reaches the log.
	t.Run("the blob request's line is written out while the server idles", func(t *testing.T) {
		s.Log.Wait(t, 20*time.Second, "the blob request's line, with no further traffic", func(r harness.Record) bool {
			return r.Msg() == "request" && r["path"] == blobPath
		})
		select {
		case <-s.Exited():
			t.Errorf("the server is not running: %s", s.ExitStatus())
		default:
		}
	})

	waitRequests(t, s, 2, "/v2/quinistry/manifests/latest", "200")
	m, resp := harness.FetchMetrics(t, url("/metrics"))
	t.Run("metrics are in the Prometheus text format", func(t *testing.T) {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
			t.Errorf("Content-Type %q", ct)
		}
	})
	exact := func(what string, want float64, name string, labels ...string) {
		t.Run("metrics: "+what, func(t *testing.T) {
			if v, ok := m.Value(name, labels...); !ok || v != want {
				t.Errorf("%s is %s, want %g", harness.SeriesKey(name, pairsOf(labels)), m.Show(name, labels...), want)
			}
		})
	}
	exact("quinistry_ready is 1", 1, "quinistry_ready")
	exact("two manifests were answered 200 (the waiting request and one more)", 2, "quinistry_requests_total", "route", "manifest", "status", "200")
	exact("one blob was answered 200", 1, "quinistry_requests_total", "route", "blob", "status", "200")
	exact("no blob stream is in flight", 0, "quinistry_blob_streams_in_flight")
	exact("the blob stream limit is the default 1024", 1024, "quinistry_blob_streams_limit")
	exact("no request waits", 0, "quinistry_requests_waiting")
	t.Run("metrics: quinistry_build_info names the running binary as its version command does", func(t *testing.T) {
		out := strings.TrimSpace(harness.Run(t, bin, "version"))
		v := regexp.MustCompile(`^quinistry (\S+) \(revision (\S+), (\S+), (\S+)\)$`).FindStringSubmatch(out)
		if v == nil {
			t.Fatalf("the version command says %q", out)
		}
		want := map[string]string{"version": v[1], "revision": v[2], "goversion": v[3], "platform": v[4]}
		got := m.Series("quinistry_build_info")
		if len(got) != 1 || got[0].Value != 1 || !equalMaps(got[0].Labels, want) {
			t.Errorf("quinistry_build_info series %v, want one with labels %v and value 1", got, want)
		}
	})
	t.Run("metrics: quinistry_pack_seconds is a positive gauge", func(t *testing.T) {
		if v, ok := m.Value("quinistry_pack_seconds"); !ok || v <= 0 || m.Types["quinistry_pack_seconds"] != "gauge" {
			t.Errorf("quinistry_pack_seconds is %s, a %q", m.Show("quinistry_pack_seconds"), m.Types["quinistry_pack_seconds"])
		}
	})
	t.Run("metrics: quinistry_requests_total is a counter", func(t *testing.T) {
		if typ := m.Types["quinistry_requests_total"]; typ != "counter" {
			t.Errorf("its TYPE is %q", typ)
		}
	})
	t.Run("metrics: bytes served include the layer", func(t *testing.T) {
		if v, ok := m.Value("quinistry_response_bytes_total"); !ok || v <= float64(len(blob.Body)) {
			t.Errorf("quinistry_response_bytes_total is %s, the layer alone %d bytes", m.Show("quinistry_response_bytes_total"), len(blob.Body))
		}
	})
}

func pairsOf(labels []string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		m[labels[i]] = labels[i+1]
	}
	return m
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// registryError is the body of a registry API error.
type registryError struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// maxStreams: with --max-streams 2, two held downloads are sent and two more
// get 429 TOOMANYREQUESTS with Retry-After.
func maxStreams(t *testing.T, bin string) {
	s := harness.Start(t, "cap", bin, []string{"--addr", "127.0.0.1:0", "--max-streams", "2"})
	layer, _ := largestLayer(t, s.Addr)
	path := "/v2/quinistry/blobs/" + layer
	held := []*slowDownload{startSlow(t, s.Addr, path), startSlow(t, s.Addr, path)}
	for _, d := range held {
		d.Held(t)
	}
	if !t.Run("two slow downloads are in flight", func(t *testing.T) { waitInFlight(t, s, 2) }) {
		return
	}
	extra := make([]chan harness.Response, 2)
	for i := range extra {
		extra[i] = make(chan harness.Response, 1)
		go func() {
			r, err := getAll(s.URL(path))
			if err != nil {
				r.Status = -1
				r.Body = []byte(err.Error())
			}
			extra[i] <- r
		}()
	}
	for i, ch := range extra {
		r := <-ch
		n := i + 3
		t.Run(fmt.Sprintf("download %d gets 429", n), func(t *testing.T) {
			if r.Status != http.StatusTooManyRequests {
				t.Errorf("status %d: %s", r.Status, r.Body)
			}
		})
		t.Run(fmt.Sprintf("download %d gets Retry-After: 1", n), func(t *testing.T) {
			if got := r.Header.Values("Retry-After"); !slices.Equal(got, []string{"1"}) {
				t.Errorf("Retry-After %q", got)
			}
		})
		t.Run(fmt.Sprintf("download %d gets TOOMANYREQUESTS", n), func(t *testing.T) {
			var e registryError
			if err := json.Unmarshal(r.Body, &e); err != nil || len(e.Errors) == 0 || e.Errors[0].Code != "TOOMANYREQUESTS" {
				t.Errorf("the body %q (%v)", r.Body, err)
			}
		})
	}
	for i, d := range held {
		d.Release()
		d.Wait(t)
		t.Run(fmt.Sprintf("download %d completes with the right sha256", i+1), func(t *testing.T) {
			if d.err != nil || d.digest != layer {
				t.Errorf("download %d: %s; want %s", i+1, d, layer)
			}
		})
	}
	t.Run("the slots are given back", func(t *testing.T) { waitInFlight(t, s, 0) })
	t.Run("a download afterwards is sent whole", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, s.URL(path))
		if d := harness.DigestOf(r.Body); r.Status != http.StatusOK || d != layer {
			t.Errorf("status %d, %d bytes hashing to %s; want %s", r.Status, len(r.Body), d, layer)
		}
	})
	t.Run("metrics counts the two 429s", func(t *testing.T) {
		waitRequests(t, s, 2, path, "429")
		m, _ := harness.FetchMetrics(t, s.URL("/metrics"))
		if v, ok := m.Value("quinistry_requests_total", "route", "blob", "status", "429"); !ok || v != 2 {
			t.Errorf(`quinistry_requests_total{route="blob",status="429"} is %s`, m.Show("quinistry_requests_total", "route", "blob", "status", "429"))
		}
	})
}

// noStreamCap: with --max-streams 0 there is no cap: three held downloads
// (one more than --max-streams 2 lets through) are all sent, and a fourth
// is sent whole while they are held.
func noStreamCap(t *testing.T, bin string) {
	s := harness.Start(t, "nocap", bin, []string{"--addr", "127.0.0.1:0", "--max-streams", "0"})
	t.Run("metrics says the limit is 0 (none)", func(t *testing.T) {
		m, _ := harness.FetchMetrics(t, s.URL("/metrics"))
		if v, ok := m.Value("quinistry_blob_streams_limit"); !ok || v != 0 {
			t.Errorf("quinistry_blob_streams_limit is %s", m.Show("quinistry_blob_streams_limit"))
		}
	})
	layer, _ := largestLayer(t, s.Addr)
	path := "/v2/quinistry/blobs/" + layer
	var held []*slowDownload
	for range 3 {
		held = append(held, startSlow(t, s.Addr, path))
	}
	t.Run("three slow downloads are sent at once", func(t *testing.T) {
		for _, d := range held {
			d.Held(t)
		}
		waitInFlight(t, s, 3)
	})
	t.Run("a fourth download is sent whole while they are held", func(t *testing.T) {
		r := harness.Do(t, http.MethodGet, s.URL(path))
		if d := harness.DigestOf(r.Body); r.Status != http.StatusOK || d != layer {
			t.Errorf("status %d (%s), %d bytes hashing to %s; want %s", r.Status, bodyHint(r.Body), len(r.Body), d, layer)
		}
	})
	for i, d := range held {
		d.Release()
		d.Wait(t)
		t.Run(fmt.Sprintf("held download %d completes with the right sha256", i+1), func(t *testing.T) {
			if d.err != nil || d.digest != layer {
				t.Errorf("download %d: %s; want %s", i+1, d, layer)
			}
		})
	}
	t.Run("no download was refused", func(t *testing.T) {
		waitRequests(t, s, 4, path, "200")
		m, _ := harness.FetchMetrics(t, s.URL("/metrics"))
		if got := m.Series("quinistry_requests_total"); len(got) == 0 {
			t.Fatal("no quinistry_requests_total series")
		}
		for _, x := range m.Series("quinistry_requests_total") {
			if x.Labels["status"] != "200" {
				t.Errorf("%s is %g", x.Key(), x.Value)
			}
		}
		if v, _ := m.Value("quinistry_requests_total", "route", "blob", "status", "200"); v != 4 {
			t.Errorf(`quinistry_requests_total{route="blob",status="200"} is %s, want 4`, m.Show("quinistry_requests_total", "route", "blob", "status", "200"))
		}
	})
}

func bodyHint(b []byte) string {
	if len(b) > 200 {
		return fmt.Sprintf("%d bytes", len(b))
	}
	return string(b)
}

// getAll GETs url and reads the whole answer.
func getAll(url string) (harness.Response, error) {
	resp, err := http.Get(url)
	if err != nil {
		return harness.Response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return harness.Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, err
}

// unreadable: a binary that cannot read itself (execute-only, run as a user
// that is not root) refuses to start with one clear line and no stack
// trace.
func unreadable(t *testing.T, dist string) {
	dir := filepath.Join(harness.TempDir(t), "xonly")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range harness.Files(t, dist) {
		data, err := os.ReadFile(filepath.Join(dist, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "quinistry-linux-amd64")
	if err := os.Chmod(bin, 0o111); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--addr", "127.0.0.1:0")
	cmd.Env = []string{}
	cmd.SysProcAttr = harness.AsUser(65532)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	out := strings.TrimRight(stderr.String(), "\n")
	t.Logf("unreadable binary: exit %d: %s (%v)", code, out, err)
	t.Run("exits 1", func(t *testing.T) {
		if code != 1 {
			t.Errorf("exit %d (%v): %s", code, err, out)
		}
	})
	t.Run("one clear line naming the binary and the reason", func(t *testing.T) {
		if strings.Contains(out, "\n") || !strings.HasPrefix(out, "quinistry: ") || !strings.HasSuffix(out, bin+": permission denied") ||
			strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
			t.Errorf("stderr %q; want one line \"quinistry: ...%s: permission denied\"", out, bin)
		}
	})
}

// tlsReload: HTTPS with HTTP/2, and the certificate reloaded on SIGHUP
// without a restart; a broken key on SIGHUP keeps the last certificate; a
// missing certificate at start is one line and exit 1.
func tlsReload(t *testing.T, bin string) {
	dir := harness.TempDir(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := makeCert(t, "first", certFile, keyFile)
	s := harness.Start(t, "tls", bin, []string{"--addr", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile})
	client := func(ca *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	}
	base := "https://" + s.Addr + "/v2/"
	t.Run("the v2 endpoint over HTTPS answers with HTTP 2", func(t *testing.T) {
		resp, err := client(first).Get(base)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			t.Errorf("status %d over %s", resp.StatusCode, resp.Proto)
		}
	})
	t.Run("crane reads the list over verified HTTPS", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodHead, "https://"+s.Addr+"/v2/quinistry/manifests/latest", nil)
		req.Header.Set("Accept", harness.ListAccept)
		resp, err := client(first).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := resp.Header.Get("Docker-Content-Digest")
		cmd := exec.Command(harness.Tool(t, "crane"), "digest", s.Addr+"/quinistry:latest")
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+filepath.Join(dir, "first.pem"))
		out, err := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want || want == "" {
			t.Errorf("crane digest: %v: %s; HEAD over HTTPS says %s", err, out, want)
		}
	})
	t.Run("the first certificate is served", func(t *testing.T) {
		if cn := servedCN(t, s.Addr); cn != "first" {
			t.Errorf("the server presents %q", cn)
		}
	})
	second := makeCert(t, "second", certFile, keyFile)
	s.Signal(t, syscall.SIGHUP)
	t.Run("after SIGHUP the new certificate is served", func(t *testing.T) {
		s.Log.Wait(t, 30*time.Second, "the reload line", msgIs("TLS certificate reloaded"))
		if cn := servedCN(t, s.Addr); cn != "second" {
			t.Errorf("the server presents %q", cn)
		}
	})
	t.Run("HTTPS works with the new certificate", func(t *testing.T) {
		resp, err := client(second).Get(base)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	if err := os.WriteFile(keyFile, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Signal(t, syscall.SIGHUP)
	t.Run("the failed reload is logged", func(t *testing.T) {
		r := s.Log.Wait(t, 30*time.Second, "the failed reload line", msgIs("TLS certificate not reloaded; still serving the previous one"))
		if r["level"] != "WARN" || r["error"] == "" {
			t.Errorf("the line: %v", r)
		}
	})
	t.Run("a broken key on SIGHUP keeps the last certificate", func(t *testing.T) {
		if cn := servedCN(t, s.Addr); cn != "second" {
			t.Errorf("the server presents %q", cn)
		}
	})
	s.Stop(t)
	t.Run("a missing TLS certificate at start is one line and exit 1", func(t *testing.T) {
		cmd := exec.Command(bin, "--addr", "127.0.0.1:0", "--tls-cert", filepath.Join(dir, "missing.pem"), "--tls-key", keyFile)
		cmd.Env = []string{}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		out := strings.TrimRight(stderr.String(), "\n")
		if cmd.ProcessState.ExitCode() != 1 || strings.Contains(out, "\n") || !strings.HasPrefix(out, "quinistry: cannot load TLS certificate") {
			t.Errorf("exit %d (%v), stderr %q", cmd.ProcessState.ExitCode(), err, out)
		}
	})
}

// makeCert writes a new self-signed certificate for 127.0.0.1 with common
// name cn to certFile and its key to keyFile, keeps a copy as DIR/CN.pem,
// and returns it.
func makeCert(t testing.TB, cn, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	for file, data := range map[string][]byte{
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		certFile: certPEM,
		filepath.Join(filepath.Dir(certFile), cn+".pem"): certPEM,
	} {
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// servedCN returns the common name of the certificate the server at addr
// presents (whatever it is: this reads it, it does not trust it).
func servedCN(t testing.TB, addr string) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		t.Fatalf("%s presents no certificate", addr)
	}
	return certs[0].Subject.CommonName
}

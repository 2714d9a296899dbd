package harness

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Registry is a CNCF distribution registry (.tools/bin/registry, with
// filesystem storage) started by a test as a push target. Its log is JSON,
// one record per request ("response completed", with http.request.method,
// http.request.uri and http.response.status), so a test can count what the
// registry itself saw, and its storage directory says what it holds.
type Registry struct {
	// Server is the registry process and its log.
	*Server
	// Addr is the address it listens on (127.0.0.1:PORT).
	Addr string
	// Scheme is http, or https when extraYAML configured TLS.
	Scheme string
	// Storage is the root directory of its filesystem storage.
	Storage string

	marks atomic.Int64
}

// StartRegistry starts a registry on a free port of 127.0.0.1 with storage
// in a directory of its own, waits until it logs that it listens, and stops
// it when the test ends. extraYAML is appended to the generated config right
// after http's addr: an auth section (unindented), or lines indented by two
// spaces that continue http (a tls section, say).
func StartRegistry(t testing.TB, name, extraYAML string) *Registry {
	t.Helper()
	dir := TempDir(t)
	storage := filepath.Join(dir, "data")
	config := "version: 0.1\n" +
		"log:\n  level: info\n  formatter: json\n  accesslog:\n    disabled: true\n" +
		"storage:\n  filesystem:\n    rootdirectory: " + storage + "\n" +
		"http:\n  addr: 127.0.0.1:0\n" + extraYAML + "\n"
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s := StartWith(t, "registry "+name, Options{NoWaitReady: true}, Tool(t, "registry"), "serve", cfgPath)
	rec, err := s.Log.WaitErr(ReadyTimeout, func(r Record) bool { return strings.HasPrefix(r.Msg(), "listening on ") })
	if err != nil {
		t.Fatalf("registry %s did not start: %v; exit %s; its log:\n%s", name, err, s.ExitStatus(), s.Log.Text())
	}
	// "listening on 127.0.0.1:PORT" or "listening on 127.0.0.1:PORT, tls"
	addr, tlsOn := strings.CutSuffix(strings.TrimPrefix(rec.Msg(), "listening on "), ", tls")
	r := &Registry{Server: s, Addr: addr, Scheme: "http", Storage: storage}
	if tlsOn {
		r.Scheme = "https"
	}
	s.Addr = addr
	return r
}

// Mark sends a request that the registry logs (GET /v2/ with a query unique
// to this registry; it may be answered 401) and waits for its log record:
// every earlier request's record has then been read. It returns the marker's
// URI, for Uploads and Requests.
func (r *Registry) Mark(t testing.TB) string {
	t.Helper()
	uri := "/v2/?e2e-marker=" + strconv.FormatInt(r.marks.Add(1), 10)
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get(r.Scheme + "://" + r.Addr + uri)
	if err != nil {
		t.Fatalf("marker request to %s: %v", r.Name, err)
	}
	resp.Body.Close()
	r.Log.Wait(t, 30*time.Second, "the marker request "+uri+" in "+r.Name+"'s log", func(rec Record) bool {
		return rec["http.request.uri"] == uri
	})
	return uri
}

// Requests returns the registry's request records between the marker after
// (or the start, when "") and the marker before (or the end, when ""),
// markers left out.
func (r *Registry) Requests(after, before string) []Record {
	var out []Record
	in := after == ""
	for _, rec := range r.Log.Records() {
		uri, ok := rec["http.request.uri"]
		if !ok {
			continue
		}
		switch {
		case after != "" && uri == after:
			in = true
			continue
		case before != "" && uri == before:
			return out
		case strings.HasPrefix(uri, "/v2/?e2e-marker="):
			continue
		}
		if in {
			out = append(out, rec)
		}
	}
	return out
}

// BlobTraffic is what a registry saw happen to blobs in a window of its
// log, read from its own request records.
type BlobTraffic struct {
	// Uploaded are the digests of uploads the registry completed (PUT
	// .../blobs/uploads/...?digest=D answered 201), one per upload.
	Uploaded []string
	// Mounted are the digests mounted from another repository (POST
	// .../blobs/uploads/?mount=D answered 201).
	Mounted []string
	// Sessions counts upload sessions opened (POST .../blobs/uploads/
	// answered 202) and Chunks the PATCHes sent into them.
	Sessions, Chunks int
}

// Blobs returns the blob traffic for repo among records.
func Blobs(records []Record, repo string) BlobTraffic {
	var bt BlobTraffic
	prefix := "/v2/" + repo + "/blobs/uploads/"
	for _, rec := range records {
		u, err := url.Parse(rec["http.request.uri"])
		if err != nil || !strings.HasPrefix(u.Path, prefix) {
			continue
		}
		status := rec["http.response.status"]
		switch rec["http.request.method"] {
		case http.MethodPost:
			if m := u.Query().Get("mount"); m != "" && status == "201" {
				bt.Mounted = append(bt.Mounted, m)
			} else if status == "202" {
				bt.Sessions++
			}
		case http.MethodPatch:
			bt.Chunks++
		case http.MethodPut:
			if status == "201" {
				bt.Uploaded = append(bt.Uploaded, u.Query().Get("digest"))
			}
		}
	}
	sort.Strings(bt.Uploaded)
	sort.Strings(bt.Mounted)
	return bt
}

// StoredBlobs returns the digests of every blob in the registry's storage
// (layers, configs and manifests alike), sorted.
func (r *Registry) StoredBlobs(t testing.TB) []string {
	t.Helper()
	return r.digestDirs(t, filepath.Join(r.Storage, "docker", "registry", "v2", "blobs", "sha256", "*", "*", "data"), 1)
}

// RepoBlobs returns the digests of the blobs (configs and layers, not
// manifests) that repo links in the registry's storage, sorted: what was
// uploaded or mounted into that repository.
func (r *Registry) RepoBlobs(t testing.TB, repo string) []string {
	t.Helper()
	return r.digestDirs(t, filepath.Join(r.Storage, "docker", "registry", "v2", "repositories", repo, "_layers", "sha256", "*", "link"), 1)
}

// digestDirs globs pattern and returns, for each match, "sha256:" + the
// name of the directory up levels above it.
func (r *Registry) digestDirs(t testing.TB, pattern string, up int) []string {
	t.Helper()
	matches, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range matches {
		d := m
		for i := 0; i < up; i++ {
			d = filepath.Dir(d)
		}
		out = append(out, "sha256:"+filepath.Base(d))
	}
	sort.Strings(out)
	return out
}

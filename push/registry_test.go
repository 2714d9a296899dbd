package push_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
)

// testRegistry is an in-memory registry that implements the push side of
// the distribution API as the CNCF registry does, with switches for what
// other registries do: authentication, a size limit on monolithic
// uploads, a minimum chunk size, media types it refuses, and faults.
type testRegistry struct {
	t   *testing.T
	srv *httptest.Server

	auth     string // "", "basic" or "bearer"
	user     string
	password string

	maxMonolithic int64           // a PUT with a larger body gets 413
	chunkMin      int64           // sent as OCI-Chunk-Min-Length
	refuseTypes   map[string]bool // manifest media types answered 400 MANIFEST_INVALID

	// fault, when set, may answer a request itself: it returns true when
	// it did.
	fault func(w http.ResponseWriter, r *http.Request) bool

	mu        sync.Mutex
	blobs     map[string]map[digest.Digest][]byte // repository → blobs
	manifests map[string]map[string][]byte        // repository → reference → manifest
	uploads   map[string][]byte
	requests  []string // "METHOD kind", in order
	arrived   []string // "METHOD path" of every request, before authorization or faults
	tokens    map[string]int
	issued    map[string][]string // token → scopes
}

func newTestRegistry(t *testing.T) *testRegistry {
	reg := &testRegistry{t: t, blobs: map[string]map[digest.Digest][]byte{}, manifests: map[string]map[string][]byte{},
		uploads: map[string][]byte{}, tokens: map[string]int{}, issued: map[string][]string{}}
	reg.srv = httptest.NewServer(reg)
	t.Cleanup(reg.srv.Close)
	return reg
}

// newTLSTestRegistry is a test registry served over HTTPS with its own
// certificate.
func newTLSTestRegistry(t *testing.T) *testRegistry {
	reg := &testRegistry{t: t, blobs: map[string]map[digest.Digest][]byte{}, manifests: map[string]map[string][]byte{},
		uploads: map[string][]byte{}, tokens: map[string]int{}, issued: map[string][]string{}}
	reg.srv = httptest.NewTLSServer(reg)
	t.Cleanup(reg.srv.Close)
	return reg
}

// host is the registry's host:port.
func (reg *testRegistry) host() string {
	return strings.TrimPrefix(strings.TrimPrefix(reg.srv.URL, "http://"), "https://")
}

func (reg *testRegistry) record(s string) {
	reg.mu.Lock()
	reg.requests = append(reg.requests, s)
	reg.mu.Unlock()
}

// count returns how many requests were recorded as s.
func (reg *testRegistry) count(s string) int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := 0
	for _, r := range reg.requests {
		if r == s {
			n++
		}
	}
	return n
}

// uploadRequests counts the requests that arrived for upload sessions
// (POST, PATCH or PUT under blobs/uploads/), whether or not they were
// authorized or answered by a fault.
func (reg *testRegistry) uploadRequests() int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := 0
	for _, r := range reg.arrived {
		if strings.Contains(r, "/blobs/uploads/") {
			n++
		}
	}
	return n
}

// putUploads counts the PUTs that arrived to close upload sessions.
func (reg *testRegistry) putUploads() int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	n := 0
	for _, r := range reg.arrived {
		if strings.HasPrefix(r, "PUT ") && strings.Contains(r, "/blobs/uploads/") {
			n++
		}
	}
	return n
}

func regError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q}]}`, code, msg)
}

func (reg *testRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reg.mu.Lock()
	reg.arrived = append(reg.arrived, r.Method+" "+r.URL.Path)
	reg.mu.Unlock()
	if r.URL.Path == "/token" {
		reg.serveToken(w, r)
		return
	}
	if reg.fault != nil && reg.fault(w, r) {
		return
	}
	if !reg.authorized(r) {
		switch reg.auth {
		case "basic":
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		case "bearer":
			scope := ""
			if name, _, ok := splitPath(r.URL.Path); ok {
				scope = fmt.Sprintf(`,scope="repository:%s:pull,push"`, name)
			}
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"%s`, reg.srv.URL, scope))
		}
		regError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	if r.URL.Path == "/v2/" {
		w.Write([]byte("{}"))
		return
	}
	name, rest, ok := splitPath(r.URL.Path)
	if !ok {
		regError(w, http.StatusNotFound, "NAME_UNKNOWN", "no route")
		return
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.blobs[name] == nil {
		reg.blobs[name] = map[digest.Digest][]byte{}
		reg.manifests[name] = map[string][]byte{}
	}
	switch {
	case r.Method == http.MethodHead && strings.HasPrefix(rest, "blobs/sha256:"):
		reg.requests = append(reg.requests, "HEAD blob")
		d := digest.Digest(strings.TrimPrefix(rest, "blobs/"))
		if data, ok := reg.blobs[name][d]; ok {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Header().Set("Docker-Content-Digest", d.String())
			return
		}
		w.WriteHeader(http.StatusNotFound)
	case r.Method == http.MethodPost && rest == "blobs/uploads/":
		q := r.URL.Query()
		if m, from := digest.Digest(q.Get("mount")), q.Get("from"); m != "" && from != "" {
			if data, ok := reg.blobs[from][m]; ok && reg.scopeAllows(r, from) {
				reg.requests = append(reg.requests, "POST mount")
				reg.blobs[name][m] = data
				w.Header().Set("Location", "/v2/"+name+"/blobs/"+m.String())
				w.WriteHeader(http.StatusCreated)
				return
			}
		}
		reg.requests = append(reg.requests, "POST upload")
		id := newID()
		reg.uploads[id] = []byte{}
		w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id+"?_state=x")
		if reg.chunkMin > 0 {
			w.Header().Set("OCI-Chunk-Min-Length", strconv.FormatInt(reg.chunkMin, 10))
		}
		w.Header().Set("Range", "0-0")
		w.WriteHeader(http.StatusAccepted)
	case (r.Method == http.MethodPatch || r.Method == http.MethodPut) && strings.HasPrefix(rest, "blobs/uploads/"):
		id := strings.TrimPrefix(rest, "blobs/uploads/")
		have, ok := reg.uploads[id]
		if !ok {
			regError(w, http.StatusNotFound, "BLOB_UPLOAD_UNKNOWN", "no such upload")
			return
		}
		if r.Method == http.MethodPut && reg.maxMonolithic > 0 && r.ContentLength > reg.maxMonolithic {
			reg.requests = append(reg.requests, "PUT too large")
			delete(reg.uploads, id)
			regError(w, http.StatusRequestEntityTooLarge, "SIZE_INVALID", "too large")
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		if r.Method == http.MethodPatch {
			reg.requests = append(reg.requests, "PATCH chunk")
			if cr := r.Header.Get("Content-Range"); cr != fmt.Sprintf("%d-%d", len(have), len(have)+len(body)-1) {
				regError(w, http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "bad range "+cr)
				return
			}
			if reg.chunkMin > 0 && int64(len(body)) < reg.chunkMin {
				// only the last chunk may be short; the test checks that
				reg.requests = append(reg.requests, "PATCH short")
			}
			reg.uploads[id] = append(have, body...)
			w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
			w.Header().Set("Range", fmt.Sprintf("0-%d", len(reg.uploads[id])-1))
			w.WriteHeader(http.StatusAccepted)
			return
		}
		reg.requests = append(reg.requests, "PUT blob")
		data := append(have, body...)
		d := digest.Digest(r.URL.Query().Get("digest"))
		if digest.FromBytes(data) != d {
			regError(w, http.StatusBadRequest, "DIGEST_INVALID", "digest mismatch")
			return
		}
		delete(reg.uploads, id)
		reg.blobs[name][d] = data
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPut && strings.HasPrefix(rest, "manifests/"):
		ref := strings.TrimPrefix(rest, "manifests/")
		reg.requests = append(reg.requests, "PUT manifest "+ref)
		mt := r.Header.Get("Content-Type")
		if reg.refuseTypes[mt] {
			regError(w, http.StatusBadRequest, "MANIFEST_INVALID", "manifest invalid")
			return
		}
		data, _ := io.ReadAll(r.Body)
		if !reg.reaches(name, data) {
			regError(w, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")
			return
		}
		reg.manifests[name][ref] = data
		reg.manifests[name][digest.FromBytes(data).String()] = data
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(data).String())
		w.WriteHeader(http.StatusCreated)
	default:
		regError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", r.Method+" "+rest)
	}
}

// reaches reports whether everything a manifest or list points at is
// already in the repository; the caller holds the lock.
func (reg *testRegistry) reaches(name string, data []byte) bool {
	var doc struct {
		Config    *struct{ Digest digest.Digest }
		Layers    []struct{ Digest digest.Digest }
		Manifests []struct{ Digest digest.Digest }
	}
	if json.Unmarshal(data, &doc) != nil {
		return false
	}
	if doc.Config != nil {
		if _, ok := reg.blobs[name][doc.Config.Digest]; !ok {
			return false
		}
	}
	for _, l := range doc.Layers {
		if _, ok := reg.blobs[name][l.Digest]; !ok {
			return false
		}
	}
	for _, m := range doc.Manifests {
		if _, ok := reg.manifests[name][m.Digest.String()]; !ok {
			return false
		}
	}
	return true
}

// splitPath splits /v2/<name>/<blobs|manifests>/... into name and rest.
func splitPath(p string) (name, rest string, ok bool) {
	p, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", false
	}
	for _, marker := range []string{"/blobs/", "/manifests/"} {
		if i := strings.Index(p, marker); i > 0 {
			return p[:i], p[i+1:], true
		}
	}
	return "", "", false
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// authorized checks the request's credentials against the auth mode.
func (reg *testRegistry) authorized(r *http.Request) bool {
	switch reg.auth {
	case "basic":
		u, p, ok := r.BasicAuth()
		return ok && u == reg.user && p == reg.password
	case "bearer":
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			return false
		}
		reg.mu.Lock()
		defer reg.mu.Unlock()
		_, ok = reg.issued[tok]
		return ok
	}
	return true
}

// scopeAllows reports whether the request's token may pull from repo (any
// request may when there is no bearer auth); the caller holds the lock.
func (reg *testRegistry) scopeAllows(r *http.Request, repo string) bool {
	if reg.auth != "bearer" {
		return true
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	for _, s := range reg.issued[tok] {
		if strings.HasPrefix(s, "repository:"+repo+":") {
			return true
		}
	}
	return false
}

// serveToken is the token service: basic credentials in, a token for the
// asked scopes out.
func (reg *testRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != reg.user || p != reg.password {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	q, _ := url.ParseQuery(r.URL.RawQuery)
	scopes := q["scope"]
	tok := newID()
	reg.mu.Lock()
	reg.tokens[strings.Join(scopes, " ")]++
	reg.issued[tok] = scopes
	reg.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]string{"token": tok})
}

package registry

import (
	"encoding/json"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/index"
)

// Registry serves one repository, holding one image list under one or more
// tags, read-only.
type Registry struct {
	name    string
	tags    []string
	content *index.Content
	log     *slog.Logger
	// streams holds a token for every blob download in flight; nil means
	// no limit.
	streams      chan struct{}
	stallTimeout time.Duration
	metrics      metrics
	// homeOnce reads the page's data from the content on first use.
	homeOnce sync.Once
	homeData *homeData
	// attestations are served beside the content and replaced whole by
	// SetAttestations while requests are answered.
	attestations atomic.Pointer[index.ArtifactSet]
}

// New returns a registry serving c as repository name under tags.
func New(c *index.Content, name string, tags []string, log *slog.Logger) *Registry {
	t := slices.Clone(tags)
	slices.Sort(t)
	t = slices.Compact(t)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{name: name, tags: t, content: c, log: log, stallTimeout: defaultStallTimeout}
}

// Limits bound what clients can hold of the registry.
type Limits struct {
	// MaxStreams caps the blob downloads sent at once (0: no cap). A
	// download beyond the cap gets 429 TOOMANYREQUESTS with Retry-After.
	MaxStreams int
	// StallTimeout is how long a download waits for its client to take each
	// piece of a blob before it gives up and frees its slot (0: 60s).
	StallTimeout time.Duration
}

// SetLimits applies l. Call it before serving.
func (reg *Registry) SetLimits(l Limits) {
	reg.streams = nil
	if l.MaxStreams > 0 {
		reg.streams = make(chan struct{}, l.MaxStreams)
	}
	reg.stallTimeout = l.StallTimeout
	if reg.stallTimeout <= 0 {
		reg.stallTimeout = defaultStallTimeout
	}
}

// SetAttestations serves the artifacts of s (nil: none) beside the
// content, in place of those set before; a request sees either set, never
// a mix.
func (reg *Registry) SetAttestations(s *index.ArtifactSet) { reg.attestations.Store(s) }

// Attestations returns the artifacts served beside the content, or nil.
func (reg *Registry) Attestations() *index.ArtifactSet { return reg.attestations.Load() }

// manifest returns the manifest with digest d: the list, an image's or an
// artifact's.
func (reg *Registry) manifest(d digest.Digest) (index.Blob, bool) {
	if m, ok := reg.content.Manifest(d); ok {
		return m, true
	}
	return reg.Attestations().Manifest(d)
}

// blob returns the blob with digest d: a config, a layer or an artifact's.
func (reg *Registry) blob(d digest.Digest) (index.Blob, bool) {
	if b, ok := reg.content.Blob(d); ok {
		return b, true
	}
	return reg.Attestations().Blob(d)
}

// Name returns the repository name served.
func (reg *Registry) Name() string { return reg.name }

// Tags returns the tags served, sorted.
func (reg *Registry) Tags() []string { return slices.Clone(reg.tags) }

// ServeHTTP routes a request, answers it and logs it.
func (reg *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	rec.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	reg.serve(rec, r)
	reg.metrics.observe(rec.route, rec.status(), rec.bytes)
	reg.log.Info("request",
		"method", r.Method, "path", r.URL.RequestURI(), "route", rec.route, "status", rec.status(),
		"bytes", rec.bytes, "duration", time.Since(start), "user_agent", r.UserAgent(),
		"remote", remoteHost(r.RemoteAddr))
}

// remoteHost returns the host part of a request's RemoteAddr ("10.0.0.2" of
// "10.0.0.2:41234"), or addr itself when it has no port.
func remoteHost(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

func (reg *Registry) serve(w *recorder, r *http.Request) {
	if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && acceptsHTML(r.Header.Values("Accept")) {
		w.route = "home"
		reg.serveHome(w, r)
		return
	}
	rt, ok, err := parseRoute(r.URL.EscapedPath())
	if !ok {
		w.route = "unknown"
		writeError(w, r, newError(ErrNotFound, "no such API endpoint "+quoteShort(r.URL.Path)))
		return
	}
	w.route = routeNames[rt.kind]
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, r, newError(ErrUnsupported, r.Method+" is not supported"))
		return
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	if rt.kind != routeBase && rt.kind != routeCatalog && rt.name != reg.name {
		writeError(w, r, newError(ErrNameUnknown, "repository "+quoteShort(rt.name)+" is not served here"))
		return
	}
	switch rt.kind {
	case routeBase:
		writeJSON(w, r, "application/json", struct{}{})
	case routeCatalog:
		reg.servePage(w, r, "repositories", []string{reg.name})
	case routeTags:
		reg.servePage(w, r, "tags", reg.tags)
	case routeManifest:
		reg.serveManifest(w, r, rt.ref)
	case routeBlob:
		reg.serveBlob(w, r, rt.ref)
	case routeReferrers:
		reg.serveReferrers(w, r, rt.ref)
	case routeUpload:
		writeError(w, r, newError(ErrUnsupported, "uploads are not supported: this registry is read-only"))
	}
}

// serveManifest answers a manifest request by tag or by digest.
func (reg *Registry) serveManifest(w http.ResponseWriter, r *http.Request, ref string) {
	var m index.Blob
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		if err != nil {
			writeError(w, r, err)
			return
		}
		var ok bool
		if m, ok = reg.manifest(d); !ok {
			writeError(w, r, newError(ErrManifestUnknown, "no manifest "+d.String()))
			return
		}
	} else {
		// An invalid tag can never be known: 404, as the conformance suite wants.
		if !ValidTag(ref) || !slices.Contains(reg.tags, ref) {
			writeError(w, r, newError(ErrManifestUnknown, "no tag "+quoteShort(ref)))
			return
		}
		m = reg.content.List
		if !acceptsList(r.Header.Values("Accept"), m.MediaType) {
			m = reg.content.Default().Manifest
		}
	}
	h := w.Header()
	h.Set("Content-Type", m.MediaType)
	h.Set("Docker-Content-Digest", m.Digest.String())
	tag := etag(m.Digest)
	h.Set("Etag", tag)
	h.Set("Vary", "Accept")
	if notModified(r, tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.Data)
	}
}

// acceptsList reports whether a request with these Accept headers may get
// the manifest list of type listType. The most specific range that matches
// decides, by its quality: listType itself, then the other family's list
// type, then application/*, then */*; a q of 0 refuses. When no range
// matches, the list is served unless the request names a single-manifest
// type: only a client that asks for platform manifests and no list gets one
// instead, and a client that names nothing it reads gets the list.
func acceptsList(accept []string, listType string) bool {
	const (
		none = iota
		any
		appAny
		otherList
		exact
	)
	best, bestQ := none, 0.0
	namesManifest := false
	for _, v := range accept {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := quality(params)
			rank := none
			switch {
			case mt == listType:
				rank = exact
			case index.IsList(mt):
				rank = otherList
			case mt == "application/*":
				rank = appAny
			case mt == "*/*":
				rank = any
			case index.IsManifest(mt) && q > 0:
				namesManifest = true
			}
			if rank > best || (rank == best && rank != none && q > bestQ) {
				best, bestQ = rank, q
			}
		}
	}
	if best == none {
		return !namesManifest
	}
	return bestQ > 0
}

// quality returns the q parameter of an Accept range: 1 when absent or
// malformed, as RFC 9110 reads it.
func quality(params map[string]string) float64 {
	v, ok := params["q"]
	if !ok {
		return 1
	}
	q, err := strconv.ParseFloat(v, 64)
	if err != nil || q < 0 || q > 1 {
		return 1
	}
	return q
}

// serveBlob answers a blob request, with ranges.
func (reg *Registry) serveBlob(w http.ResponseWriter, r *http.Request, ref string) {
	d, apiErr := parseDigest(ref)
	if apiErr != nil {
		writeError(w, r, apiErr)
		return
	}
	b, ok := reg.blob(d)
	if !ok {
		writeError(w, r, newError(ErrBlobUnknown, "no blob "+d.String()))
		return
	}
	tag := etag(d)
	h := w.Header()
	if notModified(r, tag) {
		setBlobHeaders(h, d, tag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	start, end := int64(0), b.Size
	status := http.StatusOK
	if spec := r.Header.Get("Range"); spec != "" && ifRangeMatches(r, tag) {
		rg, err := parseRange(spec, b.Size)
		switch {
		case err == errUnsatisfiable:
			// The error is not the blob: no ETag, and nothing that lets a
			// cache keep it for a year (as http.ServeContent does).
			h.Set("Docker-Content-Digest", d.String())
			h.Set("Accept-Ranges", "bytes")
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(b.Size, 10))
			writeError(w, r, newError(ErrRangeInvalid, "range "+quoteShort(spec)+" is outside the blob's "+strconv.FormatInt(b.Size, 10)+" bytes"))
			return
		case err == nil:
			start, end = rg.start, rg.end
			status = http.StatusPartialContent
		}
		// A malformed or multi-part range is ignored: the whole blob is sent.
	}
	release := func() {}
	if r.Method != http.MethodHead && reg.streams != nil {
		// A download takes a slot; HEAD, 304 and 416 answers do not.
		select {
		case reg.streams <- struct{}{}:
			release = func() { <-reg.streams }
		default:
			h.Set("Retry-After", "1")
			writeError(w, r, newError(ErrTooManyRequests, "too many blob downloads at once; retry shortly"))
			return
		}
	}
	setBlobHeaders(h, d, tag)
	if status == http.StatusPartialContent {
		h.Set("Content-Range", "bytes "+strconv.FormatInt(start, 10)+"-"+strconv.FormatInt(end-1, 10)+"/"+strconv.FormatInt(b.Size, 10))
	}
	h.Set("Content-Length", strconv.FormatInt(end-start, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	reg.metrics.streams.Add(1)
	defer func() {
		// the slot first: once the gauge falls, the next download finds it free
		release()
		reg.metrics.streams.Add(-1)
	}()
	sendBlob(w, b, start, end, reg.stallTimeout)
}

// setBlobHeaders describes a blob in a response that carries it (or, for
// 304, stands for it).
func setBlobHeaders(h http.Header, d digest.Digest, tag string) {
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", tag)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
}

// Blobs are sent in pieces of sendPiece bytes, each of which the client
// must take within the stall timeout: a client that stops reading gives its
// stream slot back instead of holding it for ever.
const (
	sendPiece           = 1 << 20
	defaultStallTimeout = 60 * time.Second
)

// sendBlob writes bytes [start, end) of b, in pieces the client must take
// within stall each.
func sendBlob(w http.ResponseWriter, b index.Blob, start, end int64, stall time.Duration) {
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) // the connection may serve more requests
	_ = rc.SetWriteDeadline(time.Now().Add(stall))
	// The header goes out now, so that net/http sends the body straight
	// from ReadFrom rather than first reading 512 bytes to sniff a content
	// type that is already set.
	if rc.Flush() != nil {
		return
	}
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		rf = writerReaderFrom{w}
	}
	src := &blobSource{b: b, off: start}
	for src.off < end {
		_ = rc.SetWriteDeadline(time.Now().Add(stall))
		src.end = min(src.off+sendPiece, end)
		if _, err := rf.ReadFrom(src); err != nil || src.off < src.end {
			return
		}
	}
}

// writerReaderFrom gives a ResponseWriter without ReadFrom the plain copy.
type writerReaderFrom struct{ http.ResponseWriter }

func (w writerReaderFrom) ReadFrom(src io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
}

// blobSource reads bytes [off, end) of a blob. A layer held in a memory
// file is read from that file at off (the descriptor is shared by every
// download; no read moves its position), and written to a connection with
// sendfile when the writer is one (see sendFile): net/http hands the TCP
// connection of an HTTP/1.1 response to WriteTo through ReadFrom, after
// flushing what it buffered. Other blobs are read from memory.
type blobSource struct {
	b        index.Blob
	off, end int64
}

func (s *blobSource) Read(p []byte) (int, error) {
	if s.off >= s.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.end-s.off)]
	var n int
	var err error
	if s.b.File != nil {
		n, err = s.b.File.ReadAt(p, s.off)
		if n == len(p) {
			err = nil
		}
	} else {
		n = copy(p, s.b.Data[s.off:])
	}
	s.off += int64(n)
	return n, err
}

// WriteTo writes the rest of the source to w: with sendfile when it can,
// else copied from memory or through a buffer.
func (s *blobSource) WriteTo(w io.Writer) (int64, error) {
	if s.off >= s.end {
		return 0, nil
	}
	if s.b.File == nil {
		n, err := w.Write(s.b.Data[s.off:s.end])
		s.off += int64(n)
		return int64(n), err
	}
	if n, err, handled := sendFile(w, s.b.File, &s.off, s.end); handled {
		return n, err
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return io.CopyBuffer(w, struct{ io.Reader }{s}, *buf)
}

// copyBufs hold the buffers blobs are copied through when sendfile cannot
// send them (over TLS, for one).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// serveReferrers answers the referrers API: an OCI index of the artifacts
// (SBOMs, then attestations) whose subject is the digest, with their artifactType and
// annotations, filtered by ?artifactType= when given. A subject with no
// referrers, known or not, gets an empty index.
func (reg *Registry) serveReferrers(w http.ResponseWriter, r *http.Request, ref string) {
	d, err := parseDigest(ref)
	if err != nil {
		writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	if q.Has("artifactType") {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	manifests := append(reg.content.Referrers(d, q.Get("artifactType")), reg.Attestations().Referrers(d, q.Get("artifactType"))...)
	writeJSON(w, r, index.OCI.MediaTypes().List, index.List{
		SchemaVersion: 2, MediaType: index.OCI.MediaTypes().List, Manifests: manifests,
	})
}

// servePage answers a paginated list (tags or catalog) with n and last, and
// a Link header when more entries follow.
func (reg *Registry) servePage(w http.ResponseWriter, r *http.Request, key string, all []string) {
	q := r.URL.Query()
	entries := all
	if last := q.Get("last"); last != "" {
		i, _ := slices.BinarySearch(entries, last)
		for i < len(entries) && entries[i] <= last {
			i++
		}
		entries = entries[i:]
	}
	more := false
	if q.Has("n") {
		n, err := strconv.Atoi(q.Get("n"))
		if err != nil || n < 0 {
			writeError(w, r, newError(ErrPaginationInvalid, "n must be a whole number from 0, not "+quoteShort(q.Get("n"))))
			return
		}
		if n < len(entries) {
			entries, more = entries[:n], true
		}
	}
	if more && len(entries) > 0 {
		next := url.Values{"n": {q.Get("n")}, "last": {entries[len(entries)-1]}}
		w.Header().Set("Link", "<"+r.URL.Path+"?"+next.Encode()+`>; rel="next"`)
	}
	if entries == nil {
		entries = []string{}
	}
	body := map[string]any{key: entries}
	if key == "tags" {
		body["name"] = reg.name
	}
	writeJSON(w, r, "application/json", body)
}

// etag is the entity tag of content with digest d: the quoted digest.
func etag(d digest.Digest) string { return `"` + d.String() + `"` }

// ifRangeMatches reports whether a Range request's If-Range (if any) still
// names this blob; when it does not, the whole blob is sent.
func ifRangeMatches(r *http.Request, tag string) bool {
	v := r.Header.Get("If-Range")
	return v == "" || v == tag
}

// notModified reports whether If-None-Match names the entity tag.
func notModified(r *http.Request, tag string) bool {
	for _, v := range r.Header.Values("If-None-Match") {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == "*" || t == tag {
				return true
			}
		}
	}
	return false
}

// writeJSON sends v as JSON.
func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) {
	body, _ := json.Marshal(v)
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// recorder remembers the status and size of a response for the access log.
type recorder struct {
	http.ResponseWriter
	route string
	code  int
	bytes int64
}

func (rec *recorder) WriteHeader(code int) {
	if rec.code == 0 {
		rec.code = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(p)
	rec.bytes += int64(n)
	return n, err
}

// ReadFrom hands a copy to the underlying writer's ReadFrom, which is what
// lets net/http send a file with sendfile.
func (rec *recorder) ReadFrom(src io.Reader) (int64, error) {
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := rec.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{rec.ResponseWriter}, src)
	}
	rec.bytes += n
	return n, err
}

func (rec *recorder) status() int {
	if rec.code == 0 {
		return http.StatusOK
	}
	return rec.code
}

// Unwrap lets http.ResponseController reach the connection.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

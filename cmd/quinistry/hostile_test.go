//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/registry"
)

// These tests run a real server in-process: content packed by index.Build,
// the registry behind the front door, and the http.Server that serve uses,
// on a loopback listener. Hostile requests are written as raw bytes on TCP
// connections, and every read has a deadline, so that a hang fails the test
// rather than stalling it.

// hostileRepo is the repository the test servers serve.
const hostileRepo = "hostile/quinistry"

// ioDeadline bounds every read and write on a test connection. A test that
// reaches it has found a hang.
const ioDeadline = 10 * time.Second

// testHeaderTimeout stands in for the 10 s ReadHeaderTimeout of production,
// so that slow clients are cut off quickly.
const testHeaderTimeout = 300 * time.Millisecond

// hostileContent packs two fake binaries, once for all the tests here (the
// content is read-only, and is released when the test binary exits). The
// linux/amd64 one is 4 MiB of random bytes, which gzip cannot shrink, so that
// a download of its layer cannot fit in the sockets' buffers (see
// smallSendBuffers) and stays in flight while its client does not read; the
// linux/arm64 one is small, for exact range checks.
func hostileContent(t *testing.T) (c *index.Content, big, small index.Blob) {
	t.Helper()
	c, err := sharedContent()
	require.NoError(t, err)
	big, small = c.Layers[0], c.Layers[1]
	require.Greater(t, big.Size, int64(4<<20), "the big layer did not stay big")
	require.Less(t, small.Size, int64(1<<20))
	return c, big, small
}

var sharedContent = sync.OnceValues(func() (*index.Content, error) {
	c, err := testcontent.Pack(index.Options{},
		testcontent.Fake{Platform: testcontent.Amd64, Size: 4 << 20, Seed: 1},
		testcontent.Fake{Platform: testcontent.Arm64, Size: 64 << 10, Seed: 2})
	if err != nil {
		return nil, err
	}
	if len(c.Layers) != 2 {
		return nil, fmt.Errorf("%d layers, want 2", len(c.Layers))
	}
	return c, c.Verify()
})

// smallSendBuffers is a listener whose connections have a 256 KiB send
// buffer, so that what a client holds in flight does not depend on the
// kernel's buffer tuning. The connections stay *net.TCPConn, so that
// net/http still sends layers with sendfile.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(256 << 10)
	}
	return c, err
}

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is a real server on 127.0.0.1.
type testServer struct {
	addr string
	srv  *http.Server
	reg  *registry.Registry
	// logs holds everything the registry and net/http logged, at every
	// level: net/http reports a recovered handler panic there.
	logs   *lockedBuffer
	served chan error
}

// startServer serves c with the server serve builds, its header timeout
// replaced by headerTimeout when that is not zero, and the registry held to
// limits. The server is closed when the test
// ends, and its log must then hold no sign of a panic.
func startServer(t *testing.T, c *index.Content, headerTimeout time.Duration, limits registry.Limits) *testServer {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := registry.New(c, hostileRepo, []string{"latest"}, log)
	reg.SetLimits(limits)
	front := newFrontDoor()
	front.open(reg, time.Millisecond)
	srv := newHTTPServer(front, log)
	if headerTimeout > 0 {
		srv.ReadHeaderTimeout = headerTimeout
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts := &testServer{addr: ln.Addr().String(), srv: srv, reg: reg, logs: logs, served: make(chan error, 1)}
	go func() { ts.served <- srv.Serve(smallSendBuffers{ln}) }()
	t.Cleanup(func() {
		_ = srv.Close()
		select {
		case err := <-ts.served:
			assert.ErrorIs(t, err, http.ErrServerClosed)
		case <-time.After(ioDeadline):
			t.Error("Serve did not return after Close")
		}
		ts.requireCleanLog(t)
	})
	return ts
}

// requireCleanLog fails the test when net/http logged a recovered panic, a
// superfluous WriteHeader (a handler bug) or an accept error.
func (ts *testServer) requireCleanLog(t *testing.T) {
	t.Helper()
	for line := range strings.Lines(ts.logs.String()) {
		for _, bad := range []string{"panic serving", "superfluous", "Accept error"} {
			if strings.Contains(line, bad) {
				t.Errorf("server log: %.1000s", line)
			}
		}
	}
}

// client is an HTTP client for the checks around the hostile requests.
func (ts *testServer) client() *http.Client {
	return &http.Client{Timeout: ioDeadline, Transport: &http.Transport{DisableKeepAlives: true}}
}

// get fetches path with an ordinary client and returns the status and body.
func (ts *testServer) get(t *testing.T, path string) (int, []byte) {
	t.Helper()
	resp, err := ts.client().Get("http://" + ts.addr + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, body
}

var inFlightRE = regexp.MustCompile(`(?m)^quinistry_blob_streams_in_flight (\d+)$`)

// streamsInFlight reads quinistry_blob_streams_in_flight from /metrics.
func (ts *testServer) streamsInFlight(t *testing.T) int {
	t.Helper()
	resp, err := ts.client().Get("http://" + ts.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/plain; version=0.0.4; charset=utf-8", resp.Header.Get("Content-Type"), "the Prometheus text format")
	m := inFlightRE.FindSubmatch(body)
	require.NotNil(t, m, "no quinistry_blob_streams_in_flight in /metrics:\n%s", body)
	n, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	return n
}

// waitFor polls cond every 20 ms, at most 500 times (10 s), and fails the
// test when it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gave up waiting for %s", what)
}

// requireAnswers checks that the server still answers /v2/ at once.
func (ts *testServer) requireAnswers(t *testing.T) {
	t.Helper()
	status, body := ts.get(t, "/v2/")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{}`, string(body))
}

// dial opens a connection to the server with every read and write bounded
// by ioDeadline. A positive rcvbuf shrinks the socket's receive buffer, so
// that a response the client does not read stays in the server's hands.
func (ts *testServer) dial(t *testing.T, rcvbuf int) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: ioDeadline}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	conn, err := d.Dial("tcp", ts.addr)
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Now().Add(ioDeadline)))
	return conn
}

// outcome is what came back for one raw request: a response, or a closed
// connection.
type outcome struct {
	resp *http.Response
	body []byte
	// bodyErr is the error that ended the body, if it did not end cleanly.
	bodyErr error
}

// exchange writes a request with send (from another goroutine, so that a
// server that answers before it has read everything is seen) and reads one
// response. A response to HEAD is read without a body. A read that reaches
// its deadline fails the test: the server hung.
func (ts *testServer) exchange(t *testing.T, method string, send func(net.Conn)) outcome {
	t.Helper()
	conn := ts.dial(t, 0)
	defer conn.Close()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		send(conn)
	}()
	defer func() {
		conn.Close()
		<-sent
	}()
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		requireNotTimeout(t, err)
		return outcome{}
	}
	body, err := io.ReadAll(resp.Body)
	requireNotTimeout(t, err)
	return outcome{resp: resp, body: body, bodyErr: err}
}

// requireNotTimeout fails the test when err is a deadline: the server hung.
func requireNotTimeout(t *testing.T, err error) {
	t.Helper()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("no answer and no close within %s: %v", ioDeadline, err)
	}
}

// raw sends s in one write. Errors are ignored: the server may close the
// connection before it has read everything.
func raw(s string) func(net.Conn) {
	return func(c net.Conn) { _, _ = io.WriteString(c, s) }
}

// req builds a request head: the request line, Host, Connection: close,
// then the extra header lines given, then the blank line.
func req(method, target string, extra ...string) string {
	var b strings.Builder
	b.WriteString(method + " " + target + " HTTP/1.1\r\nHost: registry.test\r\nConnection: close\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// headerLines returns n header lines named prefix-i holding value.
func headerLines(n int, prefix, value string) []string {
	lines := make([]string, n)
	for i := range lines {
		lines[i] = prefix + "-" + strconv.Itoa(i) + ": " + value
	}
	return lines
}

// dribble writes head one byte every interval, up to n bytes, stopping when
// a write fails (the server closed the connection).
func dribble(head string, interval time.Duration) func(net.Conn) {
	return func(c net.Conn) {
		for i := range len(head) {
			if _, err := c.Write([]byte{head[i]}); err != nil {
				return
			}
			time.Sleep(interval)
		}
	}
}

// hostileCase is one hostile request and the answer it must get.
type hostileCase struct {
	name string
	// method is the request's method as far as reading the response goes
	// (HEAD has no body); GET when empty.
	method string
	// send writes the request.
	send func(net.Conn)
	// status is the status wanted.
	status int
	// cutOff means that the server must cut the connection instead: close
	// it without a response, or answer 400 and close it.
	cutOff bool
	// code is the spec error code the JSON body must carry; empty for
	// answers that are not API errors (net/http's own 400 and 431, and
	// successes).
	code string
	// body, when not nil, is the exact body wanted.
	body []byte
	// check, when not nil, checks more.
	check func(t *testing.T, o outcome)
}

func TestHostileRequests(t *testing.T) {
	c, _, small := hostileContent(t)
	ts := startServer(t, c, testHeaderTimeout, registry.Limits{})

	blobs := "/v2/" + hostileRepo + "/blobs/"
	manifests := "/v2/" + hostileRepo + "/manifests/"
	smallURL := blobs + small.Digest.String()
	hex64 := strings.Repeat("ab", 32)
	zeros := func(n int) string { return strings.Repeat("0", n) }
	sizeStr := strconv.FormatInt(small.Size, 10)

	// wholeBlob and partOf check a blob response's bytes and headers.
	wholeBlob := func(t *testing.T, o outcome) {
		assert.Empty(t, o.resp.Header.Get("Content-Range"))
		assert.Equal(t, small.Digest.String(), o.resp.Header.Get("Docker-Content-Digest"))
	}
	partOf := func(start, end int64) func(*testing.T, outcome) {
		return func(t *testing.T, o outcome) {
			assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", start, end-1, small.Size), o.resp.Header.Get("Content-Range"))
			assert.True(t, bytes.Equal(small.Data[start:end], o.body), "body is bytes [%d, %d) of the blob", start, end)
		}
	}
	rangeGet := func(spec string) func(net.Conn) { return raw(req("GET", smallURL, "Range: "+spec)) }
	manyParts := make([]string, 2000)
	for i := range manyParts {
		manyParts[i] = fmt.Sprintf("%d-%d", i, i)
	}
	hugeAccept := strings.TrimSuffix(strings.Repeat("text/plain;q=0.1, ", 3000), ", ")

	tests := []hostileCase{
		// Path traversal and encoded separators in names.
		{name: "dot-dot after /v2/", send: raw(req("GET", "/v2/../")), status: 404, code: "NOT_FOUND"},
		{name: "dot-dot to /etc/passwd", send: raw(req("GET", "/v2/../../../../etc/passwd")), status: 404, code: "NOT_FOUND"},
		{name: "dot-dot inside the name", send: raw(req("GET", "/v2/"+hostileRepo+"/../../../etc/manifests/latest")), status: 400, code: "NAME_INVALID"},
		{name: "dot-dot name of the repository", send: raw(req("GET", "/v2/../"+hostileRepo+"/manifests/latest")), status: 400, code: "NAME_INVALID"},
		{name: "dot-dot after blobs", send: raw(req("GET", blobs+"../../../../etc/passwd")), status: 404, code: "NOT_FOUND"},
		{name: "dot-dot as the tag", send: raw(req("GET", manifests+"..")), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "dot as the name", send: raw(req("GET", "/v2/./manifests/latest")), status: 400, code: "NAME_INVALID"},
		{name: "encoded slash in the name", send: raw(req("GET", "/v2/hostile%2Fquinistry/manifests/latest")), status: 404, code: "NOT_FOUND"},
		{name: "lower-case encoded slash", send: raw(req("GET", "/v2/hostile%2fquinistry/manifests/latest")), status: 404, code: "NOT_FOUND"},
		{name: "encoded dot-dot", send: raw(req("GET", "/v2/%2e%2e/%2e%2e/etc/manifests/latest")), status: 404, code: "NOT_FOUND"},
		{name: "encoded slash in the digest", send: raw(req("GET", blobs+"..%2F..%2Fetc%2Fpasswd")), status: 404, code: "NOT_FOUND"},
		{name: "double-encoded slash", send: raw(req("GET", "/v2/hostile%252Fquinistry/manifests/latest")), status: 404, code: "NOT_FOUND"},
		{name: "encoded NUL", send: raw(req("GET", manifests+"latest%00")), status: 404, code: "NOT_FOUND"},
		{name: "backslashes", send: raw(req("GET", `/v2/hostile\..\..\quinistry/manifests/latest`)), status: 404, code: "NOT_FOUND"},
		{name: "double slash before v2", send: raw(req("GET", "//v2/"+hostileRepo+"/manifests/latest")), status: 404, code: "NOT_FOUND"},
		{name: "empty name component", send: raw(req("GET", "/v2/hostile//quinistry/manifests/latest")), status: 400, code: "NAME_INVALID"},
		{name: "raw bytes that are not UTF-8", send: raw(req("GET", "/v2/\xff\xfe/manifests/latest")), status: 404, code: "NOT_FOUND"},
		{name: "raw NUL in the request line", send: raw(req("GET", "/v2/\x00/manifests/latest")), status: 400},
		{name: "unknown repository", send: raw(req("GET", "/v2/other/manifests/latest")), status: 404, code: "NAME_UNKNOWN"},

		// Over-long names, tags and digests.
		{name: "name of 256 characters", send: raw(req("GET", "/v2/"+strings.Repeat("a", 256)+"/manifests/latest")), status: 400, code: "NAME_INVALID"},
		{name: "name of 255 characters", send: raw(req("GET", "/v2/"+strings.Repeat("a", 255)+"/manifests/latest")), status: 404, code: "NAME_UNKNOWN"},
		{name: "name of 60000 characters", send: raw(req("GET", "/v2/"+strings.Repeat("a/", 30000)+"manifests/latest")), status: 400, code: "NAME_INVALID"},
		{name: "request line beyond the header limit", send: raw(req("GET", "/v2/"+strings.Repeat("a", 100<<10)+"/manifests/latest")), status: 431},
		{name: "tag of 129 characters", send: raw(req("GET", manifests+strings.Repeat("t", 129))), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "tag of 50000 characters", send: raw(req("GET", manifests+strings.Repeat("t", 50000))), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "digest one digit too long", send: raw(req("GET", blobs+"sha256:"+hex64+"a")), status: 400, code: "DIGEST_INVALID"},
		{name: "digest one digit too short", send: raw(req("GET", blobs+"sha256:"+hex64[1:])), status: 400, code: "DIGEST_INVALID"},
		{name: "digest of 50000 digits", send: raw(req("GET", blobs+"sha256:"+zeros(50000))), status: 400, code: "DIGEST_INVALID"},
		{name: "manifest by over-long digest", send: raw(req("GET", manifests+"sha256:"+zeros(65))), status: 400, code: "DIGEST_INVALID"},
		{name: "upper-case hex digest", send: raw(req("GET", blobs+"sha256:"+strings.ToUpper(hex64))), status: 400, code: "DIGEST_INVALID"},
		{name: "empty digest", send: raw(req("GET", blobs+"sha256:")), status: 400, code: "DIGEST_INVALID"},

		// Unknown digest algorithms.
		{name: "md5 blob", send: raw(req("GET", blobs+"md5:"+zeros(32))), status: 400, code: "DIGEST_INVALID"},
		{name: "sha1 blob", send: raw(req("GET", blobs+"sha1:"+zeros(40))), status: 400, code: "DIGEST_INVALID"},
		{name: "upper-case algorithm", send: raw(req("GET", blobs+"SHA256:"+hex64)), status: 400, code: "DIGEST_INVALID"},
		{name: "made-up algorithm", send: raw(req("GET", blobs+"blake9:"+hex64)), status: 400, code: "DIGEST_INVALID"},
		{name: "md5 manifest", send: raw(req("GET", manifests+"md5:"+zeros(32))), status: 400, code: "DIGEST_INVALID"},
		{name: "md5 referrers", send: raw(req("GET", "/v2/"+hostileRepo+"/referrers/md5:"+zeros(32))), status: 400, code: "DIGEST_INVALID"},
		{name: "known algorithm, unknown blob", send: raw(req("GET", blobs+"sha512:"+zeros(128))), status: 404, code: "BLOB_UNKNOWN"},

		// Malformed, reversed, overflowing and multi-part ranges: a range
		// that cannot be served is ignored (the whole blob is sent); one
		// that selects nothing gets 416.
		{name: "range reversed", send: rangeGet("bytes=10-5"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range start overflows", send: rangeGet("bytes=99999999999999999999-"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range end overflows", send: rangeGet("bytes=0-99999999999999999999"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range suffix overflows", send: rangeGet("bytes=-99999999999999999999"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range end at MaxInt64", send: rangeGet("bytes=0-9223372036854775807"), status: 206, check: partOf(0, small.Size)},
		{name: "range start at MaxInt64", send: rangeGet("bytes=9223372036854775807-"), status: 416, code: "RANGE_INVALID",
			check: func(t *testing.T, o outcome) { assert.Equal(t, "bytes */"+sizeStr, o.resp.Header.Get("Content-Range")) }},
		{name: "range suffix beyond the blob", send: rangeGet("bytes=-" + strconv.FormatInt(small.Size+1000, 10)), status: 206, check: partOf(0, small.Size)},
		{name: "range starting at the end", send: rangeGet("bytes=" + sizeStr + "-"), status: 416, code: "RANGE_INVALID"},
		{name: "range suffix of zero", send: rangeGet("bytes=-0"), status: 416, code: "RANGE_INVALID"},
		{name: "range negative", send: rangeGet("bytes=-5-10"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range with a sign", send: rangeGet("bytes=+5-10"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range in another unit", send: rangeGet("items=0-5"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range empty", send: rangeGet("bytes="), status: 200, body: small.Data, check: wholeBlob},
		{name: "range of two parts", send: rangeGet("bytes=0-1,3-4"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range of 2000 parts", send: rangeGet("bytes=" + strings.Join(manyParts, ",")), status: 200, body: small.Data, check: wholeBlob},
		{name: "range with non-ASCII digits", send: rangeGet("bytes=\u0661-\u0662"), status: 200, body: small.Data, check: wholeBlob},
		{name: "range valid", send: rangeGet("bytes=5-20"), status: 206, check: partOf(5, 21)},
		{name: "range repeated", send: raw(req("GET", smallURL, "Range: bytes=1-2", "Range: bytes=3-4")), status: 206, check: partOf(1, 3)},

		// Unknown and unsupported methods; bodies are refused unread.
		{name: "BREW", send: raw(req("BREW", "/v2/")), status: 405, code: "UNSUPPORTED",
			check: func(t *testing.T, o outcome) { assert.Equal(t, "GET, HEAD", o.resp.Header.Get("Allow")) }},
		{name: "PROPFIND", send: raw(req("PROPFIND", manifests+"latest", "Depth: infinity")), status: 405, code: "UNSUPPORTED"},
		{name: "TRACE", send: raw(req("TRACE", "/v2/")), status: 405, code: "UNSUPPORTED"},
		{name: "lower-case get", send: raw(req("get", "/v2/")), status: 405, code: "UNSUPPORTED"},
		{name: "DELETE a blob", send: raw(req("DELETE", smallURL)), status: 405, code: "UNSUPPORTED"},
		{name: "POST an upload", send: raw(req("POST", blobs+"uploads/", "Content-Length: 0")), status: 405, code: "UNSUPPORTED"},
		{name: "PUT a manifest with a 1 GiB body never sent", send: raw(req("PUT", manifests+"latest", "Content-Length: 1073741824", "Content-Type: application/json") + "{"),
			status: 405, code: "UNSUPPORTED"},
		{name: "PUT expecting 100-continue gets no 100", send: raw(req("PUT", manifests+"latest", "Content-Length: 1073741824", "Expect: 100-continue")),
			status: 405, code: "UNSUPPORTED"},
		{name: "GET with a 1 GiB body never sent", send: raw(req("GET", "/v2/", "Content-Length: 1073741824") + "x"), status: 200, body: []byte("{}")},
		{name: "HEAD with a reversed range", method: http.MethodHead, send: raw(req("HEAD", smallURL, "Range: bytes=9-1")), status: 200, body: []byte{},
			check: func(t *testing.T, o outcome) { assert.Equal(t, small.Size, o.resp.ContentLength) }},
		{name: "PATCH with a chunked body that never ends", send: raw(req("PATCH", blobs+"uploads/x", "Transfer-Encoding: chunked") + "1000\r\nabc"),
			status: 405, code: "UNSUPPORTED"},
		{name: "method that is not a token", send: raw(req("GE(T", "/v2/")), status: 400},
		{name: "CONNECT to another port", send: raw("CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"), status: 404, code: "NOT_FOUND"},
		{name: "OPTIONS *", send: raw(req("OPTIONS", "*")), status: 200, body: []byte{}},
		{name: "GET *", send: raw(req("GET", "*")), status: 404, code: "NOT_FOUND"},

		// Absolute-form request URIs: served as the path they name, never
		// fetched from elsewhere.
		{name: "absolute-form /v2/", send: raw(req("GET", "http://x/v2/")), status: 200, body: []byte("{}")},
		{name: "absolute-form with credentials and another host", send: raw(req("GET", "http://user:pass@elsewhere.example:99/v2/"+hostileRepo+"/tags/list")), status: 200,
			check: func(t *testing.T, o outcome) {
				assert.JSONEq(t, `{"name":"`+hostileRepo+`","tags":["latest"]}`, string(o.body))
			}},
		{name: "absolute-form traversal", send: raw(req("GET", "http://x/v2/../../etc/passwd")), status: 404, code: "NOT_FOUND"},
		{name: "absolute-form https", send: raw(req("GET", "https://x/v2/"+hostileRepo+"/manifests/sha256:"+zeros(64))), status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "absolute-form with a bad port", send: raw(req("GET", "http://x:port/v2/")), status: 400},

		// Malformed requests, answered by net/http before the API sees them.
		{name: "HTTP/1.1 without Host", send: raw("GET /v2/ HTTP/1.1\r\n\r\n"), status: 400},
		{name: "two Host headers", send: raw("GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), status: 400},
		{name: "HTTP/1.0 without Host", send: raw("GET /v2/ HTTP/1.0\r\n\r\n"), status: 200, body: []byte("{}")},
		{name: "unknown HTTP version", send: raw("GET /v2/ HTTP/3.7\r\nHost: x\r\n\r\n"), status: 505},
		{name: "garbled HTTP version", send: raw("GET /v2/ HTTQ/1.1\r\nHost: x\r\n\r\n"), status: 400},
		{name: "two different Content-Lengths", send: raw(req("GET", "/v2/", "Content-Length: 1", "Content-Length: 2")), status: 400},
		{name: "negative Content-Length", send: raw(req("GET", "/v2/", "Content-Length: -1")), status: 400},
		// net/http drops Content-Length when Transfer-Encoding is set, as RFC 9112 allows.
		{name: "Content-Length and chunked together", send: raw(req("POST", "/v2/", "Content-Length: 4", "Transfer-Encoding: chunked") + "0\r\n\r\n"), status: 405, code: "UNSUPPORTED"},
		{name: "unknown transfer coding", send: raw(req("POST", "/v2/", "Transfer-Encoding: gzip")), status: 501},
		{name: "header without a colon", send: raw(req("GET", "/v2/", "Nonsense")), status: 400},
		{name: "header name with a space", send: raw(req("GET", "/v2/", "Bad Name: x")), status: 400},
		{name: "NUL in a header value", send: raw(req("GET", "/v2/", "X-A: a\x00b")), status: 400},
		// net/http unfolds obs-fold, as RFC 9112 allows.
		{name: "folded header line", send: raw(req("GET", "/v2/", "X-A: a", " b")), status: 200, body: []byte("{}")},
		{name: "TLS handshake on the plain port", send: raw("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 64)), cutOff: true},
		{name: "random bytes", send: func(c net.Conn) {
			b := make([]byte, 4096)
			_, _ = rand.NewChaCha8([32]byte{7}).Read(b)
			_, _ = c.Write(b)
		}, status: 400},

		// Oversized headers and header floods.
		{name: "one header of 80 KiB", send: raw(req("GET", "/v2/", "X-Big: "+strings.Repeat("x", 80<<10))), status: 431},
		{name: "100 headers of 1 KiB", send: raw(req("GET", "/v2/", headerLines(100, "X-K", strings.Repeat("k", 1024))...)), status: 431},
		{name: "1 MiB of headers", send: raw(req("GET", "/v2/", headerLines(1<<10, "X-M", strings.Repeat("m", 1024))...)), status: 431},
		{name: "3000 small headers within the limit", send: raw(req("GET", "/v2/", headerLines(3000, "X-F", "1")...)), status: 200, body: []byte("{}")},
		{name: "20000 small headers beyond the limit", send: raw(req("GET", "/v2/", headerLines(20000, "X-F", "1")...)), status: 431},
		{name: "3000 copies of one header", send: raw(req("GET", "/v2/", slicesRepeat("X-Same: 1", 3000)...)), status: 200, body: []byte("{}")},
		{name: "Accept with 3000 media types", send: raw(req("GET", manifests+"latest", "Accept: "+hugeAccept)), status: 200,
			check: func(t *testing.T, o outcome) {
				assert.Equal(t, c.List.Digest.String(), o.resp.Header.Get("Docker-Content-Digest"))
			}},
		{name: "If-None-Match with 3000 tags", send: raw(req("GET", smallURL, "If-None-Match: "+strings.TrimSuffix(strings.Repeat(`W/"x", `, 3000), ", "))),
			status: 200, body: small.Data},

		// Slow clients: a request head dribbled a byte at a time, which
		// would take far longer than ioDeadline to send, is cut off by
		// ReadHeaderTimeout.
		{name: "headers dribbled", send: dribble(req("GET", "/v2/", headerLines(100, "X-Slow", "1")...), 20*time.Millisecond), cutOff: true},
		{name: "request line dribbled", send: dribble("GET /v2/"+strings.Repeat("a", 1000)+" HTTP/1.1\r\nHost: x\r\n\r\n", 20*time.Millisecond), cutOff: true},
		{name: "nothing sent", send: func(net.Conn) {}, cutOff: true},
		{name: "half a request, then silence", send: raw("GET /v2/ HTTP/1.1\r\nHost: x\r\n"), cutOff: true},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := cmpOr(tt.method, http.MethodGet)
			o := ts.exchange(t, method, tt.send)
			if tt.cutOff {
				if o.resp != nil {
					require.Equal(t, http.StatusBadRequest, o.resp.StatusCode, "body: %.300q", o.body)
					require.True(t, o.resp.Close, "the connection is closed")
				}
			} else {
				require.NotNil(t, o.resp, "the server closed the connection without an answer")
				require.NoError(t, o.bodyErr, "the body ended early")
				require.Equal(t, tt.status, o.resp.StatusCode, "body: %.300q", o.body)
				if tt.code != "" {
					requireSpecError(t, o, tt.code)
				} else if tt.status >= 400 {
					// net/http's own refusals: short plain text, and the
					// connection closed.
					assert.Less(t, len(o.body), 200, "body: %q", o.body)
					assert.True(t, o.resp.Close, "the connection is closed after %d", tt.status)
				}
				if tt.body != nil {
					assert.True(t, bytes.Equal(tt.body, o.body), "body: %.300q", o.body)
				}
				if tt.check != nil {
					tt.check(t, o)
				}
			}
			// Never a server error, except the two net/http sends for what
			// HTTP/1.1 itself does not support (RFC 9112: 505 for a major
			// version other than 1, 501 for an unknown transfer coding).
			if o.resp != nil && o.resp.StatusCode >= 500 {
				assert.Contains(t, []int{501, 505}, o.resp.StatusCode)
				assert.Equal(t, tt.status, o.resp.StatusCode)
			}
			ts.requireAnswers(t)
		})
	}
}

// slicesRepeat returns n copies of s.
func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// cmpOr returns a, or b when a is empty.
func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// requireSpecError checks that a response is the distribution spec's error
// JSON carrying code.
func requireSpecError(t *testing.T, o outcome, code string) {
	t.Helper()
	mt, _, err := mime.ParseMediaType(o.resp.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "application/json", mt, "body: %.300q", o.body)
	assert.Equal(t, "registry/2.0", o.resp.Header.Get("Docker-Distribution-API-Version"))
	var body struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Detail  string `json:"detail"`
		} `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(o.body, &body), "body: %.300q", o.body)
	require.Len(t, body.Errors, 1)
	assert.Equal(t, code, body.Errors[0].Code)
	assert.NotEmpty(t, body.Errors[0].Message)
	assert.NotEmpty(t, body.Errors[0].Detail)
	assert.Less(t, len(o.body), 1024, "an error detail echoes at most a short part of the request")
}

// sha256Hex is the hex SHA-256 of b.
func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// startBlob opens a connection with a small receive buffer, asks for blob b
// and reads the response head and the first bytes of the body, leaving the
// rest unread, so that the download is held in flight on the server.
func (ts *testServer) startBlob(t *testing.T, b index.Blob) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn := ts.dial(t, 4096)
	_, err := io.WriteString(conn, req("GET", "/v2/"+hostileRepo+"/blobs/"+b.Digest.String()))
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, b.Size, resp.ContentLength)
	first := make([]byte, 64<<10)
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	require.Equal(t, b.Data[:len(first)], first)
	return conn, br, resp
}

// TestDisconnectMidBlob checks that a client that goes away in the middle
// of a blob does not keep its stream slot: with a cap of one stream, the
// slot is taken while the client holds the download and given back when it
// leaves, however it leaves.
func TestDisconnectMidBlob(t *testing.T) {
	c, big, _ := hostileContent(t)
	ts := startServer(t, c, testHeaderTimeout, registry.Limits{MaxStreams: 1})
	blobURL := "/v2/" + hostileRepo + "/blobs/" + big.Digest.String()

	for _, tt := range []struct {
		name  string
		leave func(t *testing.T, conn *net.TCPConn)
	}{
		{"reset", func(t *testing.T, conn *net.TCPConn) {
			require.NoError(t, conn.SetLinger(0))
			require.NoError(t, conn.Close())
		}},
		{"close", func(t *testing.T, conn *net.TCPConn) { require.NoError(t, conn.Close()) }},
		{"close after shutting down writes", func(t *testing.T, conn *net.TCPConn) {
			require.NoError(t, conn.CloseWrite())
			require.NoError(t, conn.Close())
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, _, _ := ts.startBlob(t, big)
			defer conn.Close()
			require.Equal(t, 1, ts.streamsInFlight(t), "the download is in flight while its client holds it")
			status, body := ts.get(t, blobURL)
			require.Equal(t, http.StatusTooManyRequests, status, "the only slot is taken: %s", body)

			tt.leave(t, conn.(*net.TCPConn))
			waitFor(t, "the stream slot to be given back", func() bool { return ts.streamsInFlight(t) == 0 })

			status, body = ts.get(t, blobURL)
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, big.Digest.Encoded(), sha256Hex(body), "a later download gets the whole blob")
		})
	}
}

// TestStalledClientFreesItsSlot checks that a client that takes the start
// of a blob and then stops reading, without going away, loses its download
// after the stall timeout, so that it cannot hold a stream slot for ever.
func TestStalledClientFreesItsSlot(t *testing.T) {
	c, big, _ := hostileContent(t)
	ts := startServer(t, c, testHeaderTimeout, registry.Limits{MaxStreams: 1, StallTimeout: 300 * time.Millisecond})
	conn, _, _ := ts.startBlob(t, big)
	defer conn.Close()
	require.Equal(t, 1, ts.streamsInFlight(t), "the download is in flight while its client holds it")

	waitFor(t, "the stalled download to give its slot back", func() bool { return ts.streamsInFlight(t) == 0 })
	// The slot is free: a later download is sent. It asks for the first
	// 4 KiB only, which the socket buffers take at once, so that a busy
	// test client cannot itself stall past the short timeout.
	req, err := http.NewRequest(http.MethodGet, "http://"+ts.addr+"/v2/"+hostileRepo+"/blobs/"+big.Digest.String(), nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=0-4095")
	resp, err := ts.client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, big.Data[:4096], body)
}

// TestManyIdleConnections opens thousands of connections that send nothing
// (as many as the descriptor limit allows, up to 2000) and checks that the
// server still answers new clients and each idle connection alike. It uses
// the production header timeout, so the idle connections stay open
// throughout.
func TestManyIdleConnections(t *testing.T) {
	c, _, small := hostileContent(t)
	ts := startServer(t, c, 0, registry.Limits{})
	require.Equal(t, 10*time.Second, ts.srv.ReadHeaderTimeout)

	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	// Each connection takes two descriptors in this process (client and
	// server ends); keep 200 for everything else.
	n := min(2000, (int(lim.Cur)-200)/2)
	require.Greater(t, n, 50, "RLIMIT_NOFILE %d is too low for this test", lim.Cur)
	if n < 2000 {
		t.Logf("RLIMIT_NOFILE is %d: %d idle connections instead of 2000", lim.Cur, n)
	}

	idle := make([]net.Conn, 0, n)
	defer func() {
		for _, conn := range idle {
			conn.Close()
		}
	}()
	for range n {
		idle = append(idle, ts.dial(t, 0))
	}

	ts.requireAnswers(t)
	status, body := ts.get(t, "/v2/"+hostileRepo+"/blobs/"+small.Digest.String())
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, small.Digest.Encoded(), sha256Hex(body))

	// Every hundredth idle connection now asks, and is answered.
	for i := 0; i < n; i += 100 {
		conn := idle[i]
		_, err := io.WriteString(conn, req("GET", "/v2/"))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
		require.NoError(t, err, "idle connection %d", i)
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "{}", string(b))
	}
}

// TestGracefulShutdown checks Shutdown as serve uses it: the listener closes
// at once, a download in flight completes, and Shutdown returns once it has.
func TestGracefulShutdown(t *testing.T) {
	c, big, _ := hostileContent(t)
	ts := startServer(t, c, testHeaderTimeout, registry.Limits{})

	conn, br, resp := ts.startBlob(t, big)
	defer conn.Close()
	require.Equal(t, 1, ts.streamsInFlight(t))

	shutdown := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), ioDeadline)
		defer cancel()
		shutdown <- ts.srv.Shutdown(ctx)
	}()
	waitFor(t, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ts.addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned (%v) with a download in flight", err)
	default:
	}

	// The rest of the blob arrives whole, and Shutdown then returns.
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	whole := append(bytes.Clone(big.Data[:64<<10]), rest...)
	require.Equal(t, big.Digest.Encoded(), sha256Hex(whole))
	_, err = br.Peek(1)
	require.Error(t, err, "the connection is closed after the response")
	select {
	case err := <-shutdown:
		require.NoError(t, err)
	case <-time.After(ioDeadline):
		t.Fatal("Shutdown did not return after the download completed")
	}
	select {
	case err := <-ts.served:
		require.ErrorIs(t, err, http.ErrServerClosed)
		ts.served <- err // for the cleanup
	case <-time.After(ioDeadline):
		t.Fatal("Serve did not return")
	}
}

// TestShutdownTimeout checks the other branch of serve's shutdown: when the
// timeout passes with a download still in flight, Close cuts it, and its
// stream is given back.
func TestShutdownTimeout(t *testing.T) {
	c, big, _ := hostileContent(t)
	ts := startServer(t, c, testHeaderTimeout, registry.Limits{MaxStreams: 1})

	conn, _, resp := ts.startBlob(t, big)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, ts.srv.Shutdown(ctx), context.DeadlineExceeded, "the download was still in flight")
	require.NoError(t, ts.srv.Close())

	rest, err := io.ReadAll(resp.Body)
	require.Error(t, err, "the download is cut")
	requireNotTimeout(t, err)
	assert.Less(t, int64(len(rest)), big.Size-64<<10)
	waitFor(t, "the stream slot to be given back", func() bool {
		var m bytes.Buffer
		require.NoError(t, ts.reg.WriteMetrics(&m))
		return strings.Contains(m.String(), "\nquinistry_blob_streams_in_flight 0\n")
	})
}

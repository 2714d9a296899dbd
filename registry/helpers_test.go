package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
)

// testName is the repository the test registries serve: two components, so
// that names with slashes are exercised everywhere.
const testName = "test/quinistry"

// testTags are the tags the test registries serve, deliberately unsorted and
// with a duplicate: New must sort and compact them.
var testTags = []string{"v1.0.0", "latest", "abc123", "latest"}

// sortedTestTags is testTags as the registry must list them.
var sortedTestTags = []string{"abc123", "latest", "v1.0.0"}

// formats are the media-type families every content test runs in.
var formats = []index.Format{index.Docker, index.OCI}

var amd64, arm64 = testcontent.Amd64, testcontent.Arm64

// buildContent packs two fake binaries with runs of text, so gzip has
// something to do (linux/arm64 first, so that picking linux/amd64 as the
// default is a real choice), in format f.
func buildContent(tb testing.TB, f index.Format) *index.Content {
	tb.Helper()
	return testcontent.Random(tb, index.Options{Format: f},
		testcontent.Fake{Platform: arm64, Size: 48 << 10, Seed: 64, Text: true},
		testcontent.Fake{Platform: amd64, Size: 40 << 10, Seed: 86, Text: true})
}

// newTestRegistry builds content in format f and a registry serving it.
func newTestRegistry(tb testing.TB, f index.Format) (*Registry, *index.Content) {
	tb.Helper()
	c := buildContent(tb, f)
	return New(c, testName, testTags, nil), c
}

// imageFor returns the content's image for platform p, found without
// Content.Default.
func imageFor(tb testing.TB, c *index.Content, p crossbuild.Platform) index.Image {
	tb.Helper()
	for _, img := range c.Images {
		if img.Platform == p {
			return img
		}
	}
	tb.Fatalf("no image for %s", p)
	return index.Image{}
}

// sha256Digest is the digest of b computed here, not by go-digest.
func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// request is one request to send through the handler.
type request struct {
	method string
	target string
	header http.Header
}

// serve sends a request straight to the handler and returns the recorded
// response with its body read.
func serve(tb testing.TB, h http.Handler, rq request) (*http.Response, []byte) {
	tb.Helper()
	method := rq.method
	if method == "" {
		method = http.MethodGet
	}
	req := httptest.NewRequest(method, rq.target, nil)
	for k, vs := range rq.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	require.NoError(tb, resp.Body.Close())
	// Every response, whatever it is, names the API version.
	require.Equal(tb, []string{"registry/2.0"}, resp.Header.Values("Docker-Distribution-API-Version"),
		"%s %s", method, rq.target)
	return resp, body
}

// get is serve for a GET with optional header pairs.
func get(tb testing.TB, h http.Handler, target string, kv ...string) (*http.Response, []byte) {
	tb.Helper()
	return serve(tb, h, request{method: http.MethodGet, target: target, header: headers(kv...)})
}

// headers builds a header from key, value pairs; a key may repeat.
func headers(kv ...string) http.Header {
	if len(kv)%2 != 0 {
		panic("headers: odd number of arguments")
	}
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// mediaType returns the Content-Type of resp without parameters.
func mediaType(tb testing.TB, resp *http.Response) string {
	tb.Helper()
	ct := resp.Header.Get("Content-Type")
	require.NotEmpty(tb, ct, "Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	require.NoError(tb, err)
	return mt
}

// requireError checks that a response is exactly the spec's error: the
// status, an application/json body holding {"errors":[{"code","message",
// "detail"}]} with only those keys, the given code and the table's message.
func requireError(tb testing.TB, resp *http.Response, body []byte, want ErrorCode) {
	tb.Helper()
	require.Equal(tb, want.Status, resp.StatusCode, "status; body %s", body)
	require.Equal(tb, "application/json", mediaType(tb, resp))
	require.Equal(tb, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))
	require.Equal(tb, []string{itoa(len(body))}, resp.Header.Values("Content-Length"))

	var raw map[string]json.RawMessage
	require.NoError(tb, json.Unmarshal(body, &raw), "body %s", body)
	require.Len(tb, raw, 1, "top-level keys of %s", body)
	var entries []map[string]any
	require.Contains(tb, raw, "errors")
	dec := json.NewDecoder(bytes.NewReader(raw["errors"]))
	require.NoError(tb, dec.Decode(&entries))
	require.Len(tb, entries, 1)
	e := entries[0]
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	require.ElementsMatch(tb, []string{"code", "message", "detail"}, keys, "error entry %s", body)
	require.Equal(tb, want.Code, e["code"])
	require.Equal(tb, want.Message, e["message"])
	detail, ok := e["detail"].(string)
	require.True(tb, ok, "detail is a string")
	require.NotEmpty(tb, strings.TrimSpace(detail))
}

// requireErrorHead checks a HEAD error: the status, JSON headers, no body.
func requireErrorHead(tb testing.TB, resp *http.Response, body []byte, want ErrorCode) {
	tb.Helper()
	require.Equal(tb, want.Status, resp.StatusCode)
	require.Equal(tb, "application/json", mediaType(tb, resp))
	require.Equal(tb, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))
	require.Empty(tb, body)
}

func itoa(n int) string { return strconv.Itoa(n) }

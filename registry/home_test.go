package registry

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/sbom"
)

func TestHomePage(t *testing.T) {
	c := testcontent.AttachSBOMs(t, buildContent(t, formats[0]))
	reg := New(c, testName, testTags, nil)
	browser := http.Header{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}}

	resp, body := serve(t, reg, request{target: "/", header: browser})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
	page := string(body)
	for _, img := range c.Images {
		assert.Contains(t, page, img.Manifest.Digest.String(), img.Platform.String())
		assert.Contains(t, page, "<td>"+img.Platform.String()+"</td>")
		doc, ok := sbom.Find(c, img.Manifest.Digest)
		require.True(t, ok, img.Platform.String())
		assert.Contains(t, page, "/blobs/"+doc.Digest.String()+`">SPDX 2.3`, "the link to the %s SBOM", img.Platform)
	}
	assert.Contains(t, page, c.List.Digest.String())
	for _, tag := range sortedTestTags {
		assert.Contains(t, page, "docker pull example.com/"+testName+":"+tag)
	}
	assert.Contains(t, page, "<code>v1.2.3</code>", "the version from the image's labels")
	assert.Contains(t, page, `href="/metrics"`)
	assert.Contains(t, page, `href="/healthz"`)
	// Every SBOM link is a blob the registry serves as SPDX.
	links := regexp.MustCompile(`href="(/v2/[^"]+/blobs/[^"]+)"`).FindAllStringSubmatch(page, -1)
	require.Len(t, links, len(c.Images))
	for _, l := range links {
		resp, doc := get(t, reg, l[1])
		require.Equal(t, http.StatusOK, resp.StatusCode)
		_, err := sbom.Parse(doc)
		assert.NoError(t, err, l[1])
	}

	// Nothing external, no script, and a policy that allows only the style.
	assert.NotContains(t, page, "<script")
	assert.NotRegexp(t, `(src|href)="(https?:)?//`, page)
	csp := resp.Header.Get("Content-Security-Policy")
	assert.Contains(t, csp, "default-src 'none'")
	style := regexp.MustCompile(`<style>(.*?)</style>`).FindStringSubmatch(page)
	require.Len(t, style, 2)
	sum := sha256.Sum256([]byte(style[1]))
	assert.Contains(t, csp, "style-src 'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))

	// HEAD: the same headers, no body.
	head, hb := serve(t, reg, request{method: http.MethodHead, target: "/", header: browser})
	assert.Equal(t, http.StatusOK, head.StatusCode)
	assert.Equal(t, resp.Header.Get("Content-Length"), head.Header.Get("Content-Length"))
	assert.Empty(t, hb)
}

func TestHomePageOnlyForBrowsers(t *testing.T) {
	reg, _ := newTestRegistry(t, formats[1])
	tests := []struct {
		name   string
		method string
		accept []string
	}{
		{"no Accept", http.MethodGet, nil},
		{"JSON", http.MethodGet, []string{"application/json"}},
		{"any", http.MethodGet, []string{"*/*"}},
		{"html refused", http.MethodGet, []string{"text/html;q=0, */*"}},
		{"POST", http.MethodPost, []string{"text/html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := serve(t, reg, request{method: tt.method, target: "/", header: http.Header{"Accept": tt.accept}})
			assert.Equal(t, http.StatusNotFound, resp.StatusCode)
			assert.Contains(t, resp.Header.Get("Content-Type"), "application/json")
			assert.Contains(t, string(body), `"code":"NOT_FOUND"`)
		})
	}
}

func TestHomePageEscapesTheHost(t *testing.T) {
	reg, _ := newTestRegistry(t, formats[0])
	req := request{target: "/", header: http.Header{"Accept": {"text/html"}}}
	resp, body := serveHost(t, reg, req, `evil"><b>x</b>`)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotContains(t, string(body), "<b>x</b>")
	assert.True(t, strings.Contains(string(body), "evil&#34;&gt;&lt;b&gt;x&lt;/b&gt;"), "escaped host")
}

// serveHost sends a request with the given Host header.
func serveHost(t *testing.T, h http.Handler, rq request, host string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, rq.target, nil)
	req.Host = host
	for k, vs := range rq.header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

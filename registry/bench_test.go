package registry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
)

// nopWriter is a ResponseWriter that keeps nothing, so that handler
// benchmarks measure the handler alone.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nopWriter) WriteHeader(int)             {}

// benchmarkHandler serves the same request b.N times and clears the
// response headers between requests.
func benchmarkHandler(b *testing.B, method, target string, header http.Header) {
	reg, _ := newTestRegistry(b, index.Docker)
	r := httptest.NewRequest(method, target, nil)
	r.Header = header
	w := &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		reg.ServeHTTP(w, r)
	}
}

func BenchmarkManifestGetByTag(b *testing.B) {
	benchmarkHandler(b, http.MethodGet, "/v2/"+testName+"/manifests/latest",
		http.Header{"Accept": {index.Docker.MediaTypes().List + ", " + index.Docker.MediaTypes().Manifest}})
}

func BenchmarkManifestHeadByTag(b *testing.B) {
	benchmarkHandler(b, http.MethodHead, "/v2/"+testName+"/manifests/latest",
		http.Header{"Accept": {index.Docker.MediaTypes().List}})
}

func BenchmarkManifestGetByDigest(b *testing.B) {
	_, c := newTestRegistry(b, index.Docker)
	benchmarkHandler(b, http.MethodGet, "/v2/"+testName+"/manifests/"+c.Images[0].Manifest.Digest.String(), http.Header{})
}

// BenchmarkBlobGet downloads the largest layer over a real loopback
// connection, where it is sent with sendfile.
func BenchmarkBlobGet(b *testing.B) {
	reg, c := newTestRegistry(b, index.Docker)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	largest := c.Layers[0]
	for _, l := range c.Layers {
		if l.Size > largest.Size {
			largest = l
		}
	}
	url := srv.URL + "/v2/" + testName + "/blobs/" + largest.Digest.String()
	client := srv.Client()
	b.SetBytes(largest.Size)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		require.NoError(b, err)
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.NoError(b, err)
		require.Equal(b, largest.Size, n)
	}
}

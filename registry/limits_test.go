package registry

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
)

func TestMaxStreams(t *testing.T) {
	reg, c := newTestRegistry(t, index.Docker)
	reg.SetLimits(Limits{MaxStreams: 1})
	layer := "/v2/" + testName + "/blobs/" + c.Layers[0].Digest.String()

	reg.streams <- struct{}{} // a download in flight takes the only slot
	resp, body := get(t, reg, layer)
	requireError(t, resp, body, ErrTooManyRequests)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Empty(t, resp.Header.Get("Docker-Content-Digest"))
	assert.Empty(t, resp.Header.Get("Cache-Control"))

	// HEAD and manifests are not downloads: they are never refused.
	head, _ := serve(t, reg, request{method: http.MethodHead, target: layer})
	assert.Equal(t, http.StatusOK, head.StatusCode)
	m, _ := get(t, reg, "/v2/"+testName+"/manifests/latest")
	assert.Equal(t, http.StatusOK, m.StatusCode)

	<-reg.streams // it ends
	resp, body = get(t, reg, layer)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, c.Layers[0].Data, body)
	assert.Len(t, reg.streams, 0, "the slot is given back")
}

// TestSendBlobFromFile checks that a layer held in a memory file is sent
// from that file, whole and in ranges, over a real connection where
// net/http can use sendfile. To tell the file from the mapped copy in
// Data, the file's descriptor is made to point at a file of the same size
// holding every byte inverted: only a server that reads the file sends
// those bytes.
func TestSendBlobFromFile(t *testing.T) {
	reg, c := newTestRegistry(t, index.OCI)
	srv := httptest.NewServer(reg)
	defer srv.Close()
	l := c.Layers[1]
	require.NotNil(t, l.File)
	inverted := make([]byte, len(l.Data))
	for i, b := range l.Data {
		inverted[i] = ^b
	}
	other, err := os.CreateTemp(t.TempDir(), "inverted")
	require.NoError(t, err)
	defer other.Close()
	_, err = other.Write(inverted)
	require.NoError(t, err)
	// Data stays mapped from the memory file; the descriptor now names
	// the other file.
	require.NoError(t, syscall.Dup3(int(other.Fd()), int(l.File.Fd()), 0))

	size := strconv.Itoa(len(inverted))
	for _, tt := range []struct {
		rangeHeader string
		wantStatus  int
		wantRange   string
		want        []byte
	}{
		{"", http.StatusOK, "", inverted},
		{"bytes=10-", http.StatusPartialContent, "bytes 10-" + strconv.Itoa(len(inverted)-1) + "/" + size, inverted[10:]},
		{"bytes=5-20", http.StatusPartialContent, "bytes 5-20/" + size, inverted[5:21]},
		{"bytes=-7", http.StatusPartialContent, "bytes " + strconv.Itoa(len(inverted)-7) + "-" + strconv.Itoa(len(inverted)-1) + "/" + size, inverted[len(inverted)-7:]},
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/v2/"+testName+"/blobs/"+l.Digest.String(), nil)
		require.NoError(t, err)
		if tt.rangeHeader != "" {
			req.Header.Set("Range", tt.rangeHeader)
		}
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, tt.wantStatus, resp.StatusCode, "range %q", tt.rangeHeader)
		assert.Equal(t, tt.wantRange, resp.Header.Get("Content-Range"), "range %q", tt.rangeHeader)
		assert.Equal(t, strconv.Itoa(len(tt.want)), resp.Header.Get("Content-Length"), "range %q", tt.rangeHeader)
		assert.True(t, bytes.Equal(tt.want, got), "range %q: the bytes sent are not the memory file's", tt.rangeHeader)
	}
}

func TestWriteMetrics(t *testing.T) {
	reg, c := newTestRegistry(t, index.Docker)
	reg.SetLimits(Limits{MaxStreams: 8})
	var sent int
	for _, target := range []string{
		"/v2/",
		"/v2/" + testName + "/manifests/latest",
		"/v2/" + testName + "/manifests/latest",
		"/v2/" + testName + "/blobs/" + c.Layers[0].Digest.String(),
		"/v2/" + testName + "/blobs/sha256:" + string(bytes.Repeat([]byte("0"), 64)),
		"/nope",
	} {
		_, body := get(t, reg, target)
		sent += len(body)
	}
	require.Greater(t, sent, int(c.Layers[0].Size), "the layer was among the bodies")

	var out bytes.Buffer
	require.NoError(t, reg.WriteMetrics(&out))
	text := out.String()
	for _, line := range []string{
		`quinistry_requests_total{route="base",status="200"} 1`,
		`quinistry_requests_total{route="manifest",status="200"} 2`,
		`quinistry_requests_total{route="blob",status="200"} 1`,
		`quinistry_requests_total{route="blob",status="404"} 1`,
		`quinistry_requests_total{route="unknown",status="404"} 1`,
		"quinistry_blob_streams_in_flight 0",
		"quinistry_blob_streams_limit 8",
		"# TYPE quinistry_requests_total counter",
	} {
		assert.Contains(t, text, line+"\n")
	}
	assert.Contains(t, text, "quinistry_response_bytes_total "+strconv.Itoa(sent)+"\n", "every body byte counted, no other")
}

// TestBlobSource checks what a blob is read from when sendfile cannot send
// it: a layer from its memory file at the offset, never moving the file's
// position (every download shares it), a config from memory; both through
// Read (as net/http reads the start of a body) and WriteTo.
func TestBlobSource(t *testing.T) {
	_, c := newTestRegistry(t, index.Docker)
	l := c.Layers[0]
	require.NotNil(t, l.File)
	before, err := l.File.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	for _, b := range []index.Blob{l, c.Images[0].Config} {
		src := &blobSource{b: b, off: 7, end: b.Size - 3}
		p := make([]byte, 10)
		n, err := src.Read(p)
		require.NoError(t, err)
		assert.Equal(t, b.Data[7:17], p[:n])
		var out bytes.Buffer
		m, err := src.WriteTo(&out)
		require.NoError(t, err)
		assert.Equal(t, b.Size-20, m)
		assert.Equal(t, b.Data[17:b.Size-3], out.Bytes())
		n, err = src.Read(p)
		assert.Zero(t, n)
		assert.Equal(t, io.EOF, err)
	}
	after, err := l.File.Seek(0, io.SeekCurrent)
	require.NoError(t, err)
	assert.Equal(t, before, after, "the memory file's position is left alone")
}

// TestBlobOverTLS checks the path without sendfile: over HTTPS (HTTP/1.1
// and HTTP/2) a layer is copied from its memory file, whole and in ranges,
// and counted in the metrics.
func TestBlobOverTLS(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		reg, c := newTestRegistry(t, index.OCI)
		srv := httptest.NewUnstartedServer(reg)
		srv.EnableHTTP2 = h2
		srv.StartTLS()
		l := c.Layers[1]
		for _, rg := range []string{"", "bytes=100-", "bytes=-7"} {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/v2/"+testName+"/blobs/"+l.Digest.String(), nil)
			require.NoError(t, err)
			if rg != "" {
				req.Header.Set("Range", rg)
			}
			resp, err := srv.Client().Do(req)
			require.NoError(t, err)
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			assert.Equal(t, h2, resp.ProtoMajor == 2)
			want := l.Data
			switch rg {
			case "bytes=100-":
				want = l.Data[100:]
			case "bytes=-7":
				want = l.Data[len(l.Data)-7:]
			}
			assert.True(t, bytes.Equal(want, got), "h2 %v, range %q", h2, rg)
		}
		srv.Close()
		assert.Equal(t, uint64(2*l.Size-100+7), reg.metrics.bytes.Load())
	}
}

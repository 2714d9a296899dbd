package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
)

// metricLines returns the sample lines of a Prometheus text body, so that
// a check matches a whole line ("x 1" is not "x 10").
func metricLines(body string) []string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestFrontDoor(t *testing.T) {
	front := newFrontDoor()
	get := func(ctx context.Context, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		front.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
		return rec
	}
	metrics := func() []string { return metricLines(get(context.Background(), "/metrics").Body.String()) }

	assert.Equal(t, http.StatusOK, get(context.Background(), "/healthz").Code)
	assert.Equal(t, http.StatusServiceUnavailable, get(context.Background(), "/readyz").Code)
	assert.Contains(t, metrics(), "quinistry_ready 0")
	assert.Contains(t, metrics(), "quinistry_requests_waiting 0")

	// A registry request made while packing is seen to wait (the front door
	// counts it), is not answered, and gives up with its client.
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan *httptest.ResponseRecorder, 1)
	go func() { waited <- get(ctx, "/v2/") }()
	waitFor(t, "the request to wait", func() bool { return front.waiting.Load() == 1 })
	assert.Contains(t, metrics(), "quinistry_requests_waiting 1")
	select {
	case <-waited:
		t.Fatal("a request was answered before the registry was ready")
	default:
	}
	cancel()
	rec := <-waited
	assert.False(t, rec.Flushed)
	assert.Empty(t, rec.Body.String(), "the given-up request got an answer")
	assert.Equal(t, int64(0), front.waiting.Load())

	// A request that is known to wait (counted before open) is answered by
	// the registry once it opens.
	go func() { waited <- get(context.Background(), "/v2/") }()
	waitFor(t, "the second request to wait", func() bool { return front.waiting.Load() == 1 })
	select {
	case <-waited:
		t.Fatal("a request was answered before the registry was ready")
	default:
	}
	front.open(registry.New(&index.Content{}, "quinistry", []string{"latest"}, nil), time.Second)
	rec = <-waited
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "registry/2.0", rec.Header().Get("Docker-Distribution-API-Version"))
	assert.Equal(t, http.StatusOK, get(context.Background(), "/readyz").Code)
	assert.Equal(t, int64(0), front.waiting.Load())

	m := get(context.Background(), "/metrics")
	assert.Equal(t, http.StatusOK, m.Code)
	lines := metricLines(m.Body.String())
	assert.Contains(t, lines, "quinistry_ready 1")
	assert.Contains(t, lines, "quinistry_requests_waiting 0")
	assert.Contains(t, lines, "quinistry_pack_seconds 1")
	assert.Contains(t, lines, `quinistry_requests_total{route="base",status="200"} 1`)
	assert.Contains(t, m.Body.String(), "\nquinistry_build_info{")
}

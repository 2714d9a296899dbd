package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
)

func TestFrontDoor(t *testing.T) {
	front := newFrontDoor()
	get := func(ctx context.Context, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		front.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil).WithContext(ctx))
		return rec
	}

	assert.Equal(t, http.StatusOK, get(context.Background(), "/healthz").Code)
	assert.Equal(t, http.StatusServiceUnavailable, get(context.Background(), "/readyz").Code)
	assert.Contains(t, get(context.Background(), "/metrics").Body.String(), "quinistry_ready 0\n")

	// A registry request made while packing waits, and gives up with its client.
	ctx, cancel := context.WithCancel(context.Background())
	waited := make(chan *httptest.ResponseRecorder)
	go func() { waited <- get(ctx, "/v2/") }()
	select {
	case <-waited:
		t.Fatal("a request was answered before the registry was ready")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-waited

	// Once open, a waiting request is answered by the registry.
	go func() { waited <- get(context.Background(), "/v2/") }()
	front.open(registry.New(&index.Content{}, "quinistry", []string{"latest"}, nil), time.Second)
	rec := <-waited
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "registry/2.0", rec.Header().Get("Docker-Distribution-API-Version"))
	assert.Equal(t, http.StatusOK, get(context.Background(), "/readyz").Code)

	metrics := get(context.Background(), "/metrics")
	assert.Equal(t, http.StatusOK, metrics.Code)
	assert.Contains(t, metrics.Body.String(), "quinistry_ready 1\n")
	assert.Contains(t, metrics.Body.String(), "quinistry_pack_seconds 1\n")
	assert.Contains(t, metrics.Body.String(), `quinistry_requests_total{route="base",status="200"} 1`)
	assert.Contains(t, metrics.Body.String(), "quinistry_build_info{")
}

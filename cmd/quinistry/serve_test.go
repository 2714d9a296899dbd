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
	front.open(registry.New(&index.Content{}, "quinistry", []string{"latest"}, nil))
	rec := <-waited
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "registry/2.0", rec.Header().Get("Docker-Distribution-API-Version"))
	assert.Equal(t, http.StatusOK, get(context.Background(), "/readyz").Code)
}

package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/registry"
)

func TestAttestationsStartupErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"a file that is not JSON", map[string][]byte{"x.json": []byte("hello")}, "x.json: not a JSON Sigstore bundle"},
		{"a bundle with no DSSE envelope", map[string][]byte{"x.json": []byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`)}, "x.json: the bundle carries no DSSE envelope"},
		{"a file over the cap", map[string][]byte{"big.json": make([]byte, 2<<20)}, "big.json: over the 1048576-byte cap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, data := range tt.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
			}
			err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--attestations", dir}, &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n", "one line")
		})
	}
	t.Run("a missing directory", func(t *testing.T) {
		err := run(context.Background(), []string{"--addr", "127.0.0.1:0", "--attestations", filepath.Join(t.TempDir(), "none")}, &bytes.Buffer{}, &bytes.Buffer{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "attestations:")
	})
}

// TestAttestationsReload watches a directory: a new bundle is served once
// it appears, a bad file is logged and keeps the set, and a bundle about
// another image is skipped with one warning.
func TestAttestationsReload(t *testing.T) {
	poll := attestPoll
	attestPoll = 10 * time.Millisecond
	t.Cleanup(func() { attestPoll = poll })
	c := testcontent.Random(t, index.Options{Format: index.OCI},
		testcontent.Fake{Platform: testcontent.Amd64, Size: 1000, Seed: 1}, testcontent.Fake{Platform: testcontent.Arm64, Size: 1000, Seed: 2})
	img := c.Images[0].Manifest.Digest
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a.json"), testcontent.Bundle("a", img), 0o644))
	var logs lockedBuffer
	a := &attestations{dir: dir, content: c, log: slog.New(slog.NewTextHandler(&logs, nil))}
	set, err := a.load()
	require.NoError(t, err)
	reg := registry.New(c, "quinistry", []string{"latest"}, nil)
	reg.SetAttestations(set)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.watch(ctx, reg)
	subjects := func() int { return len(reg.Attestations().Referrers(img, "")) }

	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.json"), testcontent.Bundle("b", img, c.List.Digest), 0o644))
	waitFor(t, "the second bundle to be served", func() bool { return subjects() == 2 })
	assert.Len(t, reg.Attestations().Referrers(c.List.Digest, ""), 1)

	before := reg.Attestations()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.json"), []byte("{"), 0o644))
	waitFor(t, "the error to be logged", func() bool { return strings.Contains(logs.String(), "attestations not reloaded") })
	assert.Same(t, before, reg.Attestations(), "the old set is kept")
	assert.Contains(t, logs.String(), "bad.json")

	require.NoError(t, os.Remove(filepath.Join(dir, "bad.json")))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "other.json"), testcontent.Bundle("o", digest.FromString("elsewhere")), 0o644))
	waitFor(t, "the warning", func() bool { return strings.Contains(logs.String(), "attestation names no digest served here") })
	assert.Equal(t, 1, strings.Count(logs.String(), "attestation names no digest served here"), "one warning line")
	assert.Equal(t, 2, subjects())
}

package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/export"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testbin"
)

// untar reads every regular file of a tar into a map by path.
func untar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[hdr.Name] = b
	}
}

func TestWrite(t *testing.T) {
	amd64 := crossbuild.Platform{OS: "linux", Arch: "amd64"}
	arm64 := crossbuild.Platform{OS: "linux", Arch: "arm64"}
	bins := []binary{{amd64, testbin.Build(t, amd64)}, {arm64, testbin.Build(t, arm64)}}

	var out bytes.Buffer
	require.NoError(t, write(&out, "quinistry.test/pause:v1", bins))
	var again bytes.Buffer
	require.NoError(t, write(&again, "quinistry.test/pause:v1", bins))
	assert.Equal(t, out.Bytes(), again.Bytes(), "the same binaries give the same bytes")

	files := untar(t, out.Bytes())
	blobs := 0
	for path, data := range files {
		if d, err := digest.Parse("sha256:" + filepath.Base(path)); err == nil {
			assert.Equal(t, d, digest.FromBytes(data), path)
			blobs++
		}
	}
	assert.Equal(t, 1+3*len(bins), blobs, "the index, and a layer, config and manifest per binary")
	var top index.List
	require.NoError(t, json.Unmarshal(files["index.json"], &top))
	require.Len(t, top.Manifests, 1)
	assert.Equal(t, "quinistry.test/pause:v1", top.Manifests[0].Annotations[export.ImageNameAnnotation])
	assert.Equal(t, "v1", top.Manifests[0].Annotations[export.RefNameAnnotation])

	var list index.List
	require.NoError(t, json.Unmarshal(files[export.BlobPath(top.Manifests[0].Digest)], &list))
	assert.Equal(t, index.OCI.MediaTypes().List, list.MediaType)
	require.Len(t, list.Manifests, len(bins))
	for i, b := range bins {
		d := list.Manifests[i]
		require.NotNil(t, d.Platform)
		assert.Equal(t, index.PlatformField{Architecture: b.Platform.Arch, OS: "linux", Variant: b.Platform.ImageVariant()}, *d.Platform)

		var m index.Manifest
		require.NoError(t, json.Unmarshal(files[export.BlobPath(d.Digest)], &m))
		require.Len(t, m.Layers, 1)
		var cfg index.Config
		require.NoError(t, json.Unmarshal(files[export.BlobPath(m.Config.Digest)], &cfg))
		assert.Equal(t, []string{"/pause"}, cfg.Config.Entrypoint)
		assert.Equal(t, b.Platform.Arch, cfg.Architecture)

		zr, err := gzip.NewReader(bytes.NewReader(files[export.BlobPath(m.Layers[0].Digest)]))
		require.NoError(t, err)
		tarBytes, err := io.ReadAll(zr)
		require.NoError(t, err)
		assert.Equal(t, []digest.Digest{digest.FromBytes(tarBytes)}, cfg.RootFS.DiffIDs, "diff_id is the uncompressed layer's digest")
		want, err := os.ReadFile(b.Path)
		require.NoError(t, err)
		layerFiles := untar(t, tarBytes)
		assert.Equal(t, want, layerFiles["pause"], "the layer holds the binary at /pause")
	}
}

func TestRunErrors(t *testing.T) {
	bin := testbin.Build(t, crossbuild.Platform{OS: "linux", Arch: "amd64"})
	out := filepath.Join(t.TempDir(), "pause.tar")
	tests := []struct {
		name string
		ref  string
		args []string
		want string
	}{
		{"no binaries", "p:v1", nil, "usage"},
		{"no platform", "p:v1", []string{bin}, "want OS/ARCH=PATH"},
		{"unknown platform", "p:v1", []string{"linux/mips=" + bin}, "not supported"},
		{"no tag", "p", []string{"linux/amd64=" + bin}, "want NAME:TAG"},
		{"missing binary", "p:v1", []string{"linux/amd64=" + filepath.Join(t.TempDir(), "nope")}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(out, tt.ref, tt.args)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

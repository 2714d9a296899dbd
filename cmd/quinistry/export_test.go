package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExportFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no destination", nil, "give --oci-layout DIR or --tar FILE"},
		{"bad format", []string{"--tar", "x", "--format", "zip"}, `unknown format "zip"`},
		{"bad name", []string{"--tar", "x", "--name", "Q"}, "invalid repository name"},
		{"bad tag", []string{"--tar", "x", "--tag", "-t"}, "invalid tag"},
		{"bad platform", []string{"--tar", "x", "--platform", "linux/mips"}, `"linux/mips"`},
		{"extra argument", []string{"--tar", "x", "y"}, `unexpected argument "y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"export"}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.ErrorAs(t, err, new(usageError))
		})
	}
}

// TestExportUnknownPlatform checks that a --platform the image does not
// have is a usage error (exit 2) naming what it has, and writes nothing.
func TestExportUnknownPlatform(t *testing.T) {
	other := "linux/arm64"
	if runtime.GOARCH == "arm64" {
		other = "linux/amd64"
	}
	tarFile := filepath.Join(t.TempDir(), "q.tar")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"export", "--siblings", t.TempDir(), "--tar", tarFile, "--platform", other}, &stdout, &bytes.Buffer{})
	require.Error(t, err)
	assert.ErrorAs(t, err, new(usageError))
	assert.Equal(t, "export: --platform "+other+": the image has no such platform (it has linux/"+runtime.GOARCH+")", err.Error())
	assert.Empty(t, stdout.String())
	_, serr := os.Stat(tarFile)
	assert.True(t, errors.Is(serr, os.ErrNotExist), "no tar written")
}

// layoutDescriptor is the part of a descriptor the checks read.
type layoutDescriptor struct {
	MediaType   string `json:"mediaType"`
	Digest      string `json:"digest"`
	Size        int64  `json:"size"`
	Platform    *struct{ Architecture, OS string }
	Annotations map[string]string `json:"annotations"`
}

// readTar returns a tar's regular files by name; it fails on duplicates.
func readTar(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.NotContains(t, files, h.Name, "duplicate entry")
		files[h.Name] = b
	}
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "q.tar")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"export", "--siblings", t.TempDir(), "--tar", tarFile, "--oci-layout", filepath.Join(dir, "layout")}, &stdout, &bytes.Buffer{})
	require.NoError(t, err)
	listDigest := strings.TrimSpace(stdout.String())
	require.Regexp(t, `^sha256:[0-9a-f]{64}$`, listDigest)
	_, err = os.Stat(filepath.Join(dir, "layout", "blobs", "sha256", strings.TrimPrefix(listDigest, "sha256:")))
	assert.NoError(t, err, "the list is in the layout")

	data, err := os.ReadFile(tarFile)
	require.NoError(t, err)
	files := readTar(t, data)

	// Every blob is stored under its own digest, hashed here.
	blobs := 0
	for name, b := range files {
		if !strings.HasPrefix(name, "blobs/") {
			continue
		}
		blobs++
		assert.Equal(t, "blobs/sha256/"+sha256Hex(b), name)
	}
	blob := func(d string) []byte {
		b, ok := files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")]
		require.True(t, ok, "blob %s is in the tar", d)
		return b
	}

	assert.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(files["oci-layout"]))

	// index.json names the list by the printed digest, with the names
	// docker and containerd load it under.
	var idx struct {
		SchemaVersion int                `json:"schemaVersion"`
		MediaType     string             `json:"mediaType"`
		Manifests     []layoutDescriptor `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(files["index.json"], &idx))
	assert.Equal(t, 2, idx.SchemaVersion)
	assert.Equal(t, "application/vnd.oci.image.index.v1+json", idx.MediaType)
	require.Len(t, idx.Manifests, 2, "the list, then the one image's SBOM")
	sbomRef := idx.Manifests[1]
	assert.Equal(t, "application/vnd.oci.image.manifest.v1+json", sbomRef.MediaType)
	assert.Equal(t, runtime.GOOS+"/"+runtime.GOARCH, sbomRef.Annotations["io.github.quinistry.sbom.platform"])
	assert.NotContains(t, sbomRef.Annotations, "org.opencontainers.image.ref.name", "the SBOM is not a tagged image")
	blob(sbomRef.Digest)
	ref := idx.Manifests[0]
	assert.Equal(t, listDigest, ref.Digest)
	assert.Equal(t, map[string]string{"io.containerd.image.name": "docker.io/library/quinistry:latest", "org.opencontainers.image.ref.name": "latest"}, ref.Annotations)
	listData := blob(ref.Digest)
	assert.Equal(t, int64(len(listData)), ref.Size)
	var list struct {
		MediaType string             `json:"mediaType"`
		Manifests []layoutDescriptor `json:"manifests"`
	}
	require.NoError(t, json.Unmarshal(listData, &list))
	assert.Equal(t, list.MediaType, ref.MediaType, "index.json gives the list's own media type")
	require.Len(t, list.Manifests, 1, "only the running binary's platform")
	require.NotNil(t, list.Manifests[0].Platform)
	assert.Equal(t, runtime.GOARCH, list.Manifests[0].Platform.Architecture)

	// manifest.json points at this platform's config and layers.
	var image struct {
		Config layoutDescriptor   `json:"config"`
		Layers []layoutDescriptor `json:"layers"`
	}
	require.NoError(t, json.Unmarshal(blob(list.Manifests[0].Digest), &image))
	wantLayers := []string{}
	for _, l := range image.Layers {
		wantLayers = append(wantLayers, "blobs/sha256/"+strings.TrimPrefix(l.Digest, "sha256:"))
		assert.Equal(t, l.Size, int64(len(blob(l.Digest))))
	}
	assert.Equal(t, image.Config.Size, int64(len(blob(image.Config.Digest))))
	var legacy []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	require.NoError(t, json.Unmarshal(files["manifest.json"], &legacy))
	require.Len(t, legacy, 1)
	assert.Equal(t, "blobs/sha256/"+strings.TrimPrefix(image.Config.Digest, "sha256:"), legacy[0].Config)
	assert.Equal(t, []string{"quinistry:latest"}, legacy[0].RepoTags)
	assert.Equal(t, wantLayers, legacy[0].Layers)
	assert.Equal(t, 3+len(image.Layers)+3, blobs, "the list, the manifest, the config and the layers, and the SBOM's manifest, empty config and document, no more")

	// --tar - writes the same bytes to standard output, and no digest.
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"export", "--siblings", t.TempDir(), "--tar", "-"}, &out, &bytes.Buffer{}))
	assert.True(t, bytes.Equal(data, out.Bytes()), "--tar - writes the tar --tar FILE writes")

	err = run(context.Background(), []string{"export", "--siblings", t.TempDir(), "--tar", "/dev/full"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Equal(t, "cannot write /dev/full: no space left on device", err.Error())
}

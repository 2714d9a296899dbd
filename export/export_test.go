package export_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/export"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/sbom"
)

var (
	amd64 = testcontent.Amd64
	arm64 = testcontent.Arm64
)

// untar reads every regular file of a tar, checking the headers are fixed.
func untar(t *testing.T, data []byte) (map[string][]byte, []string) {
	t.Helper()
	files := map[string][]byte{}
	var names []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, names
		}
		require.NoError(t, err)
		names = append(names, hdr.Name)
		assert.Equal(t, time.Unix(0, 0), hdr.ModTime, hdr.Name)
		assert.Zero(t, hdr.Uid)
		assert.Zero(t, hdr.Gid)
		if hdr.Typeflag == tar.TypeReg {
			assert.Equal(t, int64(0o644), hdr.Mode)
			b, err := io.ReadAll(tr)
			require.NoError(t, err)
			files[hdr.Name] = b
		}
	}
}

func TestTarIsALoadableLayout(t *testing.T) {
	tests := []struct {
		name     string
		format   index.Format
		opts     export.Options
		wantRef  string
		wantTag  string
		platform crossbuild.Platform
	}{
		{"docker, default name", index.Docker, export.Options{Name: "quinistry", Tag: "latest"}, "docker.io/library/quinistry:latest", "quinistry:latest", amd64},
		{"oci, team name, arm64", index.OCI, export.Options{Name: "team/q", Tag: "v1", Platform: arm64}, "docker.io/team/q:v1", "team/q:v1", arm64},
		{"host in the name", index.Docker, export.Options{Name: "localhost:5000/q", Tag: "x", Platform: amd64}, "localhost:5000/q:x", "localhost:5000/q:x", amd64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testcontent.Content(t, index.Options{Format: tt.format})
			var buf bytes.Buffer
			require.NoError(t, export.WriteTar(&buf, c, tt.opts))
			files, names := untar(t, buf.Bytes())
			assert.Equal(t, []string{"blobs/", "blobs/sha256/"}, names[:2], "directories first")

			assert.JSONEq(t, `{"imageLayoutVersion":"1.0.0"}`, string(files["oci-layout"]))
			var idx index.List
			require.NoError(t, json.Unmarshal(files["index.json"], &idx))
			require.Len(t, idx.Manifests, 1)
			ref := idx.Manifests[0]
			assert.Equal(t, c.List.Digest, ref.Digest)
			assert.Equal(t, c.List.MediaType, ref.MediaType)
			assert.Equal(t, tt.wantRef, ref.Annotations[export.ImageNameAnnotation])
			assert.Equal(t, tt.opts.Tag, ref.Annotations[export.RefNameAnnotation])

			// Every blob is stored under its own digest, and everything the
			// list reaches is there.
			for name, data := range files {
				if filepath.Dir(name) == "blobs/sha256" {
					assert.Equal(t, "blobs/sha256/"+digest.FromBytes(data).Encoded(), name)
				}
			}
			want := []index.Blob{c.List}
			for _, img := range c.Images {
				want = append(want, img.Manifest, img.Config)
			}
			want = append(want, c.Layers...)
			for _, b := range want {
				assert.Equal(t, b.Data, files[export.BlobPath(b.Digest)])
			}

			var legacy []export.LegacyManifest
			require.NoError(t, json.Unmarshal(files["manifest.json"], &legacy))
			require.Len(t, legacy, 1)
			assert.Equal(t, []string{tt.wantTag}, legacy[0].RepoTags)
			var img index.Image
			for _, im := range c.Images {
				if im.Platform == tt.platform {
					img = im
				}
			}
			assert.Equal(t, export.BlobPath(img.Config.Digest), legacy[0].Config)
			require.Len(t, legacy[0].Layers, len(c.Layers))
			for i, l := range c.Layers {
				assert.Equal(t, export.BlobPath(l.Digest), legacy[0].Layers[i])
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	opts := export.Options{Name: "quinistry", Tag: "latest"}
	var a, b bytes.Buffer
	require.NoError(t, export.WriteTar(&a, c, opts))
	require.NoError(t, export.WriteTar(&b, c, opts))
	assert.Equal(t, digest.FromBytes(a.Bytes()), digest.FromBytes(b.Bytes()))

	// The directory holds the same files as the tar.
	dir := t.TempDir()
	require.NoError(t, export.WriteDir(dir, c, opts))
	require.NoError(t, export.WriteDir(dir, c, opts), "a second export over the first")
	files, _ := untar(t, a.Bytes())
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		assert.Equal(t, files[filepath.ToSlash(rel)], data, rel)
		fi, err := d.Info()
		require.NoError(t, err)
		assert.Equal(t, int64(0), fi.ModTime().Unix(), rel)
		n++
		return nil
	}))
	assert.Equal(t, len(files), n)
}

func TestErrors(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	opts := export.Options{Name: "quinistry", Tag: "latest"}
	locked := filepath.Join(t.TempDir(), "locked")
	require.NoError(t, os.Mkdir(locked, 0o500))
	tests := []struct {
		name  string
		write func() error
		want  string
	}{
		{"full disk", func() error { return export.WriteTarFile("/dev/full", io.Discard, c, opts) }, "cannot write /dev/full: no space left on device"},
		{"missing directory", func() error {
			return export.WriteTarFile(filepath.Join(t.TempDir(), "no", "q.tar"), io.Discard, c, opts)
		}, "no such file or directory"},
		{"no such platform", func() error {
			return export.WriteTar(io.Discard, c, export.Options{Name: "q", Tag: "t", Platform: crossbuild.Platform{OS: "linux", Arch: "s390x"}})
		}, "no image for linux/s390x"},
		{"no name", func() error { return export.WriteTar(io.Discard, c, export.Options{Tag: "t"}) }, "a name and a tag are needed"},
		{"nothing to export", func() error { return export.WriteTar(io.Discard, &index.Content{}, opts) }, "no image to export"},
	}
	if os.Geteuid() != 0 { // root writes anywhere
		tests = append(tests, struct {
			name  string
			write func() error
			want  string
		}{"unwritable directory", func() error { return export.WriteDir(filepath.Join(locked, "out"), c, opts) }, "permission denied"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.write()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestNames(t *testing.T) {
	tests := []struct{ in, full, familiar string }{
		{"quinistry", "docker.io/library/quinistry", "quinistry"},
		{"team/q", "docker.io/team/q", "team/q"},
		{"registry.example.com/team/q", "registry.example.com/team/q", "registry.example.com/team/q"},
		{"localhost/q", "localhost/q", "localhost/q"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.full, export.FullName(tt.in), tt.in)
		assert.Equal(t, tt.familiar, export.FamiliarName(tt.in), tt.in)
	}
}

func TestLayoutHoldsTheSBOMs(t *testing.T) {
	c := testcontent.AttachSBOMs(t, testcontent.Content(t, index.Options{Format: index.OCI}))
	dir := t.TempDir()
	require.NoError(t, export.WriteDir(dir, c, export.Options{Name: "quinistry", Tag: "latest"}))

	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	require.NoError(t, err)
	var idx index.List
	require.NoError(t, json.Unmarshal(data, &idx))
	require.Len(t, idx.Manifests, 1+len(c.Images))
	assert.Equal(t, c.List.Digest, idx.Manifests[0].Digest, "the list comes first")
	for i, a := range c.Artifacts {
		d := idx.Manifests[1+i]
		assert.Equal(t, a.Descriptor(), d)
		assert.Equal(t, sbom.MediaType, d.ArtifactType)
		assert.NotContains(t, d.Annotations, export.RefNameAnnotation, "an SBOM is not a tagged image")
		for _, b := range append([]index.Blob{a.Manifest}, a.Blobs...) {
			got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(export.BlobPath(b.Digest))))
			require.NoError(t, err)
			assert.Equal(t, b.Data, got)
		}
	}
}

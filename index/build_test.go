package index_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testbin"
	"github.com/quinistry/quinistry/internal/testcontent"
)

var (
	amd64 = testcontent.Amd64
	arm64 = testcontent.Arm64
	armv7 = crossbuild.Platform{OS: "linux", Arch: "arm", Variant: "v7"}
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestBuildMakesOneImagePerPlatform(t *testing.T) {
	for _, format := range []index.Format{index.Docker, index.OCI} {
		t.Run(string(format), func(t *testing.T) {
			types := format.MediaTypes()
			bins := testcontent.Binaries(t, amd64, arm64, armv7)
			c, err := index.Build(context.Background(), bins, index.Options{Format: format})
			require.NoError(t, err)

			assert.Equal(t, digestOf(c.List.Data), c.List.Digest.String())
			var list index.List
			require.NoError(t, json.Unmarshal(c.List.Data, &list))
			assert.Equal(t, 2, list.SchemaVersion)
			assert.Equal(t, types.List, list.MediaType)
			assert.Equal(t, types.List, c.List.MediaType)
			require.Len(t, list.Manifests, 3)
			wantPlatforms := []index.PlatformField{
				{Architecture: "amd64", OS: "linux"},
				{Architecture: "arm64", OS: "linux", Variant: "v8"},
				{Architecture: "arm", OS: "linux", Variant: "v7"},
			}
			require.Len(t, c.Layers, 3)
			for i, d := range list.Manifests {
				assert.Equal(t, wantPlatforms[i], *d.Platform)
				assert.Equal(t, types.Manifest, d.MediaType)

				m, ok := c.Manifest(d.Digest)
				require.True(t, ok)
				assert.Equal(t, digestOf(m.Data), d.Digest.String())
				assert.Equal(t, int64(len(m.Data)), d.Size)
				var man index.Manifest
				require.NoError(t, json.Unmarshal(m.Data, &man))
				assert.Equal(t, types.Manifest, man.MediaType)
				assert.Equal(t, types.Config, man.Config.MediaType)

				// Every image carries every binary, each layer the same blob.
				require.Len(t, man.Layers, 3)
				for j, l := range man.Layers {
					assert.Equal(t, types.Layer, l.MediaType)
					assert.Equal(t, c.Layers[j].Descriptor, l)
					blob, ok := c.Blob(l.Digest)
					require.True(t, ok)
					assert.Equal(t, digestOf(blob.Data), l.Digest.String())
				}

				cb, ok := c.Blob(man.Config.Digest)
				require.True(t, ok)
				assert.Equal(t, digestOf(cb.Data), man.Config.Digest.String())
				var cfg index.Config
				require.NoError(t, json.Unmarshal(cb.Data, &cfg))
				p := bins[i].Platform
				assert.Equal(t, p.OS, cfg.OS)
				assert.Equal(t, p.Arch, cfg.Architecture)
				assert.Equal(t, p.ImageVariant(), cfg.Variant)
				assert.Equal(t, []string{"/" + p.FileName()}, cfg.Config.Entrypoint)
				assert.Equal(t, "65532", cfg.Config.User)
				assert.Contains(t, cfg.Config.ExposedPorts, "8080/tcp")
				assert.Equal(t, []string{"PATH=/"}, cfg.Config.Env)
				assert.Equal(t, "https://"+testbin.ModulePath, cfg.Config.Labels["org.opencontainers.image.source"])
				assert.Equal(t, testbin.Revision(t), cfg.Config.Labels["org.opencontainers.image.revision"])
				assert.Len(t, cfg.History, 3)
				assert.Len(t, cfg.RootFS.DiffIDs, 3)
				require.NotNil(t, cfg.Created)
				assert.Equal(t, testbin.CommitTime, cfg.Created.Format(time.RFC3339))

				// One media-type family only.
				other := index.Docker
				if format == index.Docker {
					other = index.OCI
				}
				for _, doc := range [][]byte{c.List.Data, m.Data} {
					for _, mt := range []string{other.MediaTypes().List, other.MediaTypes().Manifest, other.MediaTypes().Config, other.MediaTypes().Layer} {
						assert.NotContains(t, string(doc), mt)
					}
				}
			}
			assert.Equal(t, c.Images[0], c.Default())
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	bins := testcontent.Binaries(t, amd64, arm64)
	a, err := index.Build(context.Background(), bins, index.Options{})
	require.NoError(t, err)
	b, err := index.Build(context.Background(), bins, index.Options{})
	require.NoError(t, err)
	assert.Equal(t, a.List, b.List)
	assert.Equal(t, a.Images, b.Images)
	require.Len(t, b.Layers, len(a.Layers))
	for i := range a.Layers {
		assert.Equal(t, a.Layers[i].Descriptor, b.Layers[i].Descriptor)
		assert.Equal(t, a.Layers[i].Data, b.Layers[i].Data)
		require.NotNil(t, a.Layers[i].File, "layers are held in memory files on Linux")
		fromFile, err := io.ReadAll(io.NewSectionReader(a.Layers[i].File, 0, a.Layers[i].Size))
		require.NoError(t, err)
		assert.Equal(t, a.Layers[i].Data, fromFile)
	}
	require.NoError(t, a.Close())
	require.NoError(t, b.Close())
	assert.Equal(t, index.Docker, a.Format)
}

func TestCreated(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	noVCS := testcontent.Binaries(t, amd64)
	noVCS[0].Info = &debug.BuildInfo{}
	tests := []struct {
		name    string
		bins    []crossbuild.Binary
		created *time.Time
		want    string
	}{
		{"SOURCE_DATE_EPOCH wins", testcontent.Binaries(t, amd64), &epoch, `"created":"2023-11-14T22:13:20Z"`},
		{"vcs.time", testcontent.Binaries(t, amd64), nil, `"created":"` + testbin.CommitTime + `"`},
		{"neither", noVCS, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := index.Build(context.Background(), tt.bins, index.Options{Created: tt.created})
			require.NoError(t, err)
			cfg := string(c.Images[0].Config.Data)
			if tt.want == "" {
				assert.NotContains(t, cfg, "created\":")
			} else {
				assert.Contains(t, cfg, tt.want)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	_, err := index.Build(context.Background(), nil, index.Options{})
	assert.ErrorContains(t, err, "no binaries")
	_, err = index.Build(context.Background(), []crossbuild.Binary{{Platform: amd64, Path: filepath.Join(t.TempDir(), "gone")}}, index.Options{})
	assert.ErrorContains(t, err, "no such file")
	_, err = index.Build(context.Background(), testcontent.Binaries(t, amd64), index.Options{Format: "zip"})
	assert.ErrorContains(t, err, "unknown format")
}

// TestFixedPoint packs binaries, takes the files back out of the served
// layers as a container would see them, packs those with the settings that
// generation 2 reads from the served config's Env only (as a runtime starts
// it: nothing else of generation 1 reaches it), and expects the same list,
// byte for byte.
func TestFixedPoint(t *testing.T) {
	epoch := time.Unix(1000000000, 0).UTC()
	tests := []struct {
		name    string
		opts    index.Options // generation 1's, with the Env quinistry gives such an image
		wantEnv []string
	}{
		{"docker", index.Options{Format: index.Docker}, []string{"PATH=/"}},
		{"oci", index.Options{Format: index.OCI, Env: []string{"QUINISTRY_FORMAT=oci"}}, []string{"PATH=/", "QUINISTRY_FORMAT=oci"}},
		{"oci with SOURCE_DATE_EPOCH", index.Options{Format: index.OCI, Created: &epoch, Env: []string{"QUINISTRY_FORMAT=oci", "SOURCE_DATE_EPOCH=1000000000"}},
			[]string{"PATH=/", "QUINISTRY_FORMAT=oci", "SOURCE_DATE_EPOCH=1000000000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gen1, err := index.Build(context.Background(), testcontent.Binaries(t, amd64, arm64), tt.opts)
			require.NoError(t, err)
			defer gen1.Close()

			rootfs := t.TempDir()
			var m index.Manifest
			require.NoError(t, json.Unmarshal(gen1.Default().Manifest.Data, &m))
			for _, l := range m.Layers {
				blob, ok := gen1.Blob(l.Digest)
				require.True(t, ok)
				extract(t, blob.Data, rootfs)
			}
			var cfg index.Config
			require.NoError(t, json.Unmarshal(gen1.Default().Config.Data, &cfg))
			require.Equal(t, tt.wantEnv, cfg.Config.Env)

			var bins []crossbuild.Binary
			for _, p := range []crossbuild.Platform{amd64, arm64} {
				path := filepath.Join(rootfs, p.FileName())
				require.NoError(t, crossbuild.CheckELF(path, p))
				info, err := buildinfo.ReadFile(path)
				require.NoError(t, err)
				bins = append(bins, crossbuild.Binary{Platform: p, Path: path, Info: info})
			}
			gen2, err := index.Build(context.Background(), bins, optionsFromEnv(t, cfg.Config.Env))
			require.NoError(t, err)
			defer gen2.Close()
			assert.Equal(t, gen1.List.Digest, gen2.List.Digest)
			assert.Equal(t, string(gen1.List.Data), string(gen2.List.Data))
		})
	}
}

// optionsFromEnv is what generation 2 knows of its settings: the image
// config's Env, read as quinistry reads QUINISTRY_FORMAT and
// SOURCE_DATE_EPOCH (cmd/quinistry's TestImageCarriesItsSettings checks its
// real flag parsing), and carried on in its own configs after PATH.
func optionsFromEnv(t *testing.T, env []string) index.Options {
	t.Helper()
	opts := index.Options{Format: index.Docker}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH":
			continue
		case "QUINISTRY_FORMAT":
			f, err := index.ParseFormat(v)
			require.NoError(t, err)
			opts.Format = f
		case "SOURCE_DATE_EPOCH":
			secs, err := strconv.ParseInt(v, 10, 64)
			require.NoError(t, err)
			created := time.Unix(secs, 0).UTC()
			opts.Created = &created
		}
		opts.Env = append(opts.Env, kv)
	}
	return opts
}

// extract unpacks a gzip tar layer into dir.
func extract(t *testing.T, layer []byte, dir string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	require.NoError(t, err)
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		require.NoError(t, err)
		require.False(t, strings.Contains(hdr.Name, ".."))
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, hdr.Name), data, os.FileMode(hdr.Mode)))
	}
}

func TestVersionTag(t *testing.T) {
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"release", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{rev}}, "v1.2.3"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261127100000-0123456789ab"}, Settings: []debug.BuildSetting{rev}}, "0123456789ab"},
		{"dirty", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261127100000-0123456789ab+dirty"}, Settings: []debug.BuildSetting{rev, dirty}}, "0123456789ab-dirty"},
		{"devel without VCS", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, ""},
		{"nil", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, index.VersionTag(tt.bi))
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"docker", "oci"} {
		f, err := index.ParseFormat(s)
		require.NoError(t, err)
		assert.Equal(t, index.Format(s), f)
	}
	_, err := index.ParseFormat("OCI")
	assert.ErrorContains(t, err, `unknown format "OCI"`)
}

func BenchmarkBuild(b *testing.B) {
	all := []crossbuild.Platform{amd64, arm64, armv7}
	for n := 1; n <= len(all); n++ {
		bins := testcontent.Binaries(b, all[:n]...)
		b.Run(fmt.Sprintf("%dplatforms", n), func(b *testing.B) {
			for b.Loop() {
				_, err := index.Build(context.Background(), bins, index.Options{})
				require.NoError(b, err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	c := testcontent.Content(t, index.Options{})
	require.NoError(t, c.Verify())

	corrupt := *c
	corrupt.Images = append([]index.Image(nil), c.Images...)
	cfg := append([]byte(nil), c.Images[1].Config.Data...)
	cfg[0] ^= 1
	corrupt.Images[1].Config.Data = cfg
	assert.ErrorContains(t, corrupt.Verify(), "self-check: "+c.Images[1].Config.Digest.String()+" hashes to")

	short := *c
	short.List.Data = c.List.Data[:len(c.List.Data)-1]
	assert.ErrorContains(t, short.Verify(), "self-check")
}

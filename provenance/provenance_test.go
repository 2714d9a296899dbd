package provenance_test

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/provenance"
)

// fakes are two small platform binaries.
var fakes = []testcontent.Fake{
	{Platform: testcontent.Amd64, Size: 4096, Seed: 1},
	{Platform: testcontent.Arm64, Size: 4096, Seed: 2},
}

// binaries gives every image of c the fake build information of its
// platform, with two modules (one replaced) added.
func binaries(c *index.Content) []crossbuild.Binary {
	var bins []crossbuild.Binary
	for _, img := range c.Images {
		info := testcontent.FakeInfo(img.Platform)
		info.Settings = append([]debug.BuildSetting{{Key: "-trimpath", Value: "true"}, {Key: "CGO_ENABLED", Value: "0"}}, info.Settings...)
		info.Deps = []*debug.Module{
			{Path: "golang.org/x/sync", Version: "v0.25.0", Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
			{Path: "github.com/opencontainers/go-digest", Version: "v1.0.0", Sum: "h1:ZmtU1RjZGSMAkSQ9ECO8fuOkLrAwhyJ2PF1NmSE3PTY=",
				Replace: &debug.Module{Path: "example.com/fork/go-digest", Version: "v1.0.1", Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}},
		}
		bins = append(bins, crossbuild.Binary{Platform: img.Platform, Info: info})
	}
	return bins
}

func TestNew(t *testing.T) {
	epoch := time.Unix(1700000000, 0).UTC()
	tests := []struct {
		name    string
		opts    index.Options
		created *time.Time
		// wantTime is the metadata's startedOn and finishedOn, "" for none.
		wantTime string
		wantSDE  *int64
	}{
		{name: "docker, the config's created from vcs.time", opts: index.Options{Format: index.Docker}, wantTime: "2026-11-27T12:00:00Z"},
		{name: "oci with SOURCE_DATE_EPOCH", opts: index.Options{Format: index.OCI, Created: &epoch}, created: &epoch,
			wantTime: "2023-11-14T22:13:20Z", wantSDE: new(int64(1700000000))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testcontent.Random(t, tt.opts, fakes...)
			st, err := provenance.New(provenance.Image{Content: c, Binaries: binaries(c), Created: tt.created})
			require.NoError(t, err)
			data, err := st.Marshal()
			require.NoError(t, err)
			var got provenance.Statement
			require.NoError(t, json.Unmarshal(data, &got))

			assert.Equal(t, provenance.StatementType, got.Type)
			assert.Equal(t, provenance.PredicateType, got.PredicateType)
			want := []provenance.Subject{{Name: "quinistry", Digest: map[string]string{"sha256": c.List.Digest.Encoded()}}}
			for _, img := range c.Images {
				want = append(want, provenance.Subject{Name: img.Platform.FileName(), Digest: map[string]string{"sha256": img.Manifest.Digest.Encoded()}})
			}
			assert.Equal(t, want, got.Subject, "the subjects are the list and every platform manifest")

			bd := got.Predicate.BuildDefinition
			assert.Equal(t, provenance.BuildType, bd.BuildType)
			assert.Equal(t, string(tt.opts.Format), bd.ExternalParameters.Format)
			assert.Equal(t, []string{"linux/amd64", "linux/arm64"}, bd.ExternalParameters.Platforms)
			assert.Equal(t, tt.wantSDE, bd.ExternalParameters.SourceDateEpoch)
			assert.Equal(t, []provenance.Setting{{Key: "-trimpath", Value: "true"}, {Key: "CGO_ENABLED", Value: "0"}, {Key: "GOOS", Value: "linux"}},
				bd.ExternalParameters.BuildFlags, "the build flags leave out GOARCH and vcs settings")
			require.Len(t, bd.InternalParameters.Binaries, 2)
			assert.Equal(t, "/quinistry-linux-arm64", bd.InternalParameters.Binaries[1].Path)
			assert.Contains(t, bd.InternalParameters.Binaries[1].Settings, provenance.Setting{Key: "GOARCH", Value: "arm64"})

			deps := bd.ResolvedDependencies
			require.Len(t, deps, 4, "source, toolchain, two modules")
			assert.Equal(t, "git+https://github.com/quinistry/quinistry@0123456789abcdef0123456789abcdef01234567", deps[0].URI)
			assert.Equal(t, map[string]string{"gitCommit": "0123456789abcdef0123456789abcdef01234567"}, deps[0].Digest)
			assert.Equal(t, "pkg:golang/stdlib@go1.26.8", deps[1].URI)
			assert.Equal(t, "github.com/opencontainers/go-digest", deps[2].Name, "modules sorted by path")
			assert.Equal(t, "pkg:golang/github.com/opencontainers/go-digest@v1.0.1", deps[2].URI, "a replaced module at its replacement's version")
			assert.Equal(t, "example.com/fork/go-digest v1.0.1", deps[2].Annotations["replacedBy"])
			assert.Equal(t, map[string]string{"dirHash": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}, deps[3].Digest, "dirHash is the h1 hash in hex")
			assert.Equal(t, "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", deps[3].Annotations["goSum"])
			assert.Equal(t, "v0.25.0", deps[3].Annotations["version"])

			assert.Equal(t, provenance.BuilderID, got.Predicate.RunDetails.Builder.ID)
			if tt.wantTime == "" {
				assert.Nil(t, got.Predicate.RunDetails.Metadata)
			} else {
				require.NotNil(t, got.Predicate.RunDetails.Metadata)
				assert.Equal(t, provenance.Metadata{StartedOn: tt.wantTime, FinishedOn: tt.wantTime}, *got.Predicate.RunDetails.Metadata)
			}

			again, err := provenance.New(provenance.Image{Content: c, Binaries: binaries(c), Created: tt.created})
			require.NoError(t, err)
			data2, err := again.Marshal()
			require.NoError(t, err)
			assert.True(t, bytes.Equal(data, data2), "the same content and build information give the same bytes")
		})
	}
}

func TestNewRefuses(t *testing.T) {
	c := testcontent.Random(t, index.Options{}, fakes...)
	bad := binaries(c)
	bad[0].Info.Deps[0].Sum = "h1:not-base64"
	tests := []struct {
		name string
		img  provenance.Image
	}{
		{"no content", provenance.Image{}},
		{"a platform with no binary", provenance.Image{Content: c, Binaries: binaries(c)[:1]}},
		{"a go.sum hash that is not h1", provenance.Image{Content: c, Binaries: bad}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := provenance.New(tt.img)
			assert.Error(t, err)
		})
	}
}

func TestNoVCSRevision(t *testing.T) {
	c := testcontent.Random(t, index.Options{}, fakes...)
	bins := binaries(c)
	for _, b := range bins {
		b.Info.Settings = b.Info.Settings[:3]
	}
	st, err := provenance.New(provenance.Image{Content: c, Binaries: bins})
	require.NoError(t, err)
	src := st.Predicate.BuildDefinition.ResolvedDependencies[0]
	assert.Equal(t, "git+https://github.com/quinistry/quinistry", src.URI)
	assert.Nil(t, src.Digest)
}

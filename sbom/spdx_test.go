package sbom_test

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdxlib"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/sbom"
)

var (
	amd64 = testcontent.Amd64
	arm64 = testcontent.Arm64
	armv7 = crossbuild.Platform{OS: "linux", Arch: "arm", Variant: "v7"}
)

// selfInfo is the build information of quinistry itself, built once for
// the tests: the real bi.Deps the images are described from. (A test
// binary's own build information lists no modules.)
func selfInfo(t *testing.T) *debug.BuildInfo {
	t.Helper()
	infoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "quinistry-sbom-test-")
		if err != nil {
			infoErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "quinistry")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/quinistry")
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			infoErr = fmt.Errorf("go build: %v: %s", err, msg)
			return
		}
		info, infoErr = buildinfo.ReadFile(out)
	})
	require.NoError(t, infoErr)
	require.NotEmpty(t, info.Deps)
	// Each caller gets its own copy to change.
	c := *info
	return &c
}

var (
	infoOnce sync.Once
	info     *debug.BuildInfo
	infoErr  error
)

// readBack parses a document with tools-golang and validates it.
func readBack(t *testing.T, data []byte) *spdx.Document {
	t.Helper()
	doc, err := spdxjson.Read(bytes.NewReader(data))
	require.NoError(t, err)
	require.NoError(t, spdxlib.ValidateDocument(doc))
	return doc
}

func TestDocumentReadsBackWithEveryModule(t *testing.T) {
	bi := selfInfo(t)
	created := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	d := digest.FromString("a platform manifest")
	doc, err := sbom.New(sbom.Image{Platform: arm64, Manifest: d, Created: &created, Info: bi})
	require.NoError(t, err)
	data, err := doc.Marshal()
	require.NoError(t, err)

	got := readBack(t, data)
	assert.Equal(t, "SPDX-2.3", got.SPDXVersion)
	assert.Equal(t, "CC0-1.0", got.DataLicense)
	assert.Equal(t, "2026-11-27T10:00:00Z", got.CreationInfo.Created)
	assert.Equal(t, sbom.Namespace(arm64, d), got.DocumentNamespace)
	assert.Contains(t, got.DocumentNamespace, d.Encoded())

	// Every package and relationship survives the round trip.
	require.Len(t, got.Packages, len(doc.Packages))
	byName := map[string]*spdx.Package{}
	for i, p := range got.Packages {
		assert.Equal(t, doc.Packages[i].SPDXID, "SPDXRef-"+string(p.PackageSPDXIdentifier))
		byName[p.PackageName] = p
	}
	require.Len(t, got.Relationships, len(doc.Relationships))
	for i, r := range got.Relationships {
		want := doc.Relationships[i]
		assert.Equal(t, want.SPDXElementID, "SPDXRef-"+string(r.RefA.ElementRefID))
		assert.Equal(t, want.RelationshipType, r.Relationship)
		assert.Equal(t, want.RelatedSPDXElement, "SPDXRef-"+string(r.RefB.ElementRefID))
	}

	image := byName["quinistry"]
	require.NotNil(t, image)
	assert.Equal(t, "CONTAINER", image.PrimaryPackagePurpose)
	require.Len(t, image.PackageExternalReferences, 1)
	assert.Equal(t, "pkg:oci/quinistry@sha256%3A"+d.Encoded()+"?arch=arm64&os=linux&variant=v8", image.PackageExternalReferences[0].Locator)

	// Every dependency module is listed with its version, purl and go.sum
	// hash, and the main module depends on it.
	depends := map[string]bool{}
	for _, r := range got.Relationships {
		if r.RefA.ElementRefID == "Package-go-main" && r.Relationship == "DEPENDS_ON" {
			depends[string(r.RefB.ElementRefID)] = true
		}
	}
	for _, m := range bi.Deps {
		p := byName[m.Path]
		if !assert.NotNil(t, p, "module %s missing", m.Path) {
			continue
		}
		used := m
		if m.Replace != nil {
			used = m.Replace
		}
		assert.Equal(t, used.Version, p.PackageVersion, m.Path)
		require.Len(t, p.PackageExternalReferences, 1, m.Path)
		assert.Equal(t, "pkg:golang/"+m.Path+"@"+used.Version, p.PackageExternalReferences[0].Locator)
		if used.Sum != "" {
			require.Len(t, p.PackageChecksums, 1, m.Path)
			assert.EqualValues(t, "SHA256", p.PackageChecksums[0].Algorithm)
			assert.Len(t, p.PackageChecksums[0].Value, 64)
			assert.Contains(t, p.PackageComment, used.Sum)
		}
		assert.True(t, depends[string(p.PackageSPDXIdentifier)], "main DEPENDS_ON %s", m.Path)
	}
	assert.Len(t, doc.Modules(), len(bi.Deps))
	stdlib := byName[sbom.ToolchainName]
	require.NotNil(t, stdlib)
	assert.Equal(t, bi.GoVersion, stdlib.PackageVersion)
}

func TestDocumentIsDeterministic(t *testing.T) {
	bi := selfInfo(t)
	// The same module list in another order gives the same bytes.
	shuffled := *bi
	shuffled.Deps = slices.Clone(bi.Deps)
	slices.Reverse(shuffled.Deps)
	d := digest.FromString("m")
	var out [][]byte
	for _, info := range []*debug.BuildInfo{bi, bi, &shuffled} {
		doc, err := sbom.New(sbom.Image{Platform: amd64, Manifest: d, Info: info})
		require.NoError(t, err)
		data, err := doc.Marshal()
		require.NoError(t, err)
		out = append(out, data)
	}
	assert.Equal(t, out[0], out[1])
	assert.Equal(t, out[0], out[2])
	assert.Contains(t, string(out[0]), `"created": "`+sbom.Epoch+`"`)
}

func TestModuleFields(t *testing.T) {
	fixture := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "example.com/q", Version: "v1.2.3"},
		Deps: []*debug.Module{
			{Path: "example.com/z", Version: "v0.0.0-20261127120000-0123456789ab", Sum: "h1:SICLXwk7sM4E2xzmjrmnEBkjs/KTmCHgwNs0KjYkD5g="},
			{Path: "example.com/a_b", Version: "v1.0.0", Sum: "h1:1gvgEKudQ6n/8Hy5xZSmEKnQgBbWwdFUOKLwsIfqkYI="},
			{Path: "example.com/a-b", Version: "v1.0.0", Sum: "h1:tb0X0bGw+GTWB/GRLYQreO8uZhA5Kl9cMY6eYRyJrMo="},
			{Path: "example.com/old", Version: "v1.0.0", Replace: &debug.Module{Path: "example.com/new", Version: "v1.1.0", Sum: "h1:nrwe2I9g3BCjMLzD4KkBALw6QTgfSDYk6UQbCJzt7Ww="}},
			{Path: "example.com/local", Version: "v1.0.0", Replace: &debug.Module{Path: "../local"}},
		},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}},
	}
	doc, err := sbom.New(sbom.Image{Platform: armv7, Manifest: digest.FromString("x"), Info: fixture})
	require.NoError(t, err)
	data, err := doc.Marshal()
	require.NoError(t, err)
	readBack(t, data)

	tests := []struct {
		name, id, version, purl, checksum, comment string
	}{
		{"example.com/a-b", "SPDXRef-Package-go-module-example.com-a-b", "v1.0.0", "pkg:golang/example.com/a-b@v1.0.0",
			"b5bd17d1b1b0f864d607f1912d842b78ef2e6610392a5f5c318e9e611c89acca", "h1:tb0X"},
		{"example.com/a_b", "SPDXRef-Package-go-module-example.com-a-b-2", "v1.0.0", "pkg:golang/example.com/a_b@v1.0.0",
			"d60be010ab9d43a9fff07cb9c594a610a9d08016d6c1d15438a2f0b087ea9182", "dirhash"},
		{"example.com/local", "SPDXRef-Package-go-module-example.com-local", "", "", "", "Replaced by ../local"},
		{"example.com/old", "SPDXRef-Package-go-module-example.com-old", "v1.1.0", "pkg:golang/example.com/old@v1.1.0",
			"9ebc1ed88f60dc10a330bcc3e0a90100bc3a41381f483624e9441b089ceded6c", "Replaced by example.com/new v1.1.0"},
		{"example.com/z", "SPDXRef-Package-go-module-example.com-z", "v0.0.0-20261127120000-0123456789ab",
			"pkg:golang/example.com/z@v0.0.0-20261127120000-0123456789ab", "48808b5f093bb0ce04db1ce68eb9a7101923b3f2939821e0c0db342a36240f98", "go.sum hash h1:SICL"},
	}
	mods := doc.Modules()
	require.Len(t, mods, len(tests))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mods[i]
			assert.Equal(t, tt.name, p.Name)
			assert.Equal(t, tt.id, p.SPDXID)
			assert.Equal(t, tt.version, p.VersionInfo)
			if tt.purl == "" {
				assert.Empty(t, p.ExternalRefs)
			} else {
				require.Len(t, p.ExternalRefs, 1)
				assert.Equal(t, tt.purl, p.ExternalRefs[0].ReferenceLocator)
			}
			if tt.checksum == "" {
				assert.Empty(t, p.Checksums)
			} else {
				assert.Equal(t, []sbom.Checksum{{Algorithm: "SHA256", ChecksumValue: tt.checksum}}, p.Checksums)
			}
			assert.Contains(t, p.Comment, tt.comment)
		})
	}
	main, ok := doc.Package(sbom.MainID)
	require.True(t, ok)
	assert.Equal(t, []sbom.ExternalRef{{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: "pkg:golang/example.com/q@v1.2.3"}}, main.ExternalRefs)
	assert.Contains(t, main.Comment, "vcs.revision=abc")
	image, _ := doc.Package(sbom.ImageID)
	assert.Equal(t, "pkg:oci/quinistry@"+strings.ReplaceAll(digest.FromString("x").String(), ":", "%3A")+"?arch=arm&os=linux&variant=v7", image.ExternalRefs[0].ReferenceLocator)
}

func TestNewRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		img  sbom.Image
		want string
	}{
		{"no build info", sbom.Image{Platform: amd64, Manifest: digest.FromString("x")}, "no build information"},
		{"bad digest", sbom.Image{Platform: amd64, Manifest: "sha256:nothex", Info: &debug.BuildInfo{}}, "invalid"},
		{"bad sum", sbom.Image{Platform: amd64, Manifest: digest.FromString("x"), Info: &debug.BuildInfo{
			Deps: []*debug.Module{{Path: "example.com/m", Version: "v1.0.0", Sum: "h2:xyz"}}}}, "not an h1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sbom.New(tt.img)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

// binaries returns testcontent's real cross-built binaries, each given
// quinistry's own build information with its platform's GOOS and GOARCH.
func binaries(t *testing.T, platforms ...crossbuild.Platform) []crossbuild.Binary {
	t.Helper()
	bins := testcontent.Binaries(t, platforms...)
	for b := range bins {
		info := selfInfo(t)
		info.Settings = slices.Clone(info.Settings)
		for i, set := range info.Settings {
			switch set.Key {
			case "GOOS":
				info.Settings[i].Value = bins[b].Platform.OS
			case "GOARCH":
				info.Settings[i].Value = bins[b].Platform.Arch
			}
		}
		bins[b].Info = info
	}
	return bins
}

func TestAttachServesOneReferrerPerImage(t *testing.T) {
	bins := binaries(t, amd64, arm64)
	created := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, format := range []index.Format{index.Docker, index.OCI} {
		t.Run(string(format), func(t *testing.T) {
			build := func() *index.Content {
				c, err := index.Build(context.Background(), bins, index.Options{Format: format, Created: &created})
				require.NoError(t, err)
				t.Cleanup(func() { c.Close() })
				return c
			}
			plain := build()
			c := build()
			require.NoError(t, sbom.Attach(c, bins))
			again := build()
			require.NoError(t, sbom.Attach(again, bins))

			// The list and the images are the ones built without SBOMs.
			assert.Equal(t, plain.List.Digest, c.List.Digest)
			require.Len(t, c.Artifacts, 2)
			require.NoError(t, c.Verify())
			assert.Empty(t, c.Referrers(c.List.Digest, ""))
			assert.Empty(t, c.Referrers(digest.FromString("unknown"), ""))

			for i, img := range c.Images {
				assert.Equal(t, plain.Images[i].Manifest.Digest, img.Manifest.Digest)
				refs := c.Referrers(img.Manifest.Digest, "")
				require.Len(t, refs, 1, img.Platform.String())
				assert.Equal(t, refs, c.Referrers(img.Manifest.Digest, sbom.MediaType))
				assert.Empty(t, c.Referrers(img.Manifest.Digest, "application/vnd.cyclonedx+json"))
				ref := refs[0]
				assert.Equal(t, sbom.MediaType, ref.ArtifactType)
				assert.Equal(t, map[string]string{
					sbom.CreatedAnnotation: "2026-11-27T10:00:00Z", sbom.CreatedFromAnnotation: sbom.CreatedFromConfig,
					sbom.PlatformAnnotation: img.Platform.String(),
				}, ref.Annotations)
				// Byte-identical across two builds.
				assert.Equal(t, ref, again.Referrers(again.Images[i].Manifest.Digest, "")[0])

				mb, ok := c.Manifest(ref.Digest)
				require.True(t, ok)
				var m index.Manifest
				require.NoError(t, json.Unmarshal(mb.Data, &m))
				assert.Equal(t, "application/vnd.oci.image.manifest.v1+json", m.MediaType)
				assert.Equal(t, sbom.MediaType, m.ArtifactType)
				assert.Equal(t, index.EmptyConfig.Descriptor, m.Config)
				require.NotNil(t, m.Subject)
				assert.Equal(t, img.Manifest.Descriptor, *m.Subject)
				require.Len(t, m.Layers, 1)
				assert.Equal(t, img.Platform.FileName()+".spdx.json", m.Layers[0].Annotations[sbom.TitleAnnotation])

				cfg, ok := c.Blob(m.Config.Digest)
				require.True(t, ok)
				assert.Equal(t, "{}", string(cfg.Data))
				layer, ok := c.Blob(m.Layers[0].Digest)
				require.True(t, ok)
				doc := readBack(t, layer.Data)
				assert.Equal(t, sbom.Namespace(img.Platform, img.Manifest.Digest), doc.DocumentNamespace)
				assert.Equal(t, "2026-11-27T10:00:00Z", doc.CreationInfo.Created)
			}
		})
	}
}

func TestAttachWithoutCreatedUsesEpoch(t *testing.T) {
	bins := binaries(t, amd64)
	c, err := index.Build(context.Background(), bins, index.Options{})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, sbom.Attach(c, bins))
	ref := c.Referrers(c.Images[0].Manifest.Digest, "")[0]
	assert.Equal(t, sbom.Epoch, ref.Annotations[sbom.CreatedAnnotation])
	assert.Equal(t, sbom.CreatedFromEpoch, ref.Annotations[sbom.CreatedFromAnnotation])
}

func TestAttachNeedsEveryBinary(t *testing.T) {
	bins := binaries(t, amd64, arm64)
	c, err := index.Build(context.Background(), bins, index.Options{})
	require.NoError(t, err)
	defer c.Close()
	err = sbom.Attach(c, bins[:1])
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no binary for the linux/arm64 image")
}

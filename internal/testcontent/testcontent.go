// Package testcontent makes the binaries and the packed content that tests
// of every package need, in one way, as go-containerregistry's pkg/v1/random
// does for images: real cross-built test programs (see internal/testbin)
// where a test needs real executables, and fake binaries of chosen platform,
// size and seed where any bytes do. Everything it makes is the same on
// every run. It is for tests only: nothing but _test.go files imports it.
package testcontent

import (
	"context"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testbin"
	"github.com/quinistry/quinistry/sbom"
)

// The platforms tests use most.
var (
	Amd64 = crossbuild.Platform{OS: "linux", Arch: "amd64"}
	Arm64 = crossbuild.Platform{OS: "linux", Arch: "arm64"}
)

// DefaultPlatforms are the platforms Binaries and Content use when given
// none, in this order.
var DefaultPlatforms = []crossbuild.Platform{Amd64, Arm64}

// Binaries returns real cross-built test binaries, one per platform in the
// order given (DefaultPlatforms if none), each with the build information
// read from its bytes, as crossbuild.Discover gives it: module path, VCS
// revision and commit time included. Tests must not modify the files.
func Binaries(tb testing.TB, platforms ...crossbuild.Platform) []crossbuild.Binary {
	tb.Helper()
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	bins := make([]crossbuild.Binary, 0, len(platforms))
	for _, p := range platforms {
		path := testbin.Build(tb, p)
		info, err := buildinfo.ReadFile(path)
		require.NoError(tb, err)
		bins = append(bins, crossbuild.Binary{Platform: p, Path: path, Info: info})
	}
	return bins
}

// Content packs Binaries(tb, platforms...) with opts. The content is closed
// when the test ends.
func Content(tb testing.TB, opts index.Options, platforms ...crossbuild.Platform) *index.Content {
	tb.Helper()
	c, err := index.Build(tb.Context(), Binaries(tb, platforms...), opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c
}

// Fake is a made-up binary: Size bytes drawn from a generator seeded with
// Seed, claiming FakeInfo(Platform). index.Build does not check ELF headers,
// so any bytes do.
type Fake struct {
	Platform crossbuild.Platform
	Size     int
	Seed     uint64
	// Text puts a run of text in the last quarter of every KiB, so that gzip
	// has something to do. Without it the bytes are random through and
	// through, and gzip cannot shrink them.
	Text bool
}

// Bytes returns the fake binary's contents, the same for the same Fake.
func (f Fake) Bytes() []byte {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], f.Seed)
	data := make([]byte, f.Size)
	_, _ = rand.NewChaCha8(seed).Read(data)
	if f.Text {
		for i := range data {
			if i%1024 >= 768 {
				data[i] = "quinistry"[i%9]
			}
		}
	}
	return data
}

// FakeInfo is the build information fake binaries claim: a release of
// quinistry (version v1.2.3) for p, with a VCS revision and commit time.
func FakeInfo(p crossbuild.Platform) *debug.BuildInfo {
	return &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      "github.com/quinistry/quinistry/cmd/quinistry",
		Main:      debug.Module{Path: "github.com/quinistry/quinistry", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: p.OS},
			{Key: "GOARCH", Value: p.Arch},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-11-27T12:00:00Z"},
		},
	}
}

// Random packs fakes, in the order given, with opts. The content is closed
// when the test ends.
func Random(tb testing.TB, opts index.Options, fakes ...Fake) *index.Content {
	tb.Helper()
	c, err := Pack(opts, fakes...)
	require.NoError(tb, err)
	tb.Cleanup(func() { c.Close() })
	return c
}

// Pack is Random outside a test, for content that outlives one (shared by
// every test of a binary, say): the caller closes it, or leaves it to the
// end of the process.
func Pack(opts index.Options, fakes ...Fake) (c *index.Content, err error) {
	dir, err := os.MkdirTemp("", "quinistry-testcontent-")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	bins := make([]crossbuild.Binary, 0, len(fakes))
	for _, f := range fakes {
		path := filepath.Join(dir, f.Platform.FileName())
		if err := os.WriteFile(path, f.Bytes(), 0o755); err != nil {
			return nil, err
		}
		bins = append(bins, crossbuild.Binary{Platform: f.Platform, Path: path, Info: FakeInfo(f.Platform)})
	}
	c, err = index.Build(context.Background(), bins, opts)
	if err != nil {
		return nil, fmt.Errorf("packing fake binaries: %w", err)
	}
	return c, nil
}

// AttachSBOMs attaches to c one SBOM per image, made from FakeInfo of the
// image's platform, and returns c.
func AttachSBOMs(tb testing.TB, c *index.Content) *index.Content {
	tb.Helper()
	bins := make([]crossbuild.Binary, 0, len(c.Images))
	for _, img := range c.Images {
		bins = append(bins, crossbuild.Binary{Platform: img.Platform, Info: FakeInfo(img.Platform)})
	}
	require.NoError(tb, sbom.Attach(c, bins))
	require.Len(tb, c.Artifacts, len(c.Images))
	return c
}

// Bundle is a Sigstore bundle v0.3 laid out as cosign attest-blob writes
// one, whose DSSE envelope holds an in-toto statement of SLSA provenance
// v1 about subjects. Its signature is the bytes of sig, not a real one:
// quinistry serves bundles and never verifies them.
func Bundle(sig string, subjects ...digest.Digest) []byte {
	return BundleOf("application/vnd.dev.sigstore.bundle.v0.3+json", "application/vnd.in-toto+json",
		Statement("https://slsa.dev/provenance/v1", subjects...), sig)
}

// BundleOf is a bundle of mediaType whose DSSE envelope (of payloadType,
// with the made-up signature sig) holds payload, laid out as Bundle's.
func BundleOf(mediaType, payloadType string, payload []byte, sig string) []byte {
	data, _ := json.Marshal(map[string]any{
		"mediaType":            mediaType,
		"verificationMaterial": map[string]any{"publicKey": map[string]string{"hint": "aGludA=="}, "tlogEntries": []any{}},
		"dsseEnvelope": map[string]any{
			"payload":     base64.StdEncoding.EncodeToString(payload),
			"payloadType": payloadType,
			"signatures":  []map[string]string{{"sig": base64.StdEncoding.EncodeToString([]byte(sig)), "keyid": ""}},
		},
	})
	return data
}

// Statement is an in-toto statement v1 of predicateType (with an empty
// predicate) about subjects, each named quinistry.
func Statement(predicateType string, subjects ...digest.Digest) []byte {
	type subject struct {
		Name   string            `json:"name"`
		Digest map[string]string `json:"digest"`
	}
	st := struct {
		Type          string         `json:"_type"`
		Subject       []subject      `json:"subject"`
		PredicateType string         `json:"predicateType"`
		Predicate     map[string]any `json:"predicate"`
	}{Type: "https://in-toto.io/Statement/v1", Subject: []subject{}, PredicateType: predicateType, Predicate: map[string]any{}}
	for _, d := range subjects {
		st.Subject = append(st.Subject, subject{Name: "quinistry", Digest: map[string]string{d.Algorithm().String(): d.Encoded()}})
	}
	data, _ := json.Marshal(st)
	return data
}

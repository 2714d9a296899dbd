package attest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/attest"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
)

const slsa = "https://slsa.dev/provenance/v1"

// good is a valid bundle about subjects.
func good(sig string, subjects ...digest.Digest) []byte {
	return testcontent.BundleOf(attest.MediaType, attest.InTotoPayloadType, testcontent.Statement(slsa, subjects...), sig)
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return data
}

var someDigest = digest.FromString("some other image")

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		wantErr string // "" when it parses
	}{
		{"v0.3 with an in-toto statement", good("s", someDigest), ""},
		{"v0.4", testcontent.BundleOf("application/vnd.dev.sigstore.bundle.v0.4+json", attest.InTotoPayloadType, testcontent.Statement(slsa, someDigest), "s"), ""},
		{"v1.0", testcontent.BundleOf("application/vnd.dev.sigstore.bundle.v1.0+json", attest.InTotoPayloadType, testcontent.Statement(slsa, someDigest), "s"), ""},
		{"not JSON", testdata(t, "not-json.json"), "not a JSON Sigstore bundle"},
		{"a JSON array", []byte(`[1,2]`), "not a JSON Sigstore bundle"},
		{"v0.2, as older cosign writes it", testdata(t, "v0.2.sigstore.json"), "is not a Sigstore bundle v0.3 or later"},
		{"v0.1 in the new spelling", testcontent.BundleOf("application/vnd.dev.sigstore.bundle.v0.1+json", attest.InTotoPayloadType, testcontent.Statement(slsa, someDigest), "s"), "v0.3 or later"},
		{"an unknown media type", testcontent.BundleOf("application/json", attest.InTotoPayloadType, testcontent.Statement(slsa, someDigest), "s"), "v0.3 or later"},
		{"a sign-blob bundle: a message signature, no DSSE envelope", testdata(t, "sign-blob.sigstore.json"), "no DSSE envelope"},
		{"a DSSE payload that is not in-toto", testcontent.BundleOf(attest.MediaType, "text/plain", testcontent.Statement(slsa, someDigest), "s"), "payload type"},
		{"a payload that is not base64", []byte(strings.Replace(string(good("s", someDigest)), `"payload":"`, `"payload":"!!`, 1)), "not base64"},
		{"a payload that is not JSON", testcontent.BundleOf(attest.MediaType, attest.InTotoPayloadType, []byte("{oops"), "s"), "not an in-toto statement"},
		{"a statement with no predicate type", testcontent.BundleOf(attest.MediaType, attest.InTotoPayloadType, testcontent.Statement("", someDigest), "s"), "not an in-toto statement"},
		{"a statement with no subject", testcontent.BundleOf(attest.MediaType, attest.InTotoPayloadType, testcontent.Statement(slsa), "s"), "not an in-toto statement"},
		{"no signature", []byte(strings.Replace(string(good("s", someDigest)), `"signatures":[{"keyid":"","sig":"cw=="}]`, `"signatures":[]`, 1)), "no signature"},
		{"over the cap", append(good("s", someDigest), make([]byte, attest.MaxSize)...), "cap"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := attest.Parse("f.json", tt.data)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "\n", "one line")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, slsa, b.PredicateType)
			assert.Equal(t, []digest.Digest{someDigest}, b.Subjects)
			assert.Equal(t, digest.FromBytes(tt.data), b.Digest)
			assert.Equal(t, tt.data, b.Data)
		})
	}
}

// configMap lays files out as Kubernetes mounts a ConfigMap: each in a
// timestamped directory that ..data links to, and a link per file to
// ..data/name. It returns the directory.
func configMap(t *testing.T, dir, stamp string, files map[string][]byte) string {
	t.Helper()
	real := filepath.Join(dir, "..2026_12_05_17_00_00."+stamp)
	require.NoError(t, os.MkdirAll(real, 0o755))
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(real, name), data, 0o644))
		link := filepath.Join(dir, name)
		_ = os.Remove(link)
		require.NoError(t, os.Symlink(filepath.Join("..data", name), link))
	}
	tmp := filepath.Join(dir, "..data_tmp")
	require.NoError(t, os.Symlink(filepath.Base(real), tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	return dir
}

func TestLoad(t *testing.T) {
	a, b := good("a", someDigest), good("b", someDigest)
	t.Run("a ConfigMap's layout: dot entries skipped, links followed, subdirectories ignored", func(t *testing.T) {
		dir := configMap(t, t.TempDir(), "1", map[string][]byte{"a.json": a, "b.json": b})
		require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "bad.json"), []byte("nope"), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, ".hidden"), []byte("nope"), 0o644))
		got, err := attest.Load(dir)
		require.NoError(t, err)
		require.Len(t, got, 2, "each bundle once, not again through ..data")
	})
	t.Run("the order is the bundles' digests', whatever the names; identical files count once", func(t *testing.T) {
		d1, d2 := t.TempDir(), t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(d1, "1.json"), a, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(d1, "2.json"), b, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(d2, "z.json"), a, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(d2, "a.json"), b, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(d2, "copy.json"), b, 0o644))
		g1, err := attest.Load(d1)
		require.NoError(t, err)
		g2, err := attest.Load(d2)
		require.NoError(t, err)
		require.Len(t, g2, 2)
		for i := range g1 {
			assert.Equal(t, g1[i].Digest, g2[i].Digest)
		}
		assert.Less(t, g1[0].Digest.String(), g1[1].Digest.String())
	})
	t.Run("one bad file fails the load with one line naming it", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.json"), a, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{"), 0o644))
		_, err := attest.Load(dir)
		require.Error(t, err)
		assert.Contains(t, err.Error(), filepath.Join(dir, "broken.json"))
		assert.NotContains(t, err.Error(), "\n")
	})
	t.Run("a file over the cap is refused without being read whole", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "big.json"), make([]byte, 5*attest.MaxSize), 0o644))
		_, err := attest.Load(dir)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "big.json: over the 1048576-byte cap")
	})
	t.Run("a directory that is missing", func(t *testing.T) {
		_, err := attest.Load(filepath.Join(t.TempDir(), "none"))
		assert.Error(t, err)
	})
}

func TestArtifacts(t *testing.T) {
	for _, f := range []index.Format{index.Docker, index.OCI} {
		t.Run(string(f), func(t *testing.T) {
			c := testcontent.Random(t, index.Options{Format: f},
				testcontent.Fake{Platform: testcontent.Amd64, Size: 1000, Seed: 1}, testcontent.Fake{Platform: testcontent.Arm64, Size: 1000, Seed: 2})
			amd64 := c.Images[0].Manifest
			both := good("both", c.List.Digest, amd64.Digest, someDigest)
			other := good("other", someDigest)
			bundles := []attest.Bundle{}
			for _, data := range [][]byte{both, other} {
				b, err := attest.Parse("f", data)
				require.NoError(t, err)
				bundles = append(bundles, b)
			}
			arts, skipped, err := attest.Artifacts(c, bundles)
			require.NoError(t, err)
			require.Len(t, skipped, 1, "the bundle about another image")
			assert.Equal(t, digest.FromBytes(other), skipped[0].Digest)
			require.Len(t, arts, 2, "one referrer per served digest the bundle names")
			assert.Equal(t, c.List.Digest, arts[0].Subject, "the list first")
			assert.Equal(t, amd64.Digest, arts[1].Subject)

			var m index.Manifest
			require.NoError(t, json.Unmarshal(arts[1].Manifest.Data, &m))
			assert.Equal(t, "application/vnd.oci.image.manifest.v1+json", m.MediaType)
			assert.Equal(t, attest.MediaType, m.ArtifactType)
			assert.Equal(t, index.EmptyConfig.Descriptor, m.Config)
			require.Len(t, m.Layers, 1)
			assert.Equal(t, index.Descriptor{MediaType: attest.MediaType, Digest: digest.FromBytes(both), Size: int64(len(both))}, m.Layers[0])
			require.NotNil(t, m.Subject)
			assert.Equal(t, index.Descriptor{MediaType: amd64.MediaType, Digest: amd64.Digest, Size: amd64.Size}, *m.Subject)
			assert.Equal(t, map[string]string{
				"dev.sigstore.bundle.content":       "dsse-envelope",
				"dev.sigstore.bundle.predicateType": slsa,
				"org.opencontainers.image.created":  "2026-11-27T12:00:00Z",
			}, m.Annotations)
			assert.Equal(t, both, arts[1].Blobs[1].Data, "the layer is the bundle's bytes")

			set := index.NewArtifactSet(arts)
			assert.Len(t, set.Referrers(amd64.Digest, ""), 1)
			assert.Len(t, set.Referrers(amd64.Digest, attest.MediaType), 1)
			assert.Empty(t, set.Referrers(amd64.Digest, "application/spdx+json"))
			assert.Empty(t, set.Referrers(c.Images[1].Manifest.Digest, ""))
			got, ok := set.Blob(digest.FromBytes(both))
			assert.True(t, ok)
			assert.Equal(t, both, got.Data)
			_, ok = set.Manifest(arts[0].Manifest.Digest)
			assert.True(t, ok)
		})
	}
}

func TestFingerprint(t *testing.T) {
	dir := configMap(t, t.TempDir(), "1", map[string][]byte{"a.json": good("a", someDigest)})
	fp1, err := attest.Fingerprint(dir)
	require.NoError(t, err)
	fp2, err := attest.Fingerprint(dir)
	require.NoError(t, err)
	assert.Equal(t, fp1, fp2, "nothing changed")
	configMap(t, dir, "2", map[string][]byte{"a.json": good("a", someDigest)})
	fp3, err := attest.Fingerprint(dir)
	require.NoError(t, err)
	assert.NotEqual(t, fp1, fp3, "..data moved to the same bytes in a new directory")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "b.json"), []byte("x"), 0o644))
	fp4, err := attest.Fingerprint(dir)
	require.NoError(t, err)
	assert.NotEqual(t, fp3, fp4, "a file was added")
}

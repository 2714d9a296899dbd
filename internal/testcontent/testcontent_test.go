package testcontent_test

import (
	"bytes"
	"compress/gzip"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
)

// TestSameInputsSameDigests: each maker, called twice with the same inputs,
// gives the same list and images, byte for byte, in both formats.
func TestSameInputsSameDigests(t *testing.T) {
	fakes := []testcontent.Fake{
		{Platform: testcontent.Arm64, Size: 48 << 10, Seed: 64, Text: true},
		{Platform: testcontent.Amd64, Size: 40 << 10, Seed: 86},
	}
	tests := []struct {
		name      string
		make      func(t *testing.T, opts index.Options) *index.Content
		platforms []string
	}{
		{"Content", func(t *testing.T, opts index.Options) *index.Content { return testcontent.Content(t, opts) },
			[]string{"linux/amd64", "linux/arm64"}},
		{"Random", func(t *testing.T, opts index.Options) *index.Content { return testcontent.Random(t, opts, fakes...) },
			[]string{"linux/arm64", "linux/amd64"}},
	}
	for _, tt := range tests {
		for _, f := range []index.Format{index.Docker, index.OCI} {
			t.Run(tt.name+"/"+string(f), func(t *testing.T) {
				a, b := tt.make(t, index.Options{Format: f}), tt.make(t, index.Options{Format: f})
				require.NoError(t, a.Verify())
				assert.Equal(t, f, a.Format)
				assert.Equal(t, a.List, b.List)
				assert.Equal(t, a.Images, b.Images)
				var platforms []string
				for _, img := range a.Images {
					platforms = append(platforms, img.Platform.String())
				}
				assert.Equal(t, tt.platforms, platforms, "in the order asked for")
			})
		}
	}
}

// TestFakeBytes: a fake's bytes depend on its seed only, have its size, and
// shrink under gzip with Text and not without.
func TestFakeBytes(t *testing.T) {
	tests := []struct {
		name   string
		fake   testcontent.Fake
		shrink bool
	}{
		{"random", testcontent.Fake{Platform: testcontent.Amd64, Size: 64 << 10, Seed: 1}, false},
		{"with text", testcontent.Fake{Platform: testcontent.Amd64, Size: 64 << 10, Seed: 1, Text: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.fake.Bytes()
			require.Len(t, data, tt.fake.Size)
			assert.Equal(t, data, tt.fake.Bytes(), "the same fake, the same bytes")
			other := tt.fake
			other.Seed++
			assert.NotEqual(t, data, other.Bytes(), "another seed, other bytes")
			var z bytes.Buffer
			w := gzip.NewWriter(&z)
			_, err := w.Write(data)
			require.NoError(t, err)
			require.NoError(t, w.Close())
			assert.Equal(t, tt.shrink, z.Len() < len(data)*9/10, "gzip makes %d bytes of %d", z.Len(), len(data))
		})
	}
}

// TestAttachSBOMs: every image gets one SBOM, and the list stays as it was.
func TestAttachSBOMs(t *testing.T) {
	c := testcontent.Random(t, index.Options{Format: index.OCI}, testcontent.Fake{Platform: testcontent.Amd64, Size: 1 << 10})
	list := c.List.Digest
	testcontent.AttachSBOMs(t, c)
	assert.Equal(t, list, c.List.Digest)
	require.Len(t, c.Artifacts, 1)
	require.NoError(t, c.Verify())
}

// TestNotInTheProduct: no test-support package is built into quinistry.
func TestNotInTheProduct(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/quinistry/quinistry/cmd/quinistry").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		assert.False(t, strings.HasPrefix(pkg, "github.com/quinistry/quinistry/internal/test"), pkg)
		assert.NotContains(t, pkg, "testify", pkg)
	}
}

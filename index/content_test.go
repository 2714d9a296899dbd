package index_test

import (
	"encoding/json"
	"os"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
)

// TestVerifyReadsLayersFromTheirFiles checks that a layer is hashed from
// its memory file, the bytes sendfile sends, and not only from the mapped
// copy: the file's descriptor is pointed at a file of the same size with
// one byte changed, while Data keeps the original bytes.
func TestVerifyReadsLayersFromTheirFiles(t *testing.T) {
	c := testcontent.Content(t, index.Options{})
	l := c.Layers[0]
	require.NotNil(t, l.File)

	changed := append([]byte(nil), l.Data...)
	changed[len(changed)/2] ^= 0xff
	other, err := os.CreateTemp(t.TempDir(), "changed")
	require.NoError(t, err)
	defer other.Close()
	_, err = other.Write(changed)
	require.NoError(t, err)
	require.NoError(t, syscall.Dup3(int(other.Fd()), int(l.File.Fd()), 0))

	assert.ErrorContains(t, c.Verify(), "self-check: "+l.Digest.String()+" hashes to")
}

// TestVerifyChecksReferences checks faults that every digest agrees with:
// a list re-encoded (and re-hashed) so that an entry's size, media type or
// digest is wrong.
func TestVerifyChecksReferences(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.OCI})
	require.NoError(t, c.Verify())

	tests := []struct {
		name   string
		change func(l *index.List)
		want   string
	}{
		{"size", func(l *index.List) { l.Manifests[1].Size++ }, "does not match the linux/arm64 manifest served"},
		{"media type", func(l *index.List) { l.Manifests[0].MediaType = index.Docker.MediaTypes().Manifest },
			"does not match the linux/amd64 manifest served"},
		{"digest", func(l *index.List) { l.Manifests[0].Digest = c.Images[1].Manifest.Digest }, "does not match the linux/amd64 manifest served"},
		{"missing entry", func(l *index.List) { l.Manifests = l.Manifests[:1] }, "the list names 1 manifests for 2 images"},
		{"list media type", func(l *index.List) { l.MediaType = index.Docker.MediaTypes().List }, "the list says it is"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var list index.List
			require.NoError(t, json.Unmarshal(c.List.Data, &list))
			tt.change(&list)
			data, err := json.Marshal(list)
			require.NoError(t, err)
			bad := *c
			bad.List.Data, bad.List.Digest, bad.List.Size = data, digest.FromBytes(data), int64(len(data))
			err = bad.Verify()
			assert.ErrorContains(t, err, "self-check: ")
			assert.ErrorContains(t, err, tt.want)
		})
	}

	t.Run("the list names a re-encoded manifest that is not served", func(t *testing.T) {
		var man index.Manifest
		require.NoError(t, json.Unmarshal(c.Images[0].Manifest.Data, &man))
		man.Config.Size++
		mdata, err := json.Marshal(man)
		require.NoError(t, err)
		bad := *c
		bad.Images = append([]index.Image(nil), c.Images...)
		m := &bad.Images[0].Manifest
		m.Data, m.Digest, m.Size = mdata, digest.FromBytes(mdata), int64(len(mdata))
		var list index.List
		require.NoError(t, json.Unmarshal(c.List.Data, &list))
		list.Manifests[0].Digest, list.Manifests[0].Size = m.Digest, m.Size
		ldata, err := json.Marshal(list)
		require.NoError(t, err)
		bad.List.Data, bad.List.Digest, bad.List.Size = ldata, digest.FromBytes(ldata), int64(len(ldata))
		// The content's lookup tables still serve the original manifest
		// under its digest; the list now names one that is not served.
		assert.ErrorContains(t, bad.Verify(), "self-check: the list's entry "+m.Digest.String())
	})
}

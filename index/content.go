package index

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/quinistry/quinistry/crossbuild"
)

// Blob is content addressed by its digest.
type Blob struct {
	Descriptor
	// Data is the content. For layers it is a read-only mapping of File.
	Data []byte
	// File, when not nil, holds the same bytes as Data in an in-memory
	// file, so that they can be sent with sendfile.
	File *os.File
}

// Image is one platform's image: its manifest and its config.
type Image struct {
	Platform crossbuild.Platform
	Manifest Blob
	Config   Blob
	// Created is the config's created time (nil when it has none), for
	// the documents that describe the image.
	Created *time.Time
}

// Content is everything the registry serves: the list, one image per
// platform, the layers every image shares, and the artifacts (SBOMs) that
// refer to the images.
type Content struct {
	Format    Format
	List      Blob
	Images    []Image
	Layers    []Blob
	Artifacts []Artifact

	manifests map[digest.Digest]Blob
	blobs     map[digest.Digest]Blob
}

// index fills the lookup tables.
func (c *Content) index() {
	c.manifests = map[digest.Digest]Blob{c.List.Digest: c.List}
	c.blobs = map[digest.Digest]Blob{}
	for _, img := range c.Images {
		c.manifests[img.Manifest.Digest] = img.Manifest
		c.blobs[img.Config.Digest] = img.Config
	}
	for _, l := range c.Layers {
		c.blobs[l.Digest] = l
	}
}

// Manifest returns the list or the platform manifest with digest d.
func (c *Content) Manifest(d digest.Digest) (Blob, bool) {
	b, ok := c.manifests[d]
	return b, ok
}

// Blob returns the config or layer with digest d.
func (c *Content) Blob(d digest.Digest) (Blob, bool) {
	b, ok := c.blobs[d]
	return b, ok
}

// Default returns the image a client gets when it asks by tag for a single
// manifest: linux/amd64, or the first platform when there is none.
func (c *Content) Default() Image {
	for _, img := range c.Images {
		if img.Platform.OS == "linux" && img.Platform.Arch == "amd64" {
			return img
		}
	}
	return c.Images[0]
}

// ImageSize returns the bytes a pull of img downloads: its manifest, its
// config and every layer.
func (c *Content) ImageSize(img Image) int64 {
	n := img.Manifest.Size + img.Config.Size
	for _, l := range c.Layers {
		n += l.Size
	}
	return n
}

// Close releases the memory files and mappings that hold the layers. The
// content must not be used afterwards.
func (c *Content) Close() error {
	var errs []error
	for i, l := range c.Layers {
		if l.File == nil {
			continue
		}
		errs = append(errs, unmap(l.Data), l.File.Close())
		c.Layers[i].Data, c.Layers[i].File = nil, nil
	}
	return errors.Join(errs...)
}

// Verify checks the content before it is served, and reports the first
// fault it finds. It checks two things:
//
//   - Every blob hashes to its digest and has its size, hashed from what is
//     sent: a layer held in a memory file is read back from that file (the
//     bytes sendfile sends), everything else from the bytes in memory. For
//     manifests and configs, whose digests were computed from those same
//     bytes moments before, this catches only later damage to the bytes.
//   - Independently of the digests, the documents hang together: the list
//     parses and names every image's manifest by digest, size and media
//     type, and each manifest parses, states the media type it is served
//     as, and names a config and layers the content holds, by digest and
//     size.
//
// It does not check what the bytes mean beyond that: configs are not
// parsed, and layers are not decompressed.
func (c *Content) Verify() error {
	all := []Blob{c.List}
	for _, img := range c.Images {
		all = append(all, img.Manifest, img.Config)
	}
	all = append(all, c.Layers...)
	for _, a := range c.Artifacts {
		all = append(all, a.Manifest)
		all = append(all, a.Blobs...)
	}
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for _, b := range all {
		g.Go(func() error { return verifyBlob(b) })
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return c.verifyReferences()
}

// verifyBlob hashes b as it is served.
func verifyBlob(b Blob) error {
	if int64(len(b.Data)) != b.Size {
		return fmt.Errorf("self-check: %s holds %d bytes, not %d", b.Digest, len(b.Data), b.Size)
	}
	var src io.Reader = bytes.NewReader(b.Data)
	if b.File != nil {
		st, err := b.File.Stat()
		if err != nil {
			return fmt.Errorf("self-check: %s: %w", b.Digest, err)
		}
		if st.Size() != b.Size {
			return fmt.Errorf("self-check: %s: its memory file holds %d bytes, not %d", b.Digest, st.Size(), b.Size)
		}
		src = io.NewSectionReader(b.File, 0, b.Size)
	}
	h := b.Digest.Algorithm().Digester()
	if _, err := io.Copy(h.Hash(), src); err != nil {
		return fmt.Errorf("self-check: %s: %w", b.Digest, err)
	}
	if got := h.Digest(); got != b.Digest {
		return fmt.Errorf("self-check: %s hashes to %s", b.Digest, got)
	}
	return nil
}

// verifyReferences parses the list and every manifest and checks that each
// descriptor matches content that is served.
func (c *Content) verifyReferences() error {
	var list List
	if err := json.Unmarshal(c.List.Data, &list); err != nil {
		return fmt.Errorf("self-check: the list does not parse: %w", err)
	}
	if list.MediaType != c.List.MediaType {
		return fmt.Errorf("self-check: the list says it is %s but is served as %s", list.MediaType, c.List.MediaType)
	}
	if len(list.Manifests) != len(c.Images) {
		return fmt.Errorf("self-check: the list names %d manifests for %d images", len(list.Manifests), len(c.Images))
	}
	for i, d := range list.Manifests {
		img := c.Images[i]
		m, ok := c.Manifest(d.Digest)
		if !ok || d.Digest != img.Manifest.Digest || d.Size != m.Size || d.MediaType != m.MediaType {
			return fmt.Errorf("self-check: the list's entry %s (%s, %d bytes) does not match the %s manifest served", d.Digest, d.MediaType, d.Size, img.Platform)
		}
		var man Manifest
		if err := json.Unmarshal(m.Data, &man); err != nil {
			return fmt.Errorf("self-check: the %s manifest does not parse: %w", img.Platform, err)
		}
		if man.MediaType != m.MediaType {
			return fmt.Errorf("self-check: the %s manifest says it is %s but is served as %s", img.Platform, man.MediaType, m.MediaType)
		}
		for _, ref := range append([]Descriptor{man.Config}, man.Layers...) {
			if b, ok := c.Blob(ref.Digest); !ok || b.Size != ref.Size || b.MediaType != ref.MediaType {
				return fmt.Errorf("self-check: the %s manifest names %s (%s, %d bytes), which is not served as such", img.Platform, ref.Digest, ref.MediaType, ref.Size)
			}
		}
	}
	return nil
}

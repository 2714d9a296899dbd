package index

import (
	"errors"
	"fmt"
	"os"
	"runtime"

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

// Verify re-hashes every manifest and blob against its digest and size, so
// that a server never reports ready with content it would serve wrong. The
// blobs are hashed concurrently.
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
		g.Go(func() error {
			if int64(len(b.Data)) != b.Size {
				return fmt.Errorf("self-check: %s holds %d bytes, not %d", b.Digest, len(b.Data), b.Size)
			}
			if got := b.Digest.Algorithm().FromBytes(b.Data); got != b.Digest {
				return fmt.Errorf("self-check: %s hashes to %s", b.Digest, got)
			}
			return nil
		})
	}
	return g.Wait()
}

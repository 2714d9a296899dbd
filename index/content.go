package index

import (
	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/crossbuild"
)

// Blob is content addressed by its digest.
type Blob struct {
	Descriptor
	Data []byte
}

// Image is one platform's image: its manifest and its config.
type Image struct {
	Platform crossbuild.Platform
	Manifest Blob
	Config   Blob
}

// Content is everything the registry serves: the list, one image per
// platform, and the layers every image shares.
type Content struct {
	Format Format
	List   Blob
	Images []Image
	Layers []Blob

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

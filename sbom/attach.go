package sbom

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
)

// MediaType is the media type of an SPDX JSON document, used both as the
// artifact type and as the type of the layer that holds it.
const MediaType = "application/spdx+json"

// Annotations of an SBOM artifact manifest.
const (
	// CreatedAnnotation holds the document's creation time.
	CreatedAnnotation = "org.opencontainers.image.created"
	// CreatedFromAnnotation says where that time comes from: CreatedFromConfig
	// or CreatedFromEpoch.
	CreatedFromAnnotation = "io.github.quinistry.sbom.created-from"
	// PlatformAnnotation names the platform of the image described.
	PlatformAnnotation = "io.github.quinistry.sbom.platform"
	// TitleAnnotation names the document's layer, which is the file name
	// clients such as oras pull it to.
	TitleAnnotation = "org.opencontainers.image.title"
)

// Values of CreatedFromAnnotation.
const (
	// CreatedFromConfig: the image config's created (SOURCE_DATE_EPOCH when
	// it was set, else the binary's vcs.time).
	CreatedFromConfig = "image-config"
	// CreatedFromEpoch: the image has no created, and SPDX requires one.
	CreatedFromEpoch = "epoch"
)

// Attach describes every image of c from the build information of the
// binary it runs (matched by platform) and adds each document to c as an
// artifact referring to that image's manifest. The list and the images do
// not change.
func Attach(c *index.Content, bins []crossbuild.Binary) error {
	info := map[crossbuild.Platform]crossbuild.Binary{}
	for _, b := range bins {
		info[b.Platform] = b
	}
	for _, img := range c.Images {
		b, ok := info[img.Platform]
		if !ok {
			return fmt.Errorf("sbom: no binary for the %s image", img.Platform)
		}
		a, err := NewArtifact(img, b)
		if err != nil {
			return err
		}
		if err := c.AddArtifact(a); err != nil {
			return err
		}
	}
	return nil
}

// NewArtifact makes the SBOM artifact of img, which runs binary b.
func NewArtifact(img index.Image, b crossbuild.Binary) (index.Artifact, error) {
	doc, err := New(Image{Platform: img.Platform, Manifest: img.Manifest.Digest, Created: img.Created, Info: b.Info})
	if err != nil {
		return index.Artifact{}, err
	}
	data, err := doc.Marshal()
	if err != nil {
		return index.Artifact{}, err
	}
	layer := index.Blob{
		Descriptor: index.Descriptor{
			MediaType:   MediaType,
			Digest:      img.Manifest.Digest.Algorithm().FromBytes(data),
			Size:        int64(len(data)),
			Annotations: map[string]string{TitleAnnotation: FileName(img.Platform)},
		},
		Data: data,
	}
	from := CreatedFromConfig
	if img.Created == nil {
		from = CreatedFromEpoch
	}
	annotations := map[string]string{
		CreatedAnnotation:     doc.CreationInfo.Created,
		CreatedFromAnnotation: from,
		PlatformAnnotation:    img.Platform.String(),
	}
	return index.NewArtifact(img.Manifest.Descriptor, MediaType, []index.Blob{layer}, annotations)
}

// Find returns the SBOM document (the artifact's layer) attached in c to
// the image whose manifest digest is d.
func Find(c *index.Content, d digest.Digest) (index.Blob, bool) {
	for _, a := range c.Artifacts {
		if a.Subject == d && a.ArtifactType == MediaType && len(a.Blobs) > 1 {
			return a.Blobs[len(a.Blobs)-1], true
		}
	}
	return index.Blob{}, false
}

// FileName is the name of a platform's SBOM document, as its layer's title.
func FileName(p crossbuild.Platform) string {
	return p.FileName() + ".spdx.json"
}

// Package index turns quinistry binaries into images: one layer per binary,
// one config and manifest per platform, and the manifest list that ties them
// together, in either the Docker or the OCI media-type family. What it builds
// is the content the registry serves.
package index

import "fmt"

// Format is a media-type family. An image never mixes the two.
type Format string

// The two media-type families.
const (
	Docker Format = "docker"
	OCI    Format = "oci"
)

// MediaTypes are the media types of one family.
type MediaTypes struct {
	List     string
	Manifest string
	Config   string
	Layer    string
}

var mediaTypes = map[Format]MediaTypes{
	Docker: {
		List:     "application/vnd.docker.distribution.manifest.list.v2+json",
		Manifest: "application/vnd.docker.distribution.manifest.v2+json",
		Config:   "application/vnd.docker.container.image.v1+json",
		Layer:    "application/vnd.docker.image.rootfs.diff.tar.gzip",
	},
	OCI: {
		List:     "application/vnd.oci.image.index.v1+json",
		Manifest: "application/vnd.oci.image.manifest.v1+json",
		Config:   "application/vnd.oci.image.config.v1+json",
		Layer:    "application/vnd.oci.image.layer.v1.tar+gzip",
	},
}

// ParseFormat parses "docker" or "oci".
func ParseFormat(s string) (Format, error) {
	f := Format(s)
	if _, ok := mediaTypes[f]; !ok {
		return "", fmt.Errorf("unknown format %q: want docker or oci", s)
	}
	return f, nil
}

// MediaTypes returns the family's media types.
func (f Format) MediaTypes() MediaTypes {
	return mediaTypes[f]
}

// IsList reports whether mediaType is a manifest list or an image index.
func IsList(mediaType string) bool {
	return mediaType == mediaTypes[Docker].List || mediaType == mediaTypes[OCI].List
}

// IsManifest reports whether mediaType is a single-image manifest of either
// family.
func IsManifest(mediaType string) bool {
	return mediaType == mediaTypes[Docker].Manifest || mediaType == mediaTypes[OCI].Manifest
}

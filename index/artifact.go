package index

import (
	"fmt"
	"maps"

	"github.com/opencontainers/go-digest"
)

// Media types of OCI 1.1 artifacts.
const (
	// EmptyConfigType is the config of an artifact that needs none.
	EmptyConfigType = "application/vnd.oci.empty.v1+json"
)

// EmptyConfig is the empty JSON object `{}` as the config blob of an
// artifact.
var EmptyConfig = Blob{
	Descriptor: Descriptor{MediaType: EmptyConfigType, Digest: digest.FromBytes([]byte("{}")), Size: 2},
	Data:       []byte("{}"),
}

// Artifact is an OCI 1.1 artifact manifest that refers to one of the
// images through its subject, such as that image's SBOM. The list does not
// name artifacts: clients find them with the referrers API.
type Artifact struct {
	// Manifest is the encoded artifact manifest (always OCI).
	Manifest Blob
	// ArtifactType and Annotations are copied into referrers listings.
	ArtifactType string
	Annotations  map[string]string
	// Subject is the manifest the artifact refers to.
	Subject digest.Digest
	// Blobs are the config and the layers.
	Blobs []Blob
}

// Descriptor returns the artifact's entry in a referrers index.
func (a Artifact) Descriptor() Descriptor {
	d := a.Manifest.Descriptor
	d.ArtifactType = a.ArtifactType
	d.Annotations = maps.Clone(a.Annotations)
	return d
}

// NewArtifact makes an artifact manifest of type artifactType, with the
// empty config and the given layers, referring to subject.
func NewArtifact(subject Descriptor, artifactType string, layers []Blob, annotations map[string]string) (Artifact, error) {
	subject.Platform, subject.Annotations, subject.ArtifactType = nil, nil, ""
	m := Manifest{
		SchemaVersion: 2,
		MediaType:     OCI.MediaTypes().Manifest,
		ArtifactType:  artifactType,
		Config:        EmptyConfig.Descriptor,
		Subject:       &subject,
		Annotations:   annotations,
	}
	blobs := []Blob{EmptyConfig}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.Descriptor)
		blobs = append(blobs, l)
	}
	manifest, err := newBlob(m.MediaType, m)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Manifest: manifest, ArtifactType: artifactType, Annotations: annotations, Subject: subject.Digest, Blobs: blobs}, nil
}

// AddArtifact serves a by its digest, with its blobs, and lists it among
// its subject's referrers. The subject must be one of the images.
func (c *Content) AddArtifact(a Artifact) error {
	if _, ok := c.manifests[a.Subject]; !ok || a.Subject == c.List.Digest {
		return fmt.Errorf("index: artifact %s refers to %s, which is no image here", a.Manifest.Digest, a.Subject)
	}
	c.manifests[a.Manifest.Digest] = a.Manifest
	for _, b := range a.Blobs {
		c.blobs[b.Digest] = b
	}
	c.Artifacts = append(c.Artifacts, a)
	return nil
}

// Referrers returns the entries of the artifacts that refer to subject,
// in the order they were added, keeping only those of artifactType when it
// is not empty. It returns an empty, not nil, slice when there are none.
func (c *Content) Referrers(subject digest.Digest, artifactType string) []Descriptor {
	return append([]Descriptor{}, referrers(c.Artifacts, subject, artifactType)...)
}

// referrers returns the entries of the artifacts of arts that refer to
// subject, in order, keeping only those of artifactType when it is not
// empty.
func referrers(arts []Artifact, subject digest.Digest, artifactType string) []Descriptor {
	var out []Descriptor
	for _, a := range arts {
		if a.Subject == subject && (artifactType == "" || a.ArtifactType == artifactType) {
			out = append(out, a.Descriptor())
		}
	}
	return out
}

// ArtifactSet is a group of artifacts served beside the content and
// replaced whole while serving (the attestations of a directory that is
// reloaded): each artifact's subject may be the list or any image. A nil
// set holds nothing.
type ArtifactSet struct {
	artifacts []Artifact
	manifests map[digest.Digest]Blob
	blobs     map[digest.Digest]Blob
}

// NewArtifactSet holds arts, in the order given.
func NewArtifactSet(arts []Artifact) *ArtifactSet {
	s := &ArtifactSet{artifacts: arts, manifests: map[digest.Digest]Blob{}, blobs: map[digest.Digest]Blob{}}
	for _, a := range arts {
		s.manifests[a.Manifest.Digest] = a.Manifest
		for _, b := range a.Blobs {
			s.blobs[b.Digest] = b
		}
	}
	return s
}

// Artifacts returns the artifacts, in their order.
func (s *ArtifactSet) Artifacts() []Artifact {
	if s == nil {
		return nil
	}
	return s.artifacts
}

// Manifest returns the artifact manifest with digest d.
func (s *ArtifactSet) Manifest(d digest.Digest) (Blob, bool) {
	if s == nil {
		return Blob{}, false
	}
	b, ok := s.manifests[d]
	return b, ok
}

// Blob returns the config or layer of an artifact with digest d.
func (s *ArtifactSet) Blob(d digest.Digest) (Blob, bool) {
	if s == nil {
		return Blob{}, false
	}
	b, ok := s.blobs[d]
	return b, ok
}

// Referrers returns the entries of the artifacts that refer to subject,
// in their order, keeping only those of artifactType when it is not empty.
func (s *ArtifactSet) Referrers(subject digest.Digest, artifactType string) []Descriptor {
	return referrers(s.Artifacts(), subject, artifactType)
}

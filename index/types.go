package index

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// The JSON documents of an image. Field order is fixed by these structs and
// maps are only used where encoding/json sorts their keys, so the same
// values always encode to the same bytes.

// Descriptor points at content by media type, digest and size.
type Descriptor struct {
	MediaType string        `json:"mediaType"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	// ArtifactType is set on the referrers API's entries for artifacts.
	ArtifactType string         `json:"artifactType,omitempty"`
	Platform     *PlatformField `json:"platform,omitempty"`
	// Annotations name an image in an OCI layout's index.json; the
	// registry's own documents have none.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PlatformField is a manifest list entry's platform.
type PlatformField struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Variant      string `json:"variant,omitempty"`
}

// Manifest is a single-image manifest (Docker schema 2 or OCI). The
// artifact fields are set only on artifact manifests (OCI 1.1 referrers),
// never on an image's own.
type Manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	ArtifactType  string       `json:"artifactType,omitempty"`
	Config        Descriptor   `json:"config"`
	Layers        []Descriptor `json:"layers"`
	Subject       *Descriptor  `json:"subject,omitempty"`
	// Annotations are sorted by key when encoded.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// List is a manifest list (Docker) or an image index (OCI).
type List struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []Descriptor `json:"manifests"`
}

// Config is an image configuration.
type Config struct {
	Created      *time.Time      `json:"created,omitempty"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Variant      string          `json:"variant,omitempty"`
	Config       ContainerConfig `json:"config"`
	RootFS       RootFS          `json:"rootfs"`
	History      []History       `json:"history"`
}

// ContainerConfig is how a container of the image is run.
type ContainerConfig struct {
	User         string              `json:"User"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	Env          []string            `json:"Env"`
	Entrypoint   []string            `json:"Entrypoint"`
	WorkingDir   string              `json:"WorkingDir"`
	Labels       map[string]string   `json:"Labels,omitempty"`
}

// RootFS lists the uncompressed digests of the layers, in order.
type RootFS struct {
	Type    string          `json:"type"`
	DiffIDs []digest.Digest `json:"diff_ids"`
}

// History is one entry per layer.
type History struct {
	Created   *time.Time `json:"created,omitempty"`
	CreatedBy string     `json:"created_by"`
	Comment   string     `json:"comment,omitempty"`
}

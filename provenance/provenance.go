// Package provenance describes how quinistry's image was made, as an in-toto
// Statement v1 with a SLSA provenance v1 predicate: its subjects are the
// list and every platform manifest, and its predicate comes from the Go
// build information of the binaries the images run. Everything is a
// function of the content and the build information, so the same binaries
// and settings always give the same bytes. quinistry only says what it is
// made of; whoever signs the statement vouches for it.
package provenance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/sbom"
)

// Identifiers of the statement and its predicate.
const (
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType is SLSA provenance v1, what cosign calls slsaprovenance1.
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names how quinistry's images are made: the binaries are
	// cross-compiled reproducibly (CGO_ENABLED=0, -trimpath, no build id)
	// and packed by the binary itself into one multi-platform image. Its
	// external parameters are the image's format and platforms and the
	// binaries' build flags.
	BuildType = "https://github.com/quinistry/quinistry/provenance/crossbuild/v1"
	// BuilderID names the builder: the image's own binary, which packs the
	// image and writes this statement.
	BuilderID = "https://github.com/quinistry/quinistry/provenance/self-pack/v1"
)

// The statement, as a few structs. Field order is fixed and the only maps
// are digest sets and annotations, whose keys encoding/json sorts, so the
// same values always encode to the same bytes.

// Statement is an in-toto Statement v1.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is one artifact the statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate is a SLSA provenance v1 predicate.
type Predicate struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition says what was built, how and from what.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   InternalParameters   `json:"internalParameters"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies"`
}

// ExternalParameters are the settings a user chooses: the image's format
// and platforms, SOURCE_DATE_EPOCH, and the build flags the binaries were
// compiled with (those of the first binary; GOARCH and GOARM, which differ
// per binary, are in the internal parameters).
type ExternalParameters struct {
	Format          string    `json:"format"`
	Platforms       []string  `json:"platforms"`
	SourceDateEpoch *int64    `json:"sourceDateEpoch,omitempty"`
	BuildFlags      []Setting `json:"buildFlags"`
}

// InternalParameters are what the builder chose: each binary's platform,
// Go version and full build settings.
type InternalParameters struct {
	Binaries []Binary `json:"binaries"`
}

// Binary is one platform's binary as its build information describes it.
type Binary struct {
	Platform  string    `json:"platform"`
	Path      string    `json:"path"`
	GoVersion string    `json:"goVersion"`
	Settings  []Setting `json:"settings"`
}

// Setting is one build setting (key=value), in the binary's order.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ResourceDescriptor is an in-toto resource: the source, the toolchain or
// a module.
type ResourceDescriptor struct {
	URI         string            `json:"uri"`
	Digest      map[string]string `json:"digest,omitempty"`
	Name        string            `json:"name,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RunDetails says who built it and when.
type RunDetails struct {
	Builder  Builder   `json:"builder"`
	Metadata *Metadata `json:"metadata,omitempty"`
}

// Builder identifies the builder.
type Builder struct {
	ID string `json:"id"`
}

// Metadata holds the build's times: both are the image's created, so that
// the statement is the same whenever the same image is described.
type Metadata struct {
	StartedOn  string `json:"startedOn"`
	FinishedOn string `json:"finishedOn"`
}

// Image is what a statement describes. The subjects are named quinistry
// (the list) and quinistry-os-arch[-variant] (each platform manifest), as
// the binaries are.
type Image struct {
	// Content is the packed image.
	Content *index.Content
	// Binaries are the binaries its images run, one per platform.
	Binaries []crossbuild.Binary
	// Created is SOURCE_DATE_EPOCH when it was set, else nil.
	Created *time.Time
}

// New describes img.
func New(img Image) (Statement, error) {
	c := img.Content
	if c == nil || len(c.Images) == 0 {
		return Statement{}, fmt.Errorf("provenance: no image")
	}
	bins := map[crossbuild.Platform]crossbuild.Binary{}
	for _, b := range img.Binaries {
		bins[b.Platform] = b
	}
	st := Statement{Type: StatementType, PredicateType: PredicateType}
	st.Subject = append(st.Subject, subject(crossbuild.BaseName, c.List.Digest))
	ext := ExternalParameters{Format: string(c.Format), Platforms: []string{}, BuildFlags: []Setting{}}
	if img.Created != nil {
		secs := img.Created.Unix()
		ext.SourceDateEpoch = &secs
	}
	var internal InternalParameters
	var first *debug.BuildInfo
	for _, im := range c.Images {
		b, ok := bins[im.Platform]
		if !ok || b.Info == nil {
			return Statement{}, fmt.Errorf("provenance: no build information for the %s image", im.Platform)
		}
		if first == nil {
			first = b.Info
		}
		st.Subject = append(st.Subject, subject(im.Platform.FileName(), im.Manifest.Digest))
		ext.Platforms = append(ext.Platforms, im.Platform.String())
		internal.Binaries = append(internal.Binaries, Binary{
			Platform: im.Platform.String(), Path: "/" + im.Platform.FileName(), GoVersion: b.Info.GoVersion, Settings: settings(b.Info, nil),
		})
	}
	ext.BuildFlags = settings(first, perBinary)
	deps, err := dependencies(first)
	if err != nil {
		return Statement{}, err
	}
	st.Predicate = Predicate{
		BuildDefinition: BuildDefinition{BuildType: BuildType, ExternalParameters: ext, InternalParameters: internal, ResolvedDependencies: deps},
		RunDetails:      RunDetails{Builder: Builder{ID: BuilderID}},
	}
	if created := c.Images[0].Created; created != nil {
		t := created.UTC().Format(time.RFC3339)
		st.Predicate.RunDetails.Metadata = &Metadata{StartedOn: t, FinishedOn: t}
	}
	return st, nil
}

// perBinary reports the build settings that differ between the binaries
// of one build (the architecture and its level), or that describe the
// source rather than the build (vcs*).
func perBinary(key string) bool {
	return archSettings[key] || strings.HasPrefix(key, "vcs")
}

// archSettings are the build settings that name an architecture or its
// level.
var archSettings = map[string]bool{"GOARCH": true, "GOARM": true, "GOARM64": true, "GOAMD64": true, "GO386": true,
	"GOPPC64": true, "GORISCV64": true, "GOMIPS": true, "GOMIPS64": true, "GOWASM": true}

// settings returns bi's build settings, leaving out those drop reports.
func settings(bi *debug.BuildInfo, drop func(string) bool) []Setting {
	out := []Setting{}
	for _, s := range bi.Settings {
		if drop == nil || !drop(s.Key) {
			out = append(out, Setting{Key: s.Key, Value: s.Value})
		}
	}
	return out
}

// dependencies are the source (the main module at its VCS revision, when
// the build recorded one), the Go toolchain and every module, sorted by
// path, with its version and go.sum hash.
func dependencies(bi *debug.BuildInfo) ([]ResourceDescriptor, error) {
	src := ResourceDescriptor{URI: "git+https://" + bi.Main.Path, Name: bi.Main.Path, Annotations: map[string]string{}}
	if rev := index.Setting(bi, "vcs.revision"); rev != "" {
		src.URI += "@" + rev
		src.Digest = map[string]string{"gitCommit": rev}
	}
	for _, k := range []string{"vcs", "vcs.time", "vcs.modified"} {
		if v := index.Setting(bi, k); v != "" {
			src.Annotations[k] = v
		}
	}
	if v := bi.Main.Version; v != "" {
		src.Annotations["version"] = v
	}
	out := []ResourceDescriptor{src, {URI: sbom.ModulePURL(sbom.ToolchainName, bi.GoVersion), Name: "go", Annotations: map[string]string{"version": bi.GoVersion}}}
	deps := slices.Clone(bi.Deps)
	slices.SortFunc(deps, func(a, b *debug.Module) int { return strings.Compare(a.Path, b.Path) })
	for _, m := range deps {
		used := m
		r := ResourceDescriptor{Name: m.Path, Annotations: map[string]string{}}
		if m.Replace != nil {
			used = m.Replace
			r.Annotations["replacedBy"] = strings.TrimSpace(m.Replace.Path + " " + m.Replace.Version)
		}
		r.URI = sbom.ModulePURL(m.Path, used.Version)
		r.Annotations["version"] = used.Version
		if used.Sum != "" {
			hex, err := sbom.H1Hex(used.Sum)
			if err != nil {
				return nil, fmt.Errorf("provenance: module %s: %w", m.Path, err)
			}
			r.Digest = map[string]string{"dirHash": hex}
			r.Annotations["goSum"] = used.Sum
		}
		out = append(out, r)
	}
	return out, nil
}

// subject names a digest.
func subject(name string, d digest.Digest) Subject {
	return Subject{Name: name, Digest: map[string]string{d.Algorithm().String(): d.Encoded()}}
}

// Marshal encodes the statement as indented JSON ending in a newline, with
// no HTML escaping.
func (s Statement) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

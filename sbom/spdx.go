// Package sbom describes quinistry's platform images in SPDX 2.3 JSON, from
// the Go build information of the binary each image runs, and attaches
// each description to its image as an OCI 1.1 referrer: an artifact
// manifest whose subject is the platform manifest. Everything is a function
// of the build information, the image's manifest digest and its config's
// creation time, so the same image always gets the same document bytes.
package sbom

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/crossbuild"
)

// The SPDX document, as a few structs. Field order is fixed and there are
// no maps, so the same values always encode to the same bytes.

// Document is an SPDX 2.3 document.
type Document struct {
	SPDXVersion       string         `json:"spdxVersion"`
	DataLicense       string         `json:"dataLicense"`
	SPDXID            string         `json:"SPDXID"`
	Name              string         `json:"name"`
	DocumentNamespace string         `json:"documentNamespace"`
	CreationInfo      CreationInfo   `json:"creationInfo"`
	Packages          []Package      `json:"packages"`
	Relationships     []Relationship `json:"relationships"`
}

// CreationInfo says who made the document and when.
type CreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
	Comment  string   `json:"comment,omitempty"`
}

// Package is an SPDX package: the image, a Go module or the toolchain.
type Package struct {
	Name                  string        `json:"name"`
	SPDXID                string        `json:"SPDXID"`
	VersionInfo           string        `json:"versionInfo,omitempty"`
	DownloadLocation      string        `json:"downloadLocation"`
	FilesAnalyzed         bool          `json:"filesAnalyzed"`
	Checksums             []Checksum    `json:"checksums,omitempty"`
	LicenseConcluded      string        `json:"licenseConcluded"`
	LicenseDeclared       string        `json:"licenseDeclared"`
	CopyrightText         string        `json:"copyrightText"`
	Comment               string        `json:"comment,omitempty"`
	ExternalRefs          []ExternalRef `json:"externalRefs,omitempty"`
	PrimaryPackagePurpose string        `json:"primaryPackagePurpose,omitempty"`
}

// Checksum is a package checksum.
type Checksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

// ExternalRef points outside the document; here always a package URL.
type ExternalRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

// Relationship links two elements of the document.
type Relationship struct {
	SPDXElementID      string `json:"spdxElementId"`
	RelationshipType   string `json:"relationshipType"`
	RelatedSPDXElement string `json:"relatedSpdxElement"`
}

// SPDX identifiers and values the document uses.
const (
	Version     = "SPDX-2.3"
	DocumentID  = "SPDXRef-DOCUMENT"
	ImageID     = "SPDXRef-Image"
	MainID      = "SPDXRef-Package-go-main"
	ToolchainID = "SPDXRef-Package-go-toolchain"
	noAssertion = "NOASSERTION"
	// ToolchainName is the toolchain package's name, as syft names Go's
	// standard library.
	ToolchainName = "stdlib"
	// Epoch stands in for the creation time of an image that has none:
	// SPDX requires one.
	Epoch = "1970-01-01T00:00:00Z"
)

// Image is what a document describes: the image that runs one binary.
type Image struct {
	Platform crossbuild.Platform
	// Manifest is the digest of the image's platform manifest.
	Manifest digest.Digest
	// Created is the image config's creation time; nil gives Epoch.
	Created *time.Time
	// Info is the build information of the binary the image runs.
	Info *debug.BuildInfo
}

// Namespace is the document namespace of the image with manifest digest d:
// unique to the image, and the same whenever that image is described.
func Namespace(p crossbuild.Platform, d digest.Digest) string {
	return "https://spdx.org/spdxdocs/" + p.FileName() + "-" + d.Algorithm().String() + "-" + d.Encoded()
}

// New describes img. The packages are the image, the main module, every
// dependency module (sorted by path) and the Go toolchain; the
// relationships are sorted.
func New(img Image) (Document, error) {
	bi := img.Info
	if bi == nil {
		return Document{}, fmt.Errorf("sbom: %s: no build information", img.Platform)
	}
	if err := img.Manifest.Validate(); err != nil {
		return Document{}, fmt.Errorf("sbom: %s: %w", img.Platform, err)
	}
	created := Epoch
	if img.Created != nil {
		created = img.Created.UTC().Format(time.RFC3339)
	}
	version := bi.Main.Version
	doc := Document{
		SPDXVersion:       Version,
		DataLicense:       "CC0-1.0",
		SPDXID:            DocumentID,
		Name:              crossbuild.BaseName + " " + img.Platform.String() + " image " + img.Manifest.String(),
		DocumentNamespace: Namespace(img.Platform, img.Manifest),
		CreationInfo: CreationInfo{
			Created:  created,
			Creators: []string{"Tool: " + crossbuild.BaseName + "-" + version},
			Comment: "Generated by the image's own binary from its Go build information. Created is the image config's " +
				"created (SOURCE_DATE_EPOCH, else the binary's vcs.time), or " + Epoch + " when the image has none.",
		},
	}

	doc.Packages = append(doc.Packages, Package{
		Name:                  crossbuild.BaseName,
		SPDXID:                ImageID,
		VersionInfo:           img.Manifest.String(),
		DownloadLocation:      noAssertion,
		Comment:               "The " + img.Platform.String() + " image; it runs /" + img.Platform.FileName() + ".",
		ExternalRefs:          []ExternalRef{purlRef(ImagePURL(img.Platform, img.Manifest))},
		PrimaryPackagePurpose: "CONTAINER",
	}.withNoAssertions())

	mainPkg := Package{
		Name:                  bi.Main.Path,
		SPDXID:                MainID,
		VersionInfo:           version,
		DownloadLocation:      noAssertion,
		Comment:               mainComment(bi),
		PrimaryPackagePurpose: "APPLICATION",
	}
	if version != "" && version != "(devel)" {
		mainPkg.ExternalRefs = []ExternalRef{purlRef(ModulePURL(bi.Main.Path, version))}
	}
	doc.Packages = append(doc.Packages, mainPkg.withNoAssertions())
	doc.Relationships = append(doc.Relationships,
		Relationship{DocumentID, "DESCRIBES", ImageID},
		Relationship{ImageID, "CONTAINS", MainID},
		Relationship{MainID, "DEPENDS_ON", ToolchainID},
	)

	deps := slices.Clone(bi.Deps)
	slices.SortFunc(deps, func(a, b *debug.Module) int { return strings.Compare(a.Path, b.Path) })
	used := map[string]bool{DocumentID: true, ImageID: true, MainID: true, ToolchainID: true}
	for _, m := range deps {
		pkg, err := modulePackage(m)
		if err != nil {
			return Document{}, fmt.Errorf("sbom: %s: %w", img.Platform, err)
		}
		pkg.SPDXID = uniqueID("SPDXRef-Package-go-module-"+idSafe(m.Path), used)
		doc.Packages = append(doc.Packages, pkg.withNoAssertions())
		doc.Relationships = append(doc.Relationships, Relationship{MainID, "DEPENDS_ON", pkg.SPDXID})
	}

	doc.Packages = append(doc.Packages, Package{
		Name:             ToolchainName,
		SPDXID:           ToolchainID,
		VersionInfo:      bi.GoVersion,
		DownloadLocation: noAssertion,
		Comment:          "The Go toolchain and standard library the binary was built with.",
		ExternalRefs:     []ExternalRef{purlRef(ModulePURL(ToolchainName, bi.GoVersion))},
	}.withNoAssertions())

	slices.SortFunc(doc.Relationships, func(a, b Relationship) int {
		return strings.Compare(a.SPDXElementID+" "+a.RelationshipType+" "+a.RelatedSPDXElement,
			b.SPDXElementID+" "+b.RelationshipType+" "+b.RelatedSPDXElement)
	})
	return doc, nil
}

// Marshal encodes the document as indented JSON ending in a newline, with
// no HTML escaping (a purl's "&" stays readable).
func (d Document) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Parse decodes a document and checks that it claims to be SPDX 2.3.
func Parse(data []byte) (Document, error) {
	var d Document
	if err := json.Unmarshal(data, &d); err != nil {
		return Document{}, fmt.Errorf("sbom: %w", err)
	}
	if d.SPDXVersion != Version {
		return Document{}, fmt.Errorf("sbom: spdxVersion %q, want %s", d.SPDXVersion, Version)
	}
	return d, nil
}

// Package returns the package with SPDX identifier id.
func (d Document) Package(id string) (Package, bool) {
	i := slices.IndexFunc(d.Packages, func(p Package) bool { return p.SPDXID == id })
	if i < 0 {
		return Package{}, false
	}
	return d.Packages[i], true
}

// Modules returns the dependency modules, in the document's order.
func (d Document) Modules() []Package {
	var out []Package
	for _, p := range d.Packages {
		if strings.HasPrefix(p.SPDXID, "SPDXRef-Package-go-module-") {
			out = append(out, p)
		}
	}
	return out
}

// withNoAssertions fills the license and copyright fields: quinistry does
// not analyse licenses, and says so.
func (p Package) withNoAssertions() Package {
	p.LicenseConcluded, p.LicenseDeclared, p.CopyrightText = noAssertion, noAssertion, noAssertion
	return p
}

// modulePackage describes one dependency module. A replaced module keeps
// its own path as the name and takes the replacement's version and hash,
// which is what was compiled in.
func modulePackage(m *debug.Module) (Package, error) {
	used := m
	comment := ""
	if m.Replace != nil {
		used = m.Replace
		comment = "Replaced by " + m.Replace.Path
		if m.Replace.Version != "" {
			comment += " " + m.Replace.Version
		}
		comment += ". "
	}
	p := Package{
		Name:             m.Path,
		VersionInfo:      used.Version,
		DownloadLocation: noAssertion,
	}
	if used.Version != "" {
		p.ExternalRefs = []ExternalRef{purlRef(ModulePURL(m.Path, used.Version))}
	}
	if used.Sum != "" {
		sum, err := H1Hex(used.Sum)
		if err != nil {
			return Package{}, fmt.Errorf("module %s: %w", m.Path, err)
		}
		p.Checksums = []Checksum{{Algorithm: "SHA256", ChecksumValue: sum}}
		comment += "The SHA256 checksum is the go.sum hash " + used.Sum +
			" in hex: a SHA-256 over the module's file hashes (Go's dirhash h1), not a hash of one archive."
	}
	p.Comment = strings.TrimSpace(comment)
	return p, nil
}

// H1Hex turns a go.sum "h1:" hash (base64 of a SHA-256) into hex.
func H1Hex(sum string) (string, error) {
	b64, ok := strings.CutPrefix(sum, "h1:")
	if !ok {
		return "", fmt.Errorf("hash %q is not an h1: hash", sum)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("hash %q is not a base64 SHA-256", sum)
	}
	return hex.EncodeToString(raw), nil
}

// mainComment lists the main module's VCS state and build settings.
func mainComment(bi *debug.BuildInfo) string {
	var b strings.Builder
	b.WriteString("The main module of the binary. Build settings:")
	for _, s := range bi.Settings {
		b.WriteString(" " + s.Key + "=" + s.Value + ";")
	}
	return strings.TrimSuffix(b.String(), ";")
}

// purlRef is an external reference holding a package URL.
func purlRef(purl string) ExternalRef {
	return ExternalRef{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: purl}
}

// ModulePURL is a Go module's package URL: pkg:golang/<path>@<version>.
func ModulePURL(path, version string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = purlEscape(s)
	}
	return "pkg:golang/" + strings.Join(segs, "/") + "@" + purlEscape(version)
}

// ImagePURL is an image's package URL, pkg:oci/quinistry@<digest> with its
// platform as qualifiers (sorted by key, as the purl spec wants).
func ImagePURL(p crossbuild.Platform, d digest.Digest) string {
	q := "arch=" + purlEscape(p.Arch) + "&os=" + purlEscape(p.OS)
	if v := p.ImageVariant(); v != "" {
		q += "&variant=" + purlEscape(v)
	}
	return "pkg:oci/" + crossbuild.BaseName + "@" + purlEscape(d.String()) + "?" + q
}

// purlEscape percent-encodes a purl segment (":" included, as in sha256%3A).
func purlEscape(s string) string {
	return strings.ReplaceAll(url.PathEscape(s), ":", "%3A")
}

// idSafe keeps the characters an SPDX identifier may hold: letters,
// digits, "." and "-".
func idSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, s)
}

// uniqueID returns id, or id with a number appended when it is taken (two
// paths that differ only in characters idSafe replaces).
func uniqueID(id string, used map[string]bool) string {
	out := id
	for n := 2; used[out]; n++ {
		out = fmt.Sprintf("%s-%d", id, n)
	}
	used[out] = true
	return out
}

// Package attest serves Sigstore bundles as OCI 1.1 referrers of the
// image they are about. It reads the bundles of a directory (as cosign
// attest-blob --bundle writes them, or as a mounted ConfigMap lays them
// out), checks that each carries a DSSE envelope around an in-toto
// statement, and makes, for every served digest a statement names, the
// artifact manifest cosign itself writes for a bundle. It verifies no
// signature: that is the client's job, against its own key.
package attest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/index"
)

// Media types and annotations of a bundle referrer, as cosign writes them.
const (
	// MediaType is the artifact type of a bundle referrer and the media
	// type of its one layer.
	MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	// ContentAnnotation says what the bundle holds; here always
	// ContentDSSE.
	ContentAnnotation = "dev.sigstore.bundle.content"
	ContentDSSE       = "dsse-envelope"
	// PredicateTypeAnnotation holds the statement's predicate type.
	PredicateTypeAnnotation = "dev.sigstore.bundle.predicateType"
	// CreatedAnnotation holds the image's creation time, so that the same
	// bundle always gives the same manifest.
	CreatedAnnotation = "org.opencontainers.image.created"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// MaxSize is the largest bundle file read; a signed provenance
	// statement of quinistry is a few tens of KiB.
	MaxSize = 1 << 20
	// Epoch stands in for the creation time of an image that has none.
	Epoch = "1970-01-01T00:00:00Z"
)

// bundleTypeRE matches the media types of bundles v0.3 and later.
var bundleTypeRE = regexp.MustCompile(`^application/vnd\.dev\.sigstore\.bundle\.v([0-9]+)\.([0-9]+)\+json$`)

// Bundle is one Sigstore bundle read from a file.
type Bundle struct {
	// File is the file's name in its directory.
	File string
	// Data is the file's bytes, served as they are.
	Data   []byte
	Digest digest.Digest
	// PredicateType is the statement's predicate type.
	PredicateType string
	// Subjects are the sha256 digests the statement names.
	Subjects []digest.Digest
}

// Parse checks that data is a Sigstore bundle v0.3 or later whose DSSE
// envelope holds an in-toto statement, and reads the statement's predicate
// type and subjects. Its errors are one line.
func Parse(file string, data []byte) (Bundle, error) {
	if len(data) > MaxSize {
		return Bundle{}, fmt.Errorf("%d bytes, over the %d-byte cap", len(data), MaxSize)
	}
	var b struct {
		MediaType    string `json:"mediaType"`
		DSSEEnvelope *struct {
			Payload     string            `json:"payload"`
			PayloadType string            `json:"payloadType"`
			Signatures  []json.RawMessage `json:"signatures"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return Bundle{}, fmt.Errorf("not a JSON Sigstore bundle: %v", err)
	}
	m := bundleTypeRE.FindStringSubmatch(b.MediaType)
	if m == nil {
		return Bundle{}, fmt.Errorf("media type %q is not a Sigstore bundle v0.3 or later", b.MediaType)
	}
	if major, _ := strconv.Atoi(m[1]); major == 0 {
		if minor, _ := strconv.Atoi(m[2]); minor < 3 {
			return Bundle{}, fmt.Errorf("media type %q is not a Sigstore bundle v0.3 or later", b.MediaType)
		}
	}
	env := b.DSSEEnvelope
	if env == nil {
		return Bundle{}, errors.New("the bundle carries no DSSE envelope (cosign attest-blob --bundle writes one; sign-blob does not)")
	}
	if env.PayloadType != InTotoPayloadType {
		return Bundle{}, fmt.Errorf("the DSSE payload type is %q, not %s", env.PayloadType, InTotoPayloadType)
	}
	if len(env.Signatures) == 0 {
		return Bundle{}, errors.New("the DSSE envelope has no signature")
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return Bundle{}, fmt.Errorf("the DSSE payload is not base64: %v", err)
	}
	var st struct {
		Type    string `json:"_type"`
		Subject []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
		PredicateType string `json:"predicateType"`
	}
	if err := json.Unmarshal(payload, &st); err != nil {
		return Bundle{}, fmt.Errorf("the DSSE payload is not an in-toto statement: %v", err)
	}
	if !strings.HasPrefix(st.Type, "https://in-toto.io/Statement/") || st.PredicateType == "" || len(st.Subject) == 0 {
		return Bundle{}, fmt.Errorf("the DSSE payload is not an in-toto statement with a predicate type and subjects (_type %q)", st.Type)
	}
	out := Bundle{File: file, Data: data, Digest: digest.FromBytes(data), PredicateType: st.PredicateType}
	for _, s := range st.Subject {
		if hex, ok := s.Digest["sha256"]; ok {
			d := digest.NewDigestFromEncoded(digest.SHA256, hex)
			if d.Validate() == nil {
				out.Subjects = append(out.Subjects, d)
			}
		}
	}
	return out, nil
}

// Load reads every bundle of dir, sorted by digest, identical files once.
// It reads dir as Kubernetes mounts a ConfigMap or Secret: entries whose
// names start with "." (..data and its timestamped target) are skipped,
// symbolic links are followed, and directories are ignored. Any file that
// is not a valid bundle fails the whole load, with one line naming it.
func Load(dir string) ([]Bundle, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("attestations: %w", err)
	}
	var out []Bundle
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("attestations: %w", err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		data, err := readCapped(path)
		if err != nil {
			return nil, fmt.Errorf("attestations: %s: %w", path, err)
		}
		b, err := Parse(e.Name(), data)
		if err != nil {
			return nil, fmt.Errorf("attestations: %s: %w", path, err)
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b Bundle) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	return slices.CompactFunc(out, func(a, b Bundle) bool { return a.Digest == b.Digest }), nil
}

// readCapped reads a file of at most MaxSize bytes.
func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("over the %d-byte cap", MaxSize)
	}
	return data, nil
}

// Artifacts makes the referrers of c's list and images that bundles name:
// for each bundle, in order, one artifact per served digest among its
// subjects, in the content's order (the list, then the images). Bundles
// that name no served digest are returned as skipped.
func Artifacts(c *index.Content, bundles []Bundle) (arts []index.Artifact, skipped []Bundle, err error) {
	subjects := []index.Descriptor{c.List.Descriptor}
	for _, img := range c.Images {
		subjects = append(subjects, img.Manifest.Descriptor)
	}
	created := Epoch
	if t := c.Default().Created; t != nil {
		created = t.UTC().Format(time.RFC3339)
	}
	for _, b := range bundles {
		n := 0
		for _, s := range subjects {
			if !slices.Contains(b.Subjects, s.Digest) {
				continue
			}
			layer := index.Blob{Descriptor: index.Descriptor{MediaType: MediaType, Digest: b.Digest, Size: int64(len(b.Data))}, Data: b.Data}
			a, err := index.NewArtifact(s, MediaType, []index.Blob{layer}, map[string]string{
				ContentAnnotation:       ContentDSSE,
				PredicateTypeAnnotation: b.PredicateType,
				CreatedAnnotation:       created,
			})
			if err != nil {
				return nil, nil, err
			}
			arts = append(arts, a)
			n++
		}
		if n == 0 {
			skipped = append(skipped, b)
		}
	}
	return arts, skipped, nil
}

// Fingerprint describes what Load would read from dir without reading the
// files: the target of ..data, and each entry's name, link target, size,
// modification time and mode. A mounted ConfigMap's update moves ..data; a
// file written in place changes its time or size.
func Fingerprint(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if target, err := os.Readlink(filepath.Join(dir, "..data")); err == nil {
		fmt.Fprintf(&b, "..data -> %s\n", target)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		target, _ := os.Readlink(path)
		if st, err := os.Stat(path); err == nil {
			fmt.Fprintf(&b, "%s -> %s %d %d %s\n", e.Name(), target, st.Size(), st.ModTime().UnixNano(), st.Mode())
		} else {
			fmt.Fprintf(&b, "%s -> %s %v\n", e.Name(), target, err)
		}
	}
	return b.String(), nil
}

// Package export writes quinistry's image with no registry in between: as an
// OCI image layout in a directory, or as a tar of that layout that `docker
// load` accepts. The tar carries both the OCI index.json (whose annotations
// name the image for containerd-backed loaders) and the legacy manifest.json
// of `docker save` (for daemons that only read that), for one platform.
// The same content and options always give the same bytes.
package export

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
)

// Annotations that name an image in an OCI layout's index.json.
const (
	// RefNameAnnotation holds the tag, as the OCI image spec defines it.
	RefNameAnnotation = "org.opencontainers.image.ref.name"
	// ImageNameAnnotation holds the full reference; docker and containerd
	// name a loaded image after it.
	ImageNameAnnotation = "io.containerd.image.name"
)

// LayoutVersion is the OCI image layout version written to oci-layout.
const LayoutVersion = "1.0.0"

// Options say what to call the image and which platform the legacy
// manifest.json describes.
type Options struct {
	// Name is the repository, such as quinistry or team/quinistry.
	Name string
	// Tag is the tag, such as latest.
	Tag string
	// Platform is the image manifest.json points at (docker load of the
	// legacy format takes one image per tag). Zero: the first image.
	Platform crossbuild.Platform
}

// File is one file of the layout.
type File struct {
	Path string
	Data []byte
}

// Layout returns the files of the OCI image layout, sorted by path: the
// oci-layout marker, index.json, manifest.json and every blob under
// blobs/<algorithm>/<encoded>. index.json names the list, then every
// artifact (SBOM) that refers to one of the images.
func Layout(c *index.Content, opts Options) ([]File, error) {
	if c == nil || len(c.Images) == 0 {
		return nil, errors.New("export: no image to export")
	}
	if opts.Name == "" || opts.Tag == "" {
		return nil, errors.New("export: a name and a tag are needed")
	}
	img := c.Images[0]
	if opts.Platform != (crossbuild.Platform{}) {
		i := slices.IndexFunc(c.Images, func(im index.Image) bool { return im.Platform == opts.Platform })
		if i < 0 {
			return nil, fmt.Errorf("export: no image for %s", opts.Platform)
		}
		img = c.Images[i]
	}

	files := map[string][]byte{}
	add := func(b index.Blob) { files[BlobPath(b.Digest)] = b.Data }
	add(c.List)
	for _, im := range c.Images {
		add(im.Manifest)
		add(im.Config)
	}
	for _, l := range c.Layers {
		add(l)
	}
	for _, a := range c.Artifacts {
		add(a.Manifest)
		for _, b := range a.Blobs {
			add(b)
		}
	}

	marker, err := json.Marshal(struct {
		Version string `json:"imageLayoutVersion"`
	}{LayoutVersion})
	if err != nil {
		return nil, err
	}
	files["oci-layout"] = marker

	ref := c.List.Descriptor
	ref.Annotations = map[string]string{ImageNameAnnotation: FullName(opts.Name) + ":" + opts.Tag, RefNameAnnotation: opts.Tag}
	manifests := []index.Descriptor{ref}
	for _, a := range c.Artifacts {
		// The referrers (SBOMs) are named by nothing but their subject:
		// layout readers such as oras find them through it.
		manifests = append(manifests, a.Descriptor())
	}
	idx, err := json.Marshal(index.List{SchemaVersion: 2, MediaType: index.OCI.MediaTypes().List, Manifests: manifests})
	if err != nil {
		return nil, err
	}
	files["index.json"] = idx

	// Every image holds every layer, in the content's order.
	legacy := LegacyManifest{Config: BlobPath(img.Config.Digest), RepoTags: []string{FamiliarName(opts.Name) + ":" + opts.Tag}}
	for _, l := range c.Layers {
		legacy.Layers = append(legacy.Layers, BlobPath(l.Digest))
	}
	lm, err := json.Marshal([]LegacyManifest{legacy})
	if err != nil {
		return nil, err
	}
	files["manifest.json"] = lm

	out := make([]File, 0, len(files))
	for p, data := range files {
		out = append(out, File{Path: p, Data: data})
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// LegacyManifest is one entry of the manifest.json that `docker save`
// writes and every `docker load` reads.
type LegacyManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// BlobPath is where a layout keeps the blob with digest d.
func BlobPath(d digest.Digest) string {
	return "blobs/" + d.Algorithm().String() + "/" + d.Encoded()
}

// FullName is the fully qualified form of a repository name, as docker
// expands it: quinistry is docker.io/library/quinistry, team/q is
// docker.io/team/q, and a name whose first part is a host stays as it is.
func FullName(name string) string {
	first, _, found := strings.Cut(name, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return name
	}
	if !found {
		return "docker.io/library/" + name
	}
	return "docker.io/" + name
}

// FamiliarName is the short form docker shows: docker.io/library/quinistry
// is quinistry.
func FamiliarName(name string) string {
	name = strings.TrimPrefix(FullName(name), "docker.io/")
	return strings.TrimPrefix(name, "library/")
}

// epoch is the modification time of every file written.
var epoch = time.Unix(0, 0)

// WriteTar writes the layout as a tar stream: directories first, then the
// files, all owned by root with fixed modes and a zero modification time.
func WriteTar(w io.Writer, c *index.Content, opts Options) error {
	files, err := Layout(c, opts)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	for _, f := range files {
		for d := filepath.Dir(f.Path); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	slices.Sort(sorted)
	for _, d := range sorted {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
			return err
		}
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: 0o644, Size: int64(len(f.Data)), ModTime: epoch, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// WriteTarFile writes the tar to path ("-" is standard output). A file
// left incomplete by an error is removed.
func WriteTarFile(path string, stdout io.Writer, c *index.Content, opts Options) error {
	if path == "-" {
		bw := bufio.NewWriterSize(stdout, 1<<20)
		if err := WriteTar(bw, c, opts); err != nil {
			return fmt.Errorf("cannot write the tar to standard output: %w", cause(err))
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("cannot write the tar to standard output: %w", cause(err))
		}
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("cannot write %s: %w", path, cause(err))
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	err = WriteTar(bw, c, opts)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
			err = nil // a pipe or a device that cannot sync
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if fi, serr := os.Stat(path); serr == nil && fi.Mode().IsRegular() {
			os.Remove(path)
		}
		return fmt.Errorf("cannot write %s: %w", path, cause(err))
	}
	return nil
}

// WriteDir writes the layout into dir, creating it when missing. Files of
// the same names are replaced, so index.json then names this image only.
func WriteDir(dir string, c *index.Content, opts Options) error {
	files, err := Layout(c, opts)
	if err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("cannot write %s: %w", dir, cause(err))
		}
		if err := writeFile(p, f.Data); err != nil {
			return fmt.Errorf("cannot write %s: %w", p, cause(err))
		}
	}
	return nil
}

// writeFile writes data to a temporary file beside path and renames it
// into place, so an interrupted export never leaves a short blob.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chtimes(tmp.Name(), epoch, epoch)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// cause strips the operation and path from a file system error, leaving
// "no space left on device" and the like, since callers name the path.
func cause(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

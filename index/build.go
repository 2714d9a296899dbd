package index

import (
	"bufio"
	"bytes"
	"context"
	_ "crypto/sha256" // registers sha256 for go-digest
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/layer"
)

// Image settings shared by every platform.
const (
	// Port is the port the image exposes and quinistry listens on by default.
	Port = "8080"
	// User is the non-root user containers of the image run as.
	User = "65532"
	// Dir is where the binaries are placed inside the image.
	Dir = "/"
)

// Options tune Build.
type Options struct {
	// Format chooses the media-type family; Docker when empty.
	Format Format
	// Created, when set (from SOURCE_DATE_EPOCH), is the creation time of
	// every config. Otherwise each config takes its binary's vcs.time, and
	// has none when the binary has none.
	Created *time.Time
	// Env is the environment every config carries after PATH: the
	// settings the image was packed with, so that a container started as
	// the image says packs it again (the caller names them).
	Env []string
}

// Build packs every binary into its own layer (concurrently) and makes one
// image per binary, each holding every layer and starting its own binary,
// plus the list of those images. The same binaries and options always give
// the same bytes.
func Build(ctx context.Context, bins []crossbuild.Binary, opts Options) (*Content, error) {
	if len(bins) == 0 {
		return nil, fmt.Errorf("index: no binaries to pack")
	}
	format := opts.Format
	if format == "" {
		format = Docker
	}
	types := format.MediaTypes()
	if types.List == "" {
		return nil, fmt.Errorf("index: unknown format %q", format)
	}

	layers := make([]Blob, len(bins))
	diffIDs := make([]digest.Digest, len(bins))
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, b := range bins {
		g.Go(func() error {
			blob, diffID, err := packLayer(b, types.Layer)
			layers[i], diffIDs[i] = blob, diffID
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	c := &Content{Format: format, Layers: layers}
	list := List{SchemaVersion: 2, MediaType: types.List}
	for _, b := range bins {
		cfg := imageConfig(b, bins, diffIDs, opts)
		config, err := newBlob(types.Config, cfg)
		if err != nil {
			return nil, err
		}
		m := Manifest{SchemaVersion: 2, MediaType: types.Manifest, Config: config.Descriptor}
		for _, l := range layers {
			m.Layers = append(m.Layers, l.Descriptor)
		}
		manifest, err := newBlob(types.Manifest, m)
		if err != nil {
			return nil, err
		}
		c.Images = append(c.Images, Image{Platform: b.Platform, Manifest: manifest, Config: config, Created: cfg.Created})
		d := manifest.Descriptor
		d.Platform = &PlatformField{Architecture: b.Platform.Arch, OS: b.Platform.OS, Variant: b.Platform.ImageVariant()}
		list.Manifests = append(list.Manifests, d)
	}
	var err error
	if c.List, err = newBlob(types.List, list); err != nil {
		return nil, err
	}
	c.index()
	return c, nil
}

// packLayer packs one binary into a layer blob. The compressed bytes go to
// an in-memory file, mapped read-only as the blob's Data, so the server can
// send them with sendfile; where no such file can be made they stay on the
// heap.
func packLayer(b crossbuild.Binary, mediaType string) (Blob, digest.Digest, error) {
	files := []layer.File{{Name: b.Platform.FileName(), Path: b.Path}}
	f, err := newMemFile(b.Platform.FileName())
	if err != nil {
		var buf bytes.Buffer
		info, err := layer.Write(&buf, files)
		return Blob{Descriptor: Descriptor{MediaType: mediaType, Digest: info.Digest, Size: info.Size}, Data: buf.Bytes()}, info.DiffID, err
	}
	w := bufio.NewWriterSize(f, 256<<10)
	info, err := layer.Write(w, files)
	if err == nil {
		err = w.Flush()
	}
	var data []byte
	if err == nil {
		data, err = mapFile(f, info.Size)
	}
	if err != nil {
		f.Close()
		return Blob{}, "", err
	}
	return Blob{Descriptor: Descriptor{MediaType: mediaType, Digest: info.Digest, Size: info.Size}, Data: data, File: f}, info.DiffID, nil
}

// imageConfig is the config of the image that starts binary b.
func imageConfig(b crossbuild.Binary, all []crossbuild.Binary, diffIDs []digest.Digest, opts Options) Config {
	created := opts.Created
	if created == nil {
		created = vcsTime(b.Info)
	}
	cfg := Config{
		Created:      created,
		Architecture: b.Platform.Arch,
		OS:           b.Platform.OS,
		Variant:      b.Platform.ImageVariant(),
		Config: ContainerConfig{
			User:         User,
			ExposedPorts: map[string]struct{}{Port + "/tcp": {}},
			Env:          append([]string{"PATH=" + Dir}, opts.Env...),
			Entrypoint:   []string{Dir + b.Platform.FileName()},
			WorkingDir:   Dir,
			Labels:       Labels(b.Info),
		},
		RootFS: RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	for _, other := range all {
		cfg.History = append(cfg.History, History{
			Created:   created,
			CreatedBy: "quinistry: pack " + Dir + other.Platform.FileName(),
			Comment:   other.Platform.String(),
		})
	}
	return cfg
}

// Labels returns the org.opencontainers.image labels that a binary's build
// information supports: source (from the module path), revision (the VCS
// revision) and version (the module version).
func Labels(bi *debug.BuildInfo) map[string]string {
	l := map[string]string{"org.opencontainers.image.title": crossbuild.BaseName}
	if bi == nil {
		return l
	}
	if first, _, _ := strings.Cut(bi.Main.Path, "/"); strings.Contains(first, ".") {
		l["org.opencontainers.image.source"] = "https://" + bi.Main.Path
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		l["org.opencontainers.image.version"] = v
	}
	if r := Setting(bi, "vcs.revision"); r != "" {
		l["org.opencontainers.image.revision"] = r
	}
	return l
}

// Setting returns the value of a build setting, or "".
func Setting(bi *debug.BuildInfo, key string) string {
	if bi == nil {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// vcsTime returns the binary's commit time, or nil.
func vcsTime(bi *debug.BuildInfo) *time.Time {
	t, err := time.Parse(time.RFC3339, Setting(bi, "vcs.time"))
	if err != nil {
		return nil
	}
	t = t.UTC()
	return &t
}

// newBlob encodes v as compact JSON and addresses it.
func newBlob(mediaType string, v any) (Blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return Blob{}, err
	}
	return Blob{Descriptor: Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}, nil
}

// VersionTag returns the tag that pins a binary's version: its module
// version when that is a release, else its short VCS revision (with -dirty
// for a build from a modified tree), else "".
func VersionTag(bi *debug.BuildInfo) string {
	if bi == nil {
		return ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" && !pseudoVersionRE.MatchString(v) && !strings.Contains(v, "+") {
		return v
	}
	rev := Setting(bi, "vcs.revision")
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if Setting(bi, "vcs.modified") == "true" {
		rev += "-dirty"
	}
	return rev
}

// pseudoVersionRE matches the timestamp-and-revision part of a Go
// pseudo-version (v0.0.0-20261127120000-0123456789ab).
var pseudoVersionRE = regexp.MustCompile(`\d{14}-[0-9a-f]{12}`)

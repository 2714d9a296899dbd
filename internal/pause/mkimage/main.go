// Command mkimage packs static pause binaries (internal/pause), one per
// platform, into a multi-platform image written as an OCI image layout tar,
// which `ctr images import` loads into containerd as the sandbox image of the
// test cluster:
//
//	mkimage -o pause.tar -ref NAME:TAG linux/amd64=PATH linux/arm64=PATH
//
// Each image holds one layer with the binary at /pause, owned by root and
// mode 0555, and starts it as user 65535. The output depends only on the
// binaries and the reference: no clock, no temporary path.
package main

import (
	"archive/tar"
	"bytes"
	_ "crypto/sha256" // registers sha256 for go-digest
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/export"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/layer"
)

// binary is one platform's pause executable.
type binary struct {
	Platform crossbuild.Platform
	Path     string
}

func main() {
	out := flag.String("o", "", "the tar file to write")
	ref := flag.String("ref", "", "the image reference, NAME:TAG")
	flag.Parse()
	if err := run(*out, *ref, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, ref string, args []string) error {
	if out == "" || ref == "" || len(args) == 0 {
		return errors.New("usage: mkimage -o FILE -ref NAME:TAG OS/ARCH=PATH...")
	}
	var bins []binary
	for _, a := range args {
		plat, path, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("argument %q: want OS/ARCH=PATH", a)
		}
		p, err := crossbuild.ParsePlatform(plat)
		if err != nil {
			return err
		}
		bins = append(bins, binary{Platform: p, Path: path})
	}
	var buf bytes.Buffer
	if err := write(&buf, ref, bins); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// blob is one content-addressed file of the layout.
type blob struct {
	desc index.Descriptor
	data []byte
}

func jsonBlob(mediaType string, v any) (blob, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return blob{}, err
	}
	return blob{index.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data}, nil
}

// write writes the OCI layout tar of an index naming one image per binary
// under ref (NAME:TAG).
func write(w io.Writer, ref string, bins []binary) error {
	name, tag, ok := strings.Cut(ref, ":")
	if !ok || name == "" || tag == "" || strings.Contains(tag, "/") {
		return fmt.Errorf("reference %q: want NAME:TAG", ref)
	}
	types := index.OCI.MediaTypes()
	var blobs []blob
	list := index.List{SchemaVersion: 2, MediaType: types.List}
	for _, b := range bins {
		var lbuf bytes.Buffer
		info, err := layer.Write(&lbuf, []layer.File{{Name: "pause", Path: b.Path}})
		if err != nil {
			return err
		}
		l := blob{index.Descriptor{MediaType: types.Layer, Digest: info.Digest, Size: info.Size}, lbuf.Bytes()}
		config, err := jsonBlob(types.Config, index.Config{
			Architecture: b.Platform.Arch,
			OS:           b.Platform.OS,
			Variant:      b.Platform.ImageVariant(),
			Config:       index.ContainerConfig{User: "65535:65535", Env: []string{"PATH=/"}, Entrypoint: []string{"/pause"}, WorkingDir: "/"},
			RootFS:       index.RootFS{Type: "layers", DiffIDs: []digest.Digest{info.DiffID}},
			History:      []index.History{{CreatedBy: "mkimage: pack /pause"}},
		})
		if err != nil {
			return err
		}
		manifest, err := jsonBlob(types.Manifest, index.Manifest{SchemaVersion: 2, MediaType: types.Manifest, Config: config.desc, Layers: []index.Descriptor{l.desc}})
		if err != nil {
			return err
		}
		blobs = append(blobs, l, config, manifest)
		d := manifest.desc
		d.Platform = &index.PlatformField{Architecture: b.Platform.Arch, OS: b.Platform.OS, Variant: b.Platform.ImageVariant()}
		list.Manifests = append(list.Manifests, d)
	}
	idx, err := jsonBlob(types.List, list)
	if err != nil {
		return err
	}
	blobs = append(blobs, idx)
	top := idx.desc
	top.Annotations = map[string]string{export.ImageNameAnnotation: export.FullName(name) + ":" + tag, export.RefNameAnnotation: tag}
	indexJSON, err := json.Marshal(index.List{SchemaVersion: 2, MediaType: types.List, Manifests: []index.Descriptor{top}})
	if err != nil {
		return err
	}

	tw := tar.NewWriter(w)
	file := func(path string, data []byte) error {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := file("oci-layout", []byte(`{"imageLayoutVersion":"`+export.LayoutVersion+`"}`)); err != nil {
		return err
	}
	if err := file("index.json", indexJSON); err != nil {
		return err
	}
	for _, b := range blobs {
		if err := file(export.BlobPath(b.desc.Digest), b.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

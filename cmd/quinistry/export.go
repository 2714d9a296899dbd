package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/export"
	"github.com/quinistry/quinistry/index"
)

// exportConfig is what the export command was asked to do.
type exportConfig struct {
	Name      string
	Tag       string
	pack      packConfig
	LayoutDir string
	TarFile   string
	Platform  crossbuild.Platform
	// PlatformSet is true when --platform was given: then the image must
	// have that platform.
	PlatformSet bool
}

// parseExportFlags reads the export command's flags.
func parseExportFlags(args []string, stderr io.Writer) (exportConfig, error) {
	fs := flag.NewFlagSet("quinistry export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	layoutDir := fs.String("oci-layout", "", "write an OCI image layout into this directory")
	tarFile := fs.String("tar", "", "write the OCI image layout as a tar to this file (- for standard output), for docker load")
	name := fs.String("name", "quinistry", "repository name the image is given")
	tag := fs.String("tag", "latest", "tag the image is given")
	packFlags := addPackFlags(fs)
	platform := fs.String("platform", crossbuild.Current().String(), "platform the tar's docker-save manifest.json points at")
	if err := parseFlags(fs, args, stderr, "usage: quinistry export (--oci-layout DIR | --tar FILE) [flags]"); err != nil {
		return exportConfig{}, err
	}
	if err := setFromEnv(fs, packFlagNames...); err != nil {
		return exportConfig{}, err
	}
	if fs.NArg() > 0 {
		return exportConfig{}, usageError{fmt.Errorf("export: unexpected argument %q (see --help)", fs.Arg(0))}
	}
	cfg := exportConfig{LayoutDir: *layoutDir, TarFile: *tarFile, Name: *name, Tag: *tag}
	if cfg.LayoutDir == "" && cfg.TarFile == "" {
		return cfg, usageError{errors.New("export: give --oci-layout DIR or --tar FILE")}
	}
	var err error
	if cfg.pack, err = packFlags.config(); err != nil {
		return cfg, err
	}
	if cfg.Platform, err = crossbuild.ParsePlatform(*platform); err != nil {
		return cfg, usageError{err}
	}
	fs.Visit(func(f *flag.Flag) { cfg.PlatformSet = cfg.PlatformSet || f.Name == "platform" })
	return cfg, checkNameTag(cfg.Name, cfg.Tag)
}

// runExport packs the image and writes it out, then prints the list digest.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseExportFlags(args, stderr)
	if err != nil {
		return err
	}
	log := newLogger("text", stderr)
	content, err := pack(ctx, cfg.pack, log)
	if err != nil {
		return err
	}
	opts := export.Options{Name: cfg.Name, Tag: cfg.Tag, Platform: cfg.Platform}
	if !hasPlatform(content, cfg.Platform) {
		if cfg.PlatformSet {
			return usageError{fmt.Errorf("export: --platform %s: the image has no such platform (it has %s)", cfg.Platform, imagePlatforms(content))}
		}
		// This machine's platform is not among --platforms: the tar's
		// manifest.json points at the image a pull by tag would get.
		opts.Platform = content.Default().Platform
	}
	if cfg.LayoutDir != "" {
		if err := export.WriteDir(cfg.LayoutDir, content, opts); err != nil {
			return err
		}
		log.Info("exported", "oci_layout", cfg.LayoutDir, "list", content.List.Digest.String())
	}
	if cfg.TarFile != "" {
		if err := export.WriteTarFile(cfg.TarFile, stdout, content, opts); err != nil {
			return err
		}
		log.Info("exported", "tar", cfg.TarFile, "list", content.List.Digest.String(),
			"load", "docker load -i "+cfg.TarFile, "image", export.FamiliarName(opts.Name)+":"+opts.Tag)
	}
	if cfg.TarFile != "-" {
		fmt.Fprintln(stdout, content.List.Digest)
	}
	return nil
}

// imagePlatforms lists the content's platforms, comma-separated.
func imagePlatforms(c *index.Content) string {
	ps := make([]crossbuild.Platform, len(c.Images))
	for i, img := range c.Images {
		ps[i] = img.Platform
	}
	return crossbuild.Join(ps)
}

// hasPlatform reports whether the content holds an image for p.
func hasPlatform(c *index.Content, p crossbuild.Platform) bool {
	for _, img := range c.Images {
		if img.Platform == p {
			return true
		}
	}
	return false
}

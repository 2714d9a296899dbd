package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/sbom"
)

// sbomConfig is what the sbom command was asked to do.
type sbomConfig struct {
	pack     packConfig
	Platform crossbuild.Platform
}

// parseSBOMFlags reads the sbom command's flags.
func parseSBOMFlags(args []string, stderr io.Writer) (sbomConfig, error) {
	fs := flag.NewFlagSet("quinistry sbom", flag.ContinueOnError)
	packFlags := addPackFlags(fs)
	platform := fs.String("platform", crossbuild.Current().String(), "platform whose image's SBOM is printed")
	if err := parseFlags(fs, args, stderr, "usage: quinistry sbom [--platform P] [flags]\n\nPrints the SPDX 2.3 SBOM of one platform image, as the registry serves it."); err != nil {
		return sbomConfig{}, err
	}
	if fs.NArg() > 0 {
		return sbomConfig{}, usageError{fmt.Errorf("sbom: unexpected argument %q (see --help)", fs.Arg(0))}
	}
	var cfg sbomConfig
	var err error
	if cfg.pack, err = packFlags.config(); err != nil {
		return cfg, err
	}
	if cfg.Platform, err = crossbuild.ParsePlatform(*platform); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

// runSBOM packs the image, as serve would, and prints the SBOM of the
// asked platform's image: the very bytes the registry serves as its
// referrer.
func runSBOM(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseSBOMFlags(args, stderr)
	if err != nil {
		return err
	}
	content, err := pack(ctx, cfg.pack, newLogger("text", stderr))
	if err != nil {
		return err
	}
	defer content.Close()
	doc, err := sbomDocument(content, cfg.Platform)
	if err != nil {
		return err
	}
	_, err = stdout.Write(doc)
	return err
}

// sbomDocument returns the SBOM document of p's image in c.
func sbomDocument(c *index.Content, p crossbuild.Platform) ([]byte, error) {
	for _, img := range c.Images {
		if doc, ok := sbom.Find(c, img.Manifest.Digest); ok && img.Platform == p {
			return doc.Data, nil
		}
	}
	return nil, fmt.Errorf("sbom: no image for %s (the image holds %s)", p, imagePlatforms(c))
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/quinistry/quinistry/provenance"
)

// parseProvenanceFlags reads the provenance command's flags: the pack
// flags, from QUINISTRY_* too, as serve reads them.
func parseProvenanceFlags(args []string, stderr io.Writer) (packConfig, error) {
	fs := flag.NewFlagSet("quinistry provenance", flag.ContinueOnError)
	packFlags := addPackFlags(fs)
	if err := parseFlags(fs, args, stderr, "usage: quinistry provenance [flags]\n\n"+
		"Prints an in-toto statement with a SLSA provenance v1 predicate about the image serve would serve\n"+
		"(its list and every platform manifest), to sign with cosign attest-blob --statement.\n\nflags (each also read from QUINISTRY_<NAME>):"); err != nil {
		return packConfig{}, err
	}
	if fs.NArg() > 0 {
		return packConfig{}, usageError{fmt.Errorf("provenance: unexpected argument %q (see --help)", fs.Arg(0))}
	}
	if err := setFromEnv(fs, packFlagNames...); err != nil {
		return packConfig{}, err
	}
	return packFlags.config()
}

// runProvenance packs the image, as serve would, and prints the provenance
// statement about it.
func runProvenance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseProvenanceFlags(args, stderr)
	if err != nil {
		return err
	}
	content, bins, err := packBinaries(ctx, cfg, newLogger("text", stderr))
	if err != nil {
		return err
	}
	defer content.Close()
	st, err := provenance.New(provenance.Image{Content: content, Binaries: bins, Created: cfg.Created})
	if err != nil {
		return err
	}
	data, err := st.Marshal()
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}

// Command quinistry is a Docker/OCI registry that serves itself: it packs
// its own executable and the cross-compiled copies of itself found beside it
// into one multi-platform image, and serves that image over the registry
// pull API. Run the image and it serves the same image again.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, errHelp) {
		os.Exit(0)
	}
	if err != nil {
		var usage usageError
		fmt.Fprintln(os.Stderr, "quinistry:", err)
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct{ error }

// run runs one command: serve (the default) or version.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "version":
			if len(args) > 1 {
				return usageError{fmt.Errorf("version takes no arguments")}
			}
			fmt.Fprintln(stdout, versionLine())
			return nil
		case "push":
			return runPush(ctx, args[1:], os.Stdin, stdout, stderr)
		case "export":
			return runExport(ctx, args[1:], stdout, stderr)
		case "sbom":
			return runSBOM(ctx, args[1:], stdout, stderr)
		case "provenance":
			return runProvenance(ctx, args[1:], stdout, stderr)
		case "serve":
			args = args[1:]
		}
	}
	cfg, err := parseServeFlags(args, stderr)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stderr)
}

// versionLine describes the running binary.
func versionLine() string {
	version, revision := buildVersion()
	return fmt.Sprintf("quinistry %s (revision %s, %s, %s)", version, revision, runtime.Version(), crossbuild.Current())
}

// buildVersion returns the running binary's module version and VCS
// revision, or "(devel)" and "unknown" where the build did not record them.
func buildVersion() (version, revision string) {
	version, revision = "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if r := index.Setting(bi, "vcs.revision"); r != "" {
			revision = r
		}
	}
	return version, revision
}

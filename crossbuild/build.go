package crossbuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildOptions says what Build compiles and where it writes.
type BuildOptions struct {
	// ModuleDir is the directory of quinistry's go.mod.
	ModuleDir string
	// Package is the main package, relative to ModuleDir.
	Package string
	// OutDir receives one binary per platform, named by Platform.FileName.
	OutDir string
	// Platforms to build.
	Platforms []Platform
}

// BuildFlags are the go build flags that make a binary reproducible and
// small: no file system paths, no build id, no symbol tables, and the VCS
// state stamped into the build information (it gives the image labels).
var BuildFlags = []string{"-trimpath", "-buildvcs=auto", "-ldflags=-s -w -buildid="}

// Build cross-compiles static binaries of opts.Package for every platform,
// one after the other (each go build already uses every core). It returns
// the paths written.
func Build(ctx context.Context, opts BuildOptions) ([]string, error) {
	if err := os.MkdirAll(opts.OutDir, 0o755); err != nil {
		return nil, err
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range opts.Platforms {
		out := filepath.Join(outDir, p.FileName())
		args := append([]string{"build"}, BuildFlags...)
		args = append(args, "-o", out, opts.Package)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = opts.ModuleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		cmd.Env = append(cmd.Env, p.GoEnv()...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("go build for %s: %v: %s", p, err, bytes.TrimSpace(stderr.Bytes()))
		}
		if err := CheckELF(out, p); err != nil {
			return nil, err
		}
		paths = append(paths, out)
	}
	return paths, nil
}

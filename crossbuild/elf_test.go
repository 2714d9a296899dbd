package crossbuild_test

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/internal/testbin"
)

var (
	amd64 = crossbuild.Platform{OS: "linux", Arch: "amd64"}
	arm64 = crossbuild.Platform{OS: "linux", Arch: "arm64"}
	armv7 = crossbuild.Platform{OS: "linux", Arch: "arm", Variant: "v7"}
)

func TestCheckELFAcceptsRealCrossBuiltBinaries(t *testing.T) {
	for _, p := range []crossbuild.Platform{amd64, arm64, armv7} {
		t.Run(p.String(), func(t *testing.T) {
			assert.NoError(t, crossbuild.CheckELF(testbin.Build(t, p), p))
		})
	}
}

func TestCheckELFRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, data, 0o755))
		return path
	}
	real, err := os.ReadFile(testbin.Build(t, amd64))
	require.NoError(t, err)

	tests := []struct {
		name string
		path string
		p    crossbuild.Platform
		want string
	}{
		{"empty", write("empty", nil), amd64, "empty file"},
		{"not ELF", write("script", []byte("#!/bin/sh\necho hi\n")), amd64, "not an ELF executable"},
		{"truncated header", write("short", real[:20]), amd64, "ELF"},
		{"truncated body", write("half", real[:len(real)/2]), amd64, "truncated"},
		{"arm64 under an amd64 name", testbin.Build(t, arm64), amd64, "EM_AARCH64"},
		{"amd64 under an arm64 name", testbin.Build(t, amd64), arm64, "EM_X86_64"},
		{"arm64 under an arm name", testbin.Build(t, arm64), armv7, "ELFCLASS64"},
		{"directory", dir, amd64, "not a regular file"},
		{"missing", filepath.Join(dir, "nope"), amd64, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := crossbuild.CheckELF(tt.path, tt.p)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestCheckELFRejectsDynamicBinaries(t *testing.T) {
	// A dynamically linked program of this machine's own (coreutils' true).
	path, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) on PATH")
	}
	f, err := elf.Open(path)
	if err != nil || f.Machine != elf.EM_X86_64 {
		t.Skip("true(1) is not an x86-64 ELF file here")
	}
	hasInterp := false
	for _, p := range f.Progs {
		hasInterp = hasInterp || p.Type == elf.PT_INTERP
	}
	f.Close()
	if !hasInterp {
		t.Skip("true(1) is statically linked here")
	}
	err = crossbuild.CheckELF(path, amd64)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dynamically linked")
}

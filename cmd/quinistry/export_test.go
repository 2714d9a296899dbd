package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExportFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no destination", nil, "give --oci-layout DIR or --tar FILE"},
		{"bad format", []string{"--tar", "x", "--format", "zip"}, `unknown format "zip"`},
		{"bad name", []string{"--tar", "x", "--name", "Q"}, "invalid repository name"},
		{"bad tag", []string{"--tar", "x", "--tag", "-t"}, "invalid tag"},
		{"bad platform", []string{"--tar", "x", "--platform", "linux/mips"}, `"linux/mips"`},
		{"extra argument", []string{"--tar", "x", "y"}, `unexpected argument "y"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"export"}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.ErrorAs(t, err, new(usageError))
		})
	}
}

func TestExport(t *testing.T) {
	dir := t.TempDir()
	tarFile := filepath.Join(dir, "q.tar")
	var stdout bytes.Buffer
	err := run(context.Background(), []string{"export", "--siblings", t.TempDir(), "--tar", tarFile, "--oci-layout", filepath.Join(dir, "layout")}, &stdout, &bytes.Buffer{})
	require.NoError(t, err)
	listDigest := strings.TrimSpace(stdout.String())
	assert.Regexp(t, `^sha256:[0-9a-f]{64}$`, listDigest)
	_, err = os.Stat(filepath.Join(dir, "layout", "blobs", "sha256", strings.TrimPrefix(listDigest, "sha256:")))
	assert.NoError(t, err, "the list is in the layout")
	fi, err := os.Stat(tarFile)
	require.NoError(t, err)
	assert.Positive(t, fi.Size())

	err = run(context.Background(), []string{"export", "--siblings", t.TempDir(), "--tar", "/dev/full"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Equal(t, "cannot write /dev/full: no space left on device", err.Error())
}

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/sbom"
)

func TestSBOMFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad format", []string{"--format", "zip"}, `unknown format "zip"`},
		{"bad platform", []string{"--platform", "linux/mips"}, `"linux/mips"`},
		{"extra argument", []string{"x"}, `unexpected argument "x"`},
		{"unknown flag", []string{"--nope"}, "sbom: flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"sbom"}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.ErrorAs(t, err, new(usageError))
		})
	}
}

func TestSBOMPrintsTheServedDocument(t *testing.T) {
	for _, format := range []string{"docker", "oci"} {
		t.Run(format, func(t *testing.T) {
			var stdout bytes.Buffer
			err := run(context.Background(), []string{"sbom", "--format", format, "--siblings", t.TempDir()}, &stdout, &bytes.Buffer{})
			require.NoError(t, err)
			doc, err := sbom.Parse(stdout.Bytes())
			require.NoError(t, err)
			img, ok := doc.Package(sbom.ImageID)
			require.True(t, ok)
			assert.Equal(t, "CONTAINER", img.PrimaryPackagePurpose)
			assert.Contains(t, img.Comment, crossbuild.Current().String())

			// The same bytes as the artifact the registry serves.
			c, err := pack(context.Background(), packConfig{Format: mustFormat(t, format), Siblings: t.TempDir()}, newLogger("text", &bytes.Buffer{}))
			require.NoError(t, err)
			defer c.Close()
			served, err := sbomDocument(c, crossbuild.Current())
			require.NoError(t, err)
			assert.Equal(t, served, stdout.Bytes())
		})
	}
	err := run(context.Background(), []string{"sbom", "--siblings", t.TempDir(), "--platform", "linux/s390x"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no image for linux/s390x")
}

// mustFormat parses a format name.
func mustFormat(t *testing.T, s string) index.Format {
	t.Helper()
	f, err := index.ParseFormat(s)
	require.NoError(t, err)
	return f
}

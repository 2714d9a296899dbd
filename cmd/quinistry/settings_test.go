package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
)

// clearSettingsEnv unsets, for the test, every variable that chooses the
// image, so that only what a test sets reaches the flags.
func clearSettingsEnv(t *testing.T) {
	t.Helper()
	for _, name := range append([]string{"SOURCE_DATE_EPOCH"}, envName("format"), envName("siblings"), envName("platforms")) {
		t.Setenv(name, "")
		require.NoError(t, os.Unsetenv(name))
	}
}

// configEnv returns the Env of the image config of img.
func configEnv(t *testing.T, img index.Image) []string {
	t.Helper()
	var cfg index.Config
	require.NoError(t, json.Unmarshal(img.Config.Data, &cfg))
	return cfg.Config.Env
}

// TestImageCarriesItsSettings packs an image with settings given as a user
// would, reads back the environment its configs carry, and packs again in
// an environment holding only that (as a container runtime gives it): the
// second image must be the first, byte for byte, in both formats.
func TestImageCarriesItsSettings(t *testing.T) {
	bins := testcontent.Binaries(t)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantEnv []string
	}{
		{"defaults", nil, nil, []string{"PATH=/"}},
		{"oci by flag", []string{"--format", "oci"}, nil, []string{"PATH=/", "QUINISTRY_FORMAT=oci"}},
		{"oci by environment", nil, map[string]string{"QUINISTRY_FORMAT": "oci"}, []string{"PATH=/", "QUINISTRY_FORMAT=oci"}},
		{"docker with SOURCE_DATE_EPOCH", nil, map[string]string{"SOURCE_DATE_EPOCH": "1000000000"}, []string{"PATH=/", "SOURCE_DATE_EPOCH=1000000000"}},
		{"oci with SOURCE_DATE_EPOCH", []string{"--format=oci"}, map[string]string{"SOURCE_DATE_EPOCH": "0"}, []string{"PATH=/", "QUINISTRY_FORMAT=oci", "SOURCE_DATE_EPOCH=0"}},
		{"docker named explicitly", []string{"--format", "docker"}, nil, []string{"PATH=/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearSettingsEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg1, err := parseServeFlags(tt.args, io.Discard)
			require.NoError(t, err)
			gen1, err := index.Build(context.Background(), bins, cfg1.options())
			require.NoError(t, err)
			defer gen1.Close()
			for _, img := range gen1.Images {
				assert.Equal(t, tt.wantEnv, configEnv(t, img), img.Platform.String())
			}

			// Generation 2: only the config's environment and an address.
			clearSettingsEnv(t)
			for _, kv := range configEnv(t, gen1.Default()) {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			cfg2, err := parseServeFlags([]string{"--addr", "127.0.0.1:0"}, io.Discard)
			require.NoError(t, err)
			gen2, err := index.Build(context.Background(), bins, cfg2.options())
			require.NoError(t, err)
			defer gen2.Close()
			assert.Equal(t, gen1.List.Digest, gen2.List.Digest)
			assert.Equal(t, string(gen1.List.Data), string(gen2.List.Data))
			for i := range gen1.Images {
				assert.Equal(t, string(gen1.Images[i].Config.Data), string(gen2.Images[i].Config.Data))
			}
		})
	}
}

// TestFlagBeatsCarriedSetting: a setting given on the command line wins
// over the one the image carries, in every command that packs.
func TestFlagBeatsCarriedSetting(t *testing.T) {
	clearSettingsEnv(t)
	t.Setenv("QUINISTRY_FORMAT", "oci")
	serve, err := parseServeFlags([]string{"--format", "docker"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, index.Docker, serve.Format)
	serve, err = parseServeFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, index.OCI, serve.Format)

	export, err := parseExportFlags([]string{"--tar", "x.tar"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, index.OCI, export.pack.Format)
	export, err = parseExportFlags([]string{"--tar", "x.tar", "--format", "docker"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, index.Docker, export.pack.Format)

	push, err := parsePushFlags([]string{"localhost:5000/q"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, index.OCI, push.pack.Format)
	push, err = parsePushFlags([]string{"localhost:5000/q", "--format", "docker"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, index.Docker, push.pack.Format)

	t.Setenv("QUINISTRY_FORMAT", "zip")
	_, err = parseExportFlags([]string{"--tar", "x.tar"}, io.Discard)
	assert.ErrorContains(t, err, `unknown format "zip"`)
	t.Setenv("QUINISTRY_FORMAT", "") // empty is unset
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	_, err = parsePushFlags([]string{"localhost:5000/q"}, io.Discard)
	assert.ErrorContains(t, err, "SOURCE_DATE_EPOCH")
}

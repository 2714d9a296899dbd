package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/provenance"
)

func TestProvenanceFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string // QUINISTRY_FORMAT
		want string
	}{
		{"bad format", []string{"--format", "zip"}, "", `unknown format "zip"`},
		{"bad format from the environment", nil, "zip", `unknown format "zip"`},
		{"extra argument", []string{"x"}, "", `provenance: unexpected argument "x"`},
		{"unknown flag", []string{"--nope"}, "", "provenance: flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("QUINISTRY_FORMAT", tt.env)
			err := run(context.Background(), append([]string{"provenance"}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.ErrorAs(t, err, new(usageError))
		})
	}
}

// TestProvenanceNamesWhatServeServes compares the statement's subjects with
// the digests pack gives for the same flags and variables.
func TestProvenanceNamesWhatServeServes(t *testing.T) {
	t.Setenv("QUINISTRY_FORMAT", "oci")
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"provenance"}, &out, &bytes.Buffer{}))
	var st provenance.Statement
	require.NoError(t, json.Unmarshal(out.Bytes(), &st))
	cfg, err := parseProvenanceFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	c, err := pack(context.Background(), cfg, newLogger("text", &bytes.Buffer{}))
	require.NoError(t, err)
	defer c.Close()
	want := []string{c.List.Digest.Encoded()}
	for _, img := range c.Images {
		want = append(want, img.Manifest.Digest.Encoded())
	}
	var got []string
	for _, s := range st.Subject {
		got = append(got, s.Digest["sha256"])
	}
	assert.Equal(t, want, got)
	assert.Equal(t, "oci", st.Predicate.BuildDefinition.ExternalParameters.Format, "QUINISTRY_FORMAT is read")
}

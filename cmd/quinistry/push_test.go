package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/push"
)

func TestParsePushFlags(t *testing.T) {
	cfg, err := parsePushFlags([]string{"--insecure", "reg.example.com/team/q:v1", "--jobs", "2", "--mount-from", "base/q", "--format", "oci"}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Equal(t, push.Reference{Host: "reg.example.com", Repository: "team/q", Tag: "v1"}, cfg.Ref)
	assert.True(t, cfg.Insecure)
	assert.Equal(t, 2, cfg.Jobs)
	assert.Equal(t, "base/q", cfg.MountFrom)
	assert.Equal(t, "oci", string(cfg.pack.Format))

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no reference", nil, "give the reference to push to"},
		{"two references", []string{"a.example.com/q", "b.example.com/q"}, `unexpected argument "b.example.com/q"`},
		{"malformed reference", []string{"reg.example.com/Q"}, `invalid reference "reg.example.com/Q"`},
		{"digest reference", []string{"reg.example.com/q@sha256:00"}, "push needs a tag, not a digest"},
		{"username without password", []string{"--username", "u", "r.example.com/q"}, "--username needs --password-stdin"},
		{"password without username", []string{"--password-stdin", "r.example.com/q"}, "--password-stdin needs --username"},
		{"bad mount-from", []string{"--mount-from", "A", "r.example.com/q"}, "invalid --mount-from"},
		{"bad jobs", []string{"--jobs", "0", "r.example.com/q"}, "--jobs 0"},
		{"bad format", []string{"--format", "zip", "r.example.com/q"}, `unknown format "zip"`},
		{"unknown flag", []string{"--nope", "r.example.com/q"}, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"push"}, tt.args...), &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.ErrorAs(t, err, new(usageError))
		})
	}
}

func TestPushErrors(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	host := closed.Addr().String()
	closed.Close()
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"unreachable registry", []string{"--insecure", "--siblings", t.TempDir(), host + "/q:v1"}, "", "push " + host + "/q:v1: cannot reach " + host + ": connection refused"},
		{"empty password", []string{"--username", "u", "--password-stdin", host + "/q"}, "\n", "standard input is empty"},
		{"missing CA file", []string{"--ca-file", filepath.Join(t.TempDir(), "ca.pem"), host + "/q"}, "", "cannot read --ca-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runPush(context.Background(), tt.args, strings.NewReader(tt.stdin), &bytes.Buffer{}, &bytes.Buffer{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

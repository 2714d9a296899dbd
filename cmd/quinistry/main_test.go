package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
)

func TestParseServeFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, cfg serveConfig)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, cfg serveConfig) {
			assert.Equal(t, serveConfig{packConfig: packConfig{Format: index.Docker}, Addr: ":8080", Name: "quinistry", Tag: "latest", LogFormat: "text", ShutdownTimeout: 30 * time.Second, MaxStreams: 1024, StallTimeout: time.Minute}, cfg)
		}},
		{name: "flags", args: []string{"--addr", "127.0.0.1:0", "--name", "team/q", "--tag", "v1", "--format", "oci", "--platforms", "linux/arm64,linux/amd64", "--siblings", "/x", "--log-format", "json"},
			check: func(t *testing.T, cfg serveConfig) {
				assert.Equal(t, "127.0.0.1:0", cfg.Addr)
				assert.Equal(t, "team/q", cfg.Name)
				assert.Equal(t, "v1", cfg.Tag)
				assert.Equal(t, index.OCI, cfg.Format)
				assert.Equal(t, []crossbuild.Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}}, cfg.Platforms)
				assert.Equal(t, "/x", cfg.Siblings)
				assert.Equal(t, "json", cfg.LogFormat)
			}},
		{name: "environment", env: map[string]string{"QUINISTRY_FORMAT": "oci", "QUINISTRY_LOG_FORMAT": "json", "QUINISTRY_ADDR": ":9"},
			check: func(t *testing.T, cfg serveConfig) {
				assert.Equal(t, index.OCI, cfg.Format)
				assert.Equal(t, "json", cfg.LogFormat)
				assert.Equal(t, ":9", cfg.Addr)
			}},
		{name: "flag beats environment", args: []string{"--format=docker"}, env: map[string]string{"QUINISTRY_FORMAT": "oci"},
			check: func(t *testing.T, cfg serveConfig) { assert.Equal(t, index.Docker, cfg.Format) }},
		{name: "unknown format", args: []string{"--format", "zip"}, wantErr: `unknown format "zip"`},
		{name: "unknown format from environment", env: map[string]string{"QUINISTRY_FORMAT": "zip"}, wantErr: `unknown format "zip"`},
		{name: "unknown platform", args: []string{"--platforms", "linux/mips"}, wantErr: `platform "linux/mips" is not supported`},
		{name: "bad name", args: []string{"--name", "Upper"}, wantErr: "invalid repository name"},
		{name: "bad tag", args: []string{"--tag", "-x"}, wantErr: "invalid tag"},
		{name: "bad log format", args: []string{"--log-format", "xml"}, wantErr: "unknown log format"},
		{name: "negative shutdown timeout", args: []string{"--shutdown-timeout=-1s"}, wantErr: "must not be negative"},
		{name: "negative stream cap", args: []string{"--max-streams=-1"}, wantErr: "must not be negative"},
		{name: "TLS certificate without a key", args: []string{"--tls-cert", "c.pem"}, wantErr: "--tls-cert and --tls-key go together"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "flag provided but not defined: -nope"},
		{name: "extra argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := parseServeFlags(tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.ErrorAs(t, err, new(usageError))
				return
			}
			require.NoError(t, err)
			tt.check(t, cfg)
		})
	}
}

func TestRunStartupErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing siblings directory", []string{"--addr", "127.0.0.1:0", "--siblings", filepath.Join(t.TempDir(), "missing")}, "cannot read siblings directory"},
		{"address in use", []string{"--addr", busy.Addr().String()}, "address already in use"},
		{"bad address", []string{"--addr", "nowhere:http:x"}, "cannot listen on nowhere:http:x"},
		{"missing platform", []string{"--addr", "127.0.0.1:0", "--siblings", t.TempDir(), "--platforms", "linux/s390x"}, "no binary for linux/s390x"},
		{"version with arguments", []string{"version", "x"}, "version takes no arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := run(context.Background(), tt.args, &bytes.Buffer{}, &stderr)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"version"}, &out, &bytes.Buffer{}))
	assert.Regexp(t, `^quinistry \S+ \(revision \S+, go1\.\d+.*, linux/\w+\)\n$`, out.String())
}

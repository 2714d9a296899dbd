package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/registry"
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

			// The same bytes as the registry serves: packed again and served
			// over HTTP, the document is found as a client finds it, through
			// the list, the referrers API, the artifact manifest and its layer.
			c, err := pack(context.Background(), packConfig{Format: mustFormat(t, format), Siblings: t.TempDir()}, newLogger("text", &bytes.Buffer{}))
			require.NoError(t, err)
			defer c.Close()
			srv := httptest.NewServer(registry.New(c, "quinistry", []string{"latest"}, nil))
			defer srv.Close()
			var list index.List
			getJSON(t, srv.URL+"/v2/quinistry/manifests/latest", c.List.MediaType, &list)
			subject := ""
			for _, m := range list.Manifests {
				if m.Platform != nil && m.Platform.OS == runtime.GOOS && m.Platform.Architecture == runtime.GOARCH {
					subject = m.Digest.String()
				}
			}
			require.NotEmpty(t, subject, "the list names no %s/%s image", runtime.GOOS, runtime.GOARCH)
			var refs index.List
			getJSON(t, srv.URL+"/v2/quinistry/referrers/"+subject, "", &refs)
			require.Len(t, refs.Manifests, 1)
			var art index.Manifest
			getJSON(t, srv.URL+"/v2/quinistry/manifests/"+refs.Manifests[0].Digest.String(), refs.Manifests[0].MediaType, &art)
			require.Len(t, art.Layers, 1)
			served := get(t, srv.URL+"/v2/quinistry/blobs/"+art.Layers[0].Digest.String(), "")
			assert.Equal(t, string(served), stdout.String())
			assert.Equal(t, subject, img.VersionInfo, "the document describes the image the list names")
			mainPkg, ok := doc.Package(sbom.MainID)
			require.True(t, ok)
			assert.Contains(t, mainPkg.Comment, " GOARCH="+runtime.GOARCH+";")
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

// get fetches url, with accept as the Accept header when not empty, and
// expects 200.
func get(t *testing.T, url, accept string) []byte {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", url, body)
	return body
}

// getJSON fetches url and decodes it into v.
func getJSON(t *testing.T, url, accept string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(get(t, url, accept), v))
}

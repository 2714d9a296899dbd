package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
)

// The media types of both families, spelled out here rather than taken from
// package index, so that a wrong table there fails here.
const (
	dockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	ociIndex       = "application/vnd.oci.image.index.v1+json"
	ociManifest    = "application/vnd.oci.image.manifest.v1+json"
)

// familyTypes are the list and manifest types of each format.
var familyTypes = map[index.Format][2]string{
	index.Docker: {dockerList, dockerManifest},
	index.OCI:    {ociIndex, ociManifest},
}

const cacheForever = "public, max-age=31536000, immutable"

// otherList is the list type of the family that f is not.
func otherList(f index.Format) string {
	if f == index.Docker {
		return ociIndex
	}
	return dockerList
}

func manifestPath(ref string) string { return "/v2/" + testName + "/manifests/" + ref }
func blobPath(ref string) string     { return "/v2/" + testName + "/blobs/" + ref }

// requireContent checks a 200 answer carrying want (a manifest or a blob)
// with Content-Type wantType: length, digest (hashed here), ETag and, for a
// GET, the exact bytes; a HEAD has the same headers and no body.
func requireContent(tb testing.TB, resp *http.Response, body []byte, want index.Blob, wantType string, head bool) {
	tb.Helper()
	require.Equal(tb, http.StatusOK, resp.StatusCode, "body %s", body)
	require.Equal(tb, wantType, resp.Header.Get("Content-Type"))
	require.Equal(tb, strconv.Itoa(len(want.Data)), resp.Header.Get("Content-Length"))
	wantDigest := sha256Digest(want.Data)
	require.Equal(tb, want.Digest.String(), wantDigest, "index's digest of its own bytes")
	require.Equal(tb, wantDigest, resp.Header.Get("Docker-Content-Digest"))
	require.Equal(tb, `"`+wantDigest+`"`, resp.Header.Get("Etag"))
	if head {
		require.Empty(tb, body, "HEAD has no body")
		return
	}
	require.Equal(tb, wantDigest, sha256Digest(body), "body hashes to its digest")
	require.True(tb, bytes.Equal(want.Data, body), "body is the content's bytes")
}

func TestNewSortsAndCompactsTags(t *testing.T) {
	in := []string{"b", "a", "b", "c", "a"}
	reg := New(buildContent(t, index.Docker), "x", in, nil)
	assert.Equal(t, "x", reg.Name())
	assert.Equal(t, []string{"a", "b", "c"}, reg.Tags())
	assert.Equal(t, []string{"b", "a", "b", "c", "a"}, in, "the caller's slice is untouched")
	got := reg.Tags()
	got[0] = "mutated"
	assert.Equal(t, []string{"a", "b", "c"}, reg.Tags(), "Tags returns a copy")
}

func TestBase(t *testing.T) {
	reg, _ := newTestRegistry(t, index.Docker)
	for _, target := range []string{"/v2/", "/v2"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			t.Run(method+" "+target, func(t *testing.T) {
				resp, body := serve(t, reg, request{method: method, target: target})
				require.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				assert.Equal(t, "2", resp.Header.Get("Content-Length"))
				if method == http.MethodHead {
					assert.Empty(t, body)
				} else {
					assert.Equal(t, "{}", string(body))
				}
			})
		}
	}
}

// TestAPIVersionEverywhere sends one request of every kind of answer and
// checks the version header (serve checks it too, for every request of every
// test).
func TestAPIVersionEverywhere(t *testing.T) {
	reg, c := newTestRegistry(t, index.OCI)
	layer := c.Layers[0].Digest.String()
	cases := []struct {
		name   string
		rq     request
		status int
	}{
		{"base", request{target: "/v2/"}, 200},
		{"manifest", request{target: manifestPath("latest")}, 200},
		{"304", request{target: manifestPath("latest"), header: headers("If-None-Match", `"`+c.List.Digest.String()+`"`)}, 304},
		{"blob", request{target: blobPath(layer)}, 200},
		{"206", request{target: blobPath(layer), header: headers("Range", "bytes=0-1")}, 206},
		{"416", request{target: blobPath(layer), header: headers("Range", "bytes=-0")}, 416},
		{"400", request{target: blobPath("sha256:x")}, 400},
		{"404", request{target: "/nope"}, 404},
		{"405", request{method: http.MethodPost, target: "/v2/" + testName + "/blobs/uploads/"}, 405},
		{"HEAD 404", request{method: http.MethodHead, target: manifestPath("nope")}, 404},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, _ := serve(t, reg, tc.rq)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))
		})
	}
}

func TestManifests(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			amd, arm := imageFor(t, c, amd64), imageFor(t, c, arm64)
			require.NotEqual(t, amd.Manifest.Digest, c.Images[0].Manifest.Digest,
				"arm64 comes first, so serving linux/amd64 is a choice")

			allTypes := strings.Join([]string{dockerManifest, dockerList, ociManifest, ociIndex}, ", ")
			cases := []struct {
				name   string
				ref    string
				accept []string // one Accept header line each
				want   index.Blob
			}{
				{"tag without Accept", "latest", nil, c.List},
				{"other tag", "v1.0.0", nil, c.List},
				{"tag with docker list", "latest", []string{dockerList}, c.List},
				{"tag with oci index", "latest", []string{ociIndex}, c.List},
				{"tag with */*", "latest", []string{"*/*"}, c.List},
				{"tag with application/*", "latest", []string{"application/*"}, c.List},
				{"tag with containerd's Accept", "latest", []string{allTypes + ", */*"}, c.List},
				{"tag with dockerd's Accept lines", "latest", []string{dockerManifest, dockerList, ociManifest, ociIndex}, c.List},
				{"tag with list and q", "latest", []string{ociManifest + "; q=0.9, " + ociIndex + "; q=0.5"}, c.List},
				{"tag with manifest and */*", "latest", []string{ociManifest + ", */*"}, c.List},
				{"tag with manifest and application/*", "latest", []string{dockerManifest, "application/*;q=0.1"}, c.List},
				{"tag with docker manifest only", "latest", []string{dockerManifest}, amd.Manifest},
				{"tag with oci manifest only", "latest", []string{ociManifest}, amd.Manifest},
				{"tag with both manifest types", "abc123", []string{dockerManifest + ", " + ociManifest}, amd.Manifest},
				{"tag with manifest lines and junk", "latest", []string{ociManifest + ";q=1", "not a media type;;", dockerManifest}, amd.Manifest},
				{"tag refusing both lists with q=0", "latest", []string{dockerList + ";q=0, " + ociIndex + "; q=0.0, " + dockerManifest + ", " + ociManifest}, amd.Manifest},
				{"tag refusing lists, naming nothing else", "latest", []string{dockerList + ";q=0", ociIndex + ";q=0.000"}, amd.Manifest},
				{"tag refusing the served list, */* otherwise", "latest", []string{familyTypes[f][0] + ";q=0, */*"}, amd.Manifest},
				{"tag refusing the other list only", "latest", []string{otherList(f) + ";q=0, " + familyTypes[f][0] + ";q=0.2, " + ociManifest}, c.List},
				{"tag refusing */* with a manifest", "latest", []string{ociManifest + ", */*;q=0"}, amd.Manifest},
				{"tag with list q=0.001", "latest", []string{familyTypes[f][0] + ";q=0.001, " + dockerManifest}, c.List},
				{"list digest", c.List.Digest.String(), nil, c.List},
				{"list digest whatever Accept", c.List.Digest.String(), []string{dockerManifest + ", " + ociManifest}, c.List},
				{"amd64 digest", amd.Manifest.Digest.String(), nil, amd.Manifest},
				{"amd64 digest with list Accept", amd.Manifest.Digest.String(), []string{ociIndex + ", " + dockerList}, amd.Manifest},
				{"arm64 digest", arm.Manifest.Digest.String(), nil, arm.Manifest},
				{"arm64 digest with manifest Accept", arm.Manifest.Digest.String(), []string{ociManifest}, arm.Manifest},
			}
			for _, tc := range cases {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					t.Run(method+" "+tc.name, func(t *testing.T) {
						h := http.Header{}
						for _, a := range tc.accept {
							h.Add("Accept", a)
						}
						resp, body := serve(t, reg, request{method: method, target: manifestPath(tc.ref), header: h})
						requireContent(t, resp, body, tc.want, tc.want.MediaType, method == http.MethodHead)
						wantType := familyTypes[f][1]
						if tc.want.Digest == c.List.Digest {
							wantType = familyTypes[f][0]
						}
						assert.Equal(t, wantType, resp.Header.Get("Content-Type"), "one media-type family")
						assert.Contains(t, resp.Header.Values("Vary"), "Accept")
					})
				}
			}
		})
	}
}

// TestPullLikeManifestInspect walks the content the way docker manifest
// inspect and a pull do: the list by tag, each child by digest, each child's
// config and layers, verifying every digest and size against the parent.
func TestPullLikeManifestInspect(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, _ := newTestRegistry(t, f)
			types := f.MediaTypes()

			fetch := func(target, accept string, want index.Descriptor) []byte {
				t.Helper()
				var kv []string
				if accept != "" {
					kv = []string{"Accept", accept}
				}
				resp, body := get(t, reg, target, kv...)
				require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", target, body)
				require.Equal(t, sha256Digest(body), want.Digest.String(), target)
				require.Equal(t, want.Digest.String(), resp.Header.Get("Docker-Content-Digest"))
				require.EqualValues(t, want.Size, len(body))
				return body
			}

			resp, listBody := get(t, reg, manifestPath("latest"), "Accept", dockerList+", "+ociIndex)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var list index.List
			require.NoError(t, json.Unmarshal(listBody, &list))
			assert.Equal(t, 2, list.SchemaVersion)
			assert.Equal(t, types.List, list.MediaType)
			require.Len(t, list.Manifests, 2)
			platforms := map[string]string{}
			for _, d := range list.Manifests {
				require.NotNil(t, d.Platform)
				platforms[d.Platform.OS+"/"+d.Platform.Architecture] = d.Platform.Variant
				assert.Equal(t, types.Manifest, d.MediaType)
				body := fetch(manifestPath(d.Digest.String()), types.Manifest, d)
				var m index.Manifest
				require.NoError(t, json.Unmarshal(body, &m))
				assert.Equal(t, types.Manifest, m.MediaType)
				assert.Equal(t, types.Config, m.Config.MediaType)
				fetch(blobPath(m.Config.Digest.String()), "", m.Config)
				require.Len(t, m.Layers, 2)
				for _, l := range m.Layers {
					assert.Equal(t, types.Layer, l.MediaType)
					fetch(blobPath(l.Digest.String()), "", l)
				}
			}
			assert.Equal(t, map[string]string{"linux/amd64": "", "linux/arm64": "v8"}, platforms)
		})
	}
}

func TestNotModified(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			amd := imageFor(t, c, amd64)
			list, man := `"`+c.List.Digest.String()+`"`, `"`+amd.Manifest.Digest.String()+`"`
			layer := c.Layers[1]
			lay := `"` + layer.Digest.String() + `"`
			cases := []struct {
				name        string
				target      string
				accept      string
				ifNoneMatch string
				want        int
				etag        string
			}{
				{"list by tag", manifestPath("latest"), "", list, 304, list},
				{"list by digest", manifestPath(c.List.Digest.String()), "", list, 304, list},
				{"weak", manifestPath("latest"), "", "W/" + list, 304, list},
				{"star", manifestPath("latest"), "", "*", 304, list},
				{"one of several", manifestPath("latest"), "", `"sha256:0", ` + list, 304, list},
				{"other etag", manifestPath("latest"), "", man, 200, list},
				{"unquoted", manifestPath("latest"), "", c.List.Digest.String(), 200, list},
				{"negotiated manifest", manifestPath("latest"), ociManifest, man, 304, man},
				{"negotiated manifest, list etag", manifestPath("latest"), ociManifest, list, 200, man},
				{"blob", blobPath(layer.Digest.String()), "", lay, 304, lay},
				{"blob, other etag", blobPath(layer.Digest.String()), "", list, 200, lay},
			}
			for _, tc := range cases {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					t.Run(method+" "+tc.name, func(t *testing.T) {
						h := headers("If-None-Match", tc.ifNoneMatch)
						if tc.accept != "" {
							h.Set("Accept", tc.accept)
						}
						resp, body := serve(t, reg, request{method: method, target: tc.target, header: h})
						require.Equal(t, tc.want, resp.StatusCode)
						assert.Equal(t, tc.etag, resp.Header.Get("Etag"))
						assert.Equal(t, strings.Trim(tc.etag, `"`), resp.Header.Get("Docker-Content-Digest"))
						if tc.want == http.StatusNotModified || method == http.MethodHead {
							assert.Empty(t, body)
						} else {
							assert.Equal(t, strings.Trim(tc.etag, `"`), sha256Digest(body))
						}
					})
				}
			}
		})
	}
}

func TestBlobs(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			blobs := map[string]index.Blob{}
			for _, img := range c.Images {
				blobs["config "+img.Platform.String()] = img.Config
			}
			for i, l := range c.Layers {
				blobs["layer "+strconv.Itoa(i)] = l
			}
			for name, b := range blobs {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					t.Run(method+" "+name, func(t *testing.T) {
						resp, body := serve(t, reg, request{method: method, target: blobPath(b.Digest.String()),
							header: headers("Accept-Encoding", "gzip, zstd", "Accept", "*/*")})
						requireContent(t, resp, body, b, "application/octet-stream", method == http.MethodHead)
						assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
						assert.Equal(t, cacheForever, resp.Header.Get("Cache-Control"))
						assert.Empty(t, resp.Header.Values("Content-Encoding"))
						assert.Empty(t, resp.Header.Values("Content-Range"))
					})
				}
			}
		})
	}
}

// TestOverHTTP goes through a real server and client: HEAD keeps its
// Content-Length, and a client that accepts gzip still gets the blob's own
// bytes, never re-encoded.
func TestOverHTTP(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			srv := httptest.NewServer(reg)
			t.Cleanup(srv.Close)
			client := srv.Client()

			do := func(method, path string, kv ...string) (*http.Response, []byte) {
				t.Helper()
				req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
				require.NoError(t, err)
				req.Header = headers(kv...)
				resp, err := client.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				assert.Equal(t, "registry/2.0", resp.Header.Get("Docker-Distribution-API-Version"))
				return resp, body
			}

			resp, body := do(http.MethodHead, manifestPath("latest"), "Accept", ociIndex+", "+dockerList)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Empty(t, body)
			assert.EqualValues(t, c.List.Size, resp.ContentLength)
			assert.Equal(t, c.List.MediaType, resp.Header.Get("Content-Type"))
			assert.Equal(t, sha256Digest(c.List.Data), resp.Header.Get("Docker-Content-Digest"))

			l := c.Layers[0]
			resp, body = do(http.MethodGet, blobPath(l.Digest.String()), "Accept-Encoding", "zstd, gzip, deflate")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Empty(t, resp.Header.Values("Content-Encoding"))
			assert.False(t, resp.Uncompressed)
			assert.Equal(t, l.Digest.String(), sha256Digest(body))
			assert.Equal(t, resp.Header.Get("Docker-Content-Digest"), sha256Digest(body))

			resp, body = do(http.MethodGet, blobPath(l.Digest.String()), "Range", "bytes=100-")
			require.Equal(t, http.StatusPartialContent, resp.StatusCode)
			assert.Equal(t, l.Data[100:], body)
		})
	}
}

func TestBlobRanges(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			b := c.Layers[0]
			size := b.Size
			require.Greater(t, size, int64(1000))
			etag := `"` + b.Digest.String() + `"`
			n := func(v int64) string { return strconv.FormatInt(v, 10) }

			const whole = -1 // want the whole blob with 200
			cases := []struct {
				name       string
				rangeH     string
				ifRange    string
				start, end int64 // the half-open interval sent with 206, or whole
			}{
				{"first byte", "bytes=0-0", "", 0, 1},
				{"middle", "bytes=10-19", "", 10, 20},
				{"open end", "bytes=10-", "", 10, size},
				{"resume from last byte", "bytes=" + n(size-1) + "-", "", size - 1, size},
				{"suffix", "bytes=-10", "", size - 10, size},
				{"suffix of all", "bytes=-" + n(size), "", 0, size},
				{"suffix beyond size", "bytes=-" + n(size+5), "", 0, size},
				{"end past size", "bytes=" + n(size-5) + "-" + n(size+100), "", size - 5, size},
				{"last byte exactly", "bytes=0-" + n(size-1), "", 0, size},
				{"max int64 end", "bytes=0-9223372036854775807", "", 0, size},
				{"spaces", " bytes= 3-4 ", "", 3, 5},
				{"if-range matches", "bytes=5-9", etag, 5, 10},
				{"if-range other etag", "bytes=5-9", `"sha256:other"`, whole, whole},
				{"if-range weak", "bytes=5-9", "W/" + etag, whole, whole},
				{"if-range date", "bytes=5-9", "Wed, 21 Oct 2015 07:28:00 GMT", whole, whole},
				{"reversed", "bytes=9-5", "", whole, whole},
				{"multi-part", "bytes=0-1,4-5", "", whole, whole},
				{"multi-part with space", "bytes=0-1, 4-5", "", whole, whole},
				{"other unit", "items=0-1", "", whole, whole},
				{"unit case", "Bytes=0-1", "", whole, whole},
				{"no dash", "bytes=5", "", whole, whole},
				{"empty", "bytes=", "", whole, whole},
				{"dash only", "bytes=-", "", whole, whole},
				{"negative", "bytes=--5", "", whole, whole},
				{"plus sign", "bytes=+1-2", "", whole, whole},
				{"letters", "bytes=a-b", "", whole, whole},
				{"hex", "bytes=0x10-0x20", "", whole, whole},
				{"overflow", "bytes=99999999999999999999-", "", whole, whole},
			}
			for _, tc := range cases {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					t.Run(method+" "+tc.name, func(t *testing.T) {
						h := headers("Range", tc.rangeH)
						if tc.ifRange != "" {
							h.Set("If-Range", tc.ifRange)
						}
						resp, body := serve(t, reg, request{method: method, target: blobPath(b.Digest.String()), header: h})
						head := method == http.MethodHead
						if tc.start == whole {
							requireContent(t, resp, body, b, "application/octet-stream", head)
							assert.Empty(t, resp.Header.Values("Content-Range"))
							return
						}
						require.Equal(t, http.StatusPartialContent, resp.StatusCode, "body %.200s", body)
						assert.Equal(t, "bytes "+n(tc.start)+"-"+n(tc.end-1)+"/"+n(size), resp.Header.Get("Content-Range"))
						assert.Equal(t, n(tc.end-tc.start), resp.Header.Get("Content-Length"))
						assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
						assert.Equal(t, b.Digest.String(), resp.Header.Get("Docker-Content-Digest"), "the digest names the blob")
						assert.Equal(t, etag, resp.Header.Get("Etag"))
						assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
						assert.Empty(t, resp.Header.Values("Content-Encoding"))
						if head {
							assert.Empty(t, body)
						} else {
							assert.True(t, bytes.Equal(b.Data[tc.start:tc.end], body), "the range's bytes")
						}
					})
				}
			}

			for _, spec := range []string{
				"bytes=" + n(size) + "-",
				"bytes=" + n(size) + "-" + n(size+10),
				"bytes=" + n(size+1000) + "-" + n(size+2000),
				"bytes=9223372036854775807-",
				"bytes=-0",
				"bytes=-00",
			} {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					t.Run(method+" unsatisfiable "+spec, func(t *testing.T) {
						resp, body := serve(t, reg, request{method: method, target: blobPath(b.Digest.String()), header: headers("Range", spec)})
						if method == http.MethodHead {
							requireErrorHead(t, resp, body, ErrRangeInvalid)
						} else {
							requireError(t, resp, body, ErrRangeInvalid)
						}
						assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
						assert.Equal(t, "bytes */"+n(size), resp.Header.Get("Content-Range"))
						// An error is not the blob: nothing may cache it as such.
						assert.Empty(t, resp.Header.Values("Etag"))
						assert.Empty(t, resp.Header.Values("Cache-Control"))
					})
				}
			}
		})
	}
}

func TestTagsList(t *testing.T) {
	reg, _ := newTestRegistry(t, index.Docker)
	base := "/v2/" + testName + "/tags/list"
	link := func(n, last string) string {
		return "<" + base + "?" + url.Values{"n": {n}, "last": {last}}.Encode() + `>; rel="next"`
	}
	cases := []struct {
		query string
		want  []string
		link  string
	}{
		{"", sortedTestTags, ""},
		{"?n=10", sortedTestTags, ""},
		{"?n=3", sortedTestTags, ""},
		{"?n=2", []string{"abc123", "latest"}, link("2", "latest")},
		{"?n=1", []string{"abc123"}, link("1", "abc123")},
		{"?n=1&last=abc123", []string{"latest"}, link("1", "latest")},
		{"?n=1&last=latest", []string{"v1.0.0"}, ""},
		{"?n=0", []string{}, ""},
		{"?n=0&last=abc123", []string{}, ""},
		{"?last=abc123", []string{"latest", "v1.0.0"}, ""},
		{"?last=b", []string{"latest", "v1.0.0"}, ""},
		{"?last=a", sortedTestTags, ""},
		{"?last=zzz", []string{}, ""},
		{"?last=v1.0.0&n=5", []string{}, ""},
		{"?n=%2B2", []string{"abc123", "latest"}, link("+2", "latest")},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			resp, body := get(t, reg, base+tc.query)
			require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
			var got struct {
				Name string    `json:"name"`
				Tags *[]string `json:"tags"`
			}
			require.NoError(t, json.Unmarshal(body, &got))
			assert.Equal(t, testName, got.Name)
			require.NotNil(t, got.Tags, "tags is a list, never null: %s", body)
			assert.Equal(t, tc.want, *got.Tags)
			assert.Equal(t, tc.link, resp.Header.Get("Link"))
		})
	}

	t.Run("following Link visits every tag once", func(t *testing.T) {
		var seen []string
		next := base + "?n=1"
		for range 10 {
			resp, body := get(t, reg, next)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			var got struct{ Tags []string }
			require.NoError(t, json.Unmarshal(body, &got))
			seen = append(seen, got.Tags...)
			l := resp.Header.Get("Link")
			if l == "" {
				break
			}
			target, ok := strings.CutSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
			require.True(t, ok, l)
			next = target
		}
		assert.Equal(t, sortedTestTags, seen)
	})

	t.Run("HEAD", func(t *testing.T) {
		resp, body := serve(t, reg, request{method: http.MethodHead, target: base})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Empty(t, body)
		assert.NotEqual(t, "0", resp.Header.Get("Content-Length"))
	})

	for _, bad := range []string{"-1", "abc", "", "1.5", "99999999999999999999999", "0x10"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			t.Run(method+" bad n "+bad, func(t *testing.T) {
				resp, body := serve(t, reg, request{method: method, target: base + "?n=" + url.QueryEscape(bad)})
				if method == http.MethodHead {
					requireErrorHead(t, resp, body, ErrPaginationInvalid)
				} else {
					requireError(t, resp, body, ErrPaginationInvalid)
				}
			})
		}
	}

	t.Run("no tags", func(t *testing.T) {
		empty := New(buildContent(t, index.OCI), testName, nil, nil)
		resp, body := get(t, empty, base)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.JSONEq(t, `{"name":"`+testName+`","tags":[]}`, string(body))
	})
}

func TestCatalog(t *testing.T) {
	reg, _ := newTestRegistry(t, index.OCI)
	cases := []struct {
		query string
		want  string
	}{
		{"", `{"repositories":["` + testName + `"]}`},
		{"?n=1", `{"repositories":["` + testName + `"]}`},
		{"?n=100", `{"repositories":["` + testName + `"]}`},
		{"?n=0", `{"repositories":[]}`},
		{"?last=" + url.QueryEscape(testName), `{"repositories":[]}`},
		{"?last=a", `{"repositories":["` + testName + `"]}`},
		{"?last=zzz&n=1", `{"repositories":[]}`},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			resp, body := get(t, reg, "/v2/_catalog"+tc.query)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.JSONEq(t, tc.want, string(body))
			assert.Empty(t, resp.Header.Get("Link"))
		})
	}
	for _, bad := range []string{"-1", "abc"} {
		t.Run("bad n "+bad, func(t *testing.T) {
			resp, body := get(t, reg, "/v2/_catalog?n="+bad)
			requireError(t, resp, body, ErrPaginationInvalid)
		})
	}

}

func TestReferrers(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			subjects := map[string]string{
				"list":    c.List.Digest.String(),
				"amd64":   imageFor(t, c, amd64).Manifest.Digest.String(),
				"unknown": sha256Digest([]byte("not served")),
			}
			for name, d := range subjects {
				for _, query := range []string{"", "?artifactType=application%2Fvnd.example.sbom"} {
					t.Run(name+query, func(t *testing.T) {
						resp, body := get(t, reg, "/v2/"+testName+"/referrers/"+d+query)
						require.Equal(t, http.StatusOK, resp.StatusCode, "body %s", body)
						assert.Equal(t, ociIndex, resp.Header.Get("Content-Type"), "always an OCI index, whatever the format")
						assert.Equal(t, strconv.Itoa(len(body)), resp.Header.Get("Content-Length"))
						assert.JSONEq(t, `{"schemaVersion":2,"mediaType":"`+ociIndex+`","manifests":[]}`, string(body))
						if query != "" {
							assert.Equal(t, "artifactType", resp.Header.Get("OCI-Filters-Applied"))
						} else {
							assert.Empty(t, resp.Header.Values("OCI-Filters-Applied"))
						}
					})
				}
			}
			t.Run("HEAD", func(t *testing.T) {
				resp, body := serve(t, reg, request{method: http.MethodHead, target: "/v2/" + testName + "/referrers/" + c.List.Digest.String()})
				require.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, ociIndex, resp.Header.Get("Content-Type"))
				assert.Empty(t, body)
			})
		})
	}
}

// TestErrors checks every error the read side can give, for GET (the exact
// spec body) and HEAD (headers only).
func TestErrors(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			list := c.List.Digest.String()
			layer := c.Layers[0].Digest.String()
			config := c.Images[0].Config.Digest.String()
			unknown := sha256Digest([]byte("unknown"))
			cases := []struct {
				name   string
				target string
				want   ErrorCode
			}{
				{"unknown name manifest", "/v2/other/manifests/latest", ErrNameUnknown},
				{"unknown name blob", "/v2/other/blobs/" + layer, ErrNameUnknown},
				{"unknown name tags", "/v2/test/other/tags/list", ErrNameUnknown},
				{"unknown name referrers", "/v2/other/referrers/" + list, ErrNameUnknown},
				{"unknown name prefix", "/v2/test/manifests/latest", ErrNameUnknown},
				{"unknown name longer", "/v2/" + testName + "/x/manifests/latest", ErrNameUnknown},
				{"invalid name upper", "/v2/Test/quinistry/manifests/latest", ErrNameInvalid},
				{"invalid name dotdot", "/v2/test/../test/quinistry/manifests/latest", ErrNameInvalid},
				{"invalid name before v2", "/v2/../v2/" + testName + "/manifests/latest", ErrNameInvalid},
				{"invalid name dot", "/v2/./test/quinistry/manifests/latest", ErrNameInvalid},
				{"invalid name empty", "/v2//manifests/latest", ErrNameInvalid},
				{"invalid name double slash", "/v2/test//quinistry/manifests/latest", ErrNameInvalid},
				{"invalid name trailing separator", "/v2/test-/manifests/latest", ErrNameInvalid},
				{"invalid name too long", "/v2/" + strings.Repeat("a", 256) + "/tags/list", ErrNameInvalid},
				{"invalid name blob", "/v2/UP/blobs/" + layer, ErrNameInvalid},
				{"unknown manifest digest", manifestPath(unknown), ErrManifestUnknown},
				{"blob digest as manifest", manifestPath(config), ErrManifestUnknown},
				{"unknown tag", manifestPath("nope"), ErrManifestUnknown},
				{"invalid tag", manifestPath(".INVALID_MANIFEST_NAME"), ErrManifestUnknown},
				{"invalid tag dash", manifestPath("-tag"), ErrManifestUnknown},
				{"invalid tag dotdot", manifestPath(".."), ErrManifestUnknown},
				{"invalid tag too long", manifestPath(strings.Repeat("t", 129)), ErrManifestUnknown},
				{"wrong digest manifest", manifestPath("sha256:totallywrong"), ErrDigestInvalid},
				{"short digest manifest", manifestPath("sha256:" + strings.Repeat("a", 63)), ErrDigestInvalid},
				{"upper hex manifest", manifestPath(list[:7] + strings.ToUpper(list[7:])), ErrDigestInvalid},
				{"unknown algorithm manifest", manifestPath("md5:d41d8cd98f00b204e9800998ecf8427e"), ErrDigestInvalid},
				{"empty algorithm manifest", manifestPath(":abc"), ErrDigestInvalid},
				{"unknown blob", blobPath(unknown), ErrBlobUnknown},
				{"manifest digest as blob", blobPath(list), ErrBlobUnknown},
				{"unknown sha512 blob", blobPath("sha512:" + strings.Repeat("ab", 64)), ErrBlobUnknown},
				{"wrong digest blob", blobPath("sha256:totallywrong"), ErrDigestInvalid},
				{"tag as blob", blobPath("latest"), ErrDigestInvalid},
				{"unknown algorithm blob", blobPath("md5:d41d8cd98f00b204e9800998ecf8427e"), ErrDigestInvalid},
				{"wrong digest referrers", "/v2/" + testName + "/referrers/sha256:totallywrong", ErrDigestInvalid},
				{"tag as referrers subject", "/v2/" + testName + "/referrers/latest", ErrDigestInvalid},
				{"uploads GET", "/v2/" + testName + "/blobs/uploads/", ErrUnsupported},
				{"root", "/", ErrNotFound},
				{"v1", "/v1/", ErrNotFound},
				{"v2 prefix only", "/v2x", ErrNotFound},
				{"catalog slash", "/v2/_catalog/", ErrNotFound},
				{"name only", "/v2/" + testName, ErrNotFound},
				{"name slash", "/v2/" + testName + "/", ErrNotFound},
				{"manifests without ref", "/v2/" + testName + "/manifests/", ErrNotFound},
				{"blobs without ref", "/v2/" + testName + "/blobs/", ErrNotFound},
				{"referrers without ref", "/v2/" + testName + "/referrers/", ErrNotFound},
				{"tags without list", "/v2/" + testName + "/tags", ErrNotFound},
				{"tags list slash", "/v2/" + testName + "/tags/list/", ErrNotFound},
				{"ref with slash", "/v2/" + testName + "/manifests/a/b", ErrNotFound},
				{"encoded slash in name", "/v2/test%2Fquinistry/manifests/latest", ErrNotFound},
				{"encoded slash in tag", manifestPath("a%2Fb"), ErrNotFound},
				{"encoded dotdot", "/v2/%2e%2e/" + testName + "/manifests/latest", ErrNotFound},
				{"backslash", "/v2/test\\quinistry/manifests/latest", ErrNotFound},
			}
			for _, tc := range cases {
				t.Run("GET "+tc.name, func(t *testing.T) {
					resp, body := get(t, reg, tc.target)
					requireError(t, resp, body, tc.want)
				})
				t.Run("HEAD "+tc.name, func(t *testing.T) {
					resp, body := serve(t, reg, request{method: http.MethodHead, target: tc.target})
					requireErrorHead(t, resp, body, tc.want)
				})
			}
		})
	}
}

// TestErrorDetailIsReadable checks that hostile input is cut and made valid
// UTF-8 in details, and still yields valid JSON.
func TestErrorDetailIsReadable(t *testing.T) {
	reg, _ := newTestRegistry(t, index.Docker)
	long := "sha256:" + strings.Repeat("z", 500)
	resp, body := get(t, reg, manifestPath(long))
	requireError(t, resp, body, ErrDigestInvalid)
	var e errorBody
	require.NoError(t, json.Unmarshal(body, &e))
	assert.Less(t, len(e.Errors[0].Detail), 300, "detail is cut: %s", e.Errors[0].Detail)

	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.URL = &url.URL{Path: "/v3/\xff\xfe"}
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, req)
	requireError(t, rec.Result(), rec.Body.Bytes(), ErrNotFound)
}

// snapshot copies every byte the content serves, by digest.
func snapshot(c *index.Content) map[string][]byte {
	s := map[string][]byte{c.List.Digest.String(): bytes.Clone(c.List.Data)}
	for _, img := range c.Images {
		s[img.Manifest.Digest.String()] = bytes.Clone(img.Manifest.Data)
		s[img.Config.Digest.String()] = bytes.Clone(img.Config.Data)
	}
	for _, l := range c.Layers {
		s[l.Digest.String()] = bytes.Clone(l.Data)
	}
	return s
}

func TestWritesRefused(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			before := snapshot(c)
			tags := reg.Tags()
			_, listBefore := get(t, reg, manifestPath("latest"))
			_, tagsBefore := get(t, reg, "/v2/"+testName+"/tags/list")

			list := c.List.Digest.String()
			layer := c.Layers[0].Digest.String()
			paths := []string{
				"/v2/",
				"/v2",
				"/v2/_catalog",
				manifestPath("latest"),
				manifestPath("newtag"),
				manifestPath(list),
				blobPath(layer),
				blobPath(sha256Digest([]byte("new"))),
				"/v2/" + testName + "/blobs/uploads/",
				"/v2/" + testName + "/blobs/uploads",
				"/v2/" + testName + "/blobs/uploads/0b6d0b63-uuid?digest=" + url.QueryEscape(layer),
				"/v2/" + testName + "/blobs/uploads/?mount=" + url.QueryEscape(layer) + "&from=other",
				"/v2/" + testName + "/tags/list",
				"/v2/" + testName + "/referrers/" + list,
				"/v2/other/blobs/uploads/",
				"/v2/other/manifests/latest",
				"/v2/INVALID/manifests/latest",
			}
			for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
				for _, p := range paths {
					t.Run(method+" "+p, func(t *testing.T) {
						req := httptest.NewRequest(method, p, strings.NewReader(string(c.List.Data)))
						req.Header.Set("Content-Type", c.List.MediaType)
						rec := httptest.NewRecorder()
						reg.ServeHTTP(rec, req)
						resp := rec.Result()
						requireError(t, resp, rec.Body.Bytes(), ErrUnsupported)
						assert.Equal(t, "GET, HEAD", resp.Header.Get("Allow"))
						assert.Empty(t, resp.Header.Values("Location"))
						assert.Empty(t, resp.Header.Values("Docker-Upload-UUID"))
					})
				}
			}
			t.Run("off the API", func(t *testing.T) {
				req := httptest.NewRequest(http.MethodPost, "/upload", strings.NewReader("x"))
				rec := httptest.NewRecorder()
				reg.ServeHTTP(rec, req)
				requireError(t, rec.Result(), rec.Body.Bytes(), ErrNotFound)
			})

			assert.Equal(t, before, snapshot(c), "content unchanged")
			assert.Equal(t, tags, reg.Tags(), "tags unchanged")
			_, listAfter := get(t, reg, manifestPath("latest"))
			assert.Equal(t, listBefore, listAfter)
			_, tagsAfter := get(t, reg, "/v2/"+testName+"/tags/list")
			assert.Equal(t, tagsBefore, tagsAfter)
			resp, body := get(t, reg, manifestPath("newtag"))
			requireError(t, resp, body, ErrManifestUnknown)
			resp, body = get(t, reg, blobPath(sha256Digest([]byte("new"))))
			requireError(t, resp, body, ErrBlobUnknown)
		})
	}
}

// TestEndpointWordsInName serves repositories whose names hold the words
// that mark endpoints: every endpoint must still be reached.
func TestEndpointWordsInName(t *testing.T) {
	c := buildContent(t, index.OCI)
	layer := c.Layers[0].Digest.String()
	for _, name := range []string{
		"a/manifests/b",
		"a/blobs/b",
		"a/blobs/uploads",
		"a/tags/list",
		"a/referrers/b",
		"manifests",
		"blobs/uploads/x",
	} {
		t.Run(name, func(t *testing.T) {
			reg := New(c, name, []string{"latest"}, nil)
			resp, body := get(t, reg, "/v2/"+name+"/manifests/latest")
			requireContent(t, resp, body, c.List, ociIndex, false)
			resp, body = get(t, reg, "/v2/"+name+"/manifests/"+c.List.Digest.String())
			requireContent(t, resp, body, c.List, ociIndex, false)
			resp, body = get(t, reg, "/v2/"+name+"/blobs/"+layer)
			requireContent(t, resp, body, c.Layers[0], "application/octet-stream", false)
			resp, body = get(t, reg, "/v2/"+name+"/tags/list")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.JSONEq(t, `{"name":"`+name+`","tags":["latest"]}`, string(body))
			resp, _ = get(t, reg, "/v2/"+name+"/referrers/"+c.List.Digest.String())
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			resp, body = serve(t, reg, request{method: http.MethodPost, target: "/v2/" + name + "/blobs/uploads/"})
			requireError(t, resp, body, ErrUnsupported)
		})
	}
}

// TestAccessLog checks the one log line per request.
func TestAccessLog(t *testing.T) {
	c := buildContent(t, index.Docker)
	var buf bytes.Buffer
	reg := New(c, testName, testTags, slog.New(slog.NewJSONHandler(&buf, nil)))
	l := c.Layers[0]
	cases := []struct {
		rq     request
		status int
		bytes  int64
	}{
		{request{target: blobPath(l.Digest.String())}, 200, l.Size},
		{request{target: blobPath(l.Digest.String()), header: headers("Range", "bytes=0-9")}, 206, 10},
		{request{method: http.MethodHead, target: blobPath(l.Digest.String())}, 200, 0},
		{request{target: manifestPath("latest"), header: headers("If-None-Match", "*")}, 304, 0},
		{request{method: http.MethodDelete, target: manifestPath("latest")}, 405, -1},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			buf.Reset()
			resp, body := serve(t, reg, tc.rq)
			require.Equal(t, tc.status, resp.StatusCode)
			var line struct {
				Msg    string `json:"msg"`
				Method string `json:"method"`
				Path   string `json:"path"`
				Status int    `json:"status"`
				Bytes  int64  `json:"bytes"`
				Remote string `json:"remote"`
			}
			require.NoError(t, json.Unmarshal(buf.Bytes(), &line), "one JSON line: %s", buf.String())
			assert.Equal(t, "request", line.Msg)
			wantMethod := tc.rq.method
			if wantMethod == "" {
				wantMethod = http.MethodGet
			}
			assert.Equal(t, wantMethod, line.Method)
			assert.Equal(t, tc.status, line.Status)
			assert.Equal(t, tc.rq.target, line.Path)
			assert.Equal(t, "192.0.2.1", line.Remote, "httptest's client address, without its port")
			want := tc.bytes
			if want < 0 {
				want = int64(len(body))
			}
			assert.Equal(t, want, line.Bytes)
		})
	}
}

// TestInvalidTagNeverServed: a tag that is not valid is never served, even
// when the registry was given it.
func TestInvalidTagNeverServed(t *testing.T) {
	c := buildContent(t, index.OCI)
	long := strings.Repeat("t", 129)
	reg := New(c, testName, []string{".hidden", long, "ok"}, nil)
	for _, tag := range []string{".hidden", long} {
		resp, body := get(t, reg, manifestPath(tag))
		requireError(t, resp, body, ErrManifestUnknown)
	}
	resp, body := get(t, reg, manifestPath("ok"))
	requireContent(t, resp, body, c.List, ociIndex, false)
}

// TestRecorder checks the access-log recorder: an implicit 200, the bytes
// counted, and the connection reachable through http.ResponseController.
func TestRecorder(t *testing.T) {
	inner := httptest.NewRecorder()
	rec := &recorder{ResponseWriter: inner}
	assert.Equal(t, http.StatusOK, rec.status(), "nothing written yet")
	n, err := rec.Write([]byte("hello"))
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	rec.WriteHeader(http.StatusTeapot) // too late: the first status stays
	assert.Equal(t, http.StatusOK, rec.status())
	assert.EqualValues(t, 5, rec.bytes)
	require.NoError(t, http.NewResponseController(rec).Flush())
	assert.True(t, inner.Flushed, "Flush reached the wrapped writer")
}

func TestAPIErrorString(t *testing.T) {
	e := newError(ErrBlobUnknown, "no blob x")
	assert.Equal(t, "BLOB_UNKNOWN: no blob x", e.Error())
	assert.Equal(t, http.StatusNotFound, e.Status)
}

// TestPercentEncodedDigests: a digest written percent-encoded in the path
// (sha256%3A...) names the same manifest, blob or referrers subject.
func TestPercentEncodedDigests(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			reg, c := newTestRegistry(t, f)
			amd := imageFor(t, c, amd64)
			encode := func(d string) string { return strings.Replace(d, ":", "%3A", 1) }
			cases := []struct {
				name, plain string
			}{
				{"list", manifestPath(c.List.Digest.String())},
				{"manifest", manifestPath(amd.Manifest.Digest.String())},
				{"config blob", blobPath(amd.Config.Digest.String())},
				{"layer blob", blobPath(c.Layers[0].Digest.String())},
				{"referrers", "/v2/" + testName + "/referrers/" + c.List.Digest.String()},
			}
			for _, tc := range cases {
				for _, method := range []string{http.MethodGet, http.MethodHead} {
					t.Run(method+" "+tc.name, func(t *testing.T) {
						i := strings.LastIndex(tc.plain, "/")
						encoded := tc.plain[:i+1] + encode(tc.plain[i+1:])
						require.NotEqual(t, tc.plain, encoded)
						want, wantBody := serve(t, reg, request{method: method, target: tc.plain})
						got, gotBody := serve(t, reg, request{method: method, target: encoded})
						require.Equal(t, http.StatusOK, want.StatusCode)
						assert.Equal(t, http.StatusOK, got.StatusCode, "body %s", gotBody)
						assert.Equal(t, wantBody, gotBody)
						assert.Equal(t, want.Header.Get("Docker-Content-Digest"), got.Header.Get("Docker-Content-Digest"))
						assert.Equal(t, want.Header.Get("Content-Type"), got.Header.Get("Content-Type"))
					})
				}
			}
			resp, body := get(t, reg, manifestPath("sha256%3Atotallywrong"))
			requireError(t, resp, body, ErrDigestInvalid)
		})
	}
}

package registry

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRoute(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		path    string
		ok      bool
		kind    routeKind
		name    string
		ref     string
		errCode string // the code of the error returned, "" for none
	}{
		{"/v2/", true, routeBase, "", "", ""},
		{"/v2", true, routeBase, "", "", ""},
		{"/v2/_catalog", true, routeCatalog, "", "", ""},
		{"/v2/a/tags/list", true, routeTags, "a", "", ""},
		{"/v2/a/b/c/tags/list", true, routeTags, "a/b/c", "", ""},
		{"/v2/a/manifests/latest", true, routeManifest, "a", "latest", ""},
		{"/v2/a/manifests/" + d, true, routeManifest, "a", d, ""},
		{"/v2/a/manifests/sha256:totallywrong", true, routeManifest, "a", "sha256:totallywrong", ""},
		{"/v2/a/manifests/.INVALID_MANIFEST_NAME", true, routeManifest, "a", ".INVALID_MANIFEST_NAME", ""},
		{"/v2/a/blobs/" + d, true, routeBlob, "a", d, ""},
		{"/v2/a/blobs/uploads/", true, routeUpload, "a", "", ""},
		{"/v2/a/blobs/uploads", true, routeUpload, "a", "", ""},
		{"/v2/a/blobs/uploads/some-uuid", true, routeUpload, "a", "some-uuid", ""},
		{"/v2/a/referrers/" + d, true, routeReferrers, "a", d, ""},
		{"/v2/a.b_c__d-e--f/g/manifests/x", true, routeManifest, "a.b_c__d-e--f/g", "x", ""},

		// Percent-encoded references, as some clients write digests.
		{"/v2/a/manifests/sha256%3Aabc", true, routeManifest, "a", "sha256:abc", ""},
		{"/v2/a/manifests/sha256%3a" + d[7:], true, routeManifest, "a", d, ""},
		{"/v2/a/blobs/sha256%3A" + d[7:], true, routeBlob, "a", d, ""},
		{"/v2/a/referrers/sha256%3A" + d[7:], true, routeReferrers, "a", d, ""},
		{"/v2/a/manifests/%6Catest", true, routeManifest, "a", "latest", ""},

		// Endpoint words inside names.
		{"/v2/a/manifests/b/blobs/" + d, true, routeBlob, "a/manifests/b", d, ""},
		{"/v2/a/manifests/b/manifests/latest", true, routeManifest, "a/manifests/b", "latest", ""},
		{"/v2/a/manifests/tags/list", true, routeTags, "a/manifests", "", ""},
		{"/v2/a/blobs/uploads/blobs/" + d, true, routeBlob, "a/blobs/uploads", d, ""},
		{"/v2/a/manifests/b/referrers/" + d, true, routeReferrers, "a/manifests/b", d, ""},
		{"/v2/a/manifests/blobs/uploads/", true, routeUpload, "a/manifests", "", ""},
		{"/v2/tags/list/tags/list", true, routeTags, "tags/list", "", ""},

		// Endpoints with invalid names: found, with NAME_INVALID.
		{"/v2/A/manifests/latest", true, routeManifest, "A", "latest", "NAME_INVALID"},
		{"/v2//manifests/latest", true, routeManifest, "", "latest", "NAME_INVALID"},
		{"/v2/a/../b/manifests/latest", true, routeManifest, "a/../b", "latest", "NAME_INVALID"},
		{"/v2/../manifests/latest", true, routeManifest, "..", "latest", "NAME_INVALID"},
		{"/v2/a//b/tags/list", true, routeTags, "a//b", "", "NAME_INVALID"},
		{"/v2/-a/blobs/" + d, true, routeBlob, "-a", d, "NAME_INVALID"},
		{"/v2/a_/referrers/" + d, true, routeReferrers, "a_", d, "NAME_INVALID"},
		{"/v2/a___b/blobs/uploads/", true, routeUpload, "a___b", "", "NAME_INVALID"},
		{"/v2/" + strings.Repeat("a", 256) + "/tags/list", true, routeTags, strings.Repeat("a", 256), "", "NAME_INVALID"},

		// No endpoint.
		{"", false, 0, "", "", ""},
		{"/", false, 0, "", "", ""},
		{"/v1/", false, 0, "", "", ""},
		{"/v2x", false, 0, "", "", ""},
		{"//v2/", false, 0, "", "", ""},
		{"/v2//", false, 0, "", "", ""},
		{"/v2/_catalog/", false, 0, "", "", ""},
		{"/v2/a", false, 0, "", "", ""},
		{"/v2/a/", false, 0, "", "", ""},
		{"/v2/a/manifests/", false, 0, "", "", ""},
		{"/v2/a/manifests", false, 0, "", "", ""},
		{"/v2/a/manifests/a/b", false, 0, "", "", ""},
		{"/v2/a/blobs/", false, 0, "", "", ""},
		{"/v2/a/referrers/", false, 0, "", "", ""},
		{"/v2/a/tags/list/", false, 0, "", "", ""},
		{"/v2/a/tags", false, 0, "", "", ""},
		{"/v2/a/blobs/uploads/x/y", false, 0, "", "", ""},
		{"/v2/a%2Fb/manifests/latest", false, 0, "", "", ""},
		{"/v2/a/manifests/x%2Fy", false, 0, "", "", ""},
		{"/v2/a/manifests/sha256%zzabc", false, 0, "", "", ""},
		{"/v2/a%3Ab/tags/list", false, 0, "", "", ""},
		{"/v2/%2e%2e/manifests/latest", false, 0, "", "", ""},
		{"/v2/a\\b/manifests/latest", false, 0, "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			rt, ok, err := parseRoute(tc.path)
			require.Equal(t, tc.ok, ok)
			if !tc.ok {
				assert.Nil(t, err)
				assert.Equal(t, route{}, rt)
				return
			}
			assert.Equal(t, route{kind: tc.kind, name: tc.name, ref: tc.ref}, rt)
			if tc.errCode == "" {
				assert.Nil(t, err)
			} else {
				require.NotNil(t, err)
				assert.Equal(t, tc.errCode, err.Code)
				assert.Equal(t, ErrNameInvalid, err.ErrorCode)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	cases := map[string]bool{
		"a":                             true,
		"quinistry":                     true,
		"test/quinistry":                true,
		"a/b/c/d":                       true,
		"a.b":                           true,
		"a_b":                           true,
		"a__b":                          true,
		"a-b":                           true,
		"a---b":                         true,
		"0":                             true,
		strings.Repeat("a", 255):        true,
		strings.Repeat("a", 256):        false,
		strings.Repeat("a/", 127) + "a": true,
		"":                              false,
		"A":                             false,
		"a/":                            false,
		"/a":                            false,
		"a//b":                          false,
		"a..b":                          false,
		"..":                            false,
		"a/../b":                        false,
		"a___b":                         false,
		"a.-b":                          false,
		"-a":                            false,
		"a-":                            false,
		"a:b":                           false,
		"a b":                           false,
		"a%2fb":                         false,
		"é":                             false,
	}
	for name, want := range cases {
		assert.Equal(t, want, ValidName(name), "%q", name)
	}
}

func TestValidTag(t *testing.T) {
	cases := map[string]bool{
		"latest":                 true,
		"v1.2.3":                 true,
		"0123456789ab-dirty":     true,
		"_x":                     true,
		"A.b-C_d":                true,
		strings.Repeat("t", 128): true,
		strings.Repeat("t", 129): false,
		"":                       false,
		".INVALID_MANIFEST_NAME": false,
		"-x":                     false,
		"..":                     false,
		"a/b":                    false,
		"a:b":                    false,
		"a+b":                    false,
		"a b":                    false,
	}
	for tag, want := range cases {
		assert.Equal(t, want, ValidTag(tag), "%q", tag)
	}
}

func TestParseDigest(t *testing.T) {
	good := "sha256:" + strings.Repeat("0", 64)
	d, err := parseDigest(good)
	require.Nil(t, err)
	assert.Equal(t, good, d.String())

	for _, s := range []string{
		"", ":", "sha256:", ":" + strings.Repeat("0", 64), "sha256:totallywrong",
		"sha256:" + strings.Repeat("0", 63), "sha256:" + strings.Repeat("A", 64),
		"md5:d41d8cd98f00b204e9800998ecf8427e", "latest",
	} {
		_, err := parseDigest(s)
		if assert.NotNil(t, err, "%q", s) {
			assert.Equal(t, ErrDigestInvalid, err.ErrorCode, "%q", s)
		}
	}
}

func TestQuoteShort(t *testing.T) {
	assert.Equal(t, `"abc"`, quoteShort("abc"))
	assert.Equal(t, `"a?b"`, quoteShort("a\xffb"))
	long := quoteShort(strings.Repeat("x", 500))
	assert.Equal(t, `"`+strings.Repeat("x", 80)+`..."`, long)
}

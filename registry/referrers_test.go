package registry

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/sbom"
)

// TestReferrersListsSBOMs serves content with its SBOMs attached: each
// platform manifest has one SPDX referrer, served by digest with its blobs,
// and the filter keeps or drops it.
func TestReferrersListsSBOMs(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			c := buildContent(t, f)
			list := c.List.Digest
			testcontent.AttachSBOMs(t, c)
			require.Equal(t, list, c.List.Digest, "the list does not change")
			reg := New(c, testName, testTags, nil)

			for _, img := range c.Images {
				t.Run(img.Platform.String(), func(t *testing.T) {
					base := "/v2/" + testName + "/referrers/" + img.Manifest.Digest.String()
					tests := []struct {
						query    string
						filtered bool
						want     int
					}{
						{"", false, 1},
						{"?artifactType=application%2Fspdx%2Bjson", true, 1},
						{"?artifactType=application%2Fvnd.cyclonedx%2Bjson", true, 0},
					}
					for _, tt := range tests {
						resp, body := get(t, reg, base+tt.query)
						require.Equal(t, http.StatusOK, resp.StatusCode)
						assert.Equal(t, ociIndex, resp.Header.Get("Content-Type"))
						if tt.filtered {
							assert.Equal(t, "artifactType", resp.Header.Get("OCI-Filters-Applied"))
						} else {
							assert.Empty(t, resp.Header.Values("OCI-Filters-Applied"))
						}
						var idx index.List
						require.NoError(t, json.Unmarshal(body, &idx))
						assert.Equal(t, ociIndex, idx.MediaType)
						require.Len(t, idx.Manifests, tt.want, tt.query)
						if tt.want == 0 {
							continue
						}
						d := idx.Manifests[0]
						assert.Equal(t, "application/vnd.oci.image.manifest.v1+json", d.MediaType)
						assert.Equal(t, sbom.MediaType, d.ArtifactType)
						assert.Equal(t, img.Platform.String(), d.Annotations[sbom.PlatformAnnotation])
						assert.Equal(t, "2026-11-27T12:00:00Z", d.Annotations[sbom.CreatedAnnotation])

						// The artifact manifest is served by digest, and its blobs.
						resp, mb := get(t, reg, "/v2/"+testName+"/manifests/"+d.Digest.String())
						require.Equal(t, http.StatusOK, resp.StatusCode)
						assert.Equal(t, d.MediaType, resp.Header.Get("Content-Type"))
						assert.Equal(t, d.Digest.String(), sha256Digest(mb))
						assert.EqualValues(t, d.Size, len(mb))
						var m index.Manifest
						require.NoError(t, json.Unmarshal(mb, &m))
						assert.Equal(t, img.Manifest.Digest, m.Subject.Digest)
						for _, bd := range append([]index.Descriptor{m.Config}, m.Layers...) {
							resp, blob := get(t, reg, "/v2/"+testName+"/blobs/"+bd.Digest.String())
							require.Equal(t, http.StatusOK, resp.StatusCode)
							assert.Equal(t, bd.Digest.String(), sha256Digest(blob))
						}
						_, doc := get(t, reg, "/v2/"+testName+"/blobs/"+m.Layers[0].Digest.String())
						parsed, err := sbom.Parse(doc)
						require.NoError(t, err)
						assert.Equal(t, sbom.Namespace(img.Platform, img.Manifest.Digest), parsed.DocumentNamespace)
					}
				})
			}
			// The list and unknown subjects have no referrers.
			for _, d := range []string{list.String(), sha256Digest([]byte("not served"))} {
				_, body := get(t, reg, "/v2/"+testName+"/referrers/"+d)
				assert.JSONEq(t, `{"schemaVersion":2,"mediaType":"`+ociIndex+`","manifests":[]}`, string(body))
			}
		})
	}
}

package registry

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/attest"
	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/sbom"
)

// attestationSet makes the referrers of one bundle (signature sig) about
// the given subjects of c.
func attestationSet(t *testing.T, c *index.Content, sig string, subjects ...digest.Digest) (*index.ArtifactSet, []byte) {
	t.Helper()
	data := testcontent.Bundle(sig, subjects...)
	b, err := attest.Parse("b.json", data)
	require.NoError(t, err)
	arts, _, err := attest.Artifacts(c, []attest.Bundle{b})
	require.NoError(t, err)
	return index.NewArtifactSet(arts), data
}

// TestAttestationsServed serves a bundle about the list and one image
// beside the SBOMs: the referrers list it after the SBOM, filtered by
// artifactType, and its manifest and bundle blob are served by digest.
func TestAttestationsServed(t *testing.T) {
	for _, f := range formats {
		t.Run(string(f), func(t *testing.T) {
			c := testcontent.AttachSBOMs(t, buildContent(t, f))
			reg := New(c, testName, testTags, nil)
			img := c.Images[0].Manifest.Digest
			set, bundle := attestationSet(t, c, "one", c.List.Digest, img)
			reg.SetAttestations(set)
			base := "/v2/" + testName + "/referrers/"
			tests := []struct {
				name    string
				subject digest.Digest
				query   string
				want    []string // artifact types, in order
			}{
				{"the image: its SBOM, then the bundle", img, "", []string{sbom.MediaType, attest.MediaType}},
				{"the image, bundles only", img, "?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson", []string{attest.MediaType}},
				{"the image, SBOMs only", img, "?artifactType=application%2Fspdx%2Bjson", []string{sbom.MediaType}},
				{"the list: the bundle", c.List.Digest, "", []string{attest.MediaType}},
				{"the other image: only its SBOM", c.Images[1].Manifest.Digest, "", []string{sbom.MediaType}},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					resp, body := get(t, reg, base+tt.subject.String()+tt.query)
					require.Equal(t, http.StatusOK, resp.StatusCode)
					var idx index.List
					require.NoError(t, json.Unmarshal(body, &idx))
					var got []string
					for _, d := range idx.Manifests {
						got = append(got, d.ArtifactType)
						resp, m := get(t, reg, "/v2/"+testName+"/manifests/"+d.Digest.String())
						require.Equal(t, http.StatusOK, resp.StatusCode, "the referrer %s is served", d.Digest)
						assert.Equal(t, d.Digest.String(), sha256Digest(m))
					}
					assert.Equal(t, tt.want, got)
				})
			}
			resp, got := get(t, reg, "/v2/"+testName+"/blobs/"+digest.FromBytes(bundle).String())
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, bundle, got, "the bundle's bytes")

			reg.SetAttestations(nil)
			resp, _ = get(t, reg, "/v2/"+testName+"/blobs/"+digest.FromBytes(bundle).String())
			assert.Equal(t, http.StatusNotFound, resp.StatusCode, "gone once the set is replaced")
		})
	}
}

// TestAttestationsSwapWhileServing replaces the set while requests run
// (run with -race): every answer lists either set's referrer, whole.
func TestAttestationsSwapWhileServing(t *testing.T) {
	c := buildContent(t, index.OCI)
	reg := New(c, testName, testTags, nil)
	img := c.Images[0].Manifest.Digest
	a, _ := attestationSet(t, c, "a", img)
	b, _ := attestationSet(t, c, "b", img)
	valid := map[digest.Digest]bool{a.Artifacts()[0].Manifest.Digest: true, b.Artifacts()[0].Manifest.Digest: true}
	reg.SetAttestations(a)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				_, body := get(t, reg, "/v2/"+testName+"/referrers/"+img.String())
				var idx index.List
				if assert.NoError(t, json.Unmarshal(body, &idx)) && assert.Len(t, idx.Manifests, 1) {
					assert.True(t, valid[idx.Manifests[0].Digest], "referrer %s", idx.Manifests[0].Digest)
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			reg.SetAttestations(b)
		} else {
			reg.SetAttestations(a)
		}
	}
	wg.Wait()
}

// TestHomePageListsAttestations shows each bundle's predicate type and
// digest beside the SBOM of the image it is about, and under the list.
func TestHomePageListsAttestations(t *testing.T) {
	c := testcontent.AttachSBOMs(t, buildContent(t, index.OCI))
	reg := New(c, testName, testTags, nil)
	img := c.Images[1].Manifest.Digest
	set, bundle := attestationSet(t, c, "one", c.List.Digest, img)
	reg.SetAttestations(set)
	_, body := serve(t, reg, request{target: "/", header: http.Header{"Accept": {"text/html"}}})
	page := string(body)
	link := `<a class=attestation href="/v2/` + testName + `/blobs/` + digest.FromBytes(bundle).String() + `">https://slsa.dev/provenance/v1</a>`
	assert.Equal(t, 2, strings.Count(page, link), "the list's and the image's")
	rows := strings.Split(page, "<tr>")
	for _, r := range rows {
		if strings.Contains(r, c.Images[0].Manifest.Digest.String()) {
			assert.NotContains(t, r, "attestation href", "the image no bundle names")
		}
		if strings.Contains(r, img.String()) {
			assert.Contains(t, r, link)
		}
	}
}

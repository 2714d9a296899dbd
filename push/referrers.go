package push

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/quinistry/quinistry/index"
)

// artifacts puts every artifact manifest (the SBOMs) by digest, after the
// platform manifests they refer to. A registry that knows the referrers
// API says so with OCI-Subject in its answer; for one that does not, the
// referrers tag schema is kept too: the tag sha256-<hex> of each subject
// holds an index of its referrers, merged with what it already held.
// It returns how many subjects needed that tag.
func (p *pusher) artifacts(ctx context.Context, c *index.Content) (int, error) {
	var fallback []digest.Digest
	for _, a := range c.Artifacts {
		hdr, err := p.manifestHeader(ctx, a.Manifest, a.Manifest.Digest.String(), "the "+a.ArtifactType+" artifact of "+a.Subject.String())
		if err != nil {
			return 0, err
		}
		if hdr.Get("OCI-Subject") == "" && !slices.Contains(fallback, a.Subject) {
			fallback = append(fallback, a.Subject)
		}
	}
	for _, subject := range fallback {
		if err := p.referrersTag(ctx, subject, c.Referrers(subject, "")); err != nil {
			return 0, err
		}
	}
	return len(fallback), nil
}

// ReferrersTag is the tag of the referrers tag schema for subject d:
// <algorithm>-<encoded>.
func ReferrersTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded()
}

// referrersTag adds refs to the index under subject's referrers tag,
// keeping the entries it already has.
func (p *pusher) referrersTag(ctx context.Context, subject digest.Digest, refs []index.Descriptor) error {
	tag := ReferrersTag(subject)
	ociIndex := index.OCI.MediaTypes().List
	resp, err := p.client.do(ctx, newRequest(http.MethodGet, p.url("manifests/"+tag), nil,
		http.Header{"Accept": {ociIndex}}), p.scopes(), true)
	if err != nil {
		return fmt.Errorf("reading the referrers tag %s: %w", tag, err)
	}
	idx := index.List{SchemaVersion: 2, MediaType: ociIndex}
	switch resp.StatusCode {
	case http.StatusOK:
		data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		drain(resp)
		if err != nil {
			return fmt.Errorf("reading the referrers tag %s: %w", tag, err)
		}
		if err := json.Unmarshal(data, &idx); err != nil || idx.MediaType != ociIndex {
			return fmt.Errorf("the referrers tag %s holds something other than an OCI index", tag)
		}
	case http.StatusNotFound:
		drain(resp)
	default:
		defer drain(resp)
		return fmt.Errorf("reading the referrers tag %s: %w", tag, statusError(resp))
	}
	changed := false
	for _, r := range refs {
		if !slices.ContainsFunc(idx.Manifests, func(d index.Descriptor) bool { return d.Digest == r.Digest }) {
			idx.Manifests = append(idx.Manifests, r)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	m := index.Blob{Descriptor: index.Descriptor{MediaType: ociIndex, Digest: digest.FromBytes(data), Size: int64(len(data))}, Data: data}
	_, err = p.manifestHeader(ctx, m, tag, "the referrers index of "+subject.String())
	return err
}

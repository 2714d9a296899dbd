// Package push uploads quinistry's image to a registry with the
// distribution push protocol: blobs first (skipping those the registry has,
// mounting from another repository when asked, monolithic uploads with a
// fallback to chunked ones), then every platform manifest by digest, then
// the artifacts that refer to them (SBOMs), then the list by tag, last, so
// that a failed push never leaves a tag pointing at something incomplete.
// It answers basic and bearer challenges and retries what a registry or a
// network may fail for a moment.
package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/quinistry/quinistry/index"
)

// Options tune a push. The zero value pushes over HTTPS with no
// credentials, 4 blobs at a time, retrying 5 times.
type Options struct {
	// HTTP sends the requests (TLS settings live in its transport).
	// Default: http.DefaultClient.
	HTTP *http.Client
	// Insecure speaks plain HTTP instead of HTTPS.
	Insecure bool
	// Credentials gives the credential for the registry host.
	Credentials Credentials
	// MountFrom is a repository on the same registry to mount blobs from.
	MountFrom string
	// Concurrency bounds the blobs uploaded at once (default 4).
	Concurrency int
	// Retries is how often a request is tried again (default 5; -1: never).
	Retries int
	// Backoff is the first wait before a retry, doubled each time
	// (default 500ms).
	Backoff time.Duration
	// ChunkSize is the size of each PATCH when uploading in chunks
	// (default 8 MiB, raised to what the registry asks as a minimum).
	ChunkSize int64
	// Progress reports each blob; nil reports nothing.
	Progress *Progress
}

// Result is what a push did.
type Result struct {
	// Digest is the list's digest, now tagged.
	Digest digest.Digest
	// Uploaded, Mounted and Existing count blobs by what was done.
	Uploaded, Mounted, Existing int
	// Bytes is the size of the blobs uploaded.
	Bytes int64
	// ReferrersTags counts the subjects whose artifacts needed the
	// referrers tag schema (the registry did not answer OCI-Subject).
	ReferrersTags int
}

// Push uploads the content to ref and tags its list.
func Push(ctx context.Context, c *index.Content, ref Reference, opts Options) (Result, error) {
	if opts.HTTP == nil {
		opts.HTTP = http.DefaultClient
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = 5
	case opts.Retries < 0:
		opts.Retries = 0
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 8 << 20
	}
	if opts.Credentials == nil {
		opts.Credentials = Static(Credential{})
	}
	creds, err := opts.Credentials(ctx, ref.Host)
	if err != nil {
		return Result{}, err
	}
	scheme := "https"
	if opts.Insecure {
		scheme = "http"
	}
	p := &pusher{
		client: &client{http: opts.HTTP, base: scheme + "://" + ref.APIHost(), host: ref.Host, creds: creds,
			retries: opts.Retries, backoff: opts.Backoff, tokens: map[string]string{}},
		ref:  ref,
		opts: opts,
	}
	if err := p.client.ping(ctx); err != nil {
		return Result{}, err
	}
	if err := p.client.login(ctx, p.scopes()); err != nil {
		return Result{}, err
	}
	return p.push(ctx, c)
}

// pusher pushes to one repository.
type pusher struct {
	client *client
	ref    Reference
	opts   Options
}

// scopes are the token scopes a push needs.
func (p *pusher) scopes() []string {
	s := []string{"repository:" + p.ref.Repository + ":pull,push"}
	if p.opts.MountFrom != "" && p.opts.MountFrom != p.ref.Repository {
		s = append(s, "repository:"+p.opts.MountFrom+":pull")
	}
	return s
}

// url is an API URL under the repository.
func (p *pusher) url(suffix string) string {
	return p.client.base + "/v2/" + p.ref.Repository + "/" + suffix
}

// outcome is what happened to one blob.
type outcome int

const (
	uploaded outcome = iota
	mounted
	existing
)

func (p *pusher) push(ctx context.Context, c *index.Content) (Result, error) {
	var blobs []index.Blob
	seen := map[digest.Digest]bool{}
	for _, img := range c.Images {
		if !seen[img.Config.Digest] {
			seen[img.Config.Digest] = true
			blobs = append(blobs, img.Config)
		}
	}
	for _, l := range c.Layers {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			blobs = append(blobs, l)
		}
	}
	for _, a := range c.Artifacts {
		for _, b := range a.Blobs {
			if !seen[b.Digest] {
				seen[b.Digest] = true
				blobs = append(blobs, b)
			}
		}
	}

	outcomes := make([]outcome, len(blobs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(p.opts.Concurrency)
	for i, b := range blobs {
		g.Go(func() error {
			o, err := p.blob(gctx, b)
			outcomes[i] = o
			return err
		})
	}
	err := g.Wait()
	p.opts.Progress.Stop()
	if err != nil {
		return Result{}, err
	}
	res := Result{Digest: c.List.Digest}
	for i, o := range outcomes {
		switch o {
		case uploaded:
			res.Uploaded++
			res.Bytes += blobs[i].Size
		case mounted:
			res.Mounted++
		case existing:
			res.Existing++
		}
	}

	for _, img := range c.Images {
		if err := p.manifest(ctx, img.Manifest, img.Manifest.Digest.String(), "the "+img.Platform.String()+" manifest"); err != nil {
			return Result{}, err
		}
	}
	if res.ReferrersTags, err = p.artifacts(ctx, c); err != nil {
		return Result{}, err
	}
	if err := p.manifest(ctx, c.List, p.ref.Tag, "the manifest list"); err != nil {
		return Result{}, err
	}
	return res, nil
}

// blob makes sure the registry has b, starting over on failures worth a
// retry.
func (p *pusher) blob(ctx context.Context, b index.Blob) (outcome, error) {
	t := p.opts.Progress.Start(b.Digest, b.Size)
	for attempt := 0; ; attempt++ {
		o, err := p.blobOnce(ctx, b, t)
		var rerr *retryError
		if err == nil {
			t.Done(map[outcome]string{uploaded: "pushed", mounted: "mounted", existing: "exists"}[o])
			return o, nil
		}
		if !errors.As(err, &rerr) || attempt >= p.client.retries {
			t.Done("failed")
			return 0, fmt.Errorf("blob %s: %w", b.Digest, err)
		}
		t.Reset()
		if err := p.client.sleep(ctx, attempt, rerr.after); err != nil {
			return 0, err
		}
	}
}

// blobOnce checks for b, then mounts or uploads it.
func (p *pusher) blobOnce(ctx context.Context, b index.Blob, t *Tracker) (outcome, error) {
	resp, err := p.client.do(ctx, newRequest(http.MethodHead, p.url("blobs/"+b.Digest.String()), nil, nil), p.scopes(), true)
	if err != nil {
		return 0, err
	}
	drain(resp)
	switch resp.StatusCode {
	case http.StatusOK:
		return existing, nil
	case http.StatusNotFound:
	default:
		return 0, fmt.Errorf("HEAD answered %s", resp.Status)
	}

	start := p.url("blobs/uploads/")
	if p.opts.MountFrom != "" {
		start += "?" + url.Values{"mount": {b.Digest.String()}, "from": {p.opts.MountFrom}}.Encode()
	}
	loc, minChunk, done, err := p.startUpload(ctx, start)
	if err != nil || done {
		return mounted, err
	}
	if minChunk == 0 {
		resp, err := p.client.do(ctx, p.putUpload(loc, b, t), p.scopes(), false)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			return uploaded, p.checkCreated(resp, b.Digest)
		}
		// Too large for one request: start again, in chunks.
		drain(resp)
		t.Reset()
		if loc, minChunk, _, err = p.startUpload(ctx, p.url("blobs/uploads/")); err != nil {
			return 0, err
		}
	}
	return uploaded, p.chunked(ctx, loc, max(minChunk, p.opts.ChunkSize), b, t)
}

// startUpload opens an upload session: its location, the registry's
// minimum chunk size (OCI-Chunk-Min-Length), and whether a mount made the
// upload unnecessary.
func (p *pusher) startUpload(ctx context.Context, u string) (loc string, minChunk int64, mounted bool, err error) {
	resp, err := p.client.do(ctx, newRequest(http.MethodPost, u, nil, http.Header{"Content-Length": {"0"}}), p.scopes(), true)
	if err != nil {
		return "", 0, false, err
	}
	defer drain(resp)
	switch resp.StatusCode {
	case http.StatusCreated:
		return "", 0, true, nil
	case http.StatusAccepted:
	default:
		return "", 0, false, fmt.Errorf("registry refused to start an upload: %w", statusError(resp))
	}
	loc, err = p.location(resp)
	if err != nil {
		return "", 0, false, err
	}
	if v := resp.Header.Get("OCI-Chunk-Min-Length"); v != "" {
		minChunk, _ = strconv.ParseInt(v, 10, 64)
	}
	return loc, max(minChunk, 0), false, nil
}

// location resolves an upload's Location against the registry's URL.
func (p *pusher) location(resp *http.Response) (string, error) {
	l := resp.Header.Get("Location")
	if l == "" {
		return "", errors.New("registry gave no upload location")
	}
	u, err := resp.Request.URL.Parse(l)
	if err != nil {
		return "", fmt.Errorf("registry gave a bad upload location %q", l)
	}
	return u.String(), nil
}

// withDigest adds ?digest= to an upload location.
func withDigest(loc string, d digest.Digest) string {
	u, _ := url.Parse(loc)
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	return u.String()
}

// putUpload is the monolithic upload: the whole blob in one PUT.
func (p *pusher) putUpload(loc string, b index.Blob, t *Tracker) request {
	return func(ctx context.Context) (*http.Request, error) {
		t.Reset()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, withDigest(loc, b.Digest),
			&countingReader{r: strings.NewReader(string(b.Data)), t: t})
		if err != nil {
			return nil, err
		}
		req.ContentLength = b.Size
		req.Header.Set("Content-Type", "application/octet-stream")
		return req, nil
	}
}

// chunked uploads b in PATCHes of size bytes, then closes the upload.
func (p *pusher) chunked(ctx context.Context, loc string, size int64, b index.Blob, t *Tracker) error {
	for off := int64(0); off < b.Size; {
		end := min(off+size, b.Size)
		chunk := b.Data[off:end]
		build := func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, &countingReader{r: strings.NewReader(string(chunk)), t: t})
			if err != nil {
				return nil, err
			}
			req.ContentLength = int64(len(chunk))
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, end-1))
			return req, nil
		}
		resp, err := p.client.do(ctx, build, p.scopes(), false)
		if err != nil {
			return err
		}
		drain(resp)
		if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("registry refused a chunk at %d: %s", off, resp.Status)
		}
		if loc, err = p.location(resp); err != nil {
			return err
		}
		if r := resp.Header.Get("Range"); r != "" {
			var last int64
			if _, err := fmt.Sscanf(strings.TrimPrefix(r, "bytes="), "0-%d", &last); err == nil && last != end-1 {
				return &retryError{err: fmt.Errorf("registry holds bytes 0-%d after a chunk ending at %d", last, end-1)}
			}
		}
		off = end
	}
	resp, err := p.client.do(ctx, newRequest(http.MethodPut, withDigest(loc, b.Digest), []byte{}, nil), p.scopes(), false)
	if err != nil {
		return err
	}
	return p.checkCreated(resp, b.Digest)
}

// checkCreated expects 201 and, when the registry names it, digest d.
func (p *pusher) checkCreated(resp *http.Response, d digest.Digest) error {
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("registry refused the upload: %w", statusError(resp))
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != d.String() {
		return fmt.Errorf("registry stored %s, not %s", got, d)
	}
	return nil
}

// manifest puts m under reference (a digest or the tag).
func (p *pusher) manifest(ctx context.Context, m index.Blob, reference, what string) error {
	_, err := p.manifestHeader(ctx, m, reference, what)
	return err
}

// manifestHeader puts m under reference and returns the answer's header.
func (p *pusher) manifestHeader(ctx context.Context, m index.Blob, reference, what string) (http.Header, error) {
	resp, err := p.client.do(ctx, newRequest(http.MethodPut, p.url("manifests/"+reference), m.Data,
		http.Header{"Content-Type": {m.MediaType}}), p.scopes(), true)
	if err != nil {
		return nil, fmt.Errorf("pushing %s: %w", what, err)
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("registry refused %s (%s): %w", what, m.MediaType, statusError(resp))
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != "" && got != m.Digest.String() {
		return nil, fmt.Errorf("registry stored %s as %s, not %s", what, got, m.Digest)
	}
	return resp.Header, nil
}

package push_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/index"
	"github.com/quinistry/quinistry/internal/testcontent"
	"github.com/quinistry/quinistry/push"
)

// blobCount is the number of distinct blobs the content has.
func blobCount(c *index.Content) int { return len(c.Images) + len(c.Layers) }

func ref(t *testing.T, reg *testRegistry, path string) push.Reference {
	r, err := push.ParseReference(reg.host() + "/" + path)
	require.NoError(t, err)
	return r
}

// fast are options that retry quickly.
func fast() push.Options {
	return push.Options{Insecure: true, Backoff: time.Millisecond}
}

// assertPushed checks the registry holds the whole image, tagged.
func assertPushed(t *testing.T, reg *testRegistry, repo, tag string, c *index.Content) {
	t.Helper()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	assert.Equal(t, c.List.Data, reg.manifests[repo][tag], "the tag names the list")
	for _, img := range c.Images {
		assert.Equal(t, img.Manifest.Data, reg.manifests[repo][img.Manifest.Digest.String()])
		assert.Equal(t, img.Config.Data, reg.blobs[repo][img.Config.Digest])
	}
	for _, l := range c.Layers {
		assert.Equal(t, l.Data, reg.blobs[repo][l.Digest])
	}
}

func TestPushAndPushAgain(t *testing.T) {
	for _, format := range []index.Format{index.Docker, index.OCI} {
		t.Run(string(format), func(t *testing.T) {
			c := testcontent.Content(t, index.Options{Format: format})
			reg := newTestRegistry(t)
			res, err := push.Push(context.Background(), c, ref(t, reg, "team/q:v1"), fast())
			require.NoError(t, err)
			assert.Equal(t, c.List.Digest, res.Digest)
			assert.Equal(t, blobCount(c), res.Uploaded)
			assertPushed(t, reg, "team/q", "v1", c)
			assert.Equal(t, "PUT manifest v1", reg.requests[len(reg.requests)-1], "the tag is pushed last")
			assert.Equal(t, blobCount(c), reg.count("PUT blob"), "monolithic uploads")
			assert.Zero(t, reg.count("PATCH chunk"))

			res, err = push.Push(context.Background(), c, ref(t, reg, "team/q:v1"), fast())
			require.NoError(t, err)
			assert.Zero(t, res.Uploaded)
			assert.Equal(t, blobCount(c), res.Existing)
			assert.Equal(t, blobCount(c), reg.count("PUT blob"), "no blob uploaded again")
		})
	}
}

func TestChunkedUploads(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	tests := []struct {
		name          string
		maxMonolithic int64
		chunkMin      int64
		chunkSize     int64
		wantTooLarge  bool
	}{
		{"registry refuses large monolithic uploads", 4096, 0, 256 << 10, true},
		{"registry asks for chunks of a minimum size", 0, 300 << 10, 64 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.maxMonolithic, reg.chunkMin = tt.maxMonolithic, tt.chunkMin
			opts := fast()
			opts.ChunkSize = tt.chunkSize
			res, err := push.Push(context.Background(), c, ref(t, reg, "q:latest"), opts)
			require.NoError(t, err)
			assert.Equal(t, c.List.Digest, res.Digest)
			assertPushed(t, reg, "q", "latest", c)
			assert.Positive(t, reg.count("PATCH chunk"))
			assert.Equal(t, tt.wantTooLarge, reg.count("PUT too large") > 0)
			if tt.chunkMin > 0 {
				// every blob's last chunk may be short, no other
				assert.LessOrEqual(t, reg.count("PATCH short"), blobCount(c))
			}
		})
	}
}

func TestMountFrom(t *testing.T) {
	for _, auth := range []string{"", "bearer"} {
		t.Run("auth="+auth, func(t *testing.T) {
			c := testcontent.Content(t, index.Options{Format: index.Docker})
			reg := newTestRegistry(t)
			reg.auth, reg.user, reg.password = auth, "u", "p"
			opts := fast()
			opts.Credentials = push.Static(push.Credential{Username: "u", Password: "p"})
			_, err := push.Push(context.Background(), c, ref(t, reg, "base/q:v1"), opts)
			require.NoError(t, err)
			opts.MountFrom = "base/q"
			res, err := push.Push(context.Background(), c, ref(t, reg, "team/q:v1"), opts)
			require.NoError(t, err)
			assert.Equal(t, blobCount(c), res.Mounted)
			assert.Zero(t, res.Uploaded)
			assertPushed(t, reg, "team/q", "v1", c)
		})
	}
}

func TestAuth(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	good := push.Credential{Username: "alice", Password: "s3cret"}
	tests := []struct {
		name    string
		auth    string
		creds   push.Credential
		wantErr string
	}{
		{"basic", "basic", good, ""},
		{"bearer", "bearer", good, ""},
		{"basic, wrong password", "basic", push.Credential{Username: "alice", Password: "nope"}, "401 Unauthorized: credentials rejected"},
		{"bearer, wrong password", "bearer", push.Credential{Username: "alice", Password: "nope"}, "401 Unauthorized from the token service: credentials rejected"},
		{"basic, no credentials", "basic", push.Credential{}, "authentication required"},
		{"bearer, no credentials", "bearer", push.Credential{}, "authentication required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			reg.auth, reg.user, reg.password = tt.auth, good.Username, good.Password
			opts := fast()
			opts.Credentials = push.Static(tt.creds)
			res, err := push.Push(context.Background(), c, ref(t, reg, "team/q:v1"), opts)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				assert.NotContains(t, err.Error(), "\n")
				assert.Nil(t, reg.manifests["team/q"]["v1"], "no tag")
				assert.Zero(t, reg.uploadRequests(), "fails before any upload")
				return
			}
			require.NoError(t, err)
			assert.Positive(t, reg.uploadRequests(), "upload requests are counted")
			assert.Equal(t, c.List.Digest, res.Digest)
			assertPushed(t, reg, "team/q", "v1", c)
			if tt.auth == "bearer" {
				assert.Equal(t, map[string]int{"repository:team/q:pull,push": 1}, reg.tokens, "one token, cached and shared")
			}
		})
	}
}

func TestRetries(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	tests := []struct {
		name     string
		fault    func(n int64, w http.ResponseWriter, r *http.Request) bool
		minTime  time.Duration
		attempts int64
	}{
		{"429 with Retry-After", func(n int64, w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodHead && n == 1 {
				w.Header().Set("Retry-After", "1")
				w.WriteHeader(http.StatusTooManyRequests)
				return true
			}
			return false
		}, time.Second, 1},
		{"503 on uploads", func(n int64, w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/uploads/") && n <= 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return true
			}
			return false
		}, 0, 3},
		{"dropped connections", func(n int64, w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut && n <= 2 {
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			}
			return false
		}, 0, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			var n atomic.Int64
			reg.fault = func(w http.ResponseWriter, r *http.Request) bool {
				if tt.fault(n.Load()+1, w, r) {
					n.Add(1)
					return true
				}
				return false
			}
			start := time.Now()
			res, err := push.Push(context.Background(), c, ref(t, reg, "q:latest"), fast())
			require.NoError(t, err)
			assert.Equal(t, c.List.Digest, res.Digest)
			assert.Equal(t, tt.attempts, n.Load(), "faults injected")
			assert.GreaterOrEqual(t, time.Since(start), tt.minTime)
			assertPushed(t, reg, "q", "latest", c)
		})
	}

	t.Run("gives up", func(t *testing.T) {
		reg := newTestRegistry(t)
		reg.fault = func(w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodPut {
				w.WriteHeader(http.StatusBadGateway)
				return true
			}
			return false
		}
		opts := fast()
		opts.Retries = 2
		opts.Concurrency = 1 // one blob at a time: the first one's attempts are all there are
		_, err := push.Push(context.Background(), c, ref(t, reg, "q:latest"), opts)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "502 Bad Gateway")
		assert.Nil(t, reg.manifests["q"]["latest"])
		assert.Equal(t, opts.Retries+1, reg.putUploads(), "one attempt and --retries retries")
	})
}

func TestRefusals(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.OCI})
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedHost := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name    string
		setup   func(reg *testRegistry) push.Reference
		opts    func(o *push.Options)
		wantErr string
	}{
		{"refused list type", func(reg *testRegistry) push.Reference {
			reg.refuseTypes = map[string]bool{c.List.MediaType: true}
			return ref(t, reg, "q:v1")
		}, nil, "registry refused the manifest list (application/vnd.oci.image.index.v1+json): 400 Bad Request (MANIFEST_INVALID: manifest invalid)"},
		{"refused manifest type", func(reg *testRegistry) push.Reference {
			reg.refuseTypes = map[string]bool{c.Images[0].Manifest.MediaType: true}
			return ref(t, reg, "q:v1")
		}, nil, "registry refused the linux/amd64 manifest"},
		{"refused blob", func(reg *testRegistry) push.Reference {
			reg.fault = func(w http.ResponseWriter, r *http.Request) bool {
				if r.Method == http.MethodPost {
					regError(w, http.StatusForbidden, "DENIED", "requested access to the resource is denied")
					return true
				}
				return false
			}
			return ref(t, reg, "q:v1")
		}, nil, "403 Forbidden (DENIED: requested access to the resource is denied): no permission to push here"},
		{"unreachable", func(reg *testRegistry) push.Reference {
			r, err := push.ParseReference(closedHost + "/q:v1")
			require.NoError(t, err)
			return r
		}, nil, "cannot reach " + closedHost + ": connection refused"},
		{"plain HTTP without --insecure", func(reg *testRegistry) push.Reference { return ref(t, reg, "q:v1") },
			func(o *push.Options) { o.Insecure = false }, "speaks plain HTTP (use --insecure)"},
		{"not a registry", func(reg *testRegistry) push.Reference {
			reg.fault = func(w http.ResponseWriter, r *http.Request) bool { http.NotFound(w, r); return true }
			return ref(t, reg, "q:v1")
		}, nil, "does not look like a registry: GET /v2/ answered 404 Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t)
			r := tt.setup(reg)
			opts := fast()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := push.Push(context.Background(), c, r, opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.NotContains(t, err.Error(), "\n")
			assert.Nil(t, reg.manifests["q"]["v1"], "no tag")
		})
	}
}

func TestProgress(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	reg := newTestRegistry(t)
	var out strings.Builder
	opts := fast()
	opts.Progress = push.NewProgress(&lockedWriter{w: &out}, false)
	_, err := push.Push(context.Background(), c, ref(t, reg, "q:latest"), opts)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	assert.Len(t, lines, blobCount(c))
	for _, l := range lines {
		assert.Regexp(t, `^[0-9a-f]{12}: pushed \d+(\.\d)? (B|KiB|MiB) in \S+ \(\S+ \S+/s\)$`, l)
	}
}

// lockedWriter is safe for the progress lines of concurrent blobs.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestDockerConfigCredentials reads real config.json files and runs a
// real credential helper program.
func TestDockerConfigCredentials(t *testing.T) {
	bin := t.TempDir()
	helper := "#!/bin/sh\nread host\ncase \"$host\" in\n" +
		"  helped.example.com) echo '{\"ServerURL\":\"helped.example.com\",\"Username\":\"hu\",\"Secret\":\"hs\"}' ;;\n" +
		"  token.example.com) echo '{\"Username\":\"<token>\",\"Secret\":\"refresh\"}' ;;\n" +
		"  *) echo 'credentials not found in native keychain'; exit 1 ;;\nesac\n"
	require.NoError(t, os.WriteFile(filepath.Join(bin, "docker-credential-test"), []byte(helper), 0o755))
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	tests := []struct {
		name    string
		config  string
		host    string
		want    push.Credential
		wantErr string
	}{
		{"auths", `{"auths":{"reg.example.com":{"auth":"dXNlcjpwYTpzcw=="}}}`, "reg.example.com", push.Credential{Username: "user", Password: "pa:ss"}, ""},
		{"auths with a scheme", `{"auths":{"https://reg.example.com/v1/":{"username":"u","password":"p"}}}`, "reg.example.com", push.Credential{Username: "u", Password: "p"}, ""},
		{"docker hub", `{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"}}}`, "docker.io", push.Credential{Username: "u", Password: "p"}, ""},
		{"other host", `{"auths":{"reg.example.com":{"auth":"dTpw"}}}`, "else.example.com", push.Credential{}, ""},
		{"credHelpers", `{"credHelpers":{"helped.example.com":"test"}}`, "helped.example.com", push.Credential{Username: "hu", Password: "hs"}, ""},
		{"credsStore", `{"credsStore":"test"}`, "helped.example.com", push.Credential{Username: "hu", Password: "hs"}, ""},
		{"identity token", `{"credsStore":"test"}`, "token.example.com", push.Credential{IdentityToken: "refresh"}, ""},
		{"helper has none", `{"credsStore":"test","auths":{"else.example.com":{"auth":"dTpw"}}}`, "else.example.com", push.Credential{Username: "u", Password: "p"}, ""},
		{"helper missing", `{"credsStore":"nosuch"}`, "reg.example.com", push.Credential{}, "credential helper docker-credential-nosuch is not installed"},
		{"bad JSON", `{"auths":`, "reg.example.com", push.Credential{}, "cannot parse"},
		{"bad auth", `{"auths":{"reg.example.com":{"auth":"%%%"}}}`, "reg.example.com", push.Credential{}, "not base64"},
		{"no file", "", "reg.example.com", push.Credential{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.config != "" {
				require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(tt.config), 0o600))
			}
			got, err := push.DockerConfig(dir)(context.Background(), tt.host)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestTLS(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	reg := newTLSTestRegistry(t)
	opts := push.Options{Backoff: time.Millisecond}
	_, err := push.Push(context.Background(), c, ref(t, reg, "q:v1"), opts)
	require.Error(t, err, "an unknown CA is refused")
	assert.Contains(t, err.Error(), "certificate signed by unknown authority (use --ca-file for a private CA)")
	assert.NotContains(t, err.Error(), "\n")

	opts.HTTP = reg.srv.Client() // trusts the test CA
	res, err := push.Push(context.Background(), c, ref(t, reg, "q:v1"), opts)
	require.NoError(t, err)
	assert.Equal(t, c.List.Digest, res.Digest)
	assertPushed(t, reg, "q", "v1", c)
}

func TestProgressOnATerminal(t *testing.T) {
	c := testcontent.Content(t, index.Options{Format: index.Docker})
	reg := newTestRegistry(t)
	out := &lockedWriter{w: &strings.Builder{}}
	opts := fast()
	opts.Progress = push.NewProgress(out, true)
	_, err := push.Push(context.Background(), c, ref(t, reg, "q:latest"), opts)
	require.NoError(t, err)
	text := out.w.String()
	// The last redraw holds one finished line per blob, each cleared first.
	last := text
	if i := strings.LastIndex(text, "\x1b["+strconv.Itoa(blobCount(c))+"A"); i >= 0 {
		last = text[i:]
	}
	assert.Equal(t, blobCount(c), strings.Count(last, "\r\x1b[K"))
	assert.Equal(t, blobCount(c), strings.Count(last, ": pushed "))
}

func TestPushSBOMs(t *testing.T) {
	for _, subjects := range []bool{true, false} {
		t.Run(fmt.Sprintf("OCI-Subject=%v", subjects), func(t *testing.T) {
			c := testcontent.AttachSBOMs(t, testcontent.Content(t, index.Options{Format: index.OCI}))
			reg := newTestRegistry(t)
			reg.subjects = subjects
			// An earlier referrer of the first image, from someone else, stays.
			sig := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sig"}`)
			other := index.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: digest.FromBytes(sig), Size: int64(len(sig)), ArtifactType: "application/vnd.example.sig"}
			first := c.Images[0].Manifest.Digest
			old, err := json.Marshal(index.List{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []index.Descriptor{other}})
			require.NoError(t, err)
			reg.manifests["team/q"] = map[string][]byte{push.ReferrersTag(first): old, other.Digest.String(): sig}
			reg.blobs["team/q"] = map[digest.Digest][]byte{}

			res, err := push.Push(context.Background(), c, ref(t, reg, "team/q:v1"), fast())
			require.NoError(t, err)
			assertPushed(t, reg, "team/q", "v1", c)
			assert.Equal(t, blobCount(c)+1+len(c.Images), res.Uploaded, "the empty config once and one document per image")
			assert.Equal(t, "PUT manifest v1", reg.requests[len(reg.requests)-1], "the tag is pushed last")

			reg.mu.Lock()
			defer reg.mu.Unlock()
			lastImage, firstArtifact := -1, len(reg.requests)
			for i, r := range reg.requests {
				for _, img := range c.Images {
					if r == "PUT manifest "+img.Manifest.Digest.String() {
						lastImage = i
					}
				}
				for _, a := range c.Artifacts {
					if r == "PUT manifest "+a.Manifest.Digest.String() {
						firstArtifact = min(firstArtifact, i)
					}
				}
			}
			assert.Less(t, lastImage, firstArtifact, "artifacts go after the platform manifests")
			for _, a := range c.Artifacts {
				assert.Equal(t, a.Manifest.Data, reg.manifests["team/q"][a.Manifest.Digest.String()])
				for _, b := range a.Blobs {
					assert.Equal(t, b.Data, reg.blobs["team/q"][b.Digest])
				}
				tagged, ok := reg.manifests["team/q"][push.ReferrersTag(a.Subject)]
				if subjects {
					assert.Zero(t, res.ReferrersTags)
					if a.Subject != first {
						assert.False(t, ok, "no referrers tag when the registry answers OCI-Subject")
					}
					continue
				}
				assert.Equal(t, len(c.Images), res.ReferrersTags)
				require.True(t, ok, "referrers tag of %s", a.Subject)
				var idx index.List
				require.NoError(t, json.Unmarshal(tagged, &idx))
				want := []index.Descriptor{a.Descriptor()}
				if a.Subject == first {
					want = []index.Descriptor{other, a.Descriptor()}
				}
				assert.Equal(t, want, idx.Manifests)
			}
		})
	}
}

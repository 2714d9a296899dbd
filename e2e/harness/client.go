package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Media types of manifests and lists, as clients send them in Accept.
const (
	DockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	DockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	OCIIndex       = "application/vnd.oci.image.index.v1+json"
	OCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	// ListAccept is the Accept header docker sends to resolve a tag.
	ListAccept = DockerList + ", " + OCIIndex + ", " + DockerManifest + ", " + OCIManifest
)

// Response is an HTTP answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends method to url with the headers given as name, value pairs and
// reads the whole answer. A transport error fails the test.
func Do(t testing.TB, method, url string, headers ...string) Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// ListDigest returns the digest served for repo:latest at addr, asked as
// docker asks (HEAD, with every manifest type in Accept).
func ListDigest(t testing.TB, addr, repo string) string {
	t.Helper()
	r := Do(t, http.MethodHead, "http://"+addr+"/v2/"+repo+"/manifests/latest", "Accept", ListAccept)
	if r.Status != http.StatusOK {
		t.Fatalf("HEAD %s/%s:latest: status %d", addr, repo, r.Status)
	}
	return r.Header.Get("Docker-Content-Digest")
}

// Ref parses an image reference on a plain-HTTP registry.
func Ref(t testing.TB, ref string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatalf("reference %s: %v", ref, err)
	}
	return r
}

// Index fetches and decodes the list (a Docker manifest list or an OCI
// index) at ref, with go-containerregistry's client.
func Index(t testing.TB, ref string) (*v1.IndexManifest, v1.Hash) {
	t.Helper()
	idx, err := remote.Index(Ref(t, ref))
	if err != nil {
		t.Fatalf("fetching the list %s: %v", ref, err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("decoding the list %s: %v", ref, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return m, d
}

// Image fetches the image for platform (such as "linux/arm64") at ref.
func Image(t testing.TB, ref, platform string) v1.Image {
	t.Helper()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(Ref(t, ref), remote.WithPlatform(*p))
	if err != nil {
		t.Fatalf("fetching the %s image of %s: %v", platform, ref, err)
	}
	return img
}

// Platforms returns the list's platforms as os/arch[/variant] strings, in
// order.
func Platforms(m *v1.IndexManifest) []string {
	var out []string
	for _, d := range m.Manifests {
		if d.Platform == nil {
			out = append(out, "(none)")
			continue
		}
		out = append(out, d.Platform.String())
	}
	return out
}

// Run runs a command with the test's environment and returns its standard
// output; a non-zero exit fails the test, showing what it printed.
func Run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := RunErr(argv...)
	if err != nil {
		t.Fatalf("%v: %v", argv, err)
	}
	return out
}

// RunErr runs a command and returns its standard output; the error carries
// the exit status and standard error.
func RunErr(argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &RunError{Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// RunError is a command's failure with what it printed on standard error.
type RunError struct {
	Err    error
	Stderr string
}

func (e *RunError) Error() string { return e.Err.Error() + ": " + e.Stderr }

// JSON decodes data into a value of type T, failing the test on bad JSON.
func JSON[T any](t testing.TB, what string, data []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %s: %v\n%s", what, err, data)
	}
	return v
}

// DigestOf returns the sha256 digest of b, as a registry names it.
func DigestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

package registry

import (
	"encoding/json"
	"errors"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/quinistry/quinistry/index"
)

// errorCodes is the error table, by code.
var errorCodes = map[string]ErrorCode{}

func init() {
	for _, e := range []ErrorCode{
		ErrNameUnknown, ErrManifestUnknown, ErrBlobUnknown, ErrNotFound, ErrNameInvalid,
		ErrDigestInvalid, ErrPaginationInvalid, ErrRangeInvalid,
		ErrUnsupported, ErrTooManyRequests,
	} {
		errorCodes[e.Code] = e
	}
}

// FuzzParseRoute sends fuzzed request paths (with their queries) through the
// whole handler. It must never panic or answer 5xx; every answer names the
// API version; every error is the spec's JSON with a code of the table sent
// with its status; and every 200 that names a digest carries bytes hashing
// to it.
func FuzzParseRoute(f *testing.F) {
	c := buildContent(f, index.OCI)
	reg := New(c, testName, testTags, nil)

	// Real digests depend on index's encoding, so they are seeded here
	// rather than in testdata.
	f.Add(manifestPath(c.List.Digest.String()))
	for _, img := range c.Images {
		f.Add(manifestPath(img.Manifest.Digest.String()))
		f.Add(blobPath(img.Config.Digest.String()))
	}
	for _, l := range c.Layers {
		f.Add(blobPath(l.Digest.String()))
		f.Add("/v2/" + testName + "/referrers/" + l.Digest.String() + "?artifactType=x")
	}

	f.Fuzz(func(t *testing.T, target string) {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		u, err := url.ParseRequestURI(target)
		if err != nil {
			// Not a request URI a server would parse: hand the handler the
			// raw string as a path anyway.
			u = &url.URL{Path: target}
		}
		req.URL, req.RequestURI = u, target
		rec := httptest.NewRecorder()
		reg.ServeHTTP(rec, req)

		resp := rec.Result()
		body := rec.Body.Bytes()
		if resp.StatusCode >= 500 || resp.StatusCode < 200 {
			t.Fatalf("%q: status %d", target, resp.StatusCode)
		}
		if got := resp.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
			t.Fatalf("%q: API version %q", target, got)
		}
		if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(body)) {
			t.Fatalf("%q: Content-Length %q for %d bytes", target, cl, len(body))
		}
		if resp.StatusCode >= 400 {
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
				t.Fatalf("%q: error body %q: %v", target, body, err)
			}
			code, ok := errorCodes[e.Errors[0].Code]
			if !ok || code.Status != resp.StatusCode || e.Errors[0].Message != code.Message {
				t.Fatalf("%q: %d with %+v", target, resp.StatusCode, e.Errors[0])
			}
			return
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: unexpected status %d", target, resp.StatusCode)
		}
		if resp.Header.Get("Content-Type") == "" {
			t.Fatalf("%q: 200 without Content-Type", target)
		}
		if d := resp.Header.Get("Docker-Content-Digest"); d != "" {
			if got := sha256Digest(body); got != d {
				t.Fatalf("%q: body hashes to %s, header says %s", target, got, d)
			}
			if etag := resp.Header.Get("Etag"); etag != `"`+d+`"` {
				t.Fatalf("%q: Etag %q for digest %s", target, etag, d)
			}
		} else if !json.Valid(body) {
			t.Fatalf("%q: 200 without a digest and not JSON: %q", target, body)
		}
	})
}

// FuzzParseRange checks parseRange against its invariants and against a
// model written with big integers and a regular expression.
func FuzzParseRange(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec string, size int64) {
		if size < 0 {
			// Blob sizes are never negative.
			return
		}
		got, err := parseRange(spec, size)
		switch {
		case err == nil:
			if got.start < 0 || got.start >= got.end || got.end > size {
				t.Fatalf("parseRange(%q, %d) = [%d, %d)", spec, size, got.start, got.end)
			}
		case errors.Is(err, errUnsatisfiable), errors.Is(err, errBadRange):
			if got != (byteRange{}) {
				t.Fatalf("parseRange(%q, %d) = %+v with %v", spec, size, got, err)
			}
		default:
			t.Fatalf("parseRange(%q, %d): unexpected error %v", spec, size, err)
		}

		want, wantErr := modelRange(spec, size)
		if !errors.Is(err, wantErr) || (err == nil && got != want) {
			t.Fatalf("parseRange(%q, %d) = %+v, %v; model says %+v, %v", spec, size, got, err, want, wantErr)
		}
	})
}

var rangeRE = regexp.MustCompile(`^bytes=(\d*)-(\d*)$`)

// modelRange is parseRange written another way: the regular expression
// finds the numbers, big integers do the arithmetic, and numbers past 19
// digits or MaxInt64 are not served (as parseOffset documents).
func modelRange(spec string, size int64) (byteRange, error) {
	spec = strings.TrimSpace(spec)
	if v, ok := strings.CutPrefix(spec, "bytes="); ok {
		spec = "bytes=" + strings.TrimSpace(v)
	}
	m := rangeRE.FindStringSubmatch(spec)
	if m == nil || (m[1] == "" && m[2] == "") {
		return byteRange{}, errBadRange
	}
	num := func(s string) *big.Int {
		if s == "" || len(s) > 19 {
			return nil
		}
		n, _ := new(big.Int).SetString(s, 10)
		if n.Cmp(big.NewInt(math.MaxInt64)) > 0 {
			return nil
		}
		return n
	}
	bigSize := big.NewInt(size)
	one := big.NewInt(1)
	var start, end *big.Int
	switch {
	case m[1] == "": // suffix
		n := num(m[2])
		if n == nil {
			return byteRange{}, errBadRange
		}
		if n.Sign() == 0 || size == 0 {
			return byteRange{}, errUnsatisfiable
		}
		start = new(big.Int).Sub(bigSize, n)
		if start.Sign() < 0 {
			start.SetInt64(0)
		}
		end = bigSize
	default:
		start = num(m[1])
		if start == nil {
			return byteRange{}, errBadRange
		}
		end = bigSize
		if m[2] != "" {
			last := num(m[2])
			if last == nil || last.Cmp(start) < 0 {
				return byteRange{}, errBadRange
			}
			if e := new(big.Int).Add(last, one); e.Cmp(bigSize) < 0 {
				end = e
			}
		}
		if start.Cmp(bigSize) >= 0 {
			return byteRange{}, errUnsatisfiable
		}
	}
	return byteRange{start: start.Int64(), end: end.Int64()}, nil
}

// TestModelRangeAgrees checks the fuzz model against the hand-written
// answers of the unit table, so that a wrong model cannot hide a bug.
func TestModelRangeAgrees(t *testing.T) {
	for _, tc := range parseRangeCases {
		got, err := modelRange(tc.spec, tc.size)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("model(%q, %d) = %+v, %v; want %v", tc.spec, tc.size, got, err, tc.err)
			}
			continue
		}
		if want := (byteRange{start: tc.start, end: tc.end}); err != nil || got != want {
			t.Errorf("model(%q, %d) = %+v, %v; want %+v", tc.spec, tc.size, got, err, want)
		}
	}
}

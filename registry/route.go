package registry

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// routeKind names an API endpoint.
type routeKind int

const (
	routeBase routeKind = iota
	routeCatalog
	routeManifest
	routeBlob
	routeUpload
	routeTags
	routeReferrers
)

// route is a parsed API request path.
type route struct {
	kind routeKind
	name string
	// ref is a tag or digest (manifests), or a digest (blobs, referrers).
	ref string
}

// Limits on what a path may hold, as the distribution spec and the CNCF
// registry set them.
const (
	maxNameLength = 255
	maxTagLength  = 128
)

var (
	nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// endpoints are the path suffixes after a repository name, tried in order.
var endpoints = []struct {
	marker string
	kind   routeKind
	// exact means the marker ends the path (tags/list); otherwise a
	// reference follows it.
	exact bool
}{
	{"/tags/list", routeTags, true},
	{"/manifests/", routeManifest, false},
	{"/blobs/uploads/", routeUpload, false},
	{"/blobs/uploads", routeUpload, true},
	{"/blobs/", routeBlob, false},
	{"/referrers/", routeReferrers, false},
}

// parseRoute parses the escaped path of an API request. It returns false
// for a path that names no endpoint, and an error for one that names an
// endpoint with an invalid name.
func parseRoute(path string) (route, bool, *apiError) {
	switch path {
	case "/v2", "/v2/":
		return route{kind: routeBase}, true, nil
	case "/v2/_catalog":
		return route{kind: routeCatalog}, true, nil
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok || strings.Contains(rest, "\\") {
		return route{}, false, nil
	}
	for _, e := range endpoints {
		var i int
		if e.exact {
			if !strings.HasSuffix(rest, e.marker) {
				continue
			}
			i = len(rest) - len(e.marker)
		} else if i = strings.LastIndex(rest, e.marker); i < 0 {
			continue
		}
		rt := route{kind: e.kind, name: rest[:i]}
		if strings.Contains(rt.name, "%") {
			return route{}, false, nil
		}
		if !e.exact {
			rt.ref = rest[i+len(e.marker):]
			// Not this endpoint: the marker is part of the name, as in
			// a/manifests/b/blobs/<digest>. Try the others.
			if strings.Contains(rt.ref, "/") || (rt.ref == "" && e.kind != routeUpload) {
				continue
			}
			// A reference may come percent-encoded (sha256%3A...), as
			// some clients write it; the CNCF registry accepts that too.
			if strings.Contains(rt.ref, "%") {
				ref, err := url.PathUnescape(rt.ref)
				if err != nil || ref == "" || strings.Contains(ref, "/") {
					return route{}, false, nil
				}
				rt.ref = ref
			}
		}
		if !ValidName(rt.name) {
			return rt, true, newError(ErrNameInvalid, "invalid repository name")
		}
		return rt, true, nil
	}
	return route{}, false, nil
}

// ValidName reports whether s is a valid repository name.
func ValidName(s string) bool {
	return len(s) <= maxNameLength && nameRE.MatchString(s)
}

// ValidTag reports whether s is a syntactically valid tag.
func ValidTag(s string) bool {
	return len(s) <= maxTagLength && tagRE.MatchString(s)
}

// parseDigest parses a digest, accepting only algorithms the go-digest
// package knows and well-formed encodings.
func parseDigest(s string) (digest.Digest, *apiError) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", newError(ErrDigestInvalid, "invalid digest "+quoteShort(s)+": "+err.Error())
	}
	return d, nil
}

// quoteShort quotes s for an error detail, cut to a readable length.
func quoteShort(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

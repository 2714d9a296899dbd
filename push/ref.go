package push

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/quinistry/quinistry/registry"
)

// Reference names where to push: a registry host, a repository and a tag.
type Reference struct {
	// Host is the registry's host[:port] as written (docker.io for Docker Hub).
	Host string
	// Repository is the repository in that registry (library/x on Docker Hub).
	Repository string
	// Tag is the tag the manifest list is pushed under.
	Tag string
}

// DockerHub is the host a reference with no host names.
const DockerHub = "docker.io"

// String returns the reference as host/repository:tag.
func (r Reference) String() string { return r.Host + "/" + r.Repository + ":" + r.Tag }

// APIHost is the host to send requests to: Docker Hub's API lives on
// another host than its name.
func (r Reference) APIHost() string {
	if r.Host == DockerHub {
		return "registry-1.docker.io"
	}
	return r.Host
}

var hostRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$`)

// ParseReference parses [host[:port]/]repository[:tag] as docker does: the
// first part is a host when it holds a dot or a colon or is localhost;
// otherwise the host is Docker Hub, where a one-part name is under
// library/. The tag defaults to latest. A digest cannot be pushed to.
func ParseReference(s string) (Reference, error) {
	bad := func(why string) (Reference, error) {
		return Reference{}, fmt.Errorf("invalid reference %q: %s", s, why)
	}
	if s == "" {
		return bad("empty")
	}
	if strings.Contains(s, "@") {
		return bad("push needs a tag, not a digest")
	}
	if strings.Contains(s, "://") {
		return bad("give host/repository:tag, without a scheme")
	}
	rest := s
	ref := Reference{Tag: "latest"}
	if i := strings.LastIndex(rest, ":"); i > strings.LastIndex(rest, "/") {
		ref.Tag, rest = rest[i+1:], rest[:i]
		if !registry.ValidTag(ref.Tag) {
			return bad("tag must be letters, digits, . _ - (at most 128, not starting with . or -)")
		}
	}
	first, path, found := strings.Cut(rest, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		ref.Host, rest = first, path
		host, port, err := net.SplitHostPort(first)
		if err != nil {
			host, port = first, ""
		}
		if !hostRE.MatchString(host) && net.ParseIP(strings.Trim(host, "[]")) == nil {
			return bad("bad registry host " + first)
		}
		if strings.Contains(first, ":") && port == "" {
			return bad("bad registry port in " + first)
		}
	} else {
		ref.Host = DockerHub
		if !found {
			rest = "library/" + rest
		}
	}
	if rest == "" {
		return bad("no repository")
	}
	if !registry.ValidName(rest) {
		return bad("repository must be lower-case letters, digits and . _ - separators, parts joined by /")
	}
	ref.Repository = rest
	return ref, nil
}

// Package crossbuild owns the mapping between platforms, the file names of
// quinistry's cross-compiled binaries and the Go build environment, finds
// those binaries beside the running one, and builds them.
package crossbuild

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
)

// BaseName is the prefix every quinistry binary's file name starts with.
const BaseName = "quinistry"

// Platform is an OCI platform: operating system, architecture and an
// optional CPU variant (as in linux/arm/v7).
type Platform struct {
	OS      string
	Arch    string
	Variant string
}

// Supported lists every platform quinistry can be built for, in the order
// its images appear in the manifest list.
var Supported = []Platform{
	{OS: "linux", Arch: "amd64"},
	{OS: "linux", Arch: "arm64"},
	{OS: "linux", Arch: "arm", Variant: "v7"},
	{OS: "linux", Arch: "ppc64le"},
	{OS: "linux", Arch: "s390x"},
	{OS: "linux", Arch: "riscv64"},
}

// DefaultPlatforms are the platforms built when nothing else is asked for.
var DefaultPlatforms = []Platform{Supported[0], Supported[1]}

// String returns the platform as os/arch[/variant].
func (p Platform) String() string {
	if p.Variant != "" {
		return p.OS + "/" + p.Arch + "/" + p.Variant
	}
	return p.OS + "/" + p.Arch
}

// FileName returns the binary's file name: quinistry-os-arch[-variant].
func (p Platform) FileName() string {
	return BaseName + "-" + strings.ReplaceAll(p.String(), "/", "-")
}

// ImageVariant returns the variant written into image configs and the
// manifest list. arm64 is always written as v8, as the official images on
// Docker Hub do; clients treat arm64 and arm64/v8 as the same platform.
func (p Platform) ImageVariant() string {
	if p.Arch == "arm64" && p.Variant == "" {
		return "v8"
	}
	return p.Variant
}

// GoEnv returns the environment variables that make `go build` target p.
func (p Platform) GoEnv() []string {
	env := []string{"GOOS=" + p.OS, "GOARCH=" + p.Arch}
	if p.Arch == "arm" {
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	return env
}

// supported reports whether p is one of Supported.
func (p Platform) supported() bool {
	return slices.Contains(Supported, p)
}

// order returns p's position in Supported, which orders images.
func (p Platform) order() int {
	return slices.Index(Supported, p)
}

// ParsePlatform parses os/arch[/variant] and checks that quinistry supports
// it. "aarch64" is accepted for arm64 and arm64/v8 for arm64.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(strings.TrimSpace(s), "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	if p.Arch == "aarch64" {
		p.Arch = "arm64"
	}
	if p.Arch == "arm64" && p.Variant == "v8" {
		p.Variant = ""
	}
	if p.Arch == "arm" && p.Variant == "" {
		p.Variant = "v7"
	}
	if !p.supported() {
		return Platform{}, fmt.Errorf("platform %q is not supported (supported: %s)", s, Join(Supported))
	}
	return p, nil
}

// ParsePlatforms parses a list of platforms separated by commas or spaces.
// Duplicates are dropped; the result keeps the order of Supported.
func ParsePlatforms(list string) ([]Platform, error) {
	var out []Platform
	for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		p, err := ParsePlatform(f)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no platforms in %q", list)
	}
	Sort(out)
	return out, nil
}

// ParseFileName returns the platform a binary's file name stands for, and
// false when the name does not follow the quinistry-os-arch[-variant] rule
// or names an unsupported platform.
func ParseFileName(name string) (Platform, bool) {
	for _, p := range Supported {
		if p.FileName() == name {
			return p, true
		}
	}
	return Platform{}, false
}

// Sort orders platforms as Supported does.
func Sort(ps []Platform) {
	slices.SortFunc(ps, func(a, b Platform) int { return a.order() - b.order() })
}

// Join returns the platforms as a comma-separated list.
func Join(ps []Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// Current returns the platform the running binary was built for.
func Current() Platform {
	p := Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	if p.Arch == "arm" {
		p.Variant = "v7"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "GOARM" && s.Value != "" {
					p.Variant = "v" + strings.SplitN(s.Value, ",", 2)[0]
				}
			}
		}
	}
	return p
}

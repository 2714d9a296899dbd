package crossbuild

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
)

// Binary is one quinistry executable for one platform.
type Binary struct {
	Platform Platform
	// Path is where the binary is read from.
	Path string
	// Info is the binary's Go build information (never nil).
	Info *debug.BuildInfo
}

// Discovery tells Discover where to look and what to keep.
type Discovery struct {
	// Self is the path of the running executable; its platform is Current().
	Self string
	// Dir is the directory searched for siblings.
	Dir string
	// Platforms, when not empty, limits the result to these platforms, each
	// of which must then be found.
	Platforms []Platform
	// Warn is called once for every candidate that is skipped.
	Warn func(msg string)
}

// Discover returns the running binary and every sibling in d.Dir whose name
// follows the quinistry-os-arch[-variant] rule and whose ELF header agrees
// with that name, ordered as Supported. The running binary always stands for
// its own platform, whatever name it was started under. Siblings that fail
// the checks are skipped with one warning each.
func Discover(d Discovery) ([]Binary, error) {
	warn := d.Warn
	if warn == nil {
		warn = func(string) {}
	}
	self := Current()
	selfInfo, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, fmt.Errorf("the running binary has no Go build information")
	}
	if _, err := os.Stat(d.Self); err != nil {
		return nil, fmt.Errorf("cannot read the running binary: %w", err)
	}
	found := map[Platform]Binary{self: {Platform: self, Path: d.Self, Info: selfInfo}}

	entries, err := os.ReadDir(d.Dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read siblings directory: %w", err)
	}
	selfAbs, _ := filepath.EvalSymlinks(d.Self)
	for _, e := range entries {
		p, ok := ParseFileName(e.Name())
		if !ok {
			continue
		}
		path := filepath.Join(d.Dir, e.Name())
		if p == self {
			if abs, _ := filepath.EvalSymlinks(path); abs != selfAbs {
				warn(fmt.Sprintf("skipping %s: the running binary stands for %s", path, p))
			}
			continue
		}
		if err := CheckELF(path, p); err != nil {
			warn("skipping " + err.Error())
			continue
		}
		info, err := buildinfo.ReadFile(path)
		if err != nil {
			warn(fmt.Sprintf("skipping %s: no Go build information: %v", path, err))
			continue
		}
		found[p] = Binary{Platform: p, Path: path, Info: info}
	}

	var out []Binary
	for _, p := range Supported {
		b, ok := found[p]
		if !ok {
			continue
		}
		if len(d.Platforms) == 0 || slices.Contains(d.Platforms, p) {
			out = append(out, b)
		}
	}
	for _, p := range d.Platforms {
		if _, ok := found[p]; !ok {
			return nil, fmt.Errorf("no binary for %s: expected %s in %s", p, p.FileName(), d.Dir)
		}
	}
	return out, nil
}

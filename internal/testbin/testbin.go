// Package testbin cross-compiles tiny static Go programs for tests that need
// real executables of other platforms: ELF checks, discovery and packing.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/quinistry/quinistry/crossbuild"
)

var (
	mu       sync.Mutex
	dir      string
	revision string
	built    = map[crossbuild.Platform]string{}
)

// The test program's module and the commit it is built from. The commit has
// fixed contents, author and dates, so its hash, and with it every binary's
// bytes, is the same on every run.
const (
	// ModulePath is the main module path recorded in every test binary.
	ModulePath = "github.com/quinistry/testbin"
	// CommitTime is the vcs.time recorded in every test binary.
	CommitTime = "2026-11-27T10:00:00Z"

	program = "package main\n\nfunc main() { println(\"hello from a quinistry test binary\") }\n"
)

// Build returns the path of a static binary for p, compiled once per test
// process from a git commit, so that its build information holds real
// vcs.revision, vcs.time and vcs.modified settings (see Revision), as a
// release build's does. Tests must not modify the file; copy it first.
func Build(t testing.TB, p crossbuild.Platform) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if path, ok := built[p]; ok {
		return path
	}
	if dir == "" {
		d, rev, err := newSourceRepo()
		if err != nil {
			t.Fatal(err)
		}
		dir, revision = d, rev
	}
	out := filepath.Join(dir, p.FileName())
	cmd := exec.Command("go", "build", "-buildvcs=true", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = filepath.Join(dir, "src")
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS="), p.GoEnv()...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a test binary for %s: %v\n%s", p, err, msg)
	}
	built[p] = out
	return out
}

// Revision returns the vcs.revision recorded in the binaries Build makes.
func Revision(t testing.TB) string {
	t.Helper()
	Build(t, crossbuild.Current())
	mu.Lock()
	defer mu.Unlock()
	return revision
}

// newSourceRepo writes the test program into dir/src, commits it with a
// fixed author and date, and returns dir and the commit's hash.
func newSourceRepo() (string, string, error) {
	d, err := os.MkdirTemp("", "quinistry-testbin-")
	if err != nil {
		return "", "", err
	}
	src := filepath.Join(d, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", "", err
	}
	for name, text := range map[string]string{"go.mod": "module " + ModulePath + "\n\ngo 1.21\n", "main.go": program} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
			return "", "", err
		}
	}
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_NAME=quinistry", "GIT_AUTHOR_EMAIL=test@quinistry.invalid", "GIT_AUTHOR_DATE="+CommitTime,
			"GIT_COMMITTER_NAME=quinistry", "GIT_COMMITTER_EMAIL=test@quinistry.invalid", "GIT_COMMITTER_DATE="+CommitTime)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "."}, {"commit", "-q", "-m", "test binary"}} {
		if _, err := git(args...); err != nil {
			return "", "", err
		}
	}
	rev, err := git("rev-parse", "HEAD")
	return d, rev, err
}

// Copy copies the file at src to dst with mode 0755.
func Copy(t testing.TB, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

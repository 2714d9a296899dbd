// Package testbin cross-compiles tiny static Go programs for tests that need
// real executables of other platforms: ELF checks, discovery and packing.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/quinistry/quinistry/crossbuild"
)

var (
	mu    sync.Mutex
	dir   string
	built = map[crossbuild.Platform]string{}
)

const program = "package main\n\nfunc main() { println(\"hello from a quinistry test binary\") }\n"

// Build returns the path of a static binary for p, compiled once per test
// process. Tests must not modify the file; copy it first.
func Build(t testing.TB, p crossbuild.Platform) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if path, ok := built[p]; ok {
		return path
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "quinistry-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		for name, text := range map[string]string{"go.mod": "module hello\n\ngo 1.21\n", "main.go": program} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dir = d
	}
	out := filepath.Join(dir, p.FileName())
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false"), p.GoEnv()...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building a test binary for %s: %v\n%s", p, err, msg)
	}
	built[p] = out
	return out
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

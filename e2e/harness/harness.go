// Package harness starts, watches and stops what quinistry's end-to-end tests
// drive: quinistry generations (as a user starts them, or exactly as a
// container runtime starts its image), the tools of .tools/bin, and the check
// that a suite left nothing behind. Bringing up daemons, namespaces, the
// cluster and the arm64 machine stays in scripts/; this package only calls it.
package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Root returns the repository's root directory: the parent of the e2e module.
func Root() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("harness: cannot find its own source file")
	}
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// ToolsBin returns the directory that scripts/install-tools.sh installs the
// pinned Go tools into.
func ToolsBin() string { return filepath.Join(Root(), ".tools", "bin") }

// Tool returns the path of the named program, from .tools/bin first and then
// from PATH. A missing tool fails the test: install-tools puts every tool the
// suites need in place, so a missing one is a broken install, not a reason to
// skip.
func Tool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(ToolsBin(), name)
	if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (scripts/install-tools.sh installs it): %v", name, err)
	}
	return p
}

// TempDir returns a new directory that every user may traverse (mode 0711),
// so that a generation started as the image's user (65532) reaches the file
// system exported into it. It is removed when the test ends.
func TempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(sharedTemp(t), sanitize(t.Name())+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// RemoveTemp removes the directory TempDir made its folders in. TestMain calls
// it after the tests have run.
func RemoveTemp() {
	if tempDir != "" {
		os.RemoveAll(tempDir)
	}
}

func sanitize(name string) string {
	name = strings.NewReplacer("/", "_", " ", "_", ":", "_").Replace(name)
	if len(name) > 60 {
		name = name[:60]
	}
	return name
}

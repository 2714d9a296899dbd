package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// DefaultPlatforms are the platforms scripts/build.sh builds by default.
var DefaultPlatforms = []string{"linux/amd64", "linux/arm64"}

// AllPlatforms are every platform quinistry supports.
var AllPlatforms = []string{"linux/amd64", "linux/arm64", "linux/arm/v7", "linux/ppc64le", "linux/s390x", "linux/riscv64"}

var (
	tempOnce sync.Once
	tempDir  string
	tempErr  error

	distMu sync.Mutex
	dists  = map[string]string{}
)

// Dist cross-compiles quinistry for platforms (DefaultPlatforms when none are
// given) with the crossbuild command that scripts/build.sh runs, once per
// test process and set of platforms, and returns the directory that holds
// the binaries, named as sibling discovery expects
// (quinistry-linux-amd64, quinistry-linux-arm-v7, ...).
func Dist(t testing.TB, platforms ...string) string {
	t.Helper()
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	key := strings.Join(platforms, " ")
	distMu.Lock()
	defer distMu.Unlock()
	if dir, ok := dists[key]; ok {
		return dir
	}
	dir := filepath.Join(sharedTemp(t), "dist-"+strings.NewReplacer("/", "-", " ", "_").Replace(key))
	BuildInto(t, dir, platforms...)
	dists[key] = dir
	return dir
}

// BuildInto cross-compiles quinistry for platforms into dir, as Dist does but
// every time: two builds compared byte for byte prove the build reproducible.
func BuildInto(t testing.TB, dir string, platforms ...string) {
	t.Helper()
	if len(platforms) == 0 {
		platforms = DefaultPlatforms
	}
	cmd := exec.Command("go", "run", "./crossbuild/cmd/crossbuild", "-out", dir, "-platforms", strings.Join(platforms, " "))
	cmd.Dir = Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building quinistry for %s into %s: %v\n%s", strings.Join(platforms, " "), dir, err, out)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// Binary returns the path of the binary for platform (such as
// "linux/arm/v7") in dist.
func Binary(dist, platform string) string {
	return filepath.Join(dist, "quinistry-"+strings.ReplaceAll(platform, "/", "-"))
}

// Files returns the names of the files in dir, sorted.
func Files(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

// sharedTemp is a directory that lives as long as the test process (until
// RemoveTemp), for what is built once and shared by tests.
func sharedTemp(t testing.TB) string {
	t.Helper()
	tempOnce.Do(func() {
		tempDir, tempErr = os.MkdirTemp("", "quinistry-e2e-")
		if tempErr == nil {
			tempErr = os.Chmod(tempDir, 0o711)
		}
	})
	if tempErr != nil {
		t.Fatal(tempErr)
	}
	return tempDir
}

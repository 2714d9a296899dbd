package crossbuild_test

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/quinistry/quinistry/crossbuild"
	"github.com/quinistry/quinistry/internal/testbin"
)

// discoveryDir makes a directory as a user's dist/ might look, with the
// running test binary standing in as "self".
func discoveryDir(t *testing.T) (dir, self string) {
	t.Helper()
	dir = t.TempDir()
	exe, err := os.Executable()
	require.NoError(t, err)
	self = filepath.Join(dir, "quinistry") // started under a non-canonical name
	testbin.Copy(t, exe, self)
	return dir, self
}

func TestDiscoverFindsSiblingsAndSkipsBadOnes(t *testing.T) {
	if crossbuild.Current() != amd64 {
		t.Skip("the test lays out siblings for an amd64 host")
	}
	dir, self := discoveryDir(t)
	testbin.Copy(t, testbin.Build(t, arm64), filepath.Join(dir, arm64.FileName()))
	testbin.Copy(t, testbin.Build(t, arm64), filepath.Join(dir, "quinistry-linux-s390x")) // wrong arch
	require.NoError(t, os.WriteFile(filepath.Join(dir, "quinistry-linux-riscv64"), nil, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "quinistry-linux-arm64.sha256"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o644))
	testbin.Copy(t, testbin.Build(t, amd64), filepath.Join(dir, amd64.FileName())) // shadowed by self

	var warnings []string
	bins, err := crossbuild.Discover(crossbuild.Discovery{Self: self, Dir: dir, Warn: func(m string) { warnings = append(warnings, m) }})
	require.NoError(t, err)
	require.Len(t, bins, 2)
	assert.Equal(t, amd64, bins[0].Platform)
	assert.Equal(t, self, bins[0].Path)
	assert.NotNil(t, bins[0].Info)
	assert.Equal(t, arm64, bins[1].Platform)
	assert.Equal(t, filepath.Join(dir, arm64.FileName()), bins[1].Path)
	assert.NotNil(t, bins[1].Info)

	require.Len(t, warnings, 3, "%q", warnings)
	joined := warnings[0] + "\n" + warnings[1] + "\n" + warnings[2]
	assert.Contains(t, joined, "running binary stands for linux/amd64")
	assert.Contains(t, joined, "quinistry-linux-riscv64: empty file")
	assert.Contains(t, joined, "quinistry-linux-s390x: ELF header says EM_AARCH64")
}

func TestDiscoverPlatformFilter(t *testing.T) {
	if crossbuild.Current() != amd64 {
		t.Skip("the test lays out siblings for an amd64 host")
	}
	dir, self := discoveryDir(t)
	testbin.Copy(t, testbin.Build(t, arm64), filepath.Join(dir, arm64.FileName()))

	bins, err := crossbuild.Discover(crossbuild.Discovery{Self: self, Dir: dir, Platforms: []crossbuild.Platform{arm64}})
	require.NoError(t, err)
	require.Len(t, bins, 1)
	assert.Equal(t, arm64, bins[0].Platform)

	_, err = crossbuild.Discover(crossbuild.Discovery{Self: self, Dir: dir, Platforms: []crossbuild.Platform{amd64, armv7}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no binary for linux/arm/v7")
}

func TestDiscoverErrors(t *testing.T) {
	dir, self := discoveryDir(t)
	_, err := crossbuild.Discover(crossbuild.Discovery{Self: self, Dir: filepath.Join(dir, "missing")})
	assert.ErrorContains(t, err, "cannot read siblings directory")
	_, err = crossbuild.Discover(crossbuild.Discovery{Self: filepath.Join(dir, "gone"), Dir: dir})
	assert.ErrorContains(t, err, "cannot read the running binary")
}

// TestDiscoverReadsEachSiblingsOwnBuildInfo: every sibling comes with the
// build information read from its own file (its GOARCH, its main module),
// not the running binary's, which only the running binary's own platform
// gets. Each platform's SBOM is made from it. Runs on any host: the siblings
// are the supported platforms other than the host's.
func TestDiscoverReadsEachSiblingsOwnBuildInfo(t *testing.T) {
	dir, self := discoveryDir(t)
	var others []crossbuild.Platform
	for _, p := range []crossbuild.Platform{amd64, arm64, armv7} {
		if p != crossbuild.Current() {
			testbin.Copy(t, testbin.Build(t, p), filepath.Join(dir, p.FileName()))
			others = append(others, p)
		}
	}
	bins, err := crossbuild.Discover(crossbuild.Discovery{Self: self, Dir: dir})
	require.NoError(t, err)
	require.Len(t, bins, len(others)+1)

	selfInfo, ok := debug.ReadBuildInfo()
	require.True(t, ok)
	for _, b := range bins {
		require.NotNil(t, b.Info, b.Platform.String())
		if b.Platform == crossbuild.Current() {
			assert.Equal(t, self, b.Path)
			assert.Equal(t, selfInfo.Main.Path, b.Info.Main.Path)
			assert.Equal(t, runtime.GOARCH, goSetting(b.Info, "GOARCH"))
			continue
		}
		fromFile, err := buildinfo.ReadFile(filepath.Join(dir, b.Platform.FileName()))
		require.NoError(t, err)
		assert.Equal(t, b.Platform.Arch, goSetting(b.Info, "GOARCH"), "%s gets the build settings %v", b.Platform, b.Info.Settings)
		assert.Equal(t, testbin.ModulePath, b.Info.Main.Path, "%s gets the main module of %s", b.Platform, b.Info.Path)
		assert.Equal(t, fromFile.Settings, b.Info.Settings, b.Platform.String())
		assert.Equal(t, fromFile.Main, b.Info.Main, b.Platform.String())
	}
}

// goSetting returns the build setting key of info.
func goSetting(info *debug.BuildInfo, key string) string {
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

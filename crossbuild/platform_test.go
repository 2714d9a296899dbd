package crossbuild

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    Platform
		wantErr string
	}{
		{in: "linux/amd64", want: Platform{OS: "linux", Arch: "amd64"}},
		{in: "linux/arm64", want: Platform{OS: "linux", Arch: "arm64"}},
		{in: "linux/arm64/v8", want: Platform{OS: "linux", Arch: "arm64"}},
		{in: "linux/aarch64", want: Platform{OS: "linux", Arch: "arm64"}},
		{in: "linux/arm/v7", want: Platform{OS: "linux", Arch: "arm", Variant: "v7"}},
		{in: "linux/arm", want: Platform{OS: "linux", Arch: "arm", Variant: "v7"}},
		{in: " linux/s390x ", want: Platform{OS: "linux", Arch: "s390x"}},
		{in: "linux/riscv64", want: Platform{OS: "linux", Arch: "riscv64"}},
		{in: "linux/ppc64le", want: Platform{OS: "linux", Arch: "ppc64le"}},
		{in: "linux/mips", wantErr: "not supported"},
		{in: "windows/amd64", wantErr: "not supported"},
		{in: "linux/arm/v6", wantErr: "not supported"},
		{in: "amd64", wantErr: "want os/arch"},
		{in: "linux/amd64/v2/x", wantErr: "want os/arch"},
		{in: "", wantErr: "want os/arch"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePlatform(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParsePlatforms(t *testing.T) {
	ps, err := ParsePlatforms("linux/arm64, linux/amd64 linux/arm64/v8")
	require.NoError(t, err)
	assert.Equal(t, []Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}}, ps)

	_, err = ParsePlatforms(" , ")
	assert.ErrorContains(t, err, "no platforms")
	_, err = ParsePlatforms("linux/amd64,linux/sparc")
	assert.ErrorContains(t, err, "linux/sparc")
}

func TestFileNames(t *testing.T) {
	want := map[string]string{
		"linux/amd64":   "quinistry-linux-amd64",
		"linux/arm64":   "quinistry-linux-arm64",
		"linux/arm/v7":  "quinistry-linux-arm-v7",
		"linux/ppc64le": "quinistry-linux-ppc64le",
		"linux/s390x":   "quinistry-linux-s390x",
		"linux/riscv64": "quinistry-linux-riscv64",
	}
	require.Len(t, Supported, len(want))
	for _, p := range Supported {
		name := p.FileName()
		assert.Equal(t, want[p.String()], name)
		back, ok := ParseFileName(name)
		assert.True(t, ok)
		assert.Equal(t, p, back)
	}
	for _, bad := range []string{"quinistry", "quinistry-linux-amd64.sha256", "quinistry-linux-arm", "quinistry-linux-mips", "quinistry-linux-amd64-v3", "x-linux-amd64"} {
		_, ok := ParseFileName(bad)
		assert.False(t, ok, bad)
	}
}

func TestGoEnvAndVariants(t *testing.T) {
	arm := Platform{OS: "linux", Arch: "arm", Variant: "v7"}
	assert.Equal(t, []string{"GOOS=linux", "GOARCH=arm", "GOARM=7"}, arm.GoEnv())
	assert.Equal(t, "v7", arm.ImageVariant())
	arm64 := Platform{OS: "linux", Arch: "arm64"}
	assert.Equal(t, []string{"GOOS=linux", "GOARCH=arm64"}, arm64.GoEnv())
	assert.Equal(t, "v8", arm64.ImageVariant())
	assert.Empty(t, Platform{OS: "linux", Arch: "amd64"}.ImageVariant())
}

func TestCurrent(t *testing.T) {
	p := Current()
	assert.Equal(t, runtime.GOOS, p.OS)
	assert.Equal(t, runtime.GOARCH, p.Arch)
}

package layer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeFiles creates files with seeded pseudo-random contents.
func writeFiles(t *testing.T, sizes map[string]int) []File {
	t.Helper()
	dir := t.TempDir()
	var files []File
	rng := rand.New(rand.NewPCG(1, 2))
	for _, name := range []string{"quinistry-linux-arm64", "quinistry-linux-amd64", "b", "a"} {
		size, ok := sizes[name]
		if !ok {
			continue
		}
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(rng.IntN(16)) // compressible, like code
		}
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, data, 0o644))
		files = append(files, File{Name: name, Path: path})
	}
	return files
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestWriteIsDeterministic(t *testing.T) {
	files := writeFiles(t, map[string]int{"b": 100_000, "a": 3, "quinistry-linux-amd64": 1 << 20})
	var first, second bytes.Buffer
	info1, err := Write(&first, files)
	require.NoError(t, err)
	// The same files in another order, written again.
	reversed := []File{files[2], files[1], files[0]}
	info2, err := Write(&second, reversed)
	require.NoError(t, err)
	assert.Equal(t, first.Bytes(), second.Bytes())
	assert.Equal(t, info1, info2)
}

func TestWriteDigestsMatchAnIndependentComputation(t *testing.T) {
	files := writeFiles(t, map[string]int{"a": 5000, "b": 0})
	var buf bytes.Buffer
	info, err := Write(&buf, files)
	require.NoError(t, err)

	assert.Equal(t, sha(buf.Bytes()), info.Digest.String())
	assert.Equal(t, int64(buf.Len()), info.Size)
	zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	tarBytes, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, sha(tarBytes), info.DiffID.String())
}

func TestWriteEntriesAreNormalised(t *testing.T) {
	files := writeFiles(t, map[string]int{"b": 10, "a": 20, "quinistry-linux-amd64": 30})
	var buf bytes.Buffer
	_, err := Write(&buf, files)
	require.NoError(t, err)

	zr, err := gzip.NewReader(&buf)
	require.NoError(t, err)
	assert.Empty(t, zr.Name, "gzip header name")
	assert.True(t, zr.ModTime.IsZero(), "gzip header time")
	assert.Empty(t, zr.Comment)

	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		names = append(names, hdr.Name)
		assert.Equal(t, byte(tar.TypeReg), hdr.Typeflag)
		assert.Equal(t, int64(0o555), hdr.Mode)
		assert.Zero(t, hdr.Uid)
		assert.Zero(t, hdr.Gid)
		assert.Empty(t, hdr.Uname)
		assert.Empty(t, hdr.Gname)
		assert.True(t, hdr.ModTime.Equal(time.Unix(0, 0)), "mtime %v", hdr.ModTime)
		assert.Empty(t, hdr.PAXRecords)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		assert.Len(t, data, int(hdr.Size))
	}
	assert.Equal(t, []string{"a", "b", "quinistry-linux-amd64"}, names)
}

func TestWriteRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	require.NoError(t, os.WriteFile(good, []byte("x"), 0o644))
	tests := []struct {
		name  string
		files []File
		want  string
	}{
		{"missing file", []File{{Name: "a", Path: filepath.Join(dir, "missing")}}, "no such file"},
		{"directory", []File{{Name: "a", Path: dir}}, "not a regular file"},
		{"duplicate name", []File{{Name: "a", Path: good}, {Name: "a", Path: good}}, "packed twice"},
		{"empty name", []File{{Name: "/", Path: good}}, "bad file name"},
		{"parent reference", []File{{Name: "../a", Path: good}}, "bad file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Write(io.Discard, tt.files)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func BenchmarkWrite(b *testing.B) {
	for _, mb := range []int{1, 8} {
		b.Run(fmt.Sprintf("%dMB", mb), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bin")
			exe, err := os.Executable()
			require.NoError(b, err)
			data, err := os.ReadFile(exe)
			require.NoError(b, err)
			for len(data) < mb<<20 {
				data = append(data, data...)
			}
			require.NoError(b, os.WriteFile(path, data[:mb<<20], 0o644))
			b.SetBytes(int64(mb << 20))
			for b.Loop() {
				_, err := Write(io.Discard, []File{{Name: "bin", Path: path}})
				require.NoError(b, err)
			}
		})
	}
}

func TestWriteIsOneGzipMemberPerChunkWhateverTheCores(t *testing.T) {
	files := writeFiles(t, map[string]int{"quinistry-linux-amd64": 3*ChunkSize + 12345})
	var outputs [][]byte
	for _, procs := range []int{1, 2, 4} {
		prev := runtime.GOMAXPROCS(procs)
		var buf bytes.Buffer
		_, err := Write(&buf, files)
		runtime.GOMAXPROCS(prev)
		require.NoError(t, err)
		outputs = append(outputs, buf.Bytes())
	}
	assert.Equal(t, outputs[0], outputs[1])
	assert.Equal(t, outputs[0], outputs[2])

	// Count the members, reading one at a time: every one but the last
	// holds exactly ChunkSize bytes of tar.
	r := bytes.NewReader(outputs[0])
	zr, err := gzip.NewReader(r)
	require.NoError(t, err)
	var sizes []int64
	for {
		zr.Multistream(false)
		n, err := io.Copy(io.Discard, zr)
		require.NoError(t, err)
		sizes = append(sizes, n)
		if err := zr.Reset(r); err == io.EOF {
			break
		} else {
			require.NoError(t, err)
		}
	}
	require.Len(t, sizes, 4)
	for _, n := range sizes[:3] {
		assert.Equal(t, int64(ChunkSize), n)
	}
	assert.Less(t, sizes[3], int64(ChunkSize))
}

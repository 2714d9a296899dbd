//go:build !linux

package index

import (
	"errors"
	"os"
)

// newMemFile is only available on Linux; elsewhere layers stay in memory.
func newMemFile(string) (*os.File, error) { return nil, errors.New("memfd: Linux only") }

func mapFile(*os.File, int64) ([]byte, error) { return nil, errors.New("mmap: Linux only") }

func unmap([]byte) error { return nil }

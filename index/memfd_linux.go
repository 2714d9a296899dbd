package index

import (
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"
)

// memfdCreate is the memfd_create system call's number on each
// architecture quinistry supports (the syscall package lacks some).
var memfdCreate = map[string]uintptr{
	"amd64":   319,
	"arm64":   279,
	"arm":     385,
	"ppc64le": 360,
	"s390x":   350,
	"riscv64": 279,
}

// newMemFile returns an anonymous in-memory file (memfd). Layers live in
// one each, so the server can send them with sendfile and a read-only root
// file system needs no writable temp directory.
func newMemFile(name string) (*os.File, error) {
	nr, ok := memfdCreate[runtime.GOARCH]
	if !ok {
		return nil, fmt.Errorf("memfd_create: unknown on %s", runtime.GOARCH)
	}
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return nil, err
	}
	const mfdCloexec = 1
	fd, _, errno := syscall.Syscall(nr, uintptr(unsafe.Pointer(p)), mfdCloexec, 0)
	if errno != 0 {
		return nil, fmt.Errorf("memfd_create: %w", errno)
	}
	return os.NewFile(fd, "memfd:"+name), nil
}

// mapFile maps size bytes of f read-only into memory.
func mapFile(f *os.File, size int64) ([]byte, error) {
	if size == 0 {
		return []byte{}, nil
	}
	return syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
}

// unmap releases a mapping made by mapFile.
func unmap(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	return syscall.Munmap(data)
}

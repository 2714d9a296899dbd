package registry

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// sendfileChunk is the most one sendfile call sends. The call is made
// without telling the Go scheduler (a raw system call), so it holds its P
// for as long as it runs: a chunk short enough to keep that to tens of
// microseconds lets the other goroutines wait no longer than they would
// for any busy goroutine, and spares the runtime the thread hand-offs
// and sysmon wake-ups that a scheduler-visible call of a millisecond
// costs.
var sendfileChunk int64 = 256 << 10

// sendFile sends bytes [*off, end) of f to w with sendfile when w is a
// network connection whose descriptor it can reach (net/http hands the
// raw TCP connection of an HTTP/1.1 response to ReadFrom, which passes it
// to the source's WriteTo); *off advances by what was sent. It waits for
// the connection with the network poller, so w's write deadline applies.
// handled is false, with nothing sent, when sendfile cannot be used.
func sendFile(w io.Writer, f *os.File, off *int64, end int64) (written int64, err error, handled bool) {
	// A net.Conn that offers its descriptor: the TCP connection (or a
	// Unix one), in non-blocking mode under the poller; not a file.
	conn, ok := w.(interface {
		net.Conn
		syscall.Conn
	})
	if !ok || *off >= end {
		return 0, nil, false
	}
	dst, err := conn.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	src, err := f.SyscallConn()
	if err != nil {
		return 0, nil, false
	}
	var sendErr error
	var failed syscall.Errno
	// Control holds a reference to f's descriptor, so that it stays open
	// (and cannot be reused for another file) while it is being sent from.
	ctlErr := src.Control(func(sfd uintptr) {
		err := dst.Write(func(dfd uintptr) bool {
			for *off < end {
				n := min(end-*off, sendfileChunk)
				r, _, errno := syscall.RawSyscall6(syscall.SYS_SENDFILE, dfd, sfd, uintptr(unsafe.Pointer(off)), uintptr(n), 0, 0)
				switch errno {
				case 0:
					if r == 0 {
						sendErr = io.ErrUnexpectedEOF // the file is shorter than the blob
						return true
					}
					written += int64(r) // the kernel has moved *off
				case syscall.EINTR:
				case syscall.EAGAIN:
					return false // wait until the connection takes more
				default:
					failed = errno
					return true
				}
			}
			return true
		})
		if failed != 0 {
			sendErr = os.NewSyscallError("sendfile", failed)
		}
		if sendErr == nil {
			sendErr = err
		}
	})
	if ctlErr != nil {
		return 0, nil, false
	}
	if written == 0 && (failed == syscall.EINVAL || failed == syscall.ENOSYS || failed == syscall.EOPNOTSUPP) {
		return 0, nil, false // not a descriptor sendfile sends to or from
	}
	return written, sendErr, true
}

package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// slowHead is how much of the body a slow download reads before it stops
// reading until it is released.
const slowHead = 64 << 10

// slowDownload is a GET whose client reads the first 64 KiB of the body
// and then reads nothing more until Release. Its socket's receive buffer is
// small, so the server is still sending (and counts the stream in flight)
// while it waits: the kernel's buffers cannot take in a whole layer.
type slowDownload struct {
	path    string
	conn    net.Conn
	held    chan struct{} // closed once the head is read, or the download failed before
	goOn    chan struct{}
	done    chan struct{}
	release sync.Once

	// set before done is closed
	status int
	want   int64 // the Content-Length
	got    int64 // body bytes read
	digest string
	err    error
}

// startSlow starts a slow download of path from addr. It is released and
// closed when the test ends, at the latest.
func startSlow(t testing.TB, addr, path string) *slowDownload {
	t.Helper()
	d := net.Dialer{Timeout: 30 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("slow download of %s: %v", path, err)
	}
	s := &slowDownload{path: path, conn: conn, held: make(chan struct{}), goOn: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { s.Release(); conn.Close(); <-s.done })
	go s.run(addr)
	return s
}

func (s *slowDownload) run(addr string) {
	defer close(s.done)
	heldOnce := sync.OnceFunc(func() { close(s.held) })
	defer heldOnce()
	if _, err := fmt.Fprintf(s.conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", s.path, addr); err != nil {
		s.err = err
		return
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(s.conn, 4096), nil)
	if err != nil {
		s.err = fmt.Errorf("no response head: %w", err)
		return
	}
	defer resp.Body.Close()
	s.status, s.want = resp.StatusCode, resp.ContentLength
	if resp.StatusCode != http.StatusOK {
		s.err = fmt.Errorf("status %d", resp.StatusCode)
		return
	}
	h := sha256.New()
	n, err := io.CopyN(h, resp.Body, slowHead)
	s.got = n
	if err != nil {
		s.err = fmt.Errorf("reading the first %d bytes: %w", slowHead, err)
		return
	}
	heldOnce()
	<-s.goOn
	n, err = io.Copy(h, resp.Body)
	s.got += n
	s.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err != nil {
		s.err = err
	} else if s.got != s.want {
		s.err = fmt.Errorf("got %d of %d bytes", s.got, s.want)
	}
}

// Held waits until the download has read its first 64 KiB and stopped, and
// fails the test if it failed instead.
func (s *slowDownload) Held(t testing.TB) {
	t.Helper()
	select {
	case <-s.held:
	case <-time.After(60 * time.Second):
		t.Fatalf("the slow download of %s did not get its first %d bytes in 60 s", s.path, slowHead)
	}
	select {
	case <-s.done:
		t.Fatalf("the slow download of %s ended before it was released: status %d, %d bytes, %v", s.path, s.status, s.got, s.err)
	default:
	}
}

// Release lets the download read the rest.
func (s *slowDownload) Release() { s.release.Do(func() { close(s.goOn) }) }

// Wait waits (at most 60 s) for the released download to end.
func (s *slowDownload) Wait(t testing.TB) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the slow download of %s did not end within 60 s of its release (%d bytes so far)", s.path, s.got)
	}
}

// String describes how the download ended, for failure messages.
func (s *slowDownload) String() string {
	return fmt.Sprintf("status %d, %d of %d bytes, sha256 %s, error %v", s.status, s.got, s.want, s.digest, s.err)
}

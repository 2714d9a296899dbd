package registry

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s := <-accepted
	require.NotNil(t, s)
	t.Cleanup(func() { c.Close(); s.Close() })
	return s.(*net.TCPConn), c.(*net.TCPConn)
}

// bigFile writes size random bytes to a temporary file and returns it
// open, with the bytes.
func bigFile(t *testing.T, size int) (*os.File, []byte) {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	f, err := os.CreateTemp(t.TempDir(), "blob")
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	_, err = f.Write(data)
	require.NoError(t, err)
	return f, data
}

// smallChunks makes sendfile calls send at most n bytes for the test.
func smallChunks(t *testing.T, n int64) {
	old := sendfileChunk
	sendfileChunk = n
	t.Cleanup(func() { sendfileChunk = old })
}

// TestSendFileSendsByOffset sends ranges of a file over a TCP connection
// whose receiver reads slowly through a small buffer, so that sendfile
// fills the socket, gets EAGAIN and waits many times, in chunks smaller
// than the range. The file's own position must not move: every download
// shares the descriptor.
func TestSendFileSendsByOffset(t *testing.T) {
	smallChunks(t, 64<<10)
	f, data := bigFile(t, 3<<20+12345)
	for _, r := range []byteRange{{0, int64(len(data))}, {7, int64(len(data)) - 5}, {1 << 20, 1<<20 + 1}} {
		server, client := tcpPair(t)
		require.NoError(t, client.SetReadBuffer(16<<10))
		got := make(chan []byte, 1)
		go func() {
			var buf bytes.Buffer
			p := make([]byte, 8<<10)
			for {
				n, err := client.Read(p)
				buf.Write(p[:n])
				if err != nil {
					break
				}
			}
			got <- buf.Bytes()
		}()
		off := r.start
		n, err, handled := sendFile(server, f, &off, r.end)
		require.True(t, handled)
		require.NoError(t, err)
		assert.Equal(t, r.end-r.start, n)
		assert.Equal(t, r.end, off, "the offset moves past what was sent")
		server.Close()
		assert.True(t, bytes.Equal(data[r.start:r.end], <-got), "range %v: other bytes arrived", r)
		pos, err := f.Seek(0, io.SeekCurrent)
		require.NoError(t, err)
		assert.Equal(t, int64(len(data)), pos, "the file's position is left alone")
	}
}

// TestSendFileOnlyToConnections checks that sendfile is left to the caller
// for a writer that is not a network connection (a buffer; a pipe, which
// is a file), with nothing written.
func TestSendFileOnlyToConnections(t *testing.T) {
	f, _ := bigFile(t, 1000)
	off := int64(0)
	var buf bytes.Buffer
	_, _, handled := sendFile(&buf, f, &off, 1000)
	assert.False(t, handled)
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	defer pw.Close()
	_, _, handled = sendFile(pw, f, &off, 1000)
	assert.False(t, handled)
	assert.Zero(t, off)
	assert.Zero(t, buf.Len())
}

// TestSendFileClientGone checks that a client that goes away mid-send ends
// the send with an error, having counted only what was sent.
func TestSendFileClientGone(t *testing.T) {
	smallChunks(t, 64<<10)
	f, data := bigFile(t, 8<<20)
	server, client := tcpPair(t)
	require.NoError(t, client.SetReadBuffer(16<<10))
	go func() {
		p := make([]byte, 100<<10)
		io.ReadFull(client, p)
		client.SetLinger(0) // a reset, not a polite close
		client.Close()
	}()
	off := int64(0)
	n, err, handled := sendFile(server, f, &off, int64(len(data)))
	require.True(t, handled)
	require.Error(t, err)
	assert.True(t, errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE), "error %v", err)
	assert.Less(t, n, int64(len(data)))
	assert.Equal(t, n, off)
}

// TestSendFileStall checks that a client that stops reading ends the send
// at the connection's write deadline.
func TestSendFileStall(t *testing.T) {
	f, data := bigFile(t, 16<<20)
	server, client := tcpPair(t)
	require.NoError(t, client.SetReadBuffer(16<<10))
	require.NoError(t, server.SetWriteDeadline(time.Now().Add(200*time.Millisecond)))
	off := int64(0)
	n, err, handled := sendFile(server, f, &off, int64(len(data)))
	require.True(t, handled)
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	assert.Less(t, n, int64(len(data)))
	assert.Equal(t, n, off)
}

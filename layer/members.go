package layer

import (
	"bytes"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// ChunkSize is how many bytes of the tar each gzip member holds. A layer is
// a series of gzip members (RFC 1952 allows any number, and every client's
// gzip reader reads them all), compressed concurrently, so packing speeds up
// with cores even for one binary. The chunk boundaries depend only on the
// data, never on the number of cores, so the bytes do not either.
const ChunkSize = 256 << 10

// memberWriter compresses what is written to it as one gzip member per
// ChunkSize bytes, several at once, and writes the members to w in order.
type memberWriter struct {
	w     io.Writer
	buf   []byte
	queue chan chan member
	done  chan error
	any   bool
}

type member struct {
	out *bytes.Buffer
	err error
}

// Pools keep packing from asking the system for fresh memory for every
// chunk: a few chunks are in flight at a time, whatever the layer's size.
var (
	gzipWriters = sync.Pool{New: func() any {
		zw, _ := gzip.NewWriterLevel(nil, Level)
		return zw
	}}
	chunks  = sync.Pool{New: func() any { b := make([]byte, 0, ChunkSize); return &b }}
	outputs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

func newMemberWriter(w io.Writer) *memberWriter {
	mw := &memberWriter{
		w:     w,
		buf:   (*chunks.Get().(*[]byte))[:0],
		queue: make(chan chan member, runtime.GOMAXPROCS(0)),
		done:  make(chan error, 1),
	}
	go mw.drain()
	return mw
}

// drain writes the members in the order their chunks were cut.
func (mw *memberWriter) drain() {
	var err error
	for next := range mw.queue {
		m := <-next
		if err == nil {
			err = m.err
		}
		if err == nil {
			_, err = mw.w.Write(m.out.Bytes())
		}
		if m.out != nil {
			m.out.Reset()
			outputs.Put(m.out)
		}
	}
	mw.done <- err
}

func (mw *memberWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), ChunkSize-len(mw.buf))
		mw.buf = append(mw.buf, p[:k]...)
		p = p[k:]
		if len(mw.buf) == ChunkSize {
			mw.cut()
		}
	}
	return n, nil
}

// cut hands the buffered chunk to a goroutine that compresses it.
func (mw *memberWriter) cut() {
	chunk := mw.buf
	mw.buf = (*chunks.Get().(*[]byte))[:0]
	mw.any = true
	next := make(chan member, 1)
	mw.queue <- next // waits while GOMAXPROCS chunks are ahead
	go func() {
		next <- compress(chunk)
		chunks.Put(&chunk)
	}()
}

// Close compresses what is left and waits for every member to be written.
func (mw *memberWriter) Close() error {
	if len(mw.buf) > 0 || !mw.any {
		mw.cut()
	}
	chunks.Put(&mw.buf)
	close(mw.queue)
	return <-mw.done
}

// compress makes one gzip member of chunk, with no name and no time.
func compress(chunk []byte) member {
	out := outputs.Get().(*bytes.Buffer)
	out.Grow(len(chunk) + len(chunk)/16) // room for incompressible data: no regrowth while compressing
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(out)
	if _, err := zw.Write(chunk); err != nil {
		return member{out: out, err: err}
	}
	if err := zw.Close(); err != nil {
		return member{out: out, err: err}
	}
	return member{out: out}
}

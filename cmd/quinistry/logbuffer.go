package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// logBuffer gathers log lines and writes them out together, at least every
// flushEvery, so that a busy server does not pay a write system call for
// every access-log line. Close writes out what is left.
type logBuffer struct {
	mu    sync.Mutex
	w     *bufio.Writer
	ticks <-chan time.Time
	stop  chan struct{}
	done  chan struct{}
}

const flushEvery = 100 * time.Millisecond

// newLogBuffer returns a buffer that flushes to w every flushEvery.
func newLogBuffer(w io.Writer) *logBuffer {
	t := time.NewTicker(flushEvery)
	b := newLogBufferTicks(w, t.C)
	go func() { <-b.done; t.Stop() }()
	return b
}

// newLogBufferTicks returns a buffer that flushes to w on every tick.
func newLogBufferTicks(w io.Writer, ticks <-chan time.Time) *logBuffer {
	b := &logBuffer{w: bufio.NewWriterSize(w, 64<<10), ticks: ticks, stop: make(chan struct{}), done: make(chan struct{})}
	go b.flushLoop()
	return b
}

// Write keeps p whole: a line is never split between two writes unless it
// is longer than the buffer.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > b.w.Available() {
		if err := b.w.Flush(); err != nil {
			return 0, err
		}
	}
	return b.w.Write(p)
}

func (b *logBuffer) flushLoop() {
	defer close(b.done)
	for {
		select {
		case <-b.ticks:
			b.flush()
		case <-b.stop:
			b.flush()
			return
		}
	}
}

func (b *logBuffer) flush() {
	b.mu.Lock()
	_ = b.w.Flush()
	b.mu.Unlock()
}

// Close stops the flushing and writes out what is buffered.
func (b *logBuffer) Close() error {
	close(b.stop)
	<-b.done
	return nil
}

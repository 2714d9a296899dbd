package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedWriter records writes, one entry per call, and reports each on
// wrote when it is set.
type lockedWriter struct {
	mu     sync.Mutex
	writes []string
	wrote  chan struct{}
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
	select {
	case w.wrote <- struct{}{}: // a nil channel never takes it
	default: // the reader has not taken the last one: it knows a write came
	}
	return len(p), nil
}

func TestLogBufferKeepsLinesWholeAndInOrder(t *testing.T) {
	out := &lockedWriter{}
	b := newLogBuffer(out)
	var want bytes.Buffer
	for i := range 5000 {
		line := strings.Repeat("x", i%200) + "\n"
		want.WriteString(line)
		_, err := b.Write([]byte(line))
		require.NoError(t, err)
	}
	require.NoError(t, b.Close())

	got := strings.Join(out.writes, "")
	assert.Equal(t, want.String(), got)
	assert.Less(t, len(out.writes), 5000/10, "lines are written together")
	for _, w := range out.writes {
		assert.True(t, strings.HasSuffix(w, "\n"), "every write ends a line")
	}
}

func (w *lockedWriter) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.writes...)
}

// TestLogBufferFlushesOnEveryTick checks that buffered lines go out at the
// next tick, with no Close and far below the buffer's size, and that
// nothing goes out between ticks. The test waits for the tick's write
// itself: once it is made the flush is over (a flush of an empty buffer
// writes nothing), so lines written after it wait for the next tick.
// newLogBuffer ticks every flushEvery, the README's "at least every 100 ms".
func TestLogBufferFlushesOnEveryTick(t *testing.T) {
	require.Equal(t, 100*time.Millisecond, flushEvery)
	out := &lockedWriter{wrote: make(chan struct{}, 1)}
	ticks := make(chan time.Time)
	b := newLogBufferTicks(out, ticks)
	defer b.Close()

	_, err := b.Write([]byte("one\n"))
	require.NoError(t, err)
	ticks <- time.Time{}
	<-out.wrote
	assert.Equal(t, []string{"one\n"}, out.all(), "the line went out at the tick")

	_, err = b.Write([]byte("two\n"))
	require.NoError(t, err)
	_, err = b.Write([]byte("three\n"))
	require.NoError(t, err)
	assert.Equal(t, []string{"one\n"}, out.all(), "nothing goes out between ticks")
	ticks <- time.Time{}
	<-out.wrote
	assert.Equal(t, []string{"one\n", "two\nthree\n"}, out.all(), "lines of one tick go out together")
}

// TestLogBufferWritesOutWithoutClose checks the buffer main uses, with its
// own ticker: a line goes out with no Close and no further writes. The
// README promises 100 ms; the wait allows twenty times that, so a slow
// machine passes and a ticker of seconds fails.
func TestLogBufferWritesOutWithoutClose(t *testing.T) {
	out := &lockedWriter{}
	b := newLogBuffer(out)
	defer b.Close()
	_, err := b.Write([]byte("one\n"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(out.all()) == 1 }, 20*flushEvery, flushEvery/10,
		"the line is still buffered after %v", 20*flushEvery)
	assert.Equal(t, []string{"one\n"}, out.all())
}

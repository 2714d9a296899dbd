package main

import (
	"bytes"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedWriter records writes, one entry per call.
type lockedWriter struct {
	mu     sync.Mutex
	writes []string
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, string(p))
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

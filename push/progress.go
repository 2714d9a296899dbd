package push

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Progress reports each blob's upload. On a terminal it redraws one line
// per blob in place (bytes so far, rate); otherwise it prints one plain
// line per blob when that blob is done.
type Progress struct {
	w        io.Writer
	terminal bool

	mu    sync.Mutex
	lines []*Tracker
	drawn int
	stop  chan struct{}
	done  chan struct{}
}

// NewProgress reports to w, redrawing in place when terminal is true.
func NewProgress(w io.Writer, terminal bool) *Progress {
	p := &Progress{w: w, terminal: terminal, stop: make(chan struct{}), done: make(chan struct{})}
	if terminal {
		go p.loop()
	} else {
		close(p.done)
	}
	return p
}

// Tracker follows one blob.
type Tracker struct {
	p      *Progress
	name   string
	size   int64
	sent   int64
	start  time.Time
	end    time.Time
	status string
}

// Start begins following the blob d of size bytes.
func (p *Progress) Start(d digest.Digest, size int64) *Tracker {
	if p == nil {
		return nil
	}
	t := &Tracker{p: p, name: short(d), size: size, start: time.Now(), status: "pushing"}
	p.mu.Lock()
	p.lines = append(p.lines, t)
	p.mu.Unlock()
	return t
}

// Add counts n more bytes sent.
func (t *Tracker) Add(n int) {
	if t == nil {
		return
	}
	t.p.mu.Lock()
	t.sent += int64(n)
	t.p.mu.Unlock()
}

// Reset forgets the bytes sent, when an upload starts over.
func (t *Tracker) Reset() {
	if t == nil {
		return
	}
	t.p.mu.Lock()
	t.sent = 0
	t.p.mu.Unlock()
}

// Done ends the blob with a status: pushed, exists, mounted or failed.
func (t *Tracker) Done(status string) {
	if t == nil {
		return
	}
	t.p.mu.Lock()
	t.status, t.end = status, time.Now()
	line := t.line()
	t.p.mu.Unlock()
	if !t.p.terminal && status != "failed" { // the error says why
		fmt.Fprintln(t.p.w, line)
	}
}

// line describes the blob; the caller holds the lock.
func (t *Tracker) line() string {
	end := t.end
	if end.IsZero() {
		end = time.Now()
	}
	elapsed := end.Sub(t.start)
	switch t.status {
	case "exists", "mounted":
		return fmt.Sprintf("%s: %s (%s)", t.name, t.status, humanBytes(t.size))
	case "pushing":
		return fmt.Sprintf("%s: pushing %s / %s (%s/s)", t.name, humanBytes(t.sent), humanBytes(t.size), humanBytes(rate(t.sent, elapsed)))
	default:
		return fmt.Sprintf("%s: %s %s in %s (%s/s)", t.name, t.status, humanBytes(t.sent), elapsed.Round(time.Millisecond), humanBytes(rate(t.sent, elapsed)))
	}
}

// loop redraws the terminal lines until Stop.
func (p *Progress) loop() {
	defer close(p.done)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.stop:
			p.redraw()
			return
		case <-tick.C:
			p.redraw()
		}
	}
}

// redraw moves the cursor back over the lines drawn last time and draws
// every blob's line again.
func (p *Progress) redraw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\x1b[%dA", p.drawn)
	}
	for _, t := range p.lines {
		fmt.Fprintf(p.w, "\r\x1b[K%s\n", t.line())
	}
	p.drawn = len(p.lines)
}

// Stop draws the last state and ends the redrawing.
func (p *Progress) Stop() {
	if p == nil {
		return
	}
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// short is the digest shortened as docker shows it.
func short(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// rate is bytes per second.
func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// humanBytes formats a byte count with a binary unit.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// countingReader tells a tracker about every read.
type countingReader struct {
	r io.Reader
	t *Tracker
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(n)
	return n, err
}

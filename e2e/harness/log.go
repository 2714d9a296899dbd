package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Record is one line of quinistry's log, decoded from either of its formats
// (--log-format json, or the default text of key=value pairs). Values are
// kept as text, the way the text format writes them.
type Record map[string]string

// Msg returns the record's message.
func (r Record) Msg() string { return r["msg"] }

// Int returns the record's value for key as an integer, or -1.
func (r Record) Int(key string) int64 {
	n, err := strconv.ParseInt(r[key], 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// String shows the record as key=value pairs, for failure messages.
func (r Record) String() string {
	var b strings.Builder
	for _, k := range []string{"level", "msg", "method", "path", "status", "error"} {
		if v, ok := r[k]; ok {
			fmt.Fprintf(&b, "%s=%q ", k, v)
		}
	}
	for k, v := range r {
		switch k {
		case "time", "level", "msg", "method", "path", "status", "error":
		default:
			fmt.Fprintf(&b, "%s=%q ", k, v)
		}
	}
	return strings.TrimSpace(b.String())
}

// Log collects a process's log lines as they arrive and lets a test wait for
// a line it expects, instead of sleeping.
type Log struct {
	mu      sync.Mutex
	lines   []string
	records []Record
	closed  bool
	changed chan struct{}
}

func newLog() *Log { return &Log{changed: make(chan struct{})} }

// read takes lines from r until it ends.
func (l *Log) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.lines = append(l.lines, line)
		if rec, ok := ParseRecord(line); ok {
			l.records = append(l.records, rec)
		}
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.closed = true
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Lines returns every line logged so far.
func (l *Log) Lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// Text returns every line logged so far, joined.
func (l *Log) Text() string { return strings.Join(l.Lines(), "\n") }

// Records returns every record logged so far.
func (l *Log) Records() []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record(nil), l.records...)
}

// Find returns the records logged so far for which match is true.
func (l *Log) Find(match func(Record) bool) []Record {
	var out []Record
	for _, r := range l.Records() {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// Wait returns the first record for which match is true, waiting for it at
// most timeout. It fails the test, showing the log, when none comes or the
// process's log ends first.
func (l *Log) Wait(t testing.TB, timeout time.Duration, what string, match func(Record) bool) Record {
	t.Helper()
	r, err := l.WaitErr(timeout, match)
	if err != nil {
		t.Fatalf("waiting for %s: %v; the log:\n%s", what, err, l.Text())
	}
	return r
}

// WaitErr is Wait returning an error instead of failing the test.
func (l *Log) WaitErr(timeout time.Duration, match func(Record) bool) (Record, error) {
	var found Record
	err := l.waitFor(timeout, func(from int) (int, bool) {
		for i := from; i < len(l.records); i++ {
			if match(l.records[i]) {
				found = l.records[i]
				return i, true
			}
		}
		return len(l.records), false
	})
	return found, err
}

// WaitLineErr returns the first line, record or not (a machine's console,
// say), for which match is true, waiting for it at most timeout; the error
// says whether the log ended or the time ran out first.
func (l *Log) WaitLineErr(timeout time.Duration, match func(string) bool) (string, error) {
	var found string
	err := l.waitFor(timeout, func(from int) (int, bool) {
		for i := from; i < len(l.lines); i++ {
			if match(l.lines[i]) {
				found = l.lines[i]
				return i, true
			}
		}
		return len(l.lines), false
	})
	return found, err
}

// waitFor calls scan under the log's lock with the index to look from (0,
// then where the last call stopped), at once and each time a line arrives,
// until it reports a find, the log ends or timeout passes.
func (l *Log) waitFor(timeout time.Duration, scan func(from int) (next int, found bool)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	from := 0
	for {
		l.mu.Lock()
		next, found := scan(from)
		closed, changed := l.closed, l.changed
		l.mu.Unlock()
		if found {
			return nil
		}
		from = next
		if closed {
			return fmt.Errorf("the log ended")
		}
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("none within %s", timeout)
		}
	}
}

// ParseRecord decodes one log line of either format. Lines that are neither
// (a panic's stack, say) are not records.
func ParseRecord(line string) (Record, bool) {
	line = strings.TrimSpace(line)
	if strings.HasPrefix(line, "{") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return nil, false
		}
		r := Record{}
		for k, v := range m {
			switch v := v.(type) {
			case string:
				r[k] = v
			case float64:
				r[k] = strconv.FormatFloat(v, 'f', -1, 64)
			default:
				b, _ := json.Marshal(v)
				r[k] = string(b)
			}
		}
		return r, true
	}
	return parseText(line)
}

// parseText decodes slog's text format: key=value pairs, values quoted with
// Go's rules when they need it.
func parseText(line string) (Record, bool) {
	r := Record{}
	for len(line) > 0 {
		eq := strings.IndexByte(line, '=')
		if eq <= 0 || strings.ContainsAny(line[:eq], " \"") {
			return nil, false
		}
		key := line[:eq]
		line = line[eq+1:]
		var val string
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, false
			}
			val, _ = strconv.Unquote(q)
			line = line[len(q):]
		} else if sp := strings.IndexByte(line, ' '); sp >= 0 {
			val, line = line[:sp], line[sp:]
		} else {
			val, line = line, ""
		}
		r[key] = val
		line = strings.TrimLeft(line, " ")
	}
	if _, ok := r["msg"]; !ok {
		return nil, false
	}
	return r, true
}

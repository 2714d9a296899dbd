package harness

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Sample is one line of the Prometheus text format: a metric name, its
// labels and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Key names the sample's series: name{a="x",b="y"} with the labels sorted,
// or the bare name when it has none.
func (s Sample) Key() string { return SeriesKey(s.Name, s.Labels) }

// SeriesKey is Sample.Key for a name and labels.
func SeriesKey(name string, labels map[string]string) string {
	if len(labels) == 0 {
		return name
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(name + "{")
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, labels[k])
	}
	b.WriteByte('}')
	return b.String()
}

// Metrics is a /metrics page in the Prometheus text exposition format
// (version 0.0.4), parsed whole: every sample by its series, and every
// metric's declared TYPE.
type Metrics struct {
	Samples []Sample
	Types   map[string]string
	byKey   map[string]float64
}

// Value returns the value of the series name with exactly the labels given
// as name, value pairs (none for an unlabelled metric), and whether the
// page has that series.
func (m *Metrics) Value(name string, labels ...string) (float64, bool) {
	v, ok := m.byKey[SeriesKey(name, pairs(labels))]
	return v, ok
}

// Series returns every sample of the metric name, whatever its labels.
func (m *Metrics) Series(name string) []Sample {
	var out []Sample
	for _, s := range m.Samples {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Show returns the value of a series for a failure message: the number, or
// "absent".
func (m *Metrics) Show(name string, labels ...string) string {
	v, ok := m.Value(name, labels...)
	if !ok {
		return "absent"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// ParseMetrics parses the Prometheus text format. Any line that is not a
// comment, a blank line or a well-formed sample is an error, as is a series
// given twice.
func ParseMetrics(text string) (*Metrics, error) {
	m := &Metrics{Types: map[string]string{}, byKey: map[string]float64{}}
	for n, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[1] == "TYPE" {
				m.Types[f[2]] = f[3]
			}
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		if _, dup := m.byKey[s.Key()]; dup {
			return nil, fmt.Errorf("line %d: series %s given twice", n+1, s.Key())
		}
		m.Samples = append(m.Samples, s)
		m.byKey[s.Key()] = s.Value
	}
	return m, nil
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return s, fmt.Errorf("no metric name")
	}
	s.Name, line = line[:i], line[i:]
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for {
			line = strings.TrimLeft(line, " ")
			if strings.HasPrefix(line, "}") {
				line = line[1:]
				break
			}
			j := 0
			for j < len(line) && isNameChar(line[j], j == 0) && line[j] != ':' {
				j++
			}
			if j == 0 || j >= len(line) || line[j] != '=' || j+1 >= len(line) || line[j+1] != '"' {
				return s, fmt.Errorf("bad label")
			}
			name := line[:j]
			line = line[j+2:]
			var val strings.Builder
			closed := false
			for k := 0; k < len(line); k++ {
				c := line[k]
				if c == '\\' && k+1 < len(line) {
					k++
					switch line[k] {
					case 'n':
						val.WriteByte('\n')
					case '\\', '"':
						val.WriteByte(line[k])
					default:
						return s, fmt.Errorf("bad escape \\%c in label %s", line[k], name)
					}
					continue
				}
				if c == '"' {
					line, closed = line[k+1:], true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return s, fmt.Errorf("unterminated value of label %s", name)
			}
			if _, dup := s.Labels[name]; dup {
				return s, fmt.Errorf("label %s given twice", name)
			}
			s.Labels[name] = val.String()
			line = strings.TrimLeft(line, " ")
			if strings.HasPrefix(line, ",") {
				line = line[1:]
			} else if !strings.HasPrefix(line, "}") {
				return s, fmt.Errorf("expected , or } after label %s", name)
			}
		}
	}
	f := strings.Fields(line)
	if len(f) < 1 || len(f) > 2 || !strings.HasPrefix(line, " ") {
		return s, fmt.Errorf("expected a value (and an optional timestamp)")
	}
	v, err := parseValue(f[0])
	if err != nil {
		return s, err
	}
	if len(f) == 2 {
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q", f[1])
		}
	}
	s.Value = v
	return s, nil
}

func parseValue(v string) (float64, error) {
	switch v {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", v)
	}
	return f, nil
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// FetchMetrics gets url (a server's /metrics), expects 200, and parses it.
// It returns the response too, for its headers.
func FetchMetrics(t testing.TB, url string) (*Metrics, Response) {
	t.Helper()
	r := Do(t, http.MethodGet, url)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, r.Status)
	}
	m, err := ParseMetrics(string(r.Body))
	if err != nil {
		t.Fatalf("GET %s: not the Prometheus text format: %v\n%s", url, err, r.Body)
	}
	return m, r
}

// WaitMetric fetches url (a /metrics page) until the unlabelled or labelled
// series name has value want, at most timeout, and fails the test with the
// last value seen otherwise. The page is asked for every 20 ms: the value
// it waits for is the event.
func WaitMetric(t testing.TB, url string, timeout time.Duration, want float64, name string, labels ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	last := "no answer"
	for {
		if r, err := RunHTTP(url); err == nil {
			if m, err := ParseMetrics(r); err == nil {
				if v, ok := m.Value(name, labels...); ok && v == want {
					return
				}
				last = m.Show(name, labels...)
			} else {
				last = err.Error()
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, not %g, after %s", SeriesKey(name, pairs(labels)), last, want, timeout)
		}
		<-tick.C
	}
}

// RunHTTP gets url and returns its body when the status is 200.
func RunHTTP(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, resp.Body); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return b.String(), nil
}

func pairs(labels []string) map[string]string {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return l
}

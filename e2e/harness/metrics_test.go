package harness

import (
	"math"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(`# HELP a_total Things.
# TYPE a_total counter
a_total{route="blob",status="200"} 20
a_total{status="429",route="blob"} 2
b 10240
c{x="q\"uo\\te\nd",} +Inf
d 1.5 1700000000000

`)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"a_total", []string{"route", "blob", "status", "200"}, 20},
		{"a_total", []string{"status", "429", "route", "blob"}, 2},
		{"b", nil, 10240},
		{"c", []string{"x", "q\"uo\\te\nd"}, math.Inf(1)},
		{"d", nil, 1.5},
	} {
		if v, ok := m.Value(c.name, c.labels...); !ok || v != c.want {
			t.Errorf("%s %v = %v, %v; want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := m.Value("a_total", "route", "blob"); ok {
		t.Error("a partial label set matched a series")
	}
	if _, ok := m.Value("a"); ok {
		t.Error("a prefix of a name matched a series")
	}
	if m.Types["a_total"] != "counter" {
		t.Errorf("a_total's type is %q", m.Types["a_total"])
	}
	if len(m.Series("a_total")) != 2 {
		t.Errorf("a_total has %d series", len(m.Series("a_total")))
	}
	for _, bad := range []string{"x", "x{a=\"1\" 1", "x{a=1} 1", "x 1 2 3", "x one", "{a=\"1\"} 1", "x 1\nx 2", "x{a=\"1\",a=\"2\"} 1"} {
		if _, err := ParseMetrics(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

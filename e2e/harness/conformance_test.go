package harness

import (
	"slices"
	"testing"
)

// sampleConformance is the shape of what conformance.test prints (cut
// down): the test tree, the configuration, the summary and the panic.
const sampleConformance = `Test results
OCI Conformance Test: FAIL
  OCI Conformance Test/ping: Pass
  OCI Conformance Test/empty: Pass
    OCI Conformance Test/empty/referrers: Pass
  OCI Conformance Test/sha256 blobs: Disabled
  OCI Conformance Test/read-only: FAIL
    OCI Conformance Test/read-only/pull: FAIL
      OCI Conformance Test/read-only/pull/manifest-by-digest: Pass
      OCI Conformance Test/read-only/pull/manifest-by-digest: FAIL
       - unexpected status: 404
second line of that error: Pass
      OCI Conformance Test/read-only/pull/manifest-by-digest: Pass
      OCI Conformance Test/read-only/pull/blob-get: Skip

Configuration:
  registry: 127.0.0.1:1234
  apis:
    ping: true
  
OCI Conformance Result: FAIL
  Disabled......................:          1
  Skip..........................:          1
  Pass..........................:          5
  FAIL..........................:          1
  Error.........................:          0
  Total.........................:          8

API conformance:
  Referrers.....................:       Pass

--- FAIL: TestLegacy (0.15s)
panic: runtime error: invalid memory address or nil pointer dereference
`

func TestParseConformance(t *testing.T) {
	r := ParseConformance(sampleConformance)
	if r.Result != "FAIL" {
		t.Errorf("Result %q, want FAIL", r.Result)
	}
	wantCounts := map[string]int{"Disabled": 1, "Skip": 1, "Pass": 5, "FAIL": 1, "Error": 0, "Total": 8}
	for k, v := range wantCounts {
		if got, ok := r.Counts[k]; !ok || got != v {
			t.Errorf("Counts[%s] = %d (%v), want %d", k, got, ok, v)
		}
	}
	if len(r.Counts) != len(wantCounts) {
		t.Errorf("Counts %v has more than %v", r.Counts, wantCounts)
	}
	wantTests := map[string]string{
		"OCI Conformance Test":                                   "FAIL",
		"OCI Conformance Test/ping":                              "Pass",
		"OCI Conformance Test/empty":                             "Pass",
		"OCI Conformance Test/empty/referrers":                   "Pass",
		"OCI Conformance Test/sha256 blobs":                      "Disabled",
		"OCI Conformance Test/read-only":                         "FAIL",
		"OCI Conformance Test/read-only/pull":                    "FAIL",
		"OCI Conformance Test/read-only/pull/manifest-by-digest": "FAIL",
		"OCI Conformance Test/read-only/pull/blob-get":           "Skip",
	}
	for k, v := range wantTests {
		if r.Tests[k] != v {
			t.Errorf("Tests[%q] = %q, want %q", k, r.Tests[k], v)
		}
	}
	if len(r.Tests) != len(wantTests) {
		t.Errorf("Tests has %d entries, want %d: %v", len(r.Tests), len(wantTests), r.Tests)
	}
	want := []string{"OCI Conformance Test/read-only/pull/manifest-by-digest: FAIL", "OCI Conformance Test/read-only/pull: FAIL", "OCI Conformance Test/read-only: FAIL", "OCI Conformance Test: FAIL"}
	slices.Sort(want)
	if got := r.Failures(); !slices.Equal(got, want) {
		t.Errorf("Failures() = %q, want %q", got, want)
	}
	if none := ParseConformance("failed to run tests\nPASS\n"); none.Result != "" || len(none.Tests) != 0 {
		t.Errorf("output with no summary parsed as %+v", none)
	}
}

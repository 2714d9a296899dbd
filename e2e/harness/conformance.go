package harness

import (
	"bufio"
	"context"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConformanceTimeout bounds one run of the OCI conformance suite.
var ConformanceTimeout = 5 * time.Minute

// ConformanceOptions says what the OCI conformance suite reads, read-only,
// from a registry: Addr (127.0.0.1:PORT, plain HTTP), the repository Repo,
// its tag Tag, the digests of Manifests and Blobs it may fetch, and the
// subjects whose Referrers it may list. A non-empty Referrers sets
// OCI_RO_DATA_REFERRERS and OCI_API_REFERRER=true; an empty one turns the
// referrers API off.
type ConformanceOptions struct {
	Addr, Repo, Tag             string
	Manifests, Blobs, Referrers []string
}

// ConformanceResult is what the suite printed: its Result line ("Pass",
// "FAIL", ...), its Counts ("Pass", "FAIL", "Error", "Skip", "Disabled",
// "Total"), each test's status by its name as printed (such as
// "OCI Conformance Test/read-only/pull/blob-get": "Pass") in Tests, and its
// whole Output. A name printed more than once (one line per digest) keeps
// its worst status: FAIL, then Error, then any other than Pass, then Pass.
type ConformanceResult struct {
	Result string
	Counts map[string]int
	Tests  map[string]string
	Output string
}

// Conformance runs the OCI distribution-spec conformance suite
// (.tools/bin/conformance.test), pull workflow only with every write and
// delete switched off, against o.Addr, in a temporary directory (it writes
// ./results there) and with no environment but its own settings. At the
// version install-tools pins it prints its summary and then panics in its
// report writer, so its exit status says nothing: the printed summary is
// the result, and a run that printed none fails the test. Judging the
// result is the caller's.
func Conformance(t testing.TB, o ConformanceOptions) ConformanceResult {
	t.Helper()
	bin := Tool(t, "conformance.test")
	env := []string{
		"OCI_REGISTRY=" + o.Addr,
		"OCI_TLS=disabled",
		"OCI_REPO1=" + o.Repo,
		"OCI_REPO2=" + o.Repo,
		"OCI_API_PULL=true",
		"OCI_API_PUSH=false",
		"OCI_API_BLOBS_DELETE=false",
		"OCI_API_MANIFESTS_DELETE=false",
		"OCI_API_TAGS_DELETE=false",
		"OCI_API_TAGS_LIST=true",
		"OCI_RO_DATA_TAGS=" + o.Tag,
		"OCI_RO_DATA_MANIFESTS=" + words(o.Manifests),
		"OCI_RO_DATA_BLOBS=" + words(o.Blobs),
	}
	if refs := words(o.Referrers); refs != "" {
		env = append(env, "OCI_API_REFERRER=true", "OCI_RO_DATA_REFERRERS="+refs)
	} else {
		env = append(env, "OCI_API_REFERRER=false")
	}
	ctx, cancel := context.WithTimeout(context.Background(), ConformanceTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = env
	cmd.Dir = TempDir(t)
	out, err := cmd.CombinedOutput()
	r := ParseConformance(string(out))
	if r.Result == "" {
		t.Fatalf("the conformance suite printed no summary (%v); the end of its output:\n%s", err, tail(string(out), 25))
	}
	return r
}

// ParseConformance reads the conformance suite's printed report: the
// per-test lines under "Test results", the "OCI Conformance Result:" line
// and the count lines under it.
func ParseConformance(out string) ConformanceResult {
	r := ConformanceResult{Counts: map[string]int{}, Tests: map[string]string{}, Output: out}
	section, root := "", ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Test results":
			section = "tests"
			continue
		case line == "Configuration:":
			section = ""
			continue
		case strings.HasPrefix(line, "OCI Conformance Result:"):
			r.Result = strings.TrimSpace(strings.TrimPrefix(line, "OCI Conformance Result:"))
			section = "counts"
			continue
		}
		switch section {
		case "tests":
			// "<name>: <status>", indented by depth, every name under the first
			// (the root's); a leaf's errors follow as "  - ..." lines, which
			// may run over several lines
			name, status, ok := cutLast(strings.TrimSpace(line), ": ")
			if !ok || !statuses[status] {
				continue
			}
			if root == "" {
				root = name
			} else if !strings.HasPrefix(name, root+"/") {
				continue
			}
			if old, seen := r.Tests[name]; !seen || worse(status, old) {
				r.Tests[name] = status
			}
		case "counts":
			// "  Pass..........................:         23", up to a blank line
			if strings.TrimSpace(line) == "" {
				section = ""
				continue
			}
			k, v, ok := cutLast(strings.TrimSpace(line), ":")
			if !ok {
				continue
			}
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				continue
			}
			r.Counts[strings.TrimRight(k, ".")] = n
		}
	}
	return r
}

// Failures returns "name: status" for each test that printed FAIL or Error,
// sorted, for failure messages.
func (r ConformanceResult) Failures() []string {
	var out []string
	for name, st := range r.Tests {
		if st == "FAIL" || st == "Error" {
			out = append(out, name+": "+st)
		}
	}
	sort.Strings(out)
	return out
}

// statuses are the statuses the suite prints for a test.
var statuses = map[string]bool{"Pass": true, "FAIL": true, "Error": true, "Skip": true, "Disabled": true, "Unknown": true}

func worse(a, b string) bool { return rank(a) > rank(b) }

func rank(status string) int {
	switch status {
	case "Pass":
		return 0
	case "FAIL":
		return 3
	case "Error":
		return 2
	default:
		return 1
	}
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// words joins the non-empty items with single spaces: the suite splits its
// lists on every space, and an empty item is a digest it cannot parse.
func words(items []string) string {
	var w []string
	for _, it := range items {
		w = append(w, strings.Fields(it)...)
	}
	return strings.Join(w, " ")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

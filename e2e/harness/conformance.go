package harness

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ConformanceOptions says what the OCI conformance suite reads from a
// registry, read-only: the tag, manifests (the list and each platform
// manifest) and blobs it may fetch. Referrers, when not empty, are the
// subjects whose referrers it lists: it sets OCI_RO_DATA_REFERRERS and
// turns the referrers tests on (OCI_API_REFERRER=true).
type ConformanceOptions struct {
	Addr, Repo, Tag string
	Manifests       []string
	Blobs           []string
	Referrers       []string
}

// ConformanceResult is what the suite printed: its verdict ("Pass" or
// "FAIL"), its counts by status (Pass, FAIL, Error, Skip, Disabled,
// Total), each test's status by its name as printed (such as
// "OCI Conformance Test/read-only/referrers": "Pass"; a name printed more
// than once keeps its worst status), and the whole output.
type ConformanceResult struct {
	Result string
	Counts map[string]int
	Tests  map[string]string
	Output string
}

// Conformance runs the OCI conformance suite (.tools/bin/conformance.test)
// read-only against o.Addr in a temporary directory, with pulls and tag
// listing on, pushes and deletes off. At the pinned version it prints its
// summary and then panics in its report writer, so its exit status says
// nothing: the result is what it printed, and a run that printed no
// summary fails the test.
func Conformance(t testing.TB, o ConformanceOptions) ConformanceResult {
	t.Helper()
	bin := Tool(t, "conformance.test")
	dir := TempDir(t)
	env := []string{
		"PATH=/usr/bin:/bin", "HOME=" + dir,
		"OCI_REGISTRY=" + o.Addr, "OCI_TLS=disabled",
		"OCI_REPO1=" + o.Repo, "OCI_REPO2=" + o.Repo,
		"OCI_API_PULL=true", "OCI_API_PUSH=false", "OCI_API_TAGS_LIST=true",
		"OCI_API_BLOBS_DELETE=false", "OCI_API_MANIFESTS_DELETE=false", "OCI_API_TAGS_DELETE=false",
		"OCI_RO_DATA_TAGS=" + o.Tag,
		"OCI_RO_DATA_MANIFESTS=" + strings.Join(o.Manifests, " "),
		"OCI_RO_DATA_BLOBS=" + strings.Join(o.Blobs, " "),
	}
	if len(o.Referrers) > 0 {
		env = append(env, "OCI_API_REFERRER=true", "OCI_RO_DATA_REFERRERS="+strings.Join(o.Referrers, " "))
	} else {
		env = append(env, "OCI_API_REFERRER=false")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir, cmd.Env = dir, env
	out, _ := cmd.CombinedOutput() // it exits 2 after its summary; judged by what it printed
	r := ParseConformance(string(out))
	if r.Result == "" {
		t.Fatalf("the conformance suite printed no summary (%v); its output:\n%s", cmd.ProcessState, out)
	}
	return r
}

var (
	conformanceTest  = regexp.MustCompile(`^\s*(\S.*): (Pass|FAIL|Error|Skip|Disabled)$`)
	conformanceCount = regexp.MustCompile(`^\s+([A-Za-z]+)\.+:\s+(\d+)$`)
	statusRank       = map[string]int{"Pass": 0, "Disabled": 1, "Skip": 2, "Error": 3, "FAIL": 4}
)

// ParseConformance reads the conformance suite's printed results: the
// "Test results" section (one test a line) and the summary that follows
// "OCI Conformance Result:".
func ParseConformance(out string) ConformanceResult {
	r := ConformanceResult{Counts: map[string]int{}, Tests: map[string]string{}, Output: out}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Test results":
			section = "tests"
			continue
		case strings.HasPrefix(line, "OCI Conformance Result:"):
			r.Result = strings.TrimSpace(strings.TrimPrefix(line, "OCI Conformance Result:"))
			section = "counts"
			continue
		case strings.TrimSpace(line) == "":
			section = ""
			continue
		}
		switch section {
		case "tests":
			if m := conformanceTest.FindStringSubmatch(line); m != nil {
				if old, ok := r.Tests[m[1]]; !ok || statusRank[m[2]] > statusRank[old] {
					r.Tests[m[1]] = m[2]
				}
			}
		case "counts":
			if m := conformanceCount.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[2])
				r.Counts[m[1]] = n
			}
		}
	}
	return r
}

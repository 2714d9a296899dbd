package harness

import (
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Snapshot is what a suite could leave behind on the machine: mounts,
// network namespaces and links. Take one before a suite starts anything.
type Snapshot struct {
	mounts, netns, links map[string]bool
}

// TakeSnapshot records the machine's mounts, network namespaces and links.
func TakeSnapshot(t testing.TB) Snapshot {
	t.Helper()
	return Snapshot{mounts: mounts(t), netns: netns(), links: links()}
}

// CheckNothingLeft runs the suite's last subtest: every process the tests
// started has exited, and no mount, network namespace or link is there that
// was not there in before.
func CheckNothingLeft(t *testing.T, before Snapshot) {
	t.Run("nothing is left behind", func(t *testing.T) {
		var left []string
		for _, p := range StillRunning() {
			left = append(left, "process "+p)
		}
		left = append(left, added("mount", before.mounts, mounts(t))...)
		left = append(left, added("network namespace", before.netns, netns())...)
		left = append(left, added("link", before.links, links())...)
		left = append(left, extraLeftovers()...)
		if len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
}

func added(kind string, before, now map[string]bool) []string {
	var out []string
	for k := range now {
		if !before[k] {
			out = append(out, kind+" "+k)
		}
	}
	sort.Strings(out)
	return out
}

// mounts returns each mount point with its file system type.
func mounts(t testing.TB) map[string]bool {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			sep := 0
			for i, x := range f {
				if x == "-" {
					sep = i
					break
				}
			}
			typ := ""
			if sep > 0 && sep+1 < len(f) {
				typ = f[sep+1]
			}
			m[f[4]+" ("+typ+")"] = true
		}
	}
	return m
}

func netns() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

func links() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

var (
	leftoverMu     sync.Mutex
	leftoverChecks []func() []string
)

// AddLeftoverCheck adds a check that CheckNothingLeft runs too: check
// returns a line for each thing left behind (a process by PID, a namespace,
// a system-wide file). NewNetwork adds one for each network.
func AddLeftoverCheck(check func() []string) {
	leftoverMu.Lock()
	defer leftoverMu.Unlock()
	leftoverChecks = append(leftoverChecks, check)
}

func extraLeftovers() []string {
	leftoverMu.Lock()
	checks := append([]func() []string(nil), leftoverChecks...)
	leftoverMu.Unlock()
	var out []string
	for _, c := range checks {
		out = append(out, c()...)
	}
	return out
}

// CheckOwnLeftovers runs the suite's last subtest, "nothing is left
// behind", without CheckNothingLeft's machine-wide diff: every process the
// tests started through the harness has exited, and every check added with
// AddLeftoverCheck (each Network's: its namespaces, links, mounts, processes
// and files) finds nothing. Suites that run while others run on the same
// machine use it: the machine-wide diff names the other suites' namespaces
// and mounts too.
func CheckOwnLeftovers(t *testing.T) {
	t.Run("nothing is left behind", func(t *testing.T) {
		var left []string
		for _, p := range StillRunning() {
			left = append(left, "process "+p)
		}
		left = append(left, extraLeftovers()...)
		if len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
}

package harness

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// CheckNothingLeft runs the suite's last subtest, "nothing is left
// behind", on what this run made and nothing else, so that suites may run
// side by side: every process the tests started through the harness has
// exited, no process names the run's temporary folder (TempDir's) on its
// command line (daemons brought up by scripts keep their state there),
// nothing is mounted under it, and every check added with AddLeftoverCheck (each Network's namespaces,
// links, processes and files; each bring-up's) finds nothing.
func CheckNothingLeft(t *testing.T) {
	t.Run("nothing is left behind", func(t *testing.T) {
		var left []string
		for _, p := range StillRunning() {
			left = append(left, "process "+p)
		}
		if tempDir != "" {
			left = append(left, ProcessesNaming(tempDir+"/")...)
			for m := range mounts(t) {
				if strings.HasPrefix(m, tempDir+"/") {
					left = append(left, "mount "+m)
				}
			}
		}
		left = append(left, extraLeftovers()...)
		sort.Strings(left)
		if len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
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

var (
	leftoverMu     sync.Mutex
	leftoverChecks []func() []string
)

// AddLeftoverCheck adds a check that CheckNothingLeft runs: check
// returns a line for each thing left behind (a process by PID, a namespace,
// a system-wide file). NewNetwork adds one for each network.
func AddLeftoverCheck(check func() []string) {
	leftoverMu.Lock()
	defer leftoverMu.Unlock()
	leftoverChecks = append(leftoverChecks, check)
}

// extraLeftovers runs the checks added so far and forgets them: each runs in
// the CheckNothingLeft of the suite that added it, and not again in a later
// suite's, when its names (a released subnet's ID) may be someone else's.
func extraLeftovers() []string {
	leftoverMu.Lock()
	checks := leftoverChecks
	leftoverChecks = nil
	leftoverMu.Unlock()
	var out []string
	for _, c := range checks {
		out = append(out, c()...)
	}
	return out
}

// netns returns the names of the machine's named network namespaces.
func netns() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

// links returns the names of the network links in this namespace.
func links() map[string]bool {
	m := map[string]bool{}
	entries, _ := os.ReadDir("/sys/class/net")
	for _, e := range entries {
		m[e.Name()] = true
	}
	return m
}

// ProcessesNaming returns a line for each process (other than this one)
// whose command line contains any of paths.
func ProcessesNaming(paths ...string) []string {
	entries, _ := os.ReadDir("/proc")
	self := strconv.Itoa(os.Getpid())
	var out []string
	for _, e := range entries {
		if e.Name() == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		for _, p := range paths {
			if strings.Contains(cmd, p) {
				out = append(out, "process "+e.Name()+": "+cmd)
				break
			}
		}
	}
	return out
}

package harness

import (
	"os"
	"sort"
	"strings"
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

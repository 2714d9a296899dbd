package harness

import (
	"strings"
	"testing"
)

// CheckNoProcessLeft runs the final subtest "nothing is left behind" of a
// suite that starts processes and nothing else (no mounts, namespaces or
// links): every process its tests started has exited. Such a suite does
// not compare the machine's mounts and links with a snapshot, since other
// suites running at the same time add and remove theirs.
func CheckNoProcessLeft(t *testing.T) {
	t.Run("nothing is left behind", func(t *testing.T) {
		if left := StillRunning(); len(left) > 0 {
			t.Errorf("still running:\n  %s", strings.Join(left, "\n  "))
		}
	})
}

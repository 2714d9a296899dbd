package harness

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BringUp runs scripts/bring/WHAT.sh up with args, which starts a daemon,
// a namespace, a cluster or the arm64 machine and asserts nothing, and
// arranges for `WHAT.sh down` with the same args when the test ends. It
// returns the KEY=VALUE lines the script printed (DOCKER_HOST, say). A
// failed bring-up fails the test with the script's error line.
func BringUp(t testing.TB, what string, args ...string) map[string]string {
	t.Helper()
	script := filepath.Join(Root(), "scripts", "bring", what+".sh")
	t.Cleanup(func() {
		if out, err := exec.Command(script, append([]string{"down"}, args...)...).CombinedOutput(); err != nil {
			t.Errorf("%s down: %v\n%s", what, err, out)
		}
	})
	cmd := exec.Command(script, append([]string{"up"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bringing up %s: %v\n%s", what, err, stderr.String())
	}
	vars := map[string]string{}
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars
}

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
	return BringUpAsync(t, what, args...)()
}

// BringUpAsync starts scripts/bring/WHAT.sh up with args at once and
// returns a function that waits for it and returns its KEY=VALUE lines, as
// BringUp does; call that from the test's goroutine. Several bring-ups (and
// Dist) run side by side this way. `WHAT.sh down` runs when the test ends.
func BringUpAsync(t testing.TB, what string, args ...string) func() map[string]string {
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
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("bringing up %s: %v", what, err)
	}
	go func() { done <- cmd.Wait() }()
	return func() map[string]string {
		t.Helper()
		if err := <-done; err != nil {
			t.Fatalf("bringing up %s: %v\n%s", what, err, stderr.String())
		}
		return parseVars(stdout.Bytes())
	}
}

// parseVars reads the KEY=VALUE lines a bring-up script printed.
func parseVars(out []byte) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	return vars
}

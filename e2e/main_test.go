// Package e2e holds quinistry's end-to-end suites: each Test function is one
// suite (TestCore, TestHold, ...) and each subtest one check, named for what
// it proves, so that `go test -run 'TestHold/sigterm'` runs a single check.
// They drive the real binary and real clients; scripts/ only installs tools
// and brings daemons up. scripts/test.sh runs each suite as a stage.
package e2e

import (
	"os"
	"testing"

	"github.com/quinistry/quinistry/e2e/harness"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.RemoveTemp()
	os.Exit(code)
}

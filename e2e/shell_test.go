package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/quinistry/quinistry/e2e/harness"
)

// bashBudget is the most lines of bash the repository may hold outside
// scripts/arm64-node/ (the arm64 machine's own files): bash brings things up
// and down, and the suites' assertions are Go.
const bashBudget = 1500

// TestShell checks the repository's shell scripts: each passes shellcheck,
// none asserts (no check/checks_done, no PASS/FAIL counting: assertions are
// Go tests), and the bash outside scripts/arm64-node/ stays within its
// budget.
func TestShell(t *testing.T) {
	shellcheck := harness.Tool(t, "shellcheck")
	scripts := shellScripts(t)
	if len(scripts) == 0 {
		t.Fatal("found no shell scripts")
	}
	for _, s := range scripts {
		t.Run(s.path+" passes shellcheck", func(t *testing.T) {
			cmd := exec.Command(shellcheck, "-x", "-s", s.dialect, s.path)
			cmd.Dir = harness.Root()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("shellcheck: %v\n%s", err, out)
			}
		})
	}
	asserting := regexp.MustCompile(`(^|[;&|({]\s*)(check|checks_done)\s|\b(CHECKS_PASSED|CHECKS_FAILED)\b|echo "(PASS|FAIL) `)
	t.Run("no shell script asserts", func(t *testing.T) {
		for _, s := range scripts {
			for i, line := range s.lines {
				if strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				if asserting.MatchString(line) {
					t.Errorf("%s:%d asserts: %s", s.path, i+1, strings.TrimSpace(line))
				}
			}
		}
	})
	t.Run("bash outside scripts/arm64-node/ is at most 1500 lines", func(t *testing.T) {
		total := 0
		var sizes []string
		for _, s := range scripts {
			if strings.HasPrefix(s.path, "scripts/arm64-node/") {
				continue
			}
			total += len(s.lines)
			sizes = append(sizes, fmt.Sprintf("%s %d", s.path, len(s.lines)))
		}
		t.Logf("%d lines of bash outside scripts/arm64-node/", total)
		if total > bashBudget {
			t.Errorf("%d lines of bash outside scripts/arm64-node/, more than %d:\n  %s", total, bashBudget, strings.Join(sizes, "\n  "))
		}
	})
}

// shellScript is one shell script of the repository, its path relative to
// the root.
type shellScript struct {
	path, dialect string
	lines         []string
}

// shellScripts finds every shell script in the repository: files whose
// first line is a sh or bash shebang, or that declare `# shellcheck
// shell=bash` (libraries that are sourced).
func shellScripts(t *testing.T) []shellScript {
	root := harness.Root()
	var out []shellScript
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			switch rel {
			case ".git", ".tools", "dist", "results":
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasSuffix(path, ".go") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var lines []string
		sc := bufio.NewScanner(strings.NewReader(string(data)))
		sc.Buffer(make([]byte, 1024*1024), 1024*1024)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		if len(lines) == 0 {
			return nil
		}
		dialect := ""
		switch first := lines[0]; {
		case strings.HasPrefix(first, "#!") && strings.Contains(first, "bash"):
			dialect = "bash"
		case strings.HasPrefix(first, "#!") && (strings.HasSuffix(first, "/sh") || strings.HasSuffix(first, "busybox sh")):
			dialect = "sh"
		case strings.Contains(string(data), "# shellcheck shell=bash"):
			dialect = "bash"
		}
		if dialect != "" {
			out = append(out, shellScript{path: rel, dialect: dialect, lines: lines})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

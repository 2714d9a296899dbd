package harness

import (
	"sync"
	"testing"
)

// Scope is a testing.TB whose cleanups run when Close is called, or at the
// latest when the test that made it ends, last registered first. A suite
// brings its networks, daemons and servers up in a Scope (BringUp(scope,
// ...), StartWith(scope, ...), TempDir(scope)) and closes it before its final
// subtest, "nothing is left behind", so that the check sees the teardown
// done. Everything else (failing, logging) goes to the test.
type Scope struct {
	testing.TB
	mu  sync.Mutex
	fns []func()
}

// NewScope returns a Scope of t; t's end closes it too.
func NewScope(t testing.TB) *Scope {
	s := &Scope{TB: t}
	t.Cleanup(s.Close)
	return s
}

// Cleanup registers f to run when the scope closes.
func (s *Scope) Cleanup(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = append(s.fns, f)
}

// Close runs the registered cleanups, the last registered first. Closing
// twice is harmless; cleanups registered while closing run too.
func (s *Scope) Close() {
	for {
		s.mu.Lock()
		if len(s.fns) == 0 {
			s.mu.Unlock()
			return
		}
		f := s.fns[len(s.fns)-1]
		s.fns = s.fns[:len(s.fns)-1]
		s.mu.Unlock()
		f()
	}
}

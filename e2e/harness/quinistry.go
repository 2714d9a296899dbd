package harness

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout is how long Start waits for a generation's ready line; a
// generation under qemu takes longer than a native one.
var ReadyTimeout = 30 * time.Second

// Server is a quinistry process started by a test.
type Server struct {
	// Name names the server in failure messages.
	Name string
	// Addr is the address it logged in its ready line (127.0.0.1:PORT).
	Addr string
	// Log is its standard error, the server's log.
	Log *Log
	// Stdout is what it printed on standard output, once it has exited.
	Stdout *Output

	cmd     *exec.Cmd
	done    chan struct{}
	state   *os.ProcessState
	waitErr error
	marks   atomic.Int64
}

// Options says how to start a process; the zero value starts the binary
// with an empty environment, in the current directory, as root.
type Options struct {
	// Env is the whole environment: nothing of the test's own reaches the
	// process.
	Env []string
	// Dir is the working directory.
	Dir string
	// User, when not nil, is the uid and gid to run as, with no
	// supplementary groups.
	User *uint32
	// Runner runs the binary (such as qemu-aarch64-static): argv becomes
	// Runner + the binary + its arguments.
	Runner []string
	// NoWaitReady returns as soon as the process is started, without waiting
	// for its ready line.
	NoWaitReady bool
	// Stdin, when not nil, is the process's standard input.
	Stdin io.Reader
}

var (
	startedMu sync.Mutex
	started   = map[int]*Server{}
)

// Start runs a quinistry binary with args and an empty environment plus env
// (K=V), waits until it logs its ready line, and stops it when the test
// ends. Give it "--addr", "127.0.0.1:0" so that it picks a free port.
func Start(t testing.TB, name, bin string, args []string, env ...string) *Server {
	t.Helper()
	return StartWith(t, name, Options{Env: env}, append([]string{bin}, args...)...)
}

// StartWith runs argv as opts say and, unless opts.NoWaitReady, waits until
// it logs its ready line.
func StartWith(t testing.TB, name string, opts Options, argv ...string) *Server {
	t.Helper()
	s, err := start(name, opts, argv)
	if err != nil {
		t.Fatalf("starting %s (%v): %v", name, argv, err)
	}
	t.Cleanup(func() { s.Stop(t) })
	if !opts.NoWaitReady {
		s.WaitReady(t)
	}
	return s
}

func start(name string, opts Options, argv []string) (*Server, error) {
	if len(opts.Runner) > 0 {
		argv = append(append([]string(nil), opts.Runner...), argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = opts.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = opts.Dir
	cmd.Stdin = opts.Stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if opts.User != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: *opts.User, Gid: *opts.User, Groups: []uint32{}}
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, Log: newLog(), Stdout: &Output{}, cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = logW
	cmd.Stdout = s.Stdout
	if err := cmd.Start(); err != nil {
		logR.Close()
		logW.Close()
		return nil, err
	}
	logW.Close()
	logDone := make(chan struct{})
	go func() { s.Log.read(logR); logR.Close(); close(logDone) }()
	startedMu.Lock()
	started[cmd.Process.Pid] = s
	startedMu.Unlock()
	go func() {
		s.waitErr = cmd.Wait()
		<-logDone
		s.state = cmd.ProcessState
		startedMu.Lock()
		delete(started, cmd.Process.Pid)
		startedMu.Unlock()
		close(s.done)
	}()
	return s, nil
}

// WaitReady waits until the server logs its ready line and records the
// address it names.
func (s *Server) WaitReady(t testing.TB) {
	t.Helper()
	r, err := s.Log.WaitErr(ReadyTimeout, func(r Record) bool { return r.Msg() == "ready" })
	if err != nil {
		t.Fatalf("%s did not become ready: %v; exit %s; its log:\n%s", s.Name, err, s.ExitStatus(), s.Log.Text())
	}
	s.Addr = r["addr"]
}

// PID returns the process's ID.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// URL returns http://ADDR followed by path.
func (s *Server) URL(path string) string { return "http://" + s.Addr + path }

// Signal sends sig to the process.
func (s *Server) Signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signalling %s: %v", s.Name, err)
	}
}

// Exited returns a channel closed when the process has exited and its log
// has been read to the end.
func (s *Server) Exited() <-chan struct{} { return s.done }

// WaitExit waits at most timeout for the process to exit and returns its
// exit code (-1 when a signal ended it). It fails the test on the timeout.
func (s *Server) WaitExit(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
		return s.state.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %s; its log:\n%s", s.Name, timeout, s.Log.Text())
		return -1
	}
}

// ExitStatus says how the process ended, or that it is still running.
func (s *Server) ExitStatus() string {
	select {
	case <-s.done:
		return s.state.String()
	default:
		return "still running"
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after 10 s. It is called
// when the test ends too; stopping twice is harmless.
func (s *Server) Stop(t testing.TB) {
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Mark sends a request that the server logs, and waits until that log line
// arrives: everything the server logged for earlier requests has then been
// read. It returns the marker's path, unique to this server.
func (s *Server) Mark(t testing.TB) string {
	t.Helper()
	path := "/v2/e2e-marker-" + strconv.FormatInt(s.marks.Add(1), 10) + "/tags/list"
	resp, err := http.Get(s.URL(path))
	if err != nil {
		t.Fatalf("marker request to %s: %v", s.Name, err)
	}
	resp.Body.Close()
	s.Log.Wait(t, 10*time.Second, "the marker request "+path+" in "+s.Name+"'s log", func(r Record) bool {
		return r.Msg() == "request" && r["path"] == path
	})
	return path
}

// Requests returns the request records logged between the marker request
// after (or the start, when after is "") and the marker request before (or
// the end, when before is ""), marker requests themselves left out.
func (s *Server) Requests(after, before string) []Record {
	var out []Record
	in := after == ""
	for _, r := range s.Log.Records() {
		if r.Msg() != "request" {
			continue
		}
		switch r["path"] {
		case after:
			in = true
			continue
		case before:
			if before != "" {
				return out
			}
		}
		if in && !isMarker(r["path"]) {
			out = append(out, r)
		}
	}
	return out
}

func isMarker(path string) bool {
	return len(path) > len("/v2/e2e-marker-") && path[:len("/v2/e2e-marker-")] == "/v2/e2e-marker-"
}

// Output is a process's standard output, safe to read while it is written.
type Output struct {
	mu  sync.Mutex
	buf []byte
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// String returns what was written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf)
}

// StillRunning returns a line for each process a test started that has not
// exited, for the leftover check.
func StillRunning() []string {
	startedMu.Lock()
	defer startedMu.Unlock()
	var out []string
	for pid, s := range started {
		out = append(out, fmt.Sprintf("%s (pid %d, %s)", s.Name, pid, filepath.Base(s.cmd.Path)))
	}
	return out
}

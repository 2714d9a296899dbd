package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// MachineConfig says how to boot an arm64 machine.
type MachineConfig struct {
	// Image is the machine's image (scripts/install-arm64-node.sh --dir).
	Image string
	// Job is the executable its /init runs (scripts/arm64-node/*.job).
	Job string
	// NS and Bridge are where its tap goes: a bridge in a network
	// namespace of the test's (a Network's switch namespace, a cluster's).
	NS, Bridge string
	// Addr is the machine's address on the bridge's /24, Gateway its
	// default route.
	Addr, Gateway string
	// From is a namespace with an address on the bridge, from which Send
	// reaches the machine.
	From string
	// Params (K=V) reach the job as QNODE_K.
	Params []string
	// Extra are cpio archives, or directories packed as root's, added to
	// the initramfs before the job.
	Extra []string
}

// Machine is an arm64 machine booted by scripts/bring/arm64vm.sh under
// qemu-system-aarch64, its NIC on a tap device on a bridge of the test's.
// The test talks to it through its serial console, which Machine follows
// as the file grows, and a TCP port its job listens on.
type Machine struct {
	// Dir holds its initramfs, console and qemu's log.
	Dir string
	// Addr is its address; NS the namespace its tap (and qemu) is in.
	Addr, NS string
	// Tap is its tap device in NS.
	Tap string
	// Console is its serial console, line by line (carriage returns
	// dropped), as it is written.
	Console *Log

	cfg      MachineConfig
	cmd      *exec.Cmd
	start    string // the process's start time, for the leftover check
	exited   chan struct{}
	state    *os.ProcessState
	consoleF string
	qemuLog  string
	started  time.Time
}

// StartMachine brings up the machine's tap and boots it in dir. When the
// test ends it is killed if it still runs and its tap is deleted; its
// leftover check (the machine's process and qemu, its tap, any process
// naming dir) runs in the final "nothing is left behind".
func StartMachine(t testing.TB, dir string, cfg MachineConfig) *Machine {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vars := BringUp(t, "arm64vm", dir, cfg.NS, cfg.Bridge)
	m := &Machine{Dir: dir, Addr: cfg.Addr, NS: cfg.NS, Tap: vars["TAP"], cfg: cfg, exited: make(chan struct{})}
	if m.Tap == "" {
		t.Fatalf("arm64vm.sh up named no tap: %v", vars)
	}
	AddLeftoverCheck(m.Leftovers)
	args := append([]string{"start", dir, cfg.Image, cfg.Job, cfg.Addr + "/24", cfg.Gateway}, cfg.Params...)
	cmd := exec.Command(filepath.Join(Root(), "scripts", "bring", "arm64vm.sh"), args...)
	cmd.Env = append(os.Environ(), "ARM64VM_EXTRA="+strings.Join(cfg.Extra, " "))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("arm64vm.sh start: %v", err)
	}
	m.cmd, m.start, m.started = cmd, startTime(cmd.Process.Pid), time.Now()
	t.Cleanup(func() { m.Stop(0) })
	// The script prints its lines, then becomes qemu with its output in a
	// file: the pipe ends there, or where the script fails.
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			switch k {
			case "CONSOLE":
				m.consoleF = v
			case "QEMU_LOG":
				m.qemuLog = v
			}
		}
	}
	go func() { _ = cmd.Wait(); m.state = cmd.ProcessState; close(m.exited) }()
	if m.consoleF == "" {
		<-m.exited
		t.Fatalf("arm64vm.sh start failed (%s): %s", m.state, strings.TrimSpace(stderr.String()))
	}
	m.Console = newLog()
	go m.Console.read(followFile(m.consoleF, m.exited))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the arm64 machine of %s (%s): the end of its console:\n%s", dir, m.ExitStatus(), m.ConsoleTail(30))
		}
	})
	return m
}

// followFile returns the lines written to the file at path as they come
// (inotify tells when it grows), without carriage returns, until stopped is
// closed and what was written before has been read.
func followFile(path string, stopped <-chan struct{}) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		f, err := os.Open(path)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		defer f.Close()
		grew := make(chan struct{}, 1)
		if fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK); err == nil {
			events := os.NewFile(uintptr(fd), "inotify")
			defer events.Close()
			if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err == nil {
				go func() {
					buf := make([]byte, 4096)
					for {
						if _, err := events.Read(buf); err != nil {
							return
						}
						select {
						case grew <- struct{}{}:
						default:
						}
					}
				}()
			}
		}
		// a safety net should an event go missing: no check waits on it
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		buf := make([]byte, 64*1024)
		last := false
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, err := pw.Write(bytes.ReplaceAll(buf[:n], []byte("\r"), nil)); err != nil {
					return
				}
				continue
			}
			if err != nil && err != io.EOF {
				pw.CloseWithError(err)
				return
			}
			if last {
				pw.Close()
				return
			}
			select {
			case <-grew:
			case <-tick.C:
			case <-stopped:
				last = true // read what is left, then end
			}
		}
	}()
	return pr
}

var qnodeLine = regexp.MustCompile(`^QNODE `)

// WaitConsole waits at most timeout for the first console line "QNODE ..."
// that matches the extended regular expression re after "QNODE " (as
// `^QNODE (re)`) and returns it. The error says the machine stopped or the
// time ran out first, with the end of its console.
func (m *Machine) WaitConsole(timeout time.Duration, re string) (string, error) {
	rx, err := regexp.Compile("^QNODE (" + re + ")")
	if err != nil {
		return "", err
	}
	line, err := m.Console.WaitLineErr(timeout, rx.MatchString)
	if err != nil {
		what := "the machine stopped"
		if !m.Exited() {
			what = "it still runs"
		}
		return "", fmt.Errorf("no console line /^QNODE (%s)/: %v (%s, after %s); the console's end:\n%s", re, err, what, time.Since(m.started).Round(time.Second), m.ConsoleTail(15))
	}
	return line, nil
}

// Reports returns the console's "QNODE ..." lines so far, without the
// prefix.
func (m *Machine) Reports() []string {
	var out []string
	for _, l := range m.Console.Lines() {
		if qnodeLine.MatchString(l) {
			out = append(out, strings.TrimPrefix(l, "QNODE "))
		}
	}
	return out
}

// ConsoleTail returns the console's last n lines, and qemu's own output
// when there is any, for failure messages.
func (m *Machine) ConsoleTail(n int) string {
	lines := m.Console.Lines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := "  | " + strings.Join(lines, "\n  | ")
	if data, err := os.ReadFile(m.qemuLog); err == nil && len(bytes.TrimSpace(data)) > 0 {
		s += "\nqemu said: " + strings.TrimSpace(string(data))
	}
	return s
}

// Send connects to the machine's port from cfg.From and sends text and a
// newline, trying again every 100 ms until the machine listens (its job
// opens the port when it is ready for the message), for at most a minute.
func (m *Machine) Send(port int, text string) error {
	addr := m.Addr + ":" + strconv.Itoa(port)
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		conn, err := DialIn(ctx, m.cfg.From, "tcp", addr)
		cancel()
		if err == nil {
			_, err = io.WriteString(conn, text+"\n")
			conn.Close()
			return err
		}
		if m.Exited() {
			return fmt.Errorf("sending %q to %s: the machine stopped", text, addr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sending %q to %s: %v", text, addr, err)
		}
		select {
		case <-m.exited:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Exited says whether the machine's process has ended.
func (m *Machine) Exited() bool {
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// Wait waits at most timeout for the machine to power itself off and
// reports whether it did; its console has then been read to the end.
func (m *Machine) Wait(timeout time.Duration) bool {
	select {
	case <-m.exited:
	case <-time.After(timeout):
		return false
	}
	// no line matches: this returns when the console has been read to its end
	_, _ = m.Console.WaitLineErr(10*time.Second, func(string) bool { return false })
	return true
}

// ExitStatus says how the machine's process ended (qemu's status through
// timeout: 0 when the machine powered off), or that it still runs.
func (m *Machine) ExitStatus() string {
	if !m.Exited() {
		return "still running"
	}
	return m.state.String()
}

// Stop waits at most grace for the machine to power itself off, then kills
// it (qemu and the timeout above it); it returns whether it had to kill.
// Stopping twice is harmless.
func (m *Machine) Stop(grace time.Duration) (killed bool) {
	if m.Wait(grace) {
		return false
	}
	_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
	<-m.exited
	return true
}

// Leftovers lists what of the machine is still there: its process, a qemu
// of its pidfile, its tap, a process naming its folder.
func (m *Machine) Leftovers() []string {
	var left []string
	if pid := m.cmd.Process.Pid; m.start != "" && startTime(pid) == m.start {
		left = append(left, fmt.Sprintf("the arm64 machine's process %d", pid))
	}
	if data, err := os.ReadFile(filepath.Join(m.Dir, "qemu.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.HasPrefix(string(comm), "qemu-system") {
				left = append(left, fmt.Sprintf("qemu %d of %s", pid, m.Dir))
			}
		}
	}
	if _, err := os.Stat("/run/netns/" + m.NS); err == nil {
		if out, err := exec.Command("ip", "-n", m.NS, "-o", "link", "show", m.Tap).CombinedOutput(); err == nil {
			left = append(left, fmt.Sprintf("tap %s in %s: %s", m.Tap, m.NS, bytes.TrimSpace(out)))
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(m.Dir+"/")) && filepath.Base(filepath.Dir(p)) != strconv.Itoa(os.Getpid()) {
			left = append(left, fmt.Sprintf("process %s: %.120s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
		}
	}
	return left
}

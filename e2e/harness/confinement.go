package harness

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Confinement is what the kernel says about a running process's lockdown,
// read from /proc/PID: what a container really got, whatever flags it was
// started with.
type Confinement struct {
	PID int
	// Uid and Gid are the real, effective, saved and file-system IDs.
	Uid, Gid [4]uint32
	// Groups are the supplementary groups.
	Groups []uint32
	// CapInh, CapPrm, CapEff, CapBnd and CapAmb are the capability sets.
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	// NoNewPrivs is the no_new_privs bit.
	NoNewPrivs bool
	// Seccomp is the seccomp mode: 0 none, 1 strict, 2 a filter.
	Seccomp int
	// RootOptions are the per-mount options of the mount at the process's
	// root ("/" in its mount namespace), such as ro and nosuid.
	RootOptions []string
	// NetNS and MntNS name the process's network and mount namespaces
	// (such as "net:[4026531840]").
	NetNS, MntNS string
	// Cmdline is its argv.
	Cmdline []string
	// Cgroup is its cgroup path (cgroup v2), or its /proc/PID/cgroup lines.
	Cgroup string
}

// RootReadOnly says whether the process's root file system is mounted
// read-only.
func (c Confinement) RootReadOnly() bool { return slices.Contains(c.RootOptions, "ro") }

// String sums up the confinement for failure messages.
func (c Confinement) String() string {
	return fmt.Sprintf("pid %d, uid %v, gid %v, groups %v, CapEff %016x CapPrm %016x CapBnd %016x CapAmb %016x, NoNewPrivs %v, Seccomp %d, root mounted %s, %s, cgroup %s, argv %q",
		c.PID, c.Uid, c.Gid, c.Groups, c.CapEff, c.CapPrm, c.CapBnd, c.CapAmb, c.NoNewPrivs, c.Seccomp, strings.Join(c.RootOptions, ","), c.NetNS, c.Cgroup, c.Cmdline)
}

// ReadConfinement reads /proc/PID/status, mountinfo, cmdline and the
// namespace links of a running process.
func ReadConfinement(t testing.TB, pid int) Confinement {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid)
	c := Confinement{PID: pid}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		t.Fatalf("reading the status of process %d: %v", pid, err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(status), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(val)
		switch key {
		case "Uid", "Gid":
			if len(f) != 4 {
				t.Fatalf("process %d: status line %q", pid, line)
			}
			ids := &c.Uid
			if key == "Gid" {
				ids = &c.Gid
			}
			for i, s := range f {
				ids[i] = parseUint32(t, pid, line, s)
			}
		case "Groups":
			for _, s := range f {
				c.Groups = append(c.Groups, parseUint32(t, pid, line, s))
			}
		case "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb":
			if len(f) != 1 {
				t.Fatalf("process %d: status line %q", pid, line)
			}
			v, err := strconv.ParseUint(f[0], 16, 64)
			if err != nil {
				t.Fatalf("process %d: status line %q: %v", pid, line, err)
			}
			*map[string]*uint64{"CapInh": &c.CapInh, "CapPrm": &c.CapPrm, "CapEff": &c.CapEff, "CapBnd": &c.CapBnd, "CapAmb": &c.CapAmb}[key] = v
		case "NoNewPrivs":
			c.NoNewPrivs = len(f) == 1 && f[0] == "1"
		case "Seccomp":
			if len(f) == 1 {
				c.Seccomp, _ = strconv.Atoi(f[0])
			}
		default:
			continue
		}
		seen[key] = true
	}
	for _, k := range []string{"Uid", "Gid", "CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp"} {
		if !seen[k] {
			t.Fatalf("process %d: no %s line in its status:\n%s", pid, k, status)
		}
	}

	mountinfo, err := os.ReadFile(dir + "/mountinfo")
	if err != nil {
		t.Fatalf("reading the mounts of process %d: %v", pid, err)
	}
	// the last mount on "/" is the one on top, the root the process sees
	for _, line := range strings.Split(string(mountinfo), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			c.RootOptions = strings.Split(f[5], ",")
		}
	}
	if c.RootOptions == nil {
		t.Fatalf("process %d: no mount on / in its mountinfo:\n%s", pid, mountinfo)
	}

	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		t.Fatalf("reading the command line of process %d: %v", pid, err)
	}
	c.Cmdline = strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if cg, err := os.ReadFile(dir + "/cgroup"); err == nil {
		c.Cgroup = strings.TrimPrefix(strings.TrimSpace(string(cg)), "0::")
	}
	if c.NetNS, err = os.Readlink(dir + "/ns/net"); err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	if c.MntNS, err = os.Readlink(dir + "/ns/mnt"); err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	return c
}

func parseUint32(t testing.TB, pid int, line, s string) uint32 {
	t.Helper()
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		t.Fatalf("process %d: status line %q: %v", pid, line, err)
	}
	return uint32(v)
}

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times.
func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			return float64(n)
		}
	}
	return 100
}

// statFields returns the fields of /proc/PID/stat after the command name
// (which may hold spaces): [0] is the state, [1] the parent's PID, [11] and
// [12] utime and stime (fields 14 and 15 of proc(5)), [16] nice.
func statFields(pid int) []string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// cpuTicks returns the utime+stime of the processes pids (every thread of
// each), in clock ticks; a process that is gone counts nothing.
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, pid := range pids {
		f := statFields(pid)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + s
	}
	return sum
}

// children returns the PIDs whose parent is pid (nginx's workers, say).
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(p); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

// withChildren returns pids and their children.
func withChildren(pids []int) []int {
	out := append([]int(nil), pids...)
	for _, p := range pids {
		out = append(out, children(p)...)
	}
	return out
}

// machine is the whole machine's CPU time from the "cpu" line of /proc/stat,
// in clock ticks: busy (user, nice, system, irq, softirq), irq (hard and
// soft interrupts, where loopback TCP does much of its work) and total.
type machine struct{ busy, irq, total int64 }

func machineTicks() machine {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return machine{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		x := strings.Fields(sc.Text())
		if len(x) < 9 || x[0] != "cpu" {
			continue
		}
		v := make([]int64, 9)
		for i := 1; i < 9; i++ {
			v[i], _ = strconv.ParseInt(x[i], 10, 64)
		}
		// user nice system idle iowait irq softirq steal (guest time is already in user and nice)
		return machine{
			busy:  v[1] + v[2] + v[3] + v[6] + v[7],
			irq:   v[6] + v[7],
			total: v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7] + v[8],
		}
	}
	return machine{}
}

// status returns the kB values of /proc/PID/status (VmRSS, RssAnon, RssFile,
// RssShmem...), in KiB.
func status(pid int) map[string]int64 {
	out := map[string]int64{}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 2 && f[1] == "kB" {
			out[k], _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	return out
}

// memfdKiB returns the size of the memfd files pid holds open, each counted
// once, in KiB: memory that VmRSS does not count unless it is mapped.
func memfdKiB(pid int) int64 {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, _ := os.ReadDir(dir)
	seen := map[uint64]bool{}
	var sum int64
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		target, err := os.Readlink(p)
		if err != nil || !strings.HasPrefix(target, "/memfd:") {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(p, &st) != nil || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		sum += st.Size
	}
	return sum / 1024
}

// niceness returns this process's nice value.
func niceness() int {
	f := statFields(os.Getpid())
	if len(f) < 17 {
		return 0
	}
	n, _ := strconv.Atoi(f[16])
	return n
}

// renice sets every thread of this process to nice n; threads made later
// inherit it, and so does every process started afterwards.
func renice(n int) error {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil {
			return err
		}
	}
	return nil
}

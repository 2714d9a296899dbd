package harness

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ListeningAddr returns the IPv4 TCP address (ADDR:PORT) that process pid
// listens on, read from its file descriptors and /proc/PID/net/tcp, and
// whether it listens at all.
func ListeningAddr(pid int) (string, bool) {
	inodes := socketInodes(pid)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
			continue
		}
		if addr, ok := decodeAddr4(f[1]); ok {
			return addr, true
		}
	}
	return "", false
}

// WaitListening polls (every 20 ms, at most timeout) until s listens, and
// returns the address: for a server that listens before it logs its ready
// line.
func WaitListening(t testing.TB, s *Server, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if addr, ok := ListeningAddr(s.PID()); ok {
			return addr
		}
		select {
		case <-s.Exited():
			t.Fatalf("%s exited (%s) before it listened; its log:\n%s", s.Name, s.ExitStatus(), s.Log.Text())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen after %s; its log:\n%s", s.Name, timeout, s.Log.Text())
		}
		<-tick.C
	}
}

// socketInodes returns the inodes of the sockets among pid's open files.
func socketInodes(pid int) map[string]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, _ := os.ReadDir(dir)
	out := map[string]bool{}
	for _, e := range entries {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	return out
}

// decodeAddr4 decodes /proc/net/tcp's "0100007F:1F90" (address in host
// byte order, little-endian here, then the port) into 127.0.0.1:8080.
func decodeAddr4(s string) (string, bool) {
	host, port, ok := strings.Cut(s, ":")
	b, err := hex.DecodeString(host)
	if !ok || err != nil || len(b) != 4 {
		return "", false
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return "", false
	}
	ip := net.IPv4(b[3], b[2], b[1], b[0])
	return net.JoinHostPort(ip.String(), strconv.FormatUint(p, 10)), true
}

// ProcStatus returns the value of key (such as "VmRSS") in /proc/PID/status,
// as the kernel writes it ("123456 kB").
func ProcStatus(pid int, key string) (string, error) {
	return procField(fmt.Sprintf("/proc/%d/status", pid), key)
}

// ReadChars returns how many bytes process pid has read through read(2),
// pread(2) and sendfile(2) so far: rchar in /proc/PID/io.
func ReadChars(pid int) (int64, error) {
	v, err := procField(fmt.Sprintf("/proc/%d/io", pid), "rchar")
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(v, 10, 64)
}

func procField(file, key string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s has no %s", file, key)
}

package harness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The allocator's claims: one file per network in use, named by its ID and
// holding its owner's PID and start time, made and removed under a flock of
// the folder, so that runs on this machine never share an ID or a subnet.
// The kernel drops the flock when its holder dies; a claim whose owner is
// gone is stale and taken over.
const netClaims = "/run/quinistry-e2e-net"

// netCount tells apart the networks of one process.
var netCount atomic.Int64

// Network is a private network for one test: a switch namespace holding a
// bridge, and a network namespace per node linked to the bridge by a veth
// pair, addressed in a /24 of 10.128.0.0/9. NewNetwork picks its ID and
// subnet so that no two networks on this machine hold them at the same
// time, and scripts/bring/netns.sh makes the namespaces.
type Network struct {
	// ID prefixes every name the network has: its namespaces (ID-sw,
	// ID-NODE) and links ("qn01a2", say).
	ID string
	// Subnet is the network's first three octets ("10.129.162"): the nodes
	// are Subnet.2, Subnet.3, ... on Subnet.0/24.
	Subnet string
	// Switch is the namespace that holds the network's bridge, Bridge: a
	// host the test does not make a Node of (the arm64 machine's tap, say)
	// joins there, at an address of Subnet above the nodes'.
	Switch, Bridge string
	// Dir is a private folder of the test's, for what the nodes' daemons
	// keep on disk.
	Dir string
	// Nodes are the nodes by name.
	Nodes map[string]*Node

	claim  string
	inodes map[string]uint64 // namespace name -> its inode, net:[INODE] in /proc/PID/ns/net

	mu      sync.Mutex
	tracked []trackedPID
	files   []string
}

// Node is one host of a Network: a network namespace with an eth0 on the
// network's bridge.
type Node struct {
	// Name is the node's name in its Network.
	Name string
	// NS is its namespace's name in /run/netns.
	NS string
	// IP is its address on the network.
	IP string
}

type trackedPID struct {
	name  string
	pid   int
	start string
}

// NewNetwork claims an ID and a subnet for t, and brings up one node per
// name (short lower-case names: they end up in namespace names) with
// scripts/bring/netns.sh. When t ends (or the Scope t is closes) the
// namespaces go, then the claim. The network's leftover check (its
// namespaces and links, any process still in one of its namespaces or
// naming its folder, the processes handed to Track and the files handed to
// TrackFile) runs in CheckNothingLeft.
func NewNetwork(t testing.TB, nodes ...string) *Network {
	t.Helper()
	n := &Network{Nodes: map[string]*Node{}, inodes: map[string]uint64{}}
	sub := ClaimSubnet(t)
	n.ID, n.Subnet, n.claim = sub.ID, sub.Prefix, sub.claim
	n.Dir = TempDir(t)
	AddLeftoverCheck(n.Leftovers)
	vars := BringUp(t, "netns", append([]string{n.ID, n.Subnet}, nodes...)...)
	n.Switch, n.Bridge = vars["SWITCH"], vars["BRIDGE"]
	if n.Switch == "" || n.Bridge == "" {
		t.Fatalf("netns.sh named no switch namespace or bridge: %v", vars)
	}
	for _, name := range nodes {
		node := &Node{Name: name, NS: vars["NS_"+name], IP: vars["IP_"+name]}
		if node.NS == "" || node.IP == "" {
			t.Fatalf("netns.sh named no namespace or address for node %s: %v", name, vars)
		}
		n.Nodes[name] = node
	}
	for _, ns := range append([]string{n.Switch}, sortedNS(n.Nodes)...) {
		var st syscall.Stat_t
		if err := syscall.Stat(filepath.Join("/run/netns", ns), &st); err != nil {
			t.Fatalf("namespace %s: %v", ns, err)
		}
		n.inodes[ns] = st.Ino
	}
	return n
}

func sortedNS(nodes map[string]*Node) []string {
	var out []string
	for _, node := range nodes {
		out = append(out, node.NS)
	}
	sort.Strings(out)
	return out
}

// Subnet is an IPv4 subnet and an ID claimed for one test: its network
// namespaces, links and cgroups are named by the ID, its addresses are in
// the subnet, and no two tests on this machine hold either at the same
// time. The claim is released when the test ends.
type Subnet struct {
	// ID names what the test makes: "qn01a2" for a /24, "qk05" for a /16.
	ID string
	// Prefix is the subnet's leading octets: "10.129.162" for a /24 of
	// 10.128.0.0/9, "10.69" for a /16 of 10.64.0.0/10.
	Prefix string

	claim string // the claim's file
}

// ClaimSubnet claims a /24 of 10.128.0.0/9, and its ID, for t.
func ClaimSubnet(t testing.TB) Subnet { return claimSubnet(t, narrow) }

// ClaimWideSubnet claims a /16 of 10.64.0.0/10, and its ID, for t: for a
// cluster whose nodes, pods and services need /24s of their own.
func ClaimWideSubnet(t testing.TB) Subnet { return claimSubnet(t, wide) }

// subnetKind is a range of subnets to claim from.
type subnetKind struct {
	size       int
	id, prefix func(i int) string
}

var (
	narrow = subnetKind{1 << 15, func(i int) string { return fmt.Sprintf("qn%04x", i) },
		func(i int) string { return fmt.Sprintf("10.%d.%d", 128+i>>8, i&255) }}
	wide = subnetKind{64, func(i int) string { return fmt.Sprintf("qk%02x", i) },
		func(i int) string { return fmt.Sprintf("10.%d", 64+i) }}
)

func claimSubnet(t testing.TB, kind subnetKind) Subnet {
	t.Helper()
	idx, claim, err := claimIndex(kind)
	if err != nil {
		t.Fatalf("claiming a subnet: %v", err)
	}
	t.Cleanup(func() { releaseNetwork(claim) })
	return Subnet{ID: kind.id(idx), Prefix: kind.prefix(idx), claim: claim}
}

// claimIndex picks the first free index of kind from one derived from the
// PID and a counter, and claims it: an index is free when no claim of a
// live process holds it and no network namespace is named by its ID.
func claimIndex(kind subnetKind) (int, string, error) {
	first := (os.Getpid()*7919 + int(netCount.Add(1))*131) % kind.size
	for attempt := 0; attempt < 10; attempt++ {
		dir, unlock, err := lockClaims()
		if err != nil {
			return 0, "", err
		}
		if dir == nil {
			continue // the folder was removed while we waited for it
		}
		inUse := netns()
		for i := 0; i < kind.size; i++ {
			idx := (first + i) % kind.size
			id := kind.id(idx)
			if namedBy(inUse, id) {
				continue // a namespace of that name is there: someone else's, or a leftover
			}
			path := filepath.Join(netClaims, id)
			if data, err := os.ReadFile(path); err == nil && ownerAlive(string(data)) {
				continue
			}
			me := os.Getpid()
			err := os.WriteFile(path, []byte(fmt.Sprintf("%d %s\n", me, startTime(me))), 0o644)
			unlock()
			if err != nil {
				return 0, "", err
			}
			return idx, path, nil
		}
		unlock()
		return 0, "", fmt.Errorf("all %d subnets are taken", kind.size)
	}
	return 0, "", fmt.Errorf("%s kept disappearing", netClaims)
}

// namedBy says whether a namespace is named id or id-SOMETHING.
func namedBy(namespaces map[string]bool, id string) bool {
	for ns := range namespaces {
		if ns == id || strings.HasPrefix(ns, id+"-") {
			return true
		}
	}
	return false
}

// lockClaims makes the claims folder if needed and flocks it. It returns a
// nil file when the folder was removed between opening and locking it.
func lockClaims() (*os.File, func(), error) {
	if err := os.MkdirAll(netClaims, 0o755); err != nil {
		return nil, nil, err
	}
	dir, err := os.Open(netClaims)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, func() {}, nil
		}
		return nil, nil, err
	}
	if err := syscall.Flock(int(dir.Fd()), syscall.LOCK_EX); err != nil {
		dir.Close()
		return nil, nil, err
	}
	unlock := func() { syscall.Flock(int(dir.Fd()), syscall.LOCK_UN); dir.Close() }
	var held, now syscall.Stat_t
	if syscall.Fstat(int(dir.Fd()), &held) != nil || syscall.Stat(netClaims, &now) != nil || held.Ino != now.Ino || held.Nlink == 0 {
		unlock()
		return nil, func() {}, nil
	}
	return dir, unlock, nil
}

// releaseNetwork removes a claim, and the claims folder when it is empty.
func releaseNetwork(claim string) {
	dir, unlock, err := lockClaims()
	if err != nil || dir == nil {
		os.Remove(claim)
		return
	}
	defer unlock()
	os.Remove(claim)
	if names, err := dir.Readdirnames(1); err == io.EOF && len(names) == 0 {
		os.Remove(netClaims)
	}
}

// ownerAlive says whether the process named in a claim ("PID STARTTIME")
// still runs.
func ownerAlive(claim string) bool {
	f := strings.Fields(claim)
	if len(f) != 2 {
		return false
	}
	pid, err := strconv.Atoi(f[0])
	return err == nil && startTime(pid) == f[1]
}

// startTime returns a process's start time in clock ticks since boot (field
// 22 of /proc/PID/stat), which tells a process from a later one given the
// same PID; "" when there is no such process.
func startTime(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19] // field 22; f[0] is field 3
}

// Track records a process the test started outside the harness (a daemon
// a bring-up script started, say), by PID and start time: the leftover
// check names it if it still runs.
func (n *Network) Track(name string, pid int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tracked = append(n.tracked, trackedPID{name: name, pid: pid, start: startTime(pid)})
}

// TrackFile records a file or folder the test made outside its folders (a
// certs.d entry under /etc/docker, say): the leftover check names it if it
// is still there.
func (n *Network) TrackFile(path string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.files = append(n.files, path)
}

// Leftovers returns a line for each thing of the network still there: a
// namespace or link named with its ID, a process in one of its namespaces
// (by inode: a namespace deleted from /run/netns lives on while a process
// is in it), naming its folder on its command line, or tracked, a mount
// under its folder, a tracked file, its claim.
func (n *Network) Leftovers() []string {
	var left []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.ID+"-") {
			left = append(left, "network namespace "+e.Name())
		}
	}
	entries, _ = os.ReadDir("/sys/class/net")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), n.ID) {
			left = append(left, "link "+e.Name())
		}
	}
	byInode := map[string]string{}
	for ns, ino := range n.inodes {
		byInode[fmt.Sprintf("net:[%d]", ino)] = ns
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		link, _ := os.Readlink("/proc/" + p.Name() + "/ns/net")
		cmdline, _ := os.ReadFile("/proc/" + p.Name() + "/cmdline")
		cmd := strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))
		if len(cmd) > 120 {
			cmd = cmd[:120]
		}
		if ns, ok := byInode[link]; ok {
			left = append(left, fmt.Sprintf("process %d in namespace %s: %s", pid, ns, cmd))
		} else if strings.Contains(string(cmdline), n.Dir+"/") {
			left = append(left, fmt.Sprintf("process %d naming %s: %s", pid, n.Dir, cmd))
		}
	}
	n.mu.Lock()
	tracked := append([]trackedPID(nil), n.tracked...)
	files := append([]string(nil), n.files...)
	n.mu.Unlock()
	for _, p := range tracked {
		if p.start != "" && startTime(p.pid) == p.start {
			left = append(left, fmt.Sprintf("process %d (%s)", p.pid, p.name))
		}
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], n.Dir+"/") {
				left = append(left, "mount "+f[4])
			}
		}
	}
	for _, f := range files {
		if _, err := os.Lstat(f); err == nil {
			left = append(left, "file "+f)
		}
	}
	if _, err := os.Lstat(n.claim); err == nil {
		left = append(left, "network claim "+n.claim)
	}
	return left
}

// Runner returns the command that runs a program in the node's network
// namespace, for Options.Runner.
func (node *Node) Runner() []string {
	return []string{"nsenter", "--net=" + filepath.Join("/run/netns", node.NS)}
}

// Command returns a command that runs argv in the node's network
// namespace, with the test's environment.
func (node *Node) Command(argv ...string) *exec.Cmd {
	r := node.Runner()
	return exec.Command(r[0], append(r[1:], argv...)...)
}

// DialContext dials addr (an IP address and port: names are not resolved
// in the namespace) from inside the node's network namespace.
func (node *Node) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialIn(ctx, node.NS, network, addr)
}

// DialIn dials addr (an IP address and port: names are not resolved in the
// namespace) from inside network namespace ns (/run/netns/NS): the socket
// is made on a thread that has entered the namespace for that moment, and
// keeps the namespace it was made in.
func DialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if net.ParseIP(host) == nil {
		return nil, fmt.Errorf("dialing %s in namespace %s: not an IP address", addr, ns)
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		back, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer back.Close()
		target, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering %s: %w", ns, err)}
			return
		}
		// one address: the dialer connects on this goroutine, so on this thread
		conn, err := (&net.Dialer{Timeout: 30 * time.Second}).DialContext(ctx, network, addr)
		if setns(back) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with the goroutine
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// Client returns an HTTP client whose connections start in the node's
// namespace, with tlsConfig for https (nil: the system's roots).
func (node *Node) Client(tlsConfig *tls.Config) *http.Client {
	return HTTPClient(node.NS, tlsConfig)
}

// HTTPClient returns an HTTP client whose connections are made inside
// network namespace ns (DialIn), so that a test reaches addresses that exist
// only there (a node's hostPorts on 127.0.0.1, say), with tlsConfig for
// https (nil: the system's roots).
func HTTPClient(ns string, tlsConfig *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return DialIn(ctx, ns, network, addr)
			},
			TLSClientConfig:     tlsConfig,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 30 * time.Second,
			MaxIdleConnsPerHost: 4,
		},
	}
}

// MarkVia is Mark for a server the test reaches through client at base
// ("https://10.129.162.2:443", say): one in a network namespace, or one
// that serves TLS. It returns an error instead of failing the test, so that
// another goroutine may call it.
func (s *Server) MarkVia(client *http.Client, base string) (string, error) {
	path := "/v2/e2e-marker-" + strconv.FormatInt(s.marks.Add(1), 10) + "/tags/list"
	resp, err := client.Get(base + path)
	if err != nil {
		return "", fmt.Errorf("marker request to %s: %w", s.Name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = s.Log.WaitErr(30*time.Second, func(r Record) bool { return r.Msg() == "request" && r["path"] == path })
	if err != nil {
		return "", fmt.Errorf("the marker request %s in %s's log: %w", path, s.Name, err)
	}
	return path, nil
}

// dockerCertsD is where dockerd looks for a registry's CA: a system-wide
// folder shared by every run on the machine.
const dockerCertsD = "/etc/docker/certs.d"

// TrustDockerCA trusts the CA in caFile for hostport in every dockerd on
// the machine (/etc/docker/certs.d/HOSTPORT/ca.crt; dockerd reads it at
// each pull). hostport must be an address of this network, which no other
// run holds. The entry goes when keep ends (t itself when nil; the
// suite's Scope, say, so that later subtests keep it), and so
// do /etc/docker and /etc/docker/certs.d once empty if a run of this
// harness made them: which run made them is noted in the claims folder,
// under its flock, so that the last run to leave removes them whichever
// made them.
func (n *Network) TrustDockerCA(t, keep testing.TB, hostport, caFile string) {
	t.Helper()
	if keep == nil {
		keep = t
	}
	entry := filepath.Join(dockerCertsD, hostport)
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	dir, unlock, err := lockClaims()
	if err != nil || dir == nil {
		t.Fatalf("locking %s: %v", netClaims, err)
	}
	defer unlock()
	if _, err := os.Lstat(entry); err == nil {
		t.Fatalf("%s exists already, not ours", entry)
	}
	for _, p := range []string{filepath.Dir(dockerCertsD), dockerCertsD} {
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(madeNote(p), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.TrackFile(entry)
	keep.Cleanup(func() {
		dir, unlock, err := lockClaims()
		if err == nil && dir != nil {
			defer unlock()
		}
		os.RemoveAll(entry)
		for _, p := range []string{dockerCertsD, filepath.Dir(dockerCertsD)} {
			if _, err := os.Stat(madeNote(p)); err == nil && os.Remove(p) == nil {
				os.Remove(madeNote(p))
			}
		}
	})
	if err := os.MkdirAll(entry, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(entry, "ca.crt"), ca, 0o644); err != nil {
		t.Fatal(err)
	}
}

// madeNote is the claims folder's note that a run made folder p.
func madeNote(p string) string {
	return filepath.Join(netClaims, "made"+strings.ReplaceAll(p, "/", "-"))
}

package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Cluster is a private Kubernetes cluster of scripts/bring/cluster.sh: its
// control plane lives in a network namespace of its own (NS), reached at API.
type Cluster struct {
	// Dir holds its files; Dir/logs its daemons' logs.
	Dir string
	// Vars are the KEY=VALUE lines `cluster.sh up` printed (CLUSTER_ID,
	// CLUSTER_NS, CLUSTER_API, CLUSTER_NET, KUBECONFIG, KUBECTL, CA,
	// PAUSE_REF, PAUSE_TAR, LOGS).
	Vars map[string]string
	// ID names everything of the cluster (namespaces, cgroup roots).
	ID string
	// NS is the network namespace of the control plane and the first node.
	NS string
	// API is the apiserver's address inside NS (port 6443).
	API string
	// Nodes are the nodes joined so far, by name.
	Nodes map[string]*ClusterNode

	downOnce sync.Once
	downErr  error
}

// ClusterNode is one node of a Cluster.
type ClusterNode struct {
	Name string
	// NS is its network namespace, Addr its address there.
	NS, Addr string
	// Sock is its containerd's socket.
	Sock string
	// Cgroup is its kubelet's cgroup root (/ID-NAME).
	Cgroup string
	// Pods is its pod subnet.
	Pods string
}

// StartCluster brings a cluster up in dir with `scripts/bring/cluster.sh up
// dir nodes...` (a token for each node name; none is started yet), named and
// addressed by a subnet of ClaimWideSubnet, and takes it down when the test
// ends, unless Down was called before.
func StartCluster(t testing.TB, dir string, nodes ...string) *Cluster {
	t.Helper()
	c := &Cluster{Dir: dir, Nodes: map[string]*ClusterNode{}}
	sub := ClaimWideSubnet(t) // released after Down, cleanups running last first
	t.Cleanup(func() {
		if err := c.Down(); err != nil {
			t.Errorf("%v", err)
		}
	})
	c.Vars = c.bring(t, []string{"CLUSTER_ID=" + sub.ID, "CLUSTER_NET=" + sub.Prefix}, append([]string{"up", dir}, nodes...)...)
	c.ID, c.NS, c.API = c.Vars["CLUSTER_ID"], c.Vars["CLUSTER_NS"], c.Vars["CLUSTER_API"]
	return c
}

// AddNode starts containerd (with each tar imported before the kubelet
// starts) and a kubelet for node name, and waits until it is Ready. The
// first node runs in the cluster's namespace, later ones in namespaces of
// their own. env (K=V, such as CLUSTER_HTTP_REGISTRIES=HOST:PORT) is added
// to the script's environment.
func (c *Cluster) AddNode(t testing.TB, env []string, name string, tars ...string) *ClusterNode {
	t.Helper()
	v := c.bring(t, env, append([]string{"node", c.Dir, name}, tars...)...)
	n := &ClusterNode{Name: name, NS: v["NODE_NS"], Addr: v["NODE_ADDR"], Sock: v["NODE_SOCK"], Cgroup: v["NODE_CGROUP"], Pods: v["NODE_PODS"]}
	c.Nodes[name] = n
	return n
}

func (c *Cluster) bring(t testing.TB, env []string, args ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(filepath.Join(Root(), "scripts", "bring", "cluster.sh"), args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cluster.sh %s: %v\n%s%s", args[0], err, stderr.String(), c.LogTails())
	}
	return parseVars(stdout.Bytes())
}

// Down takes the cluster down (`cluster.sh down`); later calls return the
// first call's result.
func (c *Cluster) Down() error {
	c.downOnce.Do(func() {
		out, err := exec.Command(filepath.Join(Root(), "scripts", "bring", "cluster.sh"), "down", c.Dir).CombinedOutput()
		if err != nil {
			c.downErr = fmt.Errorf("cluster.sh down: %v\n%s", err, out)
		}
	})
	return c.downErr
}

// LogTails returns the last lines of each of the cluster's logs, for a
// failure message.
func (c *Cluster) LogTails() string {
	files, _ := filepath.Glob(filepath.Join(c.Dir, "logs", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&b, "\n--- %s (end)\n%s", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return b.String()
}

// InNS returns argv run inside network namespace ns (with nsenter).
func InNS(ns string, argv ...string) []string {
	return append([]string{"nsenter", "--net=/run/netns/" + ns}, argv...)
}

// Kubectl runs kubectl as the cluster's admin inside its namespace and
// returns its standard output.
func (c *Cluster) Kubectl(args ...string) ([]byte, error) {
	argv := InNS(c.NS, append([]string{c.Vars["KUBECTL"], "--kubeconfig", c.Vars["KUBECONFIG"]}, args...)...)
	out, err := RunErr(argv...)
	return []byte(out), err
}

// Kc is Kubectl failing the test on an error.
func (c *Cluster) Kc(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := c.Kubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Ctr runs ctr -n k8s.io against the node's containerd.
func (n *ClusterNode) Ctr(args ...string) (string, error) {
	return RunErr(append([]string{"ctr", "--address", n.Sock, "-n", "k8s.io"}, args...)...)
}

// Kubeconfig writes node name's kubelet kubeconfig (its token) to file,
// naming ca as the cluster's CA (`cluster.sh kubeconfig`): for a node the
// script does not start itself, such as the arm64 machine.
func (c *Cluster) Kubeconfig(t testing.TB, name, file, ca string) {
	t.Helper()
	c.bring(t, nil, "kubeconfig", c.Dir, name, file, ca)
}

// ClusterState is what a cluster can change on the machine outside its
// directory and namespaces: the host's iptables chains, the sysctls the
// kubelet sets, the folders it writes to whatever it is told. Take it before
// the cluster starts.
type ClusterState struct {
	chains  map[string]bool
	sysctls map[string]string
	outside map[string]bool
}

var (
	kubeletSysctls = []string{"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"}
	kubeletOutside = []string{"/var/lib/kubelet", "/var/log/containers", "/var/lib/cni"}
)

// TakeClusterState records the machine's state that a cluster may change.
func TakeClusterState() ClusterState {
	s := ClusterState{chains: chains(), sysctls: map[string]string{}, outside: map[string]bool{}}
	for _, k := range kubeletSysctls {
		s.sysctls[k] = sysctl(k)
	}
	for _, p := range kubeletOutside {
		_, err := os.Lstat(p)
		s.outside[p] = err == nil
	}
	return s
}

// Leftovers lists what of the (downed) cluster is still on the machine:
// processes whose command line names its directory, mounts under it,
// namespaces and links named for it, its cgroup roots, host iptables chains
// of CNI or the kubelet that were not there in before, changed sysctls, and
// what the kubelet wrote outside its directory.
func (c *Cluster) Leftovers(before ClusterState) []string {
	var left []string
	dir := c.Dir + "/"
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(dir)) && filepath.Base(filepath.Dir(p)) != fmt.Sprint(os.Getpid()) {
			left = append(left, fmt.Sprintf("process %s: %.120s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
		}
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && (strings.HasPrefix(f[4], dir) || strings.HasPrefix(f[4], "/run/netns/"+c.ID)) {
				left = append(left, "mount "+f[4])
			}
		}
	}
	if c.ID != "" {
		for ns := range netns() {
			if ns == c.ID || strings.HasPrefix(ns, c.ID+"-") {
				left = append(left, "network namespace "+ns)
			}
		}
		for l := range links() {
			if strings.HasPrefix(l, "qcni") || strings.Contains(l, c.ID) {
				left = append(left, "link "+l)
			}
		}
		roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + c.ID + "-*")
		more, _ := filepath.Glob("/sys/fs/cgroup/" + c.ID + "-*")
		for _, r := range append(roots, more...) {
			left = append(left, "cgroup "+r)
		}
	}
	for ch := range chains() {
		if !before.chains[ch] && (strings.Contains(ch, " CNI-") || strings.Contains(ch, " KUBE-")) {
			left = append(left, "iptables chain "+ch)
		}
	}
	for k, was := range before.sysctls {
		if now := sysctl(k); now != was {
			left = append(left, fmt.Sprintf("sysctl %s=%s, was %s", k, now, was))
		}
	}
	for p, had := range before.outside {
		if _, err := os.Lstat(p); err == nil && !had {
			left = append(left, p+" (made by this run)")
		}
		entries, _ := os.ReadDir(p)
		for _, e := range entries {
			if target, err := os.Readlink(filepath.Join(p, e.Name())); err == nil && strings.HasPrefix(target, dir) {
				left = append(left, filepath.Join(p, e.Name())+" -> "+target)
			}
		}
	}
	sort.Strings(left)
	return left
}

func sysctl(name string) string {
	data, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(name, ".", "/"))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return strings.Join(strings.Fields(string(data)), " ")
}

// chains returns the host namespace's iptables and ip6tables chains, as
// "TOOL TABLE CHAIN".
func chains() map[string]bool {
	m := map[string]bool{}
	for _, tool := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			out, err := exec.Command(tool, "-t", table, "-S").Output()
			if err != nil {
				continue
			}
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" {
					m[tool+" "+table+" "+f[1]] = true
				}
			}
		}
	}
	return m
}

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/quinistry/quinistry/e2e/harness"
)

// vmCtl is the port the machine's job listens on for the test's go-ahead.
const vmCtl = 7000

// vmClientTimeout bounds each client command against the machine (it
// answers slowly: every request is served by an emulated CPU).
const vmClientTimeout = 2 * time.Minute

// arm64Served is what a quinistry serves, as read from it: the list, and
// per architecture (amd64, arm64) the manifest and config digests.
type arm64Served struct {
	list             string
	listBytes        []byte
	manifest, config map[string]string
	listType         string
}

// TestArm64VM runs quinistry on a real arm64 kernel: Debian's arm64 kernel
// with Debian's arm64 containerd and runc (scripts/install-arm64-node.sh),
// booted under qemu-system-aarch64 (TCG) by scripts/bring/arm64vm.sh, its
// NIC a tap on the bridge of a network of harness.NewNetwork. quinistry
// (amd64, one server per format) serves from the network's node "host".
// For each format the machine's containerd pulls quinistry with no
// --platform and runs it read-only on the host network
// (scripts/arm64-node/pull-run.job); the test checks the platform it
// unpacked, quinistry's access log, the container's process as the machine
// reports it, and then pulls from the machine's quinistry with crane,
// skopeo and a private dockerd at the same time. The machine powers itself
// off at the end of its job.
//
// Then the cluster step: a cluster of scripts/bring/cluster.sh with node1
// (amd64), and the machine booted again with the arm64 kubelet
// (scripts/arm64-node/k8s-node.job), its tap on the cluster's bridge,
// joining as node arm64vm. The Kubernetes binaries, the arm64 kubelet
// among them, must be installed: a missing one fails the suite. The parent
// DaemonSet (deploy/, its image set by a kustomize overlay) pulls
// quinistry:latest from an origin quinistry in the cluster's namespace; the
// child pulls localhost:5000. The suite ends by checking that nothing of
// the machine, the network or the cluster is left.
//
// Needs root and scripts/install-tools.sh.
func TestArm64VM(t *testing.T) {
	start := time.Now()
	state := harness.TakeClusterState()
	image := strings.TrimSpace(harness.Run(t, filepath.Join(harness.Root(), "scripts", "install-arm64-node.sh"), "--dir"))
	t.Logf("machine image %s", image)
	if v, err := os.ReadFile(filepath.Join(image, "versions")); err == nil {
		t.Logf("its packages:\n%s", strings.TrimSpace(string(v)))
	}
	crane, skopeo := harness.Tool(t, "crane"), harness.Tool(t, "skopeo")

	// --- the machine's own part, in a scope closed before the cluster step
	scope := harness.NewScope(t)
	network := harness.NewNetwork(scope, "host")
	host := network.Nodes["host"]
	// the nodes are Subnet.2, ...: the machine takes an address far above them
	vmAddr := network.Subnet + ".200"
	node := vmAddr + ":8080"
	dockerUp := harness.BringUpAsync(scope, "dockerd", filepath.Join(network.Dir, "docker"), host.NS,
		"--insecure-registry", node)
	amd64 := harness.Binary(harness.Dist(t), "linux/amd64")
	formats := []string{"docker", "oci"}
	servers := map[string]*harness.Server{}
	var regs []string
	for _, f := range formats {
		servers[f] = harness.StartWith(scope, "host-"+f, harness.Options{Runner: host.Runner()}, amd64, "--addr", host.IP+":0", "--format", f)
		regs = append(regs, f+"="+servers[f].Addr)
	}
	m := harness.StartMachine(scope, filepath.Join(network.Dir, "vm"), harness.MachineConfig{
		Image: image, Job: filepath.Join(harness.Root(), "scripts", "arm64-node", "pull-run.job"),
		NS: network.Switch, Bridge: network.Bridge, Addr: vmAddr, Gateway: host.IP, From: host.NS,
		Params: []string{"regs=" + strings.Join(regs, ","), "ctl=" + strconv.Itoa(vmCtl)},
	})
	t.Logf("network %s: host %s, the machine %s on %s's %s; booting after %s", network.ID, host.IP, vmAddr, network.Switch, network.Bridge, time.Since(start).Round(time.Second))
	d := dockerUp()
	network.Track("the private dockerd", atoi(t, d["PID"]))
	docker := &harness.Docker{CLI: d["DOCKER"], Host: d["DOCKER_HOST"], Config: harness.TempDir(scope)}

	// step runs a subtest the rest depends on: its failure ends the suite
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.Fatalf("stopping after %q failed", name)
		}
	}
	boot, err := m.WaitConsole(2*time.Minute, "boot")
	step("the machine boots Debian's arm64 kernel", func(t *testing.T) {
		if err != nil || !strings.Contains(boot, " machine=aarch64") {
			t.Fatalf("boot line %q: %v", boot, err)
		}
		t.Log(boot)
	})

	for _, f := range formats {
		s := servers[f]
		p := f + ": "
		want := servedBy(t, harness.HTTPClient(host.NS, nil).Transport, s.Addr)
		t.Logf("%s: %s serves list %s, amd64 %s, arm64 %s", f, s.Addr, want.list, want.manifest["amd64"], want.manifest["arm64"])

		pulled, pullErr := m.WaitConsole(5*time.Minute, "pulled "+f+"|pull-failed "+f)
		images, imagesErr := m.WaitConsole(time.Minute, "images "+f)
		mark, markErr := s.MarkVia(harness.HTTPClient(host.NS, nil), "http://"+s.Addr)
		asked := manifestsAsked(s.Requests("", mark), want, "")
		t.Run(p+"the machine's containerd, given no --platform, unpacks the arm64 image", func(t *testing.T) {
			if pullErr != nil || !strings.Contains(pulled, " unpacking linux/arm64") {
				t.Errorf("the machine's pull: %q %v", pulled, pullErr)
			}
		})
		t.Run(p+"the machine's containerd stores the list as the image", func(t *testing.T) {
			// QNODE images FORMAT TYPE DIGEST LABELS
			fl := strings.Fields(images)
			if imagesErr != nil || len(fl) < 5 || fl[4] != want.list || fl[3] != want.listType {
				t.Errorf("the machine's ctr images ls: %q %v; want %s as %s", images, imagesErr, want.list, want.listType)
			}
		})
		t.Run(p+"quinistry's log shows containerd fetching the arm64 manifest", func(t *testing.T) {
			if markErr != nil || !slices.Contains(asked, "GET arm64-manifest") {
				t.Errorf("containerd's manifest requests (arm64 manifest %s): %v %v", want.manifest["arm64"], asked, markErr)
			}
		})
		t.Run(p+"quinistry's log shows containerd never asking for the amd64 manifest", func(t *testing.T) {
			if markErr != nil || len(asked) == 0 || containsText(asked, "amd64-manifest") {
				t.Errorf("containerd's manifest requests (amd64 manifest %s): %v %v", want.manifest["amd64"], asked, markErr)
			}
		})

		serving, servErr := m.WaitConsole(5*time.Minute, "serving "+f+"|run-failed "+f)
		t.Logf("%s: the machine: %s", f, serving)
		kv := fields(serving)
		t.Run(p+"the container runs /quinistry-linux-arm64 as uid 65532 (real, effective, saved, fs)", func(t *testing.T) {
			if servErr != nil || kv["exe"] != "/quinistry-linux-arm64" || kv["uid"] != "65532,65532,65532,65532" {
				t.Errorf("the container's process: exe %q, uid %q (%q %v)", kv["exe"], kv["uid"], serving, servErr)
			}
		})
		t.Run(p+"the container's root file system is mounted read-only", func(t *testing.T) {
			if !slices.Contains(strings.Split(kv["root"], ","), "ro") {
				t.Errorf("the container's root is mounted %q (%q %v)", kv["root"], serving, servErr)
			}
		})
		got, headErr := headList(harness.HTTPClient(host.NS, nil), node)
		t.Run(p+"the machine's quinistry serves the host's list digest", func(t *testing.T) {
			if headErr != nil || got != want.list {
				t.Errorf("the machine's quinistry at %s serves %q (%v), the host's %s", node, got, headErr, want.list)
			}
		})

		// the three clients pull from the machine at the same time (each
		// waits mostly on the emulated machine); their checks follow
		out := harness.TempDir(scope)
		var wg sync.WaitGroup
		var cr craneResult
		var sk skopeoResult
		var dk map[string]dockerPull
		wg.Add(3)
		go func() { defer wg.Done(); cr = cranePull(crane, host.NS, node, s.Addr, want) }()
		go func() { defer wg.Done(); sk = skopeoPull(skopeo, host.NS, node, filepath.Join(out, "skopeo")) }()
		go func() { defer wg.Done(); dk = dockerPulls(docker, node) }()
		wg.Wait()

		t.Run(p+"crane gets the same list bytes from the machine as from the host", func(t *testing.T) {
			if cr.err != nil || string(cr.listNode) != string(cr.listHost) || harness.DigestOf(cr.listNode) != want.list {
				t.Errorf("crane manifest: the machine's list hashes to %s, the host's to %s (served %s): %v",
					harness.DigestOf(cr.listNode), harness.DigestOf(cr.listHost), want.list, cr.err)
			}
		})
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(p+"crane resolves the machine's "+arch+" manifest to the host's", func(t *testing.T) {
				if got := cr.digest[arch]; got != want.manifest[arch] {
					t.Errorf("crane digest --platform linux/%s: the machine's %q, the host's %s: %v", arch, got, want.manifest[arch], cr.err)
				}
			})
		}
		t.Run(p+"crane: both configs from the machine hash to their digests", func(t *testing.T) {
			for _, arch := range []string{"amd64", "arm64"} {
				c := cr.config[arch]
				if c[0] != want.config[arch] || c[1] != c[0] {
					t.Errorf("linux/%s: the machine's manifest names config %q, which hashes to %q; the host's config is %s: %v", arch, c[0], c[1], want.config[arch], cr.err)
				}
			}
		})
		t.Run(p+"skopeo copy --all from the machine gets the list, both manifests and four blobs, each hashing to its name", func(t *testing.T) {
			wantM := []string{want.manifest["amd64"], want.manifest["arm64"]}
			sort.Strings(wantM)
			if sk.err != nil || sk.list != want.list || !slices.Equal(sk.manifests, wantM) || sk.blobs != 4 || len(sk.bad) > 0 {
				t.Errorf("skopeo's dir: list %s, manifests %v, %d blobs, wrong %v (want list %s, manifests %v, 4 blobs): %v",
					sk.list, sk.manifests, sk.blobs, sk.bad, want.list, wantM, sk.err)
			}
		})
		for _, arch := range []string{"amd64", "arm64"} {
			t.Run(p+"docker pull --platform "+arch+" from the machine resolves the list and has the "+arch+" config as image ID", func(t *testing.T) {
				got := dk[arch]
				if got.err != nil || got.arch != arch || got.id != want.config[arch] || got.resolved != want.list {
					t.Errorf("docker pull --platform linux/%s %s/quinistry:latest: architecture %q, image ID %s, resolved %s (want config %s, list %s): %v",
						arch, node, got.arch, got.id, got.resolved, want.config[arch], want.list, got.err)
				}
			})
		}

		sendErr := m.Send(vmCtl, "host-done-"+f)
		stopped, stopErr := m.WaitConsole(2*time.Minute, "stopped "+f)
		t.Run(p+"the machine stops its container when told", func(t *testing.T) {
			if sendErr != nil || stopErr != nil || !strings.HasPrefix(stopped, "QNODE stopped "+f+" after host-done-"+f) {
				t.Errorf("the machine said %q (%v, %v)", stopped, sendErr, stopErr)
			}
		})
	}

	done, doneErr := m.WaitConsole(2*time.Minute, "job exit")
	killed := m.Stop(time.Minute)
	t.Run("the machine's job ends and the machine powers itself off", func(t *testing.T) {
		off := containsText(m.Console.Lines(), "reboot: Power down")
		if doneErr != nil || !strings.HasPrefix(done, "QNODE job exit=0 ") || killed || !off {
			t.Errorf("the machine said %q (%v); killed after a minute: %v; power-down line: %v; its process: %s", done, doneErr, killed, off, m.ExitStatus())
		}
	})
	scope.Close()
	t.Logf("the machine's own part took %s", time.Since(start).Round(time.Second))

	arm64ClusterStep(t, state, image, amd64)
	harness.CheckNothingLeft(t)
	t.Logf("the suite took %s", time.Since(start).Round(time.Second))
}

// arm64ClusterStep: the machine joins a cluster of scripts/bring/cluster.sh
// as node arm64vm, beside node1 (amd64, in the cluster's namespace).
func arm64ClusterStep(t *testing.T, state harness.ClusterState, image, amd64 string) {
	const arm = "arm64vm"
	start := time.Now()
	// the binaries cluster.sh runs (KUBE_BIN and ETCD_BIN as it reads them),
	// and the arm64 kubelet beside them
	kubeBin := os.Getenv("KUBE_BIN")
	if kubeBin == "" {
		kubeBin = filepath.Join(harness.Root(), ".tools", "kubernetes", kubeVersion, runtime.GOARCH)
	}
	etcd := os.Getenv("ETCD_BIN")
	if etcd == "" {
		etcd = filepath.Join(harness.Root(), ".tools", "kubernetes", "etcd", "usr", "bin", "etcd")
	}
	armKubelet := filepath.Join(filepath.Dir(kubeBin), "arm64", "kubelet")
	var missing []string
	for _, b := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"} {
		missing = append(missing, notExecutable(filepath.Join(kubeBin, b))...)
	}
	missing = append(missing, notExecutable(etcd)...)
	missing = append(missing, notExecutable(armKubelet)...)
	// defect 7 of issue 18: missing binaries used to skip the cluster step and pass
	if !t.Run("cluster: the Kubernetes binaries are installed, the arm64 kubelet among them", func(t *testing.T) {
		if len(missing) > 0 {
			t.Errorf("missing (scripts/install-tools.sh builds them): %s", strings.Join(missing, ", "))
		}
	}) {
		return
	}

	scope := harness.NewScope(t)
	tmp := harness.TempDir(scope)
	c := harness.StartCluster(scope, filepath.Join(tmp, "cluster"), "node1", arm)
	harness.AddLeftoverCheck(func() []string { return c.Leftovers(state) })
	k := kube{c}
	net := c.Vars["CLUSTER_NET"]
	armIP := net + ".0.4"
	origin := harness.StartWith(scope, "origin", harness.Options{Runner: harness.InNS(c.NS)}, amd64, "--addr", c.API+":0")
	inCluster := harness.HTTPClient(c.NS, nil)
	want := servedBy(t, inCluster.Transport, origin.Addr)
	t.Logf("cluster %s: the control plane in %s; origin %s serves list %s, amd64 %s, arm64 %s",
		c.ID, time.Since(start).Round(time.Second), origin.Addr, want.list, want.manifest["amd64"], want.manifest["arm64"])

	// the machine's own files: the arm64 kubelet, its kubeconfig and the cluster's CA, the pause image
	root := harness.TempDir(scope)
	for _, d := range []string{"usr/bin", "etc/kubernetes"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, armKubelet, filepath.Join(root, "usr/bin/kubelet"))
	if err := os.Chmod(filepath.Join(root, "usr/bin/kubelet"), 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, c.Vars["CA"], filepath.Join(root, "etc/kubernetes/ca.crt"))
	copyFile(t, c.Vars["PAUSE_TAR"], filepath.Join(root, "etc/kubernetes/pause.tar"))
	c.Kubeconfig(t, arm, filepath.Join(root, "etc/kubernetes/kubelet.kubeconfig"), "/etc/kubernetes/ca.crt")
	m := harness.StartMachine(scope, filepath.Join(tmp, "vm"), harness.MachineConfig{
		Image: image, Job: filepath.Join(harness.Root(), "scripts", "arm64-node", "k8s-node.job"),
		NS: c.NS, Bridge: "nodes0", Addr: armIP, Gateway: c.API, From: c.NS,
		Params: []string{"name=" + arm, "pause=" + c.Vars["PAUSE_REF"], "podcidr=" + net + ".3.0/24",
			"http=" + origin.Addr, "ctl=" + strconv.Itoa(vmCtl), "hostname=" + arm},
		Extra: []string{filepath.Join(image, "kube.cpio"), root},
	})
	// node1 and the DaemonSets while the machine boots
	node1 := c.AddNode(scope, []string{"CLUSTER_HTTP_REGISTRIES=" + origin.Addr}, "node1")
	ov := harness.TempDir(scope)
	overlay(t, ov, origin.Addr+"/quinistry", "latest")
	k.Kc(t, "apply", "-k", ov)
	k.Kc(t, "apply", "-f", filepath.Join(harness.Root(), "deploy", "child.yaml"))
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.Fatalf("stopping after %q failed; the cluster's logs:%s", name, c.LogTails())
		}
	}

	boot, bootErr := m.WaitConsole(2*time.Minute, "boot")
	step("cluster: the control plane and node1 are up and the machine boots on the cluster's bridge", func(t *testing.T) {
		if bootErr != nil || !strings.Contains(boot, " machine=aarch64") {
			t.Fatalf("boot line %q: %v", boot, bootErr)
		}
		t.Logf("%s (node1 up after %s)", boot, time.Since(start).Round(time.Second))
	})
	cri, criErr := m.WaitConsole(5*time.Minute, "cri")
	step("cluster: the machine's containerd serves the CRI with the arm64 pause image imported", func(t *testing.T) {
		if criErr != nil || !strings.HasPrefix(cri, "QNODE cri ok pause=1 ") {
			t.Fatalf("the machine said %q: %v", cri, criErr)
		}
	})
	kubelet, kubeletErr := m.WaitConsole(5*time.Minute, "kubelet (v|exited)")
	step("cluster: the machine's arm64 kubelet is healthy", func(t *testing.T) {
		if kubeletErr != nil || !strings.HasPrefix(kubelet, "QNODE kubelet "+kubeVersion+" healthz=ok ") {
			t.Fatalf("the machine said %q: %v", kubelet, kubeletErr)
		}
	})
	_, readyErr := k.Kubectl("wait", "--for=condition=Ready", "node/"+arm, "--timeout=300s")
	step("cluster: kubectl get nodes shows node1 amd64 and arm64vm arm64 (Debian's arm64 kernel, containerd 1.6), both "+kubeVersion+" and Ready", func(t *testing.T) {
		nodes := getJSON[kubeList[kubeNode]](t, k, "nodes")
		var seen []string
		ok := map[string]bool{}
		for _, n := range nodes.Items {
			i := n.Status.NodeInfo
			ready := condition(n.Status.Conditions, "Ready")
			seen = append(seen, fmt.Sprintf("%s %s %s %s %s Ready=%s", n.Metadata.Name, i.Architecture, i.KernelVersion, i.ContainerRuntimeVersion, i.KubeletVersion, ready))
			good := i.KubeletVersion == kubeVersion && ready == "True"
			switch n.Metadata.Name {
			case "node1":
				ok["node1"] = good && i.Architecture == "amd64"
			case arm:
				ok[arm] = good && i.Architecture == "arm64" && strings.HasSuffix(i.KernelVersion, "-arm64") && strings.HasPrefix(i.ContainerRuntimeVersion, "containerd://1.6.")
			}
		}
		if len(nodes.Items) != 2 || !ok["node1"] || !ok[arm] {
			t.Fatalf("nodes: %v (kubectl wait for %s: %v)", seen, arm, readyErr)
		}
		t.Logf("after %s: %v", time.Since(start).Round(time.Second), seen)
	})

	// rolledOnEach: the component's DaemonSet runs one pod on each node
	rolledOnEach := func(component string) {
		_, err := k.Kubectl("rollout", "status", "ds/quinistry-"+component, "--timeout=600s")
		step("cluster: the "+component+" DaemonSet has one running pod on each node", func(t *testing.T) {
			pods := getJSON[kubeList[kubePod]](t, k, "pods", "-l", "app.kubernetes.io/component="+component)
			var running, seen []string
			for _, p := range pods.Items {
				seen = append(seen, p.Spec.NodeName+":"+p.Metadata.Name+":"+p.Status.Phase)
				if p.Status.Phase == "Running" {
					running = append(running, p.Spec.NodeName)
				}
			}
			sort.Strings(running)
			if !slices.Equal(running, []string{arm, "node1"}) {
				t.Fatalf("%s pods: %v (rollout status: %v)", component, seen, err)
			}
			t.Logf("after %s: %v", time.Since(start).Round(time.Second), seen)
		})
	}
	rolledOnEach("parent")
	parent := k.podOn(t, arm, "parent").Metadata.Name
	t.Run("cluster: arm64vm's parent pulled its image from the origin", func(t *testing.T) {
		if msgs := k.pulled(t, parent); !containsText(msgs, `Successfully pulled image "`+origin.Addr+`/quinistry:latest"`) {
			t.Errorf("parent pod %s's Pulled events: %q", parent, msgs)
		}
	})
	mark, markErr := origin.MarkVia(inCluster, "http://"+origin.Addr)
	fromArm := manifestsAsked(origin.Requests("", mark), want, armIP)
	fromNode1 := manifestsAsked(origin.Requests("", mark), want, c.API)
	t.Run("cluster: the origin's log shows arm64vm asking for the arm64 manifest and never the amd64 one", func(t *testing.T) {
		if markErr != nil || !slices.Contains(fromArm, "GET arm64-manifest") || containsText(fromArm, "amd64-manifest") {
			t.Errorf("containerd's manifest requests from %s (%s): %v %v", arm, armIP, fromArm, markErr)
		}
	})
	t.Run("cluster: the origin's log shows node1 asking for the amd64 manifest and never the arm64 one", func(t *testing.T) {
		if markErr != nil || !slices.Contains(fromNode1, "GET amd64-manifest") || containsText(fromNode1, "arm64-manifest") {
			t.Errorf("containerd's manifest requests from node1 (%s): %v %v", c.API, fromNode1, markErr)
		}
	})

	rolledOnEach("child")
	child := k.podOn(t, arm, "child").Metadata.Name
	t.Run("cluster: arm64vm's child pulled from localhost:5000", func(t *testing.T) {
		if msgs := k.pulled(t, child); !containsText(msgs, `Successfully pulled image "localhost:5000/quinistry:latest"`) {
			t.Errorf("child pod %s's Pulled events: %q", child, msgs)
		}
	})
	// The arm64 parent's own log (through the apiserver and the machine's
	// kubelet): the child's pull resolved latest there. The list and the
	// arm64 manifest were already in the node's content store (the
	// parent's pull brought them), so containerd asks for nothing else.
	t.Run("cluster: arm64vm's child resolved latest at its own node's parent, never asking for the amd64 manifest", func(t *testing.T) {
		var seen []string
		eventually(t, 30*time.Second, "containerd's HEAD of latest in parent "+parent+"'s log", func() bool {
			seen = seen[:0]
			for _, line := range strings.Split(string(k.Kc(t, "logs", parent)), "\n") {
				r, ok := harness.ParseRecord(line)
				if ok && r.Msg() == "request" && strings.HasPrefix(r["user_agent"], "containerd/") {
					seen = append(seen, r["method"]+" "+nameDigests(strings.TrimPrefix(r["path"], "/v2/quinistry/manifests/"), want)+" "+r["status"])
				}
			}
			return slices.Contains(seen, "HEAD latest 200")
		})
		if containsText(seen, "amd64-manifest") {
			t.Errorf("containerd's requests in parent %s's log: %v", parent, seen)
		}
	})

	// what runs on the machine, as its own kernel sees it
	sendErr := m.Send(vmCtl, "report")
	_, reportErr := m.WaitConsole(time.Minute, "report")
	t.Run("cluster: arm64vm runs two quinistry processes (parent and child), each /quinistry-linux-arm64 as uid 65532 on a read-only root", func(t *testing.T) {
		var procs []string
		good := 0
		for _, r := range m.Reports() {
			if !strings.HasPrefix(r, "process ") {
				continue
			}
			procs = append(procs, r)
			kv := fields("QNODE " + r)
			if kv["exe"] == "/quinistry-linux-arm64" && kv["uid"] == "65532,65532,65532,65532" && slices.Contains(strings.Split(kv["root"], ","), "ro") {
				good++
			}
		}
		if sendErr != nil || reportErr != nil || len(procs) != 2 || good != 2 {
			t.Errorf("the machine reports %v (%v, %v)", procs, sendErr, reportErr)
		}
	})
	// and what runs on node1, as the host's kernel sees it
	t.Run("cluster: node1 runs two quinistry processes, each quinistry-linux-amd64 as uid 65532 on a read-only root", func(t *testing.T) {
		out, err := node1.Ctr("tasks", "ls")
		if err != nil {
			t.Fatalf("ctr tasks ls on node1: %v", err)
		}
		var procs []string
		good := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				continue
			}
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if !strings.Contains(filepath.Base(exe), "quinistry-linux-") {
				continue
			}
			cf := harness.ReadConfinement(t, pid)
			procs = append(procs, fmt.Sprintf("pid %d exe %s uid %v root %s", pid, filepath.Base(exe), cf.Uid, strings.Join(cf.RootOptions, ",")))
			if filepath.Base(exe) == "quinistry-linux-amd64" && cf.Uid == [4]uint32{65532, 65532, 65532, 65532} && cf.RootReadOnly() {
				good++
			}
		}
		if len(procs) != 2 || good != 2 {
			t.Errorf("node1's quinistry processes: %v", procs)
		}
	})
	// every node serves the same list, on both ports
	t.Run("cluster: every node serves the list on ports 5000 and 5001, asked from the cluster's namespace", func(t *testing.T) {
		var bad []string
		for _, at := range []string{c.API + ":5000", c.API + ":5001", armIP + ":5000", armIP + ":5001"} {
			if d, err := headList(inCluster, at); err != nil || d != want.list {
				bad = append(bad, fmt.Sprintf("%s serves %q (%v)", at, d, err))
			}
		}
		if len(bad) > 0 {
			t.Errorf("want %s (node1 at %s, %s at %s): %s", want.list, c.API, arm, armIP, strings.Join(bad, "; "))
		}
	})

	sendErr = m.Send(vmCtl, "done")
	done, doneErr := m.WaitConsole(2*time.Minute, "job exit")
	killed := m.Stop(time.Minute)
	t.Run("cluster: arm64vm's kubelet stops, its job ends and the machine powers itself off", func(t *testing.T) {
		off := containsText(m.Console.Lines(), "reboot: Power down")
		if sendErr != nil || doneErr != nil || !strings.HasPrefix(done, "QNODE job exit=0 ") || killed || !off {
			t.Errorf("the machine said %q (%v, %v); killed after a minute: %v; power-down line: %v; its process: %s", done, sendErr, doneErr, killed, off, m.ExitStatus())
		}
	})
	scope.Close()
	t.Logf("the cluster step took %s", time.Since(start).Round(time.Second))
}

// servedBy reads, through transport, what the quinistry at addr serves as
// quinistry:latest: the list, and each platform's manifest and config.
func servedBy(t testing.TB, transport http.RoundTripper, addr string) arm64Served {
	t.Helper()
	ref := harness.Ref(t, addr+"/quinistry:latest")
	desc, err := remote.Get(ref, remote.WithTransport(transport))
	if err != nil {
		t.Fatalf("fetching %s: %v", ref, err)
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		t.Fatalf("%s is no list: %v", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	s := arm64Served{list: desc.Digest.String(), listBytes: desc.Manifest, listType: string(desc.MediaType),
		manifest: map[string]string{}, config: map[string]string{}}
	for _, md := range im.Manifests {
		if md.Platform == nil {
			continue
		}
		img, err := idx.Image(md.Digest)
		if err != nil {
			t.Fatalf("%s's %s image: %v", ref, md.Platform, err)
		}
		cfg, err := img.ConfigName()
		if err != nil {
			t.Fatalf("%s's %s config: %v", ref, md.Platform, err)
		}
		s.manifest[md.Platform.Architecture] = md.Digest.String()
		s.config[md.Platform.Architecture] = cfg.String()
	}
	if s.manifest["amd64"] == "" || s.manifest["arm64"] == "" {
		t.Fatalf("%s lists %v, want amd64 and arm64", ref, harness.Platforms(im))
	}
	return s
}

// nameDigests names the served list and manifests in a manifest reference
// (list, amd64-manifest, arm64-manifest); a tag stays as it is.
func nameDigests(ref string, s arm64Served) string {
	switch ref {
	case s.list:
		return "list"
	case s.manifest["amd64"]:
		return "amd64-manifest"
	case s.manifest["arm64"]:
		return "arm64-manifest"
	}
	return ref
}

// manifestsAsked returns containerd's manifest requests among records, as
// "METHOD REF" with the served digests named (see nameDigests); only those
// from address remote when it is not "".
func manifestsAsked(records []harness.Record, s arm64Served, remote string) []string {
	var out []string
	for _, r := range records {
		ref, ok := strings.CutPrefix(r["path"], "/v2/quinistry/manifests/")
		if !ok || !strings.HasPrefix(r["user_agent"], "containerd/") || (remote != "" && r["remote"] != remote) {
			continue
		}
		out = append(out, r["method"]+" "+nameDigests(ref, s))
	}
	return out
}

// fields returns the KEY=VALUE words of a console line.
func fields(line string) map[string]string {
	m := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			if _, seen := m[k]; !seen {
				m[k] = v
			}
		}
	}
	return m
}

// headList asks addr for quinistry:latest as docker does, through client,
// and returns the digest it answers with.
func headList(client *http.Client, addr string) (string, error) {
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/quinistry/manifests/latest", nil)
	req.Header.Set("Accept", harness.ListAccept)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HEAD %s/quinistry:latest: status %d", addr, resp.StatusCode)
	}
	return resp.Header.Get("Docker-Content-Digest"), nil
}

// inNS runs argv inside network namespace ns, bounded by vmClientTimeout,
// and returns its standard output.
func inNS(ns string, argv ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), vmClientTimeout)
	defer cancel()
	a := harness.InNS(ns, argv...)
	cmd := exec.CommandContext(ctx, a[0], a[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// craneResult is what crane read from the machine (and the host's list).
type craneResult struct {
	listNode, listHost []byte
	digest             map[string]string    // architecture -> the machine's manifest digest
	config             map[string][2]string // architecture -> config digest named, and its blob's hash
	err                error
}

// cranePull reads, with crane in namespace ns, the list from the machine
// and from the host, each platform's manifest digest from the machine, and
// both configs from the machine, hashing them.
func cranePull(crane, ns, node, hostAddr string, want arm64Served) craneResult {
	r := craneResult{digest: map[string]string{}, config: map[string][2]string{}}
	run := func(args ...string) []byte {
		out, err := inNS(ns, append([]string{crane, "--insecure"}, args...)...)
		if err != nil && r.err == nil {
			r.err = err
		}
		return out
	}
	r.listNode = run("manifest", node+"/quinistry:latest")
	r.listHost = run("manifest", hostAddr+"/quinistry:latest")
	for _, arch := range []string{"amd64", "arm64"} {
		r.digest[arch] = strings.TrimSpace(string(run("digest", "--platform", "linux/"+arch, node+"/quinistry:latest")))
		var man v1.Manifest
		if err := json.Unmarshal(run("manifest", node+"/quinistry@"+want.manifest[arch]), &man); err != nil && r.err == nil {
			r.err = fmt.Errorf("decoding the machine's %s manifest: %v", arch, err)
		}
		c := man.Config.Digest.String()
		r.config[arch] = [2]string{c, harness.DigestOf(run("blob", node+"/quinistry@"+c))}
	}
	return r
}

// skopeoResult is what skopeo copy --all wrote to a dir: the list's and
// the manifests' hashes, and its blobs.
type skopeoResult struct {
	list      string
	manifests []string
	blobs     int
	bad       []string
	err       error
}

func skopeoPull(skopeo, ns, node, dir string) skopeoResult {
	var r skopeoResult
	if _, r.err = inNS(ns, skopeo, "copy", "-q", "--all", "--preserve-digests", "--src-tls-verify=false",
		"docker://"+node+"/quinistry:latest", "dir:"+dir); r.err != nil {
		return r
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		r.err = err
		return r
	}
	hexName := regexp.MustCompile(`^[0-9a-f]{64}$`)
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			r.err = err
			return r
		}
		switch name := e.Name(); {
		case name == "manifest.json":
			r.list = harness.DigestOf(data)
		case strings.HasSuffix(name, ".manifest.json"):
			r.manifests = append(r.manifests, harness.DigestOf(data))
		case hexName.MatchString(name):
			r.blobs++
			if harness.DigestOf(data) != "sha256:"+name {
				r.bad = append(r.bad, name)
			}
		}
	}
	sort.Strings(r.manifests)
	return r
}

// dockerPull is what one docker pull --platform got: the digest it
// resolved, and the image's architecture and ID.
type dockerPull struct {
	resolved, arch, id string
	err                error
}

// dockerPulls pulls linux/amd64, then linux/arm64 from the machine into one
// dockerd (the second pull needs only its config: the layers are the same
// blobs).
func dockerPulls(d *harness.Docker, node string) map[string]dockerPull {
	ref := node + "/quinistry:latest"
	out := map[string]dockerPull{}
	for _, arch := range []string{"amd64", "arm64"} {
		var p dockerPull
		var pulled string
		pulled, _, p.err = d.RunErr("pull", "--platform", "linux/"+arch, ref)
		for _, line := range strings.Split(pulled, "\n") {
			if v, ok := strings.CutPrefix(line, "Digest: "); ok {
				p.resolved = strings.TrimSpace(v)
			}
		}
		if p.err == nil {
			var inspect string
			inspect, _, p.err = d.RunErr("image", "inspect", ref)
			var imgs []harness.DockerImage
			if p.err == nil {
				p.err = json.Unmarshal([]byte(inspect), &imgs)
			}
			if p.err == nil && len(imgs) == 1 {
				p.arch, p.id = imgs[0].Architecture, imgs[0].ID
			}
		}
		out[arch] = p
	}
	return out
}

// notExecutable returns path in a list when it is not an executable file.
func notExecutable(path string) []string {
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return []string{path}
	}
	return nil
}

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quinistry/quinistry/e2e/harness"
)

// kubeVersion is the Kubernetes version scripts/install-kubernetes.sh builds.
const kubeVersion = "v1.34.4"

// TestKubernetes runs the parent and child DaemonSets of deploy/ on a real
// Kubernetes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// kubelet, containerd, runc, CNI bridge and portmap) that
// scripts/bring/cluster.sh makes inside network namespaces of this run. It
// runs the README's bootstrap twice: through a CNCF registry (quinistry push,
// kubectl apply -k with the image set as `kustomize edit set image` sets it,
// then deploy/child.yaml unchanged) and with no registry (quinistry export
// --tar, ctr images import). It reads what the manifests ask for in the
// running container (/proc/PID/status, mountinfo, cgroup limits), deletes the
// parent pod, switches the parent to --format oci, runs 64 concurrent full
// pulls through the hostPort under the manifests' limits, joins a second node
// in a namespace of its own (each node's child pulls from its own node's
// parent), and checks at the end that nothing of the cluster is left.
func TestKubernetes(t *testing.T) {
	state := harness.TakeClusterState()
	dist := harness.Dist(t)
	q := harness.Binary(dist, "linux/amd64")
	registry := harness.Tool(t, "registry")
	tmp := harness.TempDir(t)

	// What quinistry serves, in both formats: the digests every hostPort must show.
	origin := harness.Start(t, "origin", q, []string{"--addr", "127.0.0.1:0"})
	originOCI := harness.Start(t, "origin-oci", q, []string{"--addr", "127.0.0.1:0", "--format", "oci"})
	want, wantOCI := harness.ListDigest(t, origin.Addr, "quinistry"), harness.ListDigest(t, originOCI.Addr, "quinistry")
	origin.Stop(t)
	originOCI.Stop(t)

	start := time.Now()
	c := harness.StartCluster(t, filepath.Join(tmp, "cluster"), "node1", "node2")
	k := kube{c}
	node1 := c.AddNode(t, nil, "node1")
	t.Logf("cluster %s: control plane and node1 up in %.1fs", c.ID, time.Since(start).Seconds())
	// step runs a subtest the rest depends on: its failure ends the suite
	// (the cluster still goes down, and the logs are shown).
	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.Fatalf("stopping after %q failed; the cluster's logs:%s", name, c.LogTails())
		}
	}

	step("node1 is Ready and runs kubelet "+kubeVersion, func(t *testing.T) {
		n := getJSON[kubeNode](t, k, "node", "node1")
		info := n.Status.NodeInfo
		if condition(n.Status.Conditions, "Ready") != "True" || info.KubeletVersion != kubeVersion {
			t.Errorf("node1: Ready %s, kubelet %s, runtime %s", condition(n.Status.Conditions, "Ready"), info.KubeletVersion, info.ContainerRuntimeVersion)
		}
		t.Logf("node1: kubelet %s, %s, %s", info.KubeletVersion, info.ContainerRuntimeVersion, info.KernelVersion)
	})

	// --- bootstrap 1: through a CNCF registry inside the cluster's namespace
	regPort := 20000 + os.Getpid()%20000
	regDir := filepath.Join(tmp, "registry")
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog: {level: warn, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/data}}\nhttp: {addr: 127.0.0.1:%d}\n", regDir, regPort)
	if err := os.WriteFile(filepath.Join(regDir, "config.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	reg := harness.StartWith(t, "registry", harness.Options{NoWaitReady: true}, harness.InNS(c.NS, registry, "serve", filepath.Join(regDir, "config.yml"))...)
	inCluster := harness.HTTPClient(c.NS, nil)
	eventually(t, 30*time.Second, "answer from the registry", func() bool {
		resp, err := inCluster.Get(fmt.Sprintf("http://127.0.0.1:%d/v2/", regPort))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	ref := fmt.Sprintf("localhost:%d/team/quinistry", regPort)
	step("registry: quinistry push prints the list digest quinistry serves", func(t *testing.T) {
		out, err := harness.RunErr(harness.InNS(c.NS, q, "push", "--insecure", ref+":v1")...)
		if err != nil {
			t.Fatalf("quinistry push %s:v1: %v", ref, err)
		}
		if got := strings.TrimSpace(out); got != want {
			t.Errorf("quinistry push %s:v1 printed %q, quinistry serves %s", ref, got, want)
		}
	})
	ov := filepath.Join(tmp, "overlay")
	if err := os.MkdirAll(ov, 0o755); err != nil {
		t.Fatal(err)
	}
	overlay(t, ov, ref, "v1")
	k.Kc(t, "apply", "-k", ov)
	step("registry: kubectl apply -k sets the parent's image as kustomize edit set image does", func(t *testing.T) {
		ds := getJSON[kubeDaemonSet](t, k, "ds", "quinistry-parent")
		if got := ds.Spec.Template.Spec.Containers[0].Image; got != ref+":v1" {
			t.Errorf("the parent's image is %s, want %s:v1", got, ref)
		}
	})
	step("registry: the parent DaemonSet rolls out", func(t *testing.T) { k.rolled(t, "quinistry-parent", 3*time.Minute) })
	parent := k.podOn(t, "node1", "parent")
	t.Run("registry: the parent pod pulled its image from the registry", func(t *testing.T) {
		msgs := k.pulled(t, parent.Metadata.Name)
		if !containsText(msgs, `Successfully pulled image "`+ref+`:v1"`) {
			t.Errorf("parent pod %s's Pulled events: %q", parent.Metadata.Name, msgs)
		}
	})
	k.Kc(t, "apply", "-f", filepath.Join(harness.Root(), "deploy", "child.yaml"))
	step("registry: the child DaemonSet rolls out", func(t *testing.T) { k.rolled(t, "quinistry-child", 3*time.Minute) })
	child := k.podOn(t, "node1", "child")
	childPulledFromParent := func(t *testing.T, pod string) {
		msgs := k.pulled(t, pod)
		if !containsText(msgs, `Successfully pulled image "localhost:5000/quinistry:latest"`) {
			t.Errorf("child pod %s's Pulled events: %q", pod, msgs)
		}
	}
	t.Run("registry: the child pod pulled from the parent", func(t *testing.T) { childPulledFromParent(t, child.Metadata.Name) })
	t.Run("registry: the parent's log shows containerd's request for the list", func(t *testing.T) {
		if r := k.servedPull(t, parent.Metadata.Name); len(r) == 0 {
			t.Errorf("parent pod %s logged no containerd request for /v2/quinistry/manifests/latest", parent.Metadata.Name)
		}
	})
	serves := func(t *testing.T, n *harness.ClusterNode, port int, want string) {
		if got, _ := servedAt(t, n.NS, fmt.Sprintf("127.0.0.1:%d", port)); got != want {
			t.Errorf("%s's hostPort %d serves %s, want %s", n.Name, port, got, want)
		}
	}
	t.Run("registry: hostPort 5000 (parent) serves the list", func(t *testing.T) { serves(t, node1, 5000, want) })
	t.Run("registry: hostPort 5001 (child) serves the list", func(t *testing.T) { serves(t, node1, 5001, want) })

	// --- the manifests earn their keep: what the kernel says about the parent's process
	t.Run("security", func(t *testing.T) {
		pid := containerPID(t, node1, parent)
		c := harness.ReadConfinement(t, pid)
		t.Logf("parent pod %s: %s", parent.Metadata.Name, c)
		t.Run("runs as uid 65532", func(t *testing.T) {
			if c.Uid != [4]uint32{65532, 65532, 65532, 65532} {
				t.Errorf("process %d Uid (real, effective, saved, fs): %v", pid, c.Uid)
			}
		})
		t.Run("runs as gid 65532", func(t *testing.T) {
			if c.Gid != [4]uint32{65532, 65532, 65532, 65532} {
				t.Errorf("process %d Gid: %v", pid, c.Gid)
			}
		})
		t.Run("has no capabilities", func(t *testing.T) {
			if c.CapInh|c.CapPrm|c.CapEff|c.CapBnd|c.CapAmb != 0 {
				t.Errorf("process %d has capabilities: %s", pid, c)
			}
		})
		t.Run("NoNewPrivs", func(t *testing.T) {
			if !c.NoNewPrivs {
				t.Errorf("process %d: no_new_privs is not set", pid)
			}
		})
		t.Run("a seccomp filter", func(t *testing.T) {
			if c.Seccomp != 2 {
				t.Errorf("process %d Seccomp: %d (2 is a filter)", pid, c.Seccomp)
			}
		})
		t.Run("a read-only root file system", func(t *testing.T) {
			if !c.RootReadOnly() {
				t.Errorf("process %d's root is mounted %v", pid, c.RootOptions)
			}
		})
		t.Run("shutdown: --shutdown-timeout 25s inside a 30 s grace period", func(t *testing.T) {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if err != nil {
				t.Fatal(err)
			}
			argv := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
			i := slices.Index(argv, "--shutdown-timeout")
			grace := k.pod(t, parent.Metadata.Name).Spec.TerminationGracePeriodSeconds
			if i < 0 || i+1 >= len(argv) || argv[i+1] != "25s" || grace == nil || *grace != 30 {
				t.Errorf("the process runs %q in a pod with terminationGracePeriodSeconds %v", argv, deref(grace))
			}
		})
	})
	for _, typ := range []string{"Readiness", "Liveness"} {
		t.Run("probes: the kubelet counts successful "+typ+" probes of the parent", func(t *testing.T) {
			ds := getJSON[kubeDaemonSet](t, k, "ds", "quinistry-parent")
			ctr := ds.Spec.Template.Spec.Containers[0]
			p := ctr.ReadinessProbe
			if typ == "Liveness" {
				p = ctr.LivenessProbe
			}
			if p == nil || p.HTTPGet == nil {
				t.Fatalf("the parent has no HTTP %s probe", typ)
			}
			t.Logf("%s probe on %s", typ, p.HTTPGet.Path)
			// quinistry does not log /readyz and /healthz: the kubelet's own
			// prober metrics count them (the first liveness probe comes
			// after initialDelaySeconds + periodSeconds)
			eventually(t, 90*time.Second, "successful "+typ+" probe of "+parent.Metadata.Name+" in the kubelet's metrics", func() bool {
				return k.probeCount(t, "node1", parent.Metadata.Name, typ) > 0
			})
		})
	}

	// --- bootstrap 2: no registry at all
	k.Kc(t, "delete", "-f", filepath.Join(harness.Root(), "deploy", "child.yaml"), "--wait=false")
	k.Kc(t, "delete", "-k", ov, "--wait=false")
	step("no registry: the first bootstrap's pods are gone", func(t *testing.T) {
		sel := "app.kubernetes.io/component in (parent,child)"
		if _, err := k.Kubectl("wait", "--for=delete", "pods", "-l", sel, "--timeout=180s"); err != nil {
			t.Logf("kubectl wait --for=delete: %v", err)
		}
		if pods := getJSON[kubeList[kubePod]](t, k, "pods", "-l", sel); len(pods.Items) > 0 {
			var names []string
			for _, p := range pods.Items {
				names = append(names, p.Metadata.Name)
			}
			t.Errorf("pods still there: %v", names)
		}
	})
	reg.Stop(t)
	if out, err := node1.Ctr("images", "rm", ref+":v1", "localhost:5000/quinistry:latest"); err != nil {
		t.Fatalf("ctr images rm: %v\n%s", err, out)
	}
	qtar := filepath.Join(tmp, "q.tar")
	harness.Run(t, q, "export", "--tar", qtar)
	step("no registry: ctr images import of quinistry export --tar holds the list quinistry serves", func(t *testing.T) {
		// defect 9: the import's exit status, then the imported image by its digest
		out, err := node1.Ctr("images", "import", qtar)
		if err != nil {
			t.Fatalf("ctr images import %s failed: %v\n%s", qtar, err, out)
		}
		img, ok := ctrImages(t, node1)["docker.io/library/quinistry:latest"]
		if !ok || img.Digest != want {
			t.Errorf("after the import node1's containerd holds docker.io/library/quinistry:latest as %+v (present: %v), want digest %s; ctr said: %s", img, ok, want, out)
		}
	})
	overlay(t, ov, "docker.io/library/quinistry", "latest")
	k.Kc(t, "apply", "-k", ov)
	step("no registry: the parent DaemonSet rolls out", func(t *testing.T) { k.rolled(t, "quinistry-parent", 3*time.Minute) })
	parent = k.podOn(t, "node1", "parent")
	t.Run("no registry: the parent pod pulled nothing", func(t *testing.T) {
		msgs := k.pulled(t, parent.Metadata.Name)
		if !containsText(msgs, "already present on machine") || containsText(msgs, "Successfully pulled") {
			t.Errorf("parent pod %s's Pulled events: %q", parent.Metadata.Name, msgs)
		}
	})
	k.Kc(t, "apply", "-f", filepath.Join(harness.Root(), "deploy", "child.yaml"))
	step("no registry: the child DaemonSet rolls out", func(t *testing.T) { k.rolled(t, "quinistry-child", 3*time.Minute) })
	child = k.podOn(t, "node1", "child")
	t.Run("no registry: the child pod pulled from the parent", func(t *testing.T) { childPulledFromParent(t, child.Metadata.Name) })
	t.Run("no registry: hostPort 5000 serves the list", func(t *testing.T) { serves(t, node1, 5000, want) })
	t.Run("no registry: hostPort 5001 serves the list", func(t *testing.T) { serves(t, node1, 5001, want) })

	// --- life on the cluster: the parent pod deleted
	t.Run("life: the deleted parent's quinistry exits 0 on SIGTERM, not killed after the grace period", func(t *testing.T) {
		id := strings.TrimPrefix(parent.Status.ContainerStatuses[0].ContainerID, "containerd://")
		exits, stop := watchExits(t, node1, c.Vars["PAUSE_REF"])
		defer stop()
		t0 := time.Now()
		k.Kc(t, "delete", "pod", parent.Metadata.Name)
		t.Logf("parent pod %s deleted in %.1fs (grace period 30 s)", parent.Metadata.Name, time.Since(t0).Seconds())
		timeout := time.After(time.Minute)
		for {
			select {
			case e, ok := <-exits:
				if !ok {
					t.Fatal("ctr events ended before the container's exit")
				}
				if e.ContainerID == id && e.ID == id {
					if e.ExitStatus != 0 {
						t.Errorf("parent container %s (pid %d) exited with status %d", id, e.Pid, e.ExitStatus)
					}
					return
				}
			case <-timeout:
				t.Fatalf("containerd reported no exit of the parent container %s", id)
			}
		}
	})
	step("life: the DaemonSet replaces the parent", func(t *testing.T) { k.rolled(t, "quinistry-parent", 3*time.Minute) })
	old := parent
	parent = k.podOn(t, "node1", "parent")
	t.Run("life: the new parent pod is Ready and serves the list", func(t *testing.T) {
		if _, err := k.Kubectl("wait", "--for=condition=Ready", "pod/"+parent.Metadata.Name, "--timeout=120s"); err != nil {
			t.Fatalf("new parent pod %s is not Ready: %v", parent.Metadata.Name, err)
		}
		if parent.Metadata.Name == old.Metadata.Name {
			t.Errorf("the parent pod is still %s", old.Metadata.Name)
		}
		serves(t, node1, 5000, want)
	})
	t.Run("life: the child is untouched", func(t *testing.T) {
		now := k.pod(t, child.Metadata.Name)
		if now.Metadata.UID != child.Metadata.UID || len(now.Status.ContainerStatuses) == 0 || now.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("child pod %s: uid %s (was %s), container statuses %+v", child.Metadata.Name, now.Metadata.UID, child.Metadata.UID, now.Status.ContainerStatuses)
		}
		serves(t, node1, 5001, want)
	})

	// --- life: the parent switched to --format oci, the child restarted from it
	k.Kc(t, "patch", "ds", "quinistry-parent", "--type=json", "-p",
		`[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--format"},{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"oci"}]`)
	step("oci: the parent's rollout with --format oci completes", func(t *testing.T) { k.rolled(t, "quinistry-parent", 3*time.Minute) })
	parent = k.podOn(t, "node1", "parent")
	t.Run("oci: the parent serves the OCI index quinistry --format oci serves", func(t *testing.T) {
		d, ct := servedAt(t, node1.NS, "127.0.0.1:5000")
		if d != wantOCI || ct != harness.OCIIndex {
			t.Errorf("parent %s serves %s as %s, want %s as %s", parent.Metadata.Name, d, ct, wantOCI, harness.OCIIndex)
		}
	})
	// the node still has the Docker-format image under the child's tag: remove it, as on a fresh node
	if out, err := node1.Ctr("images", "rm", "localhost:5000/quinistry:latest"); err != nil {
		t.Fatalf("ctr images rm: %v\n%s", err, out)
	}
	k.Kc(t, "rollout", "restart", "ds/quinistry-child")
	step("oci: the child's restart rolls out", func(t *testing.T) { k.rolled(t, "quinistry-child", 3*time.Minute) })
	child = k.podOn(t, "node1", "child")
	t.Run("oci: the child pod pulled again from the parent", func(t *testing.T) { childPulledFromParent(t, child.Metadata.Name) })
	t.Run("oci: containerd holds the child's image as the OCI index", func(t *testing.T) {
		if img := ctrImages(t, node1)["localhost:5000/quinistry:latest"]; img.Digest != wantOCI {
			t.Errorf("node1's containerd holds localhost:5000/quinistry:latest as %+v, want %s", img, wantOCI)
		}
	})
	t.Run("oci: the child serves the same OCI index", func(t *testing.T) { serves(t, node1, 5001, wantOCI) })

	// --- life: 64 concurrent full pulls through the hostPort, under the manifests' limits
	t.Run("load: 64 concurrent full pulls through hostPort 5000 verify every digest", func(t *testing.T) {
		const n = 64
		var wg sync.WaitGroup
		errs := make([]error, n)
		bytes := make([]int64, n)
		t0 := time.Now()
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bytes[i], errs[i] = fullPull(harness.HTTPClient(node1.NS, nil), "127.0.0.1:5000", wantOCI)
			}()
		}
		wg.Wait()
		var total int64
		var failed []string
		for i := range n {
			total += bytes[i]
			if errs[i] != nil {
				failed = append(failed, errs[i].Error())
			}
		}
		t.Logf("%d full pulls: %d MiB in %.1fs", n, total>>20, time.Since(t0).Seconds())
		if len(failed) > 0 {
			t.Errorf("%d of %d pulls failed: %v", len(failed), n, failed)
		}
	})
	t.Run("load: the parent ran under the manifests' limits, with no restart and no OOM kill", func(t *testing.T) {
		pid := containerPID(t, node1, parent)
		mem, cpu := cgroupDir(t, pid, "memory"), cgroupDir(t, pid, "cpu")
		limit := readTrim(t, filepath.Join(mem, "memory.limit_in_bytes"))
		quota := readTrim(t, filepath.Join(cpu, "cpu.cfs_quota_us")) + "/" + readTrim(t, filepath.Join(cpu, "cpu.cfs_period_us"))
		if limit != "268435456" || quota != "50000/100000" {
			t.Errorf("the parent (pid %d) runs under memory limit %s bytes and CPU quota %s µs, want 268435456 and 50000/100000", pid, limit, quota)
		}
		oom := "(none)"
		for _, line := range strings.Split(readTrim(t, filepath.Join(mem, "memory.oom_control")), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" {
				oom = f[1]
			}
		}
		restarts := -1
		if p := k.pod(t, parent.Metadata.Name); len(p.Status.ContainerStatuses) > 0 {
			restarts = p.Status.ContainerStatuses[0].RestartCount
		}
		t.Logf("peak memory %s bytes", readTrim(t, filepath.Join(mem, "memory.max_usage_in_bytes")))
		if oom != "0" || restarts != 0 {
			t.Errorf("parent %s: restartCount %d, oom_kill %s", parent.Metadata.Name, restarts, oom)
		}
	})

	// --- two nodes: node2 in a namespace of its own, with its own containerd, bridge and cgroup root
	node2 := c.AddNode(t, nil, "node2", qtar)
	step("two nodes: node2 joined from a namespace of its own and is Ready", func(t *testing.T) {
		n := getJSON[kubeNode](t, k, "node", "node2")
		if condition(n.Status.Conditions, "Ready") != "True" || node2.NS == c.NS {
			t.Errorf("node2 (%s, namespace %s; the apiserver at %s in %s): Ready %s", node2.Addr, node2.NS, c.API, c.NS, condition(n.Status.Conditions, "Ready"))
		}
	})
	step("two nodes: the parent DaemonSet rolls out on both", func(t *testing.T) { k.rolled(t, "quinistry-parent", 3*time.Minute) })
	step("two nodes: the child DaemonSet rolls out on both", func(t *testing.T) { k.rolled(t, "quinistry-child", 3*time.Minute) })
	for _, comp := range []string{"parent", "child"} {
		t.Run("two nodes: one "+comp+" pod per node", func(t *testing.T) {
			pods := getJSON[kubeList[kubePod]](t, k, "pods", "-l", "app.kubernetes.io/component="+comp)
			var nodes []string
			for _, p := range pods.Items {
				nodes = append(nodes, p.Spec.NodeName)
			}
			sort.Strings(nodes)
			if !slices.Equal(nodes, []string{"node1", "node2"}) {
				t.Errorf("%s pods run on %v", comp, nodes)
			}
		})
	}
	p2, c2 := k.podOn(t, "node2", "parent"), k.podOn(t, "node2", "child")
	t.Run("two nodes: node2's child pulled from localhost:5000", func(t *testing.T) { childPulledFromParent(t, c2.Metadata.Name) })
	t.Run("two nodes: node2's parent served that pull", func(t *testing.T) {
		if r := k.servedPull(t, p2.Metadata.Name); len(r) == 0 {
			t.Errorf("node2's parent %s logged no containerd request for the list", p2.Metadata.Name)
		}
	})
	t.Run("two nodes: node2's hostPort 5000 serves the OCI index", func(t *testing.T) { serves(t, node2, 5000, wantOCI) })
	t.Run("two nodes: node2's hostPort 5001 serves the OCI index", func(t *testing.T) { serves(t, node2, 5001, wantOCI) })

	// --- attestations: a provenance signed offline, put in the optional ConfigMap
	// deploy/ mounts, is served and verified on every node's parent and child, and a
	// second bundle added to it is served with no restart
	signer := newAttestSuite(t)
	_, stmtFile, bundle := signer.provenance(t, "oci")
	bundleFile := filepath.Join(tmp, "provenance.sigstore.json")
	if err := os.WriteFile(bundleFile, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	before := podRestarts(t, k)
	k.Kc(t, "create", "configmap", "quinistry-attestations", "--from-file=provenance.sigstore.json="+bundleFile)
	nodes := []*harness.ClusterNode{node1, node2}
	servedEverywhere := func(t *testing.T, bundles int) {
		for _, n := range nodes {
			for _, port := range []int{5000, 5001} {
				addr := fmt.Sprintf("127.0.0.1:%d", port)
				eventually(t, 3*time.Minute, fmt.Sprintf("%d bundle referrers of %s on %s's %s", bundles, wantOCI, n.Name, addr), func() bool {
					return bundleReferrers(n.NS, addr, wantOCI) == bundles
				})
			}
		}
	}
	t0 := time.Now()
	t.Run("attestations: the ConfigMap's bundle is served as a referrer of the list on both nodes' hostPorts 5000 and 5001", func(t *testing.T) {
		servedEverywhere(t, 1)
		t.Logf("served on every node %s after the ConfigMap was created", time.Since(t0).Round(time.Second))
	})
	for _, n := range nodes {
		for _, port := range []int{5000, 5001} {
			ref := fmt.Sprintf("127.0.0.1:%d/quinistry@%s", port, wantOCI)
			t.Run(fmt.Sprintf("attestations: cosign verify and verify-attestation pass against %s's hostPort %d", n.Name, port), func(t *testing.T) {
				for _, attestation := range []bool{false, true} {
					args := []string{"verify"}
					if attestation {
						args = []string{"verify-attestation", "--type", "slsaprovenance1"}
					}
					args = append(args, "--key", signer.pub, "--insecure-ignore-tlog", "--allow-http-registry", ref)
					if out, err := runEnv(signer.env, harness.InNS(n.NS, append([]string{signer.cosign}, args...)...)...); err != nil {
						t.Errorf("cosign %s in %s's namespace: %v\n%s", strings.Join(args, " "), n.Name, err, out)
					}
				}
			})
		}
	}
	second, err := json.Marshal(map[string]map[string]string{"data": {"second.sigstore.json": string(signer.sign(t, stmtFile))}})
	if err != nil {
		t.Fatal(err)
	}
	k.Kc(t, "patch", "configmap", "quinistry-attestations", "--type=merge", "-p", string(second))
	t0 = time.Now()
	t.Run("attestations: a second bundle added to the ConfigMap is served on every node", func(t *testing.T) {
		servedEverywhere(t, 2)
		t.Logf("served on every node %s after the ConfigMap was updated", time.Since(t0).Round(time.Second))
	})
	t.Run("attestations: no quinistry pod restarted or was replaced", func(t *testing.T) {
		if after := podRestarts(t, k); !maps.Equal(after, before) {
			t.Errorf("the pods (uid: restarts) were %v and are %v", before, after)
		}
	})

	// --- teardown, and nothing left behind
	t.Run("teardown leaves no process, mount, namespace, bridge, cgroup, iptables chain, sysctl change or kubelet file", func(t *testing.T) {
		t0 := time.Now()
		if err := c.Down(); err != nil {
			t.Fatal(err)
		}
		t.Logf("teardown in %.1fs", time.Since(t0).Seconds())
		if left := c.Leftovers(state); len(left) > 0 {
			t.Errorf("left behind:\n  %s", strings.Join(left, "\n  "))
		}
	})
	harness.CheckNothingLeft(t)
}

func containsText(msgs []string, s string) bool {
	for _, m := range msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func deref(p *int64) any {
	if p == nil {
		return "(unset)"
	}
	return *p
}

package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quinistry/quinistry/e2e/harness"
)

// What `kubectl get -o json` gives, as far as the Kubernetes suites read it.

type kubeMeta struct {
	Name              string            `json:"name"`
	UID               string            `json:"uid"`
	DeletionTimestamp *string           `json:"deletionTimestamp"`
	Labels            map[string]string `json:"labels"`
}

type kubeCondition struct {
	Type   string `json:"type"`
	Status string `json:"status"`
}

type kubeProbe struct {
	HTTPGet *struct {
		Path string `json:"path"`
	} `json:"httpGet"`
}

type kubeContainer struct {
	Name           string     `json:"name"`
	Image          string     `json:"image"`
	Args           []string   `json:"args"`
	ReadinessProbe *kubeProbe `json:"readinessProbe"`
	LivenessProbe  *kubeProbe `json:"livenessProbe"`
}

type kubePodSpec struct {
	NodeName                      string          `json:"nodeName"`
	TerminationGracePeriodSeconds *int64          `json:"terminationGracePeriodSeconds"`
	Containers                    []kubeContainer `json:"containers"`
}

type kubePod struct {
	Metadata kubeMeta    `json:"metadata"`
	Spec     kubePodSpec `json:"spec"`
	Status   struct {
		Phase             string          `json:"phase"`
		Conditions        []kubeCondition `json:"conditions"`
		ContainerStatuses []struct {
			ContainerID  string `json:"containerID"`
			RestartCount int    `json:"restartCount"`
			Image        string `json:"image"`
			ImageID      string `json:"imageID"`
		} `json:"containerStatuses"`
	} `json:"status"`
}

type kubeNode struct {
	Metadata kubeMeta `json:"metadata"`
	Status   struct {
		Conditions []kubeCondition `json:"conditions"`
		NodeInfo   struct {
			Architecture            string `json:"architecture"`
			KernelVersion           string `json:"kernelVersion"`
			ContainerRuntimeVersion string `json:"containerRuntimeVersion"`
			KubeletVersion          string `json:"kubeletVersion"`
		} `json:"nodeInfo"`
	} `json:"status"`
}

type kubeDaemonSet struct {
	Metadata kubeMeta `json:"metadata"`
	Spec     struct {
		Template struct {
			Spec kubePodSpec `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

type kubeEvent struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type kubeList[T any] struct {
	Items []T `json:"items"`
}

func condition(cs []kubeCondition, typ string) string {
	for _, c := range cs {
		if c.Type == typ {
			return c.Status
		}
	}
	return "(none)"
}

// kube drives one cluster for a suite: kubectl and ctr calls decoded into
// the types above.
type kube struct {
	*harness.Cluster
}

func getJSON[T any](t testing.TB, k kube, args ...string) T {
	t.Helper()
	return harness.JSON[T](t, "kubectl get "+strings.Join(args, " "), k.Kc(t, append(append([]string{"get"}, args...), "-o", "json")...))
}

// pod returns the pod named name.
func (k kube) pod(t testing.TB, name string) kubePod {
	t.Helper()
	return getJSON[kubePod](t, k, "pod", name)
}

// podOn returns the component's (parent, child) pod on node that is not
// being deleted.
func (k kube) podOn(t testing.TB, node, component string) kubePod {
	t.Helper()
	pods := getJSON[kubeList[kubePod]](t, k, "pods", "-l", "app.kubernetes.io/component="+component, "--field-selector", "spec.nodeName="+node)
	var names []string
	for _, p := range pods.Items {
		if p.Metadata.DeletionTimestamp == nil {
			return p
		}
		names = append(names, p.Metadata.Name+" (being deleted)")
	}
	t.Fatalf("no %s pod on %s: %v", component, node, names)
	return kubePod{}
}

// pulled returns the messages of the pod's Pulled events, waiting up to a
// minute for the first: the kubelet reports events asynchronously.
func (k kube) pulled(t testing.TB, pod string) []string {
	t.Helper()
	var msgs []string
	eventually(t, time.Minute, "a Pulled event of pod "+pod, func() bool {
		ev := getJSON[kubeList[kubeEvent]](t, k, "events", "--field-selector", "involvedObject.name="+pod+",reason=Pulled")
		msgs = msgs[:0]
		for _, e := range ev.Items {
			msgs = append(msgs, e.Message)
		}
		return len(msgs) > 0
	})
	return msgs
}

// rolled waits until DaemonSet name has rolled out on every node.
func (k kube) rolled(t testing.TB, name string, timeout time.Duration) {
	t.Helper()
	if _, err := k.Kubectl("rollout", "status", "ds/"+name, fmt.Sprintf("--timeout=%ds", int(timeout.Seconds()))); err != nil {
		ds := k.Kc(t, "get", "pods", "-o", "wide")
		t.Fatalf("DaemonSet %s did not roll out: %v\n%s", name, err, ds)
	}
}

// servedPull returns the request records of the pod's quinistry log (read
// through the apiserver) in which containerd asked for the list.
func (k kube) servedPull(t testing.TB, pod string) []harness.Record {
	t.Helper()
	var out []harness.Record
	for _, line := range strings.Split(string(k.Kc(t, "logs", pod)), "\n") {
		r, ok := harness.ParseRecord(line)
		if ok && r.Msg() == "request" && r["path"] == "/v2/quinistry/manifests/latest" && strings.HasPrefix(r["user_agent"], "containerd/") {
			out = append(out, r)
		}
	}
	return out
}

// containerPID finds the host PID of the pod's (only) container in the
// kernel's view: the one process of the cgroup named for its container ID
// under the node's cgroup root.
func containerPID(t testing.TB, n *harness.ClusterNode, p kubePod) int {
	t.Helper()
	if len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s has no container status", p.Metadata.Name)
	}
	id := strings.TrimPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	root := filepath.Join("/sys/fs/cgroup/memory", n.Cgroup)
	var procs string
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == id {
			data, _ := os.ReadFile(filepath.Join(path, "cgroup.procs"))
			procs = strings.TrimSpace(string(data))
			return filepath.SkipAll
		}
		return nil
	})
	f := strings.Fields(procs)
	if len(f) != 1 {
		t.Fatalf("the cgroup of pod %s's container %s under %s holds processes %v, want one", p.Metadata.Name, id, root, f)
	}
	pid, _ := strconv.Atoi(f[0])
	return pid
}

// cgroupDir returns the process's directory in cgroup v1 hierarchy ctrl
// (memory, cpu) as /proc/PID/cgroup names it.
func cgroupDir(t testing.TB, pid int, ctrl string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		for _, c := range strings.Split(f[1], ",") {
			if c == ctrl {
				return filepath.Join("/sys/fs/cgroup", f[1], f[2])
			}
		}
	}
	t.Fatalf("process %d is in no %s cgroup:\n%s", pid, ctrl, data)
	return ""
}

func readTrim(t testing.TB, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// ctrImage is one row of `ctr images ls`.
type ctrImage struct{ Ref, Type, Digest string }

// ctrImages lists the node's images, reading ctr's table by its header.
func ctrImages(t testing.TB, n *harness.ClusterNode) map[string]ctrImage {
	t.Helper()
	out, err := n.Ctr("images", "ls")
	if err != nil {
		t.Fatalf("ctr images ls on %s: %v", n.Name, err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	head := strings.Fields(lines[0])
	col := map[string]int{}
	for i, h := range head {
		col[h] = i
	}
	if _, ok := col["DIGEST"]; !ok || col["REF"] != 0 {
		t.Fatalf("ctr images ls printed an unknown table:\n%s", out)
	}
	m := map[string]ctrImage{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > col["DIGEST"] {
			m[f[0]] = ctrImage{Ref: f[0], Type: f[col["TYPE"]], Digest: f[col["DIGEST"]]}
		}
	}
	return m
}

// servedAt asks the address (inside namespace ns) for quinistry:latest as
// docker does and returns the digest and content type it answers with.
func servedAt(t testing.TB, ns, addr string) (digest, contentType string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodHead, "http://"+addr+"/v2/quinistry/manifests/latest", nil)
	req.Header.Set("Accept", harness.ListAccept)
	resp, err := harness.HTTPClient(ns, nil).Do(req)
	if err != nil {
		t.Fatalf("HEAD %s/quinistry:latest in %s: %v", addr, ns, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s/quinistry:latest in %s: status %d", addr, ns, resp.StatusCode)
	}
	return resp.Header.Get("Docker-Content-Digest"), resp.Header.Get("Content-Type")
}

// eventually polls cond every half second until it holds, for state that
// nothing reports as an event (the kubelet's metrics, its events); it fails
// the test after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, timeout)
		}
		<-tick.C
	}
}

// fullPull fetches, through client, the list at addr, every manifest it
// names and every config and layer once, checking each against its digest,
// as a client that keeps what it has fetched. It returns the bytes of the
// blobs read.
func fullPull(client *http.Client, addr, want string) (int64, error) {
	get := func(path, accept string) ([]byte, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v2/quinistry/"+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
		}
		return body, fmt.Sprintf("sha256:%x", sha256.Sum256(body)), err
	}
	body, d, err := get("manifests/latest", harness.OCIIndex+", "+harness.DockerList)
	if err != nil {
		return 0, err
	}
	if d != want {
		return 0, fmt.Errorf("the list hashes to %s, want %s", d, want)
	}
	var list struct {
		Manifests []struct{ MediaType, Digest string }
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return 0, err
	}
	blobs := map[string]bool{}
	for _, m := range list.Manifests {
		body, d, err := get("manifests/"+m.Digest, m.MediaType)
		if err != nil {
			return 0, err
		}
		if d != m.Digest {
			return 0, fmt.Errorf("manifest %s hashes to %s", m.Digest, d)
		}
		var man struct {
			Config struct{ Digest string }
			Layers []struct{ Digest string }
		}
		if err := json.Unmarshal(body, &man); err != nil {
			return 0, err
		}
		blobs[man.Config.Digest] = true
		for _, l := range man.Layers {
			blobs[l.Digest] = true
		}
	}
	var n int64
	for b := range blobs {
		body, d, err := get("blobs/"+b, "")
		if err != nil {
			return 0, err
		}
		if d != b {
			return 0, fmt.Errorf("blob %s hashes to %s", b, d)
		}
		n += int64(len(body))
	}
	return n, nil
}

// taskExit is containerd's /tasks/exit event as `ctr events` prints it.
type taskExit struct {
	ContainerID string `json:"container_id"`
	ID          string `json:"id"`
	Pid         int    `json:"pid"`
	ExitStatus  int    `json:"exit_status"`
}

// watchExits starts `ctr events` on the node and returns, once it is
// subscribed, a channel that receives each task exit it reports, and a
// function that stops it. It knows it is subscribed when it sees the
// /images/create event of a marker tag it makes (of image, the pause image
// say) and removes.
func watchExits(t testing.TB, n *harness.ClusterNode, image string) (<-chan taskExit, func()) {
	t.Helper()
	cmd := exec.Command("ctr", "--address", n.Sock, "events")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("ctr events on %s: %v", n.Name, err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	t.Cleanup(stop)
	marker := fmt.Sprintf("quinistry.test/e2e-marker:%d", time.Now().UnixNano())
	subscribed := make(chan struct{})
	ch := make(chan taskExit, 64)
	go func() {
		defer close(ch)
		pending := true
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			i := strings.IndexByte(line, '{')
			if i < 0 {
				continue
			}
			switch {
			case pending && strings.Contains(line[:i], "/images/create") && strings.Contains(line[i:], marker):
				close(subscribed)
				pending = false
			case strings.Contains(line[:i], "/tasks/exit"):
				var e taskExit
				if json.Unmarshal([]byte(line[i:]), &e) == nil {
					select {
					case ch <- e:
					default: // nobody reads any more
					}
				}
			}
		}
	}()
	// A tag made before ctr subscribed is never reported: tag again until
	// one is.
	deadline := time.After(time.Minute)
	for i := 0; ; i++ {
		tag := fmt.Sprintf("%s-%d", marker, i)
		if out, err := n.Ctr("images", "tag", image, tag); err != nil {
			t.Fatalf("ctr images tag %s %s: %v\n%s", image, tag, err, out)
		}
		select {
		case <-subscribed:
		case <-time.After(2 * time.Second):
		case <-deadline:
			t.Fatalf("ctr events on %s reported none of the marker tags %s-*", n.Name, marker)
		}
		if out, err := n.Ctr("images", "rm", tag); err != nil {
			t.Fatalf("ctr images rm %s: %v\n%s", tag, err, out)
		}
		select {
		case <-subscribed:
			return ch, stop
		default:
		}
	}
}

// overlay writes dir/kustomization.yaml over deploy/, setting the parent's
// image as `kustomize edit set image registry.example.com/quinistry=NAME:TAG`
// would.
func overlay(t testing.TB, dir, name, tag string) {
	t.Helper()
	rel, err := filepath.Rel(dir, filepath.Join(harness.Root(), "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - %s
images:
  - name: registry.example.com/quinistry
    newName: %s
    newTag: %s
`, rel, name, tag)
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
}

// probeCount returns the kubelet's prober_probe_total for the pod's
// successful probes of type typ (Readiness, Liveness), from the node's
// /metrics/probes through the apiserver.
func (k kube) probeCount(t testing.TB, node, pod, typ string) float64 {
	t.Helper()
	var sum float64
	for _, line := range strings.Split(string(k.Kc(t, "get", "--raw", "/api/v1/nodes/"+node+"/proxy/metrics/probes")), "\n") {
		name, rest, ok := strings.Cut(line, "{")
		if !ok || name != "prober_probe_total" {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		l := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				l[k] = strings.Trim(v, `"`)
			}
		}
		if l["pod"] == pod && l["probe_type"] == typ && l["result"] == "successful" {
			v, _ := strconv.ParseFloat(strings.TrimSpace(value), 64)
			sum += v
		}
	}
	return sum
}

// podRestarts returns every quinistry pod as "name uid" with its
// containers' restart count.
func podRestarts(t testing.TB, k kube) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, p := range getJSON[kubeList[kubePod]](t, k, "pods", "-l", "app.kubernetes.io/name=quinistry").Items {
		n := 0
		for _, c := range p.Status.ContainerStatuses {
			n += c.RestartCount
		}
		m[p.Metadata.Name+" "+p.Metadata.UID] = n
	}
	return m
}

// bundleReferrers returns how many Sigstore bundles the quinistry at addr
// (inside namespace ns) lists as referrers of d, or -1 when it cannot say.
func bundleReferrers(ns, addr, d string) int {
	resp, err := harness.HTTPClient(ns, nil).Get("http://" + addr + "/v2/quinistry/referrers/" + d +
		"?artifactType=application%2Fvnd.dev.sigstore.bundle.v0.3%2Bjson")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var idx struct {
		Manifests []struct {
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&idx) != nil {
		return -1
	}
	n := 0
	for _, m := range idx.Manifests {
		if m.ArtifactType == "application/vnd.dev.sigstore.bundle.v0.3+json" {
			n++
		}
	}
	return n
}

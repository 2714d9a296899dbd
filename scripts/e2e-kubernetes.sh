#!/usr/bin/env bash
# e2e-kubernetes.sh: the parent and child DaemonSets of deploy/ on a real Kubernetes v1.34.4 (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, containerd, runc, CNI bridge and
# portmap) made by scripts/lib/cluster.sh inside network namespaces of this run. It runs the
# README's bootstrap twice: through a CNCF registry (quinistry push, kubectl apply -k with the image
# set as `kustomize edit set image` sets it, then deploy/child.yaml unchanged) and with no registry
# (quinistry export --tar, ctr import). It checks what the manifests ask for in the running
# container (/proc/PID/status, mountinfo, cgroup limits), deletes the parent pod, switches the
# parent to --format oci, runs 64 concurrent full pulls through the hostPort under the manifests'
# limits, joins a second node in a namespace of its own (each node's child pulls from its own
# node's parent), and checks at the end that nothing of the cluster is left on the machine.
# Needs scripts/install-tools.sh (which runs scripts/install-kubernetes.sh) to have run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d /tmp/qk8s-e2e.XXXXXX)
source scripts/lib/quinistry.sh
source scripts/lib/cluster.sh
START=$(date +%s)
if [[ -n ${KEEP_LOGS:-} ]]; then mkdir -p "$KEEP_LOGS" && CLUSTER_KEEP_LOGS=$(cd "$KEEP_LOGS" && pwd); fi
REG_PID=
DOWN=
cleanup() {
  set +e
  q_stop_all
  [[ -n $REG_PID ]] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null; }
  [[ -n $DOWN ]] || cluster_down
  rm -rf "$Q_TMP"
}
trap cleanup EXIT
# fatal MSG: a step the rest depends on failed
fatal() {
  echo "FAIL $*"
  CHECKS_FAILED=$((CHECKS_FAILED + 1))
  checks_done e2e-kubernetes || true
  exit 1
}

for b in kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [[ -x $KUBE_BIN/$b ]] || { echo "e2e-kubernetes: no $KUBE_BIN/$b: run scripts/install-tools.sh" >&2; exit 1; }
done
command -v registry >/dev/null || { echo "e2e-kubernetes: no registry in .tools/bin: run scripts/install-tools.sh" >&2; exit 1; }
scripts/build.sh >/dev/null
Q=$ROOT/dist/quinistry-linux-amd64

# What quinistry serves, in both formats: the digests every node port must show.
q_start origin "$Q" --addr 127.0.0.1:0
q_start origin-oci "$Q" --addr 127.0.0.1:0 --format oci
WANT=$(q_list_digest "${Q_ADDR[origin]}")
WANT_OCI=$(q_list_digest "${Q_ADDR[origin-oci]}")
q_stop_all

# since T0: seconds since T0 (date +%s.%N), one decimal
since() { awk -v t0="$1" -v t="$(date +%s.%N)" 'BEGIN {printf "%.1f", t - t0}'; }
# served_pull POD: containerd's request for the list is in the (parent) pod's log
served_pull() { kc logs "$1" 2>/dev/null | grep '"path":"/v2/quinistry/manifests/latest"' | grep -q '"user_agent":"containerd/'; }
# pod_field NAME JSONPATH
pod_field() { kc get pod "$1" -o jsonpath="{$2}"; }
# task_pid NODE POD: the host PID of the pod's container
task_pid() {
  local id
  id=$(pod_field "$2" '.status.containerStatuses[0].containerID')
  node_ctr "$1" tasks ls | awk -v id="${id#containerd://}" '$1 == id {print $2}'
}
# ready OBJECT: the pod or node is Ready
ready() { kc wait --for=condition=Ready "$1" --timeout=60s >/dev/null; }
# digest_at NODE PORT: the list digest served on the node's localhost:PORT
digest_at() { in_node "$1" bash -c "$(declare -f q_list_digest); LIST_ACCEPT='$LIST_ACCEPT' q_list_digest 127.0.0.1:$2"; }
# wait_gone COMPONENT...: no pod of these components is left
wait_gone() {
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -z $(kc get pods -l "app.kubernetes.io/component in ($(IFS=,; echo "$*"))" -o name) ]] && return 0
    sleep 0.2
  done
  return 1
}

# --- the cluster: control plane and node1 in the cluster's namespace
cluster_init "$Q_TMP/cluster"
t0=$(date +%s.%N)
cluster_up node1 node2 || fatal "control plane up (logs: $CLUSTER_DIR/logs)"
node_up node1 1 || fatal "node1 up (logs: $CLUSTER_DIR/logs)"
UP=$(since "$t0")
check "cluster: apiserver, controllers, scheduler and node1 Ready in ${UP}s; node reports $(kc get node node1 -o jsonpath='{.status.nodeInfo.kubeletVersion} {.status.nodeInfo.containerRuntimeVersion}')" \
  [ "$(kc get node node1 -o jsonpath='{.status.nodeInfo.kubeletVersion}')" == "$KUBE_VERSION" ]

# --- bootstrap 1: through a registry (a CNCF registry v3.1.2 inside the cluster's namespace)
REG_PORT=$((20000 + RANDOM % 20000))
mkdir -p "$Q_TMP/registry"
cat >"$Q_TMP/registry/config.yml" <<EOF
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $Q_TMP/registry/data}}
http: {addr: 127.0.0.1:$REG_PORT}
EOF
nsenter --net="/run/netns/$CLUSTER_NS" registry serve "$Q_TMP/registry/config.yml" >"$Q_TMP/registry/log" 2>&1 &
REG_PID=$!
_cl_wait 20 registry in_ns curl -fs "http://127.0.0.1:$REG_PORT/v2/" || fatal "registry up: $(cat "$Q_TMP/registry/log")"
REF=localhost:$REG_PORT/team/quinistry
PUSHED=$(in_ns "$Q" push --insecure "$REF:v1" 2>"$Q_TMP/push.err") || fatal "quinistry push: $(cat "$Q_TMP/push.err")"
check "registry: quinistry push $REF:v1 printed $PUSHED, the list digest quinistry serves" [ "$PUSHED" == "$WANT" ]

# what `kustomize edit set image registry.example.com/quinistry=$REF:v1` writes, as an overlay of deploy/
deploy_overlay "$Q_TMP/overlay" "$REF" v1
kc apply -k "$Q_TMP/overlay" >/dev/null || fatal "kubectl apply -k"
check "registry: kubectl apply -k: the parent's image is $(kc get ds quinistry-parent -o jsonpath='{..containers[0].image}')" \
  [ "$(kc get ds quinistry-parent -o jsonpath='{..containers[0].image}')" == "$REF:v1" ]
check "registry: parent DaemonSet rolled out" ds_rolled quinistry-parent
PARENT=$(pod_on node1 parent)
check "registry: parent pod $PARENT pulled its image from the registry: $(pod_pulled "$PARENT")" \
  grep -q "Successfully pulled image \"$REF:v1\"" <<<"$(pod_pulled "$PARENT")"
kc apply -f deploy/child.yaml >/dev/null || fatal "kubectl apply -f deploy/child.yaml"
check "registry: child DaemonSet rolled out" ds_rolled quinistry-child
CHILD=$(pod_on node1 child)
check "registry: child pod $CHILD pulled from the parent: $(pod_pulled "$CHILD")" \
  grep -q 'Successfully pulled image "localhost:5000/quinistry:latest"' <<<"$(pod_pulled "$CHILD")"
check "registry: the parent's log shows containerd's request for the list" served_pull "$PARENT"
D5000=$(digest_at node1 5000)
D5001=$(digest_at node1 5001)
check "registry: hostPort 5000 (parent) serves $D5000" [ "$D5000" == "$WANT" ]
check "registry: hostPort 5001 (child) serves $D5001" [ "$D5001" == "$WANT" ]

# --- the manifests earn their keep: read what the kernel says about the parent's process
PID=$(task_pid node1 "$PARENT")
[[ -n $PID ]] || fatal "no containerd task for parent pod $PARENT"
STATUS=$(cat "/proc/$PID/status" 2>/dev/null || true)
field() { awk -v k="$1:" '$1 == k {$1 = ""; print substr($0, 2)}' <<<"$STATUS"; }
check "security: parent process $PID runs as uid $(field Uid | tr '\t' ' ')" [ "$(field Uid | tr -s '\t ' ' ')" == "65532 65532 65532 65532" ]
check "security: gid $(field Gid | tr '\t' ' ')" [ "$(field Gid | tr -s '\t ' ' ')" == "65532 65532 65532 65532" ]
CAPS="$(field CapInh) $(field CapPrm) $(field CapEff) $(field CapBnd) $(field CapAmb)"
check "security: no capabilities (inh prm eff bnd amb: $CAPS)" [ "$CAPS" == "$(printf '0000000000000000 %.0s' 1 2 3 4)0000000000000000" ]
check "security: NoNewPrivs $(field NoNewPrivs)" [ "$(field NoNewPrivs)" == 1 ]
check "security: Seccomp $(field Seccomp) (2: a filter)" [ "$(field Seccomp)" == 2 ]
ROOTOPTS=$(awk '$5 == "/" {print $6}' "/proc/$PID/mountinfo" 2>/dev/null || true)
check "security: the root file system is mounted $ROOTOPTS" grep -qE '(^|,)ro(,|$)' <<<"$ROOTOPTS"
CMDLINE=$(tr '\0' ' ' <"/proc/$PID/cmdline" || true)
GRACE=$(pod_field "$PARENT" .spec.terminationGracePeriodSeconds)
check "shutdown: the process runs '$CMDLINE' in a pod with terminationGracePeriodSeconds $GRACE" \
  bash -c "[[ '$CMDLINE' == *'--shutdown-timeout 25s'* && '$GRACE' == 30 ]]"
PROBES=$(kc get ds quinistry-parent -o jsonpath='{..readinessProbe.httpGet.path} {..livenessProbe.httpGet.path}')
# probed TYPE: the kubelet's own prober metrics count a successful TYPE probe of the parent pod
# (quinistry does not log /readyz and /healthz); waits up to 40 s for the first liveness period
probed() {
  local i
  for ((i = 0; i < 40; i++)); do
    kc get --raw /api/v1/nodes/node1/proxy/metrics/probes 2>/dev/null |
      grep "^prober_probe_total{" | grep "pod=\"$PARENT\"" | grep "probe_type=\"$1\"" |
      grep 'result="successful"' | awk '$NF > 0 {found = 1} END {exit !found}' && return 0
    sleep 1
  done
  return 1
}
check "probes: readiness and liveness on $PROBES; the kubelet's prober counts successful Readiness probes of $PARENT" probed Readiness
check "probes: and successful Liveness probes" probed Liveness

# --- bootstrap 2: no registry at all
kc delete -f deploy/child.yaml --wait=false >/dev/null
kc delete -k "$Q_TMP/overlay" --wait=false >/dev/null
check "no registry: the first bootstrap's pods are gone" wait_gone parent child
kill "$REG_PID" && wait "$REG_PID" 2>/dev/null || true
REG_PID=
node_ctr node1 images rm "$REF:v1" localhost:5000/quinistry:latest >/dev/null
"$Q" export --tar "$Q_TMP/q.tar" >/dev/null 2>"$Q_TMP/export.log" || fatal "quinistry export: $(cat "$Q_TMP/export.log")"
IMPORTED=$(node_ctr node1 images import "$Q_TMP/q.tar" 2>&1 | xargs) || IMPORTED="(failed) $IMPORTED"
check "no registry: ctr images import of quinistry export --tar: $IMPORTED" grep -q 'docker.io/library/quinistry:latest' <<<"$IMPORTED"
deploy_overlay "$Q_TMP/overlay" docker.io/library/quinistry latest
kc apply -k "$Q_TMP/overlay" >/dev/null
check "no registry: parent DaemonSet rolled out" ds_rolled quinistry-parent
PARENT=$(pod_on node1 parent)
check "no registry: parent pod $PARENT pulled nothing (events: $(kc get events --field-selector "involvedObject.name=$PARENT,reason=Pulled" -o jsonpath='{.items[*].message}'))" \
  grep -q 'already present on machine' <<<"$(pod_pulled "$PARENT")"
kc apply -f deploy/child.yaml >/dev/null
check "no registry: child DaemonSet rolled out" ds_rolled quinistry-child
CHILD=$(pod_on node1 child)
check "no registry: child pod $CHILD pulled from the parent: $(pod_pulled "$CHILD")" \
  grep -q 'Successfully pulled image "localhost:5000/quinistry:latest"' <<<"$(pod_pulled "$CHILD")"
D5000=$(digest_at node1 5000)
D5001=$(digest_at node1 5001)
check "no registry: hostPort 5000 serves $D5000" [ "$D5000" == "$WANT" ]
check "no registry: hostPort 5001 serves $D5001" [ "$D5001" == "$WANT" ]

# --- life on the cluster: the parent pod deleted
CHILD_UID=$(pod_field "$CHILD" .metadata.uid)
t0=$(date +%s.%N)
kc delete pod "$PARENT" >/dev/null
GONE=$(since "$t0")
check "life: parent pod $PARENT deleted in ${GONE}s, well inside its 30 s grace period (quinistry stops on SIGTERM)" \
  awk -v t="$GONE" 'BEGIN {exit !(t < 25)}'
check "life: the DaemonSet replaced it" ds_rolled quinistry-parent
NEW=$(pod_on node1 parent)
check "life: new parent pod $NEW is Ready" ready "pod/$NEW"
D5000=$(digest_at node1 5000)
check "life: new parent serves $D5000" [ "$NEW" != "$PARENT" -a "$D5000" == "$WANT" ]
check "life: the child is untouched: pod $CHILD uid $(pod_field "$CHILD" .metadata.uid), restarts $(pod_field "$CHILD" '.status.containerStatuses[0].restartCount')" \
  [ "$(pod_field "$CHILD" .metadata.uid)" == "$CHILD_UID" -a "$(pod_field "$CHILD" '.status.containerStatuses[0].restartCount')" == 0 ]
D5001=$(digest_at node1 5001)
check "life: the child still serves $D5001" [ "$D5001" == "$WANT" ]

# --- life: the parent switched to --format oci, the child restarted from it
kc patch ds quinistry-parent --type=json -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--format"},{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"oci"}]' >/dev/null
check "oci: the parent's rollout with --format oci completed" ds_rolled quinistry-parent
PARENT=$(pod_on node1 parent)
D5000=$(digest_at node1 5000)
CT=$(in_ns curl -fsSI -H "Accept: $LIST_ACCEPT" http://127.0.0.1:5000/v2/quinistry/manifests/latest | tr -d '\r' | awk -F': ' 'tolower($1) == "content-type" {print $2}') || CT=none
check "oci: parent $PARENT serves $CT $D5000, as quinistry --format oci does" [ "$D5000" == "$WANT_OCI" -a "$CT" == application/vnd.oci.image.index.v1+json ]
# the node still has the Docker-format image under the child's tag: remove it, as on a fresh node
node_ctr node1 images rm localhost:5000/quinistry:latest >/dev/null
kc rollout restart ds/quinistry-child >/dev/null
check "oci: the child's restart rolled out" ds_rolled quinistry-child
CHILD=$(pod_on node1 child)
check "oci: child pod $CHILD pulled again from the parent: $(pod_pulled "$CHILD")" \
  grep -q 'Successfully pulled image "localhost:5000/quinistry:latest"' <<<"$(pod_pulled "$CHILD")"
GOT=$(node_ctr node1 images ls "name==localhost:5000/quinistry:latest" | awk 'NR == 2 {print $3}') || GOT=none
check "oci: containerd holds localhost:5000/quinistry:latest as $GOT" [ "$GOT" == "$WANT_OCI" ]
D5001=$(digest_at node1 5001)
check "oci: the child serves $D5001, the same OCI index" [ "$D5001" == "$WANT_OCI" ]

# --- life: 64 concurrent full pulls through the hostPort, under the manifests' limits
cat >"$Q_TMP/pull.sh" <<'EOF'
# pull.sh ADDR LIST_DIGEST: one full pull (the list, every manifest, every config and layer once), every digest checked
set -euo pipefail
a=$1 want=$2 dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
accept='application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json'
sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
curl -fsS -H "Accept: $accept" -o "$dir/list" "http://$a/v2/quinistry/manifests/latest"
[[ $(sha "$dir/list") == "$want" ]] || { echo "list digest $(sha "$dir/list")"; exit 1; }
for m in $(jq -r '.manifests[].digest' "$dir/list"); do
  curl -fsS -H "Accept: $(jq -r --arg d "$m" '.manifests[] | select(.digest == $d) | .mediaType' "$dir/list")" \
    -o "$dir/m" "http://$a/v2/quinistry/manifests/$m"
  [[ $(sha "$dir/m") == "$m" ]] || { echo "manifest $m"; exit 1; }
  jq -r '.config.digest, .layers[].digest' "$dir/m" >>"$dir/blobs"
done
# every blob once, as a client that keeps what it has fetched
for b in $(sort -u "$dir/blobs"); do
  curl -fsS -o "$dir/b" "http://$a/v2/quinistry/blobs/$b"
  [[ $(sha "$dir/b") == "$b" ]] || { echo "blob $b"; exit 1; }
  stat -c %s "$dir/b" >>"$dir/bytes"
done
awk '{s += $1} END {print "ok", s}' "$dir/bytes"
EOF
cat >"$Q_TMP/pulls.sh" <<EOF
# pulls.sh N: N concurrent full pulls; prints how many verified and the bytes they read
pids=()
for ((i = 0; i < \$1; i++)); do bash "$Q_TMP/pull.sh" 127.0.0.1:5000 "$WANT_OCI" >"$Q_TMP/pull.\$i" 2>&1 & pids+=(\$!); done
ok=0
for p in "\${pids[@]}"; do wait "\$p" && ok=\$((ok + 1)); done
echo "\$ok \$(cat $Q_TMP/pull.* | awk '\$1 == "ok" {s += \$2} END {print s}')"
EOF
t0=$(date +%s.%N)
read -r OK BYTES < <(in_ns bash "$Q_TMP/pulls.sh" 64)
T=$(since "$t0")
check "load: 64 concurrent full pulls through hostPort 5000: $OK verified every digest, $((BYTES / 1048576)) MiB in ${T}s" [ "$OK" == 64 ]
PID=$(task_pid node1 "$PARENT")
[[ -n $PID ]] || fatal "no containerd task for parent pod $PARENT"
MEMCG=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" {print $3}' "/proc/$PID/cgroup")
CPUCG=/sys/fs/cgroup/cpu$(awk -F: '$2 ~ /(^|,)cpu(,|$)/ {print $3}' "/proc/$PID/cgroup")
LIMIT=$(cat "$MEMCG/memory.limit_in_bytes" || true)
QUOTA="$(cat "$CPUCG/cpu.cfs_quota_us" || true)/$(cat "$CPUCG/cpu.cfs_period_us" || true)"
check "load: the parent ran under memory limit $LIMIT bytes and CPU quota $QUOTA µs" [ "$LIMIT" == 268435456 -a "$QUOTA" == 50000/100000 ]
OOM=$(awk '$1 == "oom_kill" {print $2}' "$MEMCG/memory.oom_control" || true)
PEAK=$(($(cat "$MEMCG/memory.max_usage_in_bytes" || echo 0) / 1048576))
check "load: parent $PARENT restartCount $(pod_field "$PARENT" '.status.containerStatuses[0].restartCount'), oom_kill ${OOM:-?}, peak memory $PEAK MiB" \
  [ "$(pod_field "$PARENT" '.status.containerStatuses[0].restartCount')" == 0 -a "${OOM:-x}" == 0 ]

# --- two nodes: node2 in a namespace of its own, with its own containerd, bridge and cgroup root
node_netns node2 2 || fatal "node2's namespace"
ADDR2=$NODE_ADDR
node_containerd_up node2 2 "${CLUSTER_NODE_NS[node2]}" || fatal "node2's containerd (logs: $CLUSTER_DIR/logs)"
node_ctr node2 images import "$Q_TMP/q.tar" >/dev/null
node_kubelet_up node2 2 "${CLUSTER_NODE_NS[node2]}" "$ADDR2" || fatal "node2 Ready (logs: $CLUSTER_DIR/logs)"
check "two nodes: node2 ($ADDR2, namespace ${CLUSTER_NODE_NS[node2]}) joined the apiserver at $CLUSTER_API and is Ready" \
  ready node/node2
check "two nodes: parent DaemonSet rolled out on both" ds_rolled quinistry-parent
check "two nodes: child DaemonSet rolled out on both" ds_rolled quinistry-child
for c in parent child; do
  NODES=$(kc get pods -l "app.kubernetes.io/component=$c" -o jsonpath='{range .items[*]}{.spec.nodeName}{" "}{end}' | tr ' ' '\n' | sort | xargs) || NODES=none
  check "two nodes: one $c pod per node ($NODES)" [ "$NODES" == "node1 node2" ]
done
P2=$(pod_on node2 parent)
C2=$(pod_on node2 child)
check "two nodes: node2's child $C2 pulled from localhost:5000: $(pod_pulled "$C2")" \
  grep -q 'Successfully pulled image "localhost:5000/quinistry:latest"' <<<"$(pod_pulled "$C2")"
check "two nodes: node2's parent $P2 served that pull (containerd's request for the list in its log)" served_pull "$P2"
D5000=$(digest_at node2 5000)
D5001=$(digest_at node2 5001)
check "two nodes: node2's hostPort 5000 serves $D5000" [ "$D5000" == "$WANT_OCI" ]
check "two nodes: node2's hostPort 5001 serves $D5001" [ "$D5001" == "$WANT_OCI" ]

# --- teardown, and nothing left behind
t0=$(date +%s.%N)
cluster_down
DOWN=1
T=$(since "$t0")
check "teardown in ${T}s: no process, mount, namespace, bridge, cgroup, iptables chain, sysctl change, /var/lib/kubelet, /var/log/containers or /var/lib/cni entry left" \
  cluster_leftovers
echo "e2e-kubernetes: $(($(date +%s) - START)) s"
checks_done e2e-kubernetes

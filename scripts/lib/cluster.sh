# shellcheck shell=bash
# A private Kubernetes cluster for end-to-end tests, on this one machine, from the binaries
# scripts/install-kubernetes.sh puts in .tools (kubelet, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl v1.34.4, Debian's etcd) plus docker.io's containerd and runc and Debian's
# CNI plugins. Nothing is installed or started system-wide.
#
# Everything runs inside network namespaces the cluster makes: the control plane and the first node
# in the cluster's own namespace (CLUSTER_NS), each further node in a namespace of its own, joined to
# the cluster's by a veth on a bridge "nodes0" (CLUSTER_NET.0.0/24, apiserver at CLUSTER_NET.0.1).
# So hostPorts such as 5000, the CNI bridge, the kubelet's and portmap's iptables chains and every
# listening port stay inside namespaces the test made, and go away with them.
#
# Source it, then:
#   cluster_init DIR           choose names (from $$), note the machine's state for cluster_leftovers
#   cluster_pause_image        build internal/pause for amd64 and arm64 into $CLUSTER_DIR/pause.tar
#   cluster_up NODE...         start etcd, kube-apiserver, kube-controller-manager and kube-scheduler;
#                              tokens are made for the node names given (a kubelet's user is
#                              system:node:NAME, so only these can join)
#   node_netns NAME INDEX      make the namespace of a further node and link it to the cluster's;
#                              sets NODE_ADDR (CLUSTER_NET.0.<INDEX+1>) and CLUSTER_NODE_NS[NAME]
#   node_up NAME INDEX         start containerd (with the pause image) and a kubelet for node NAME in
#                              the cluster's namespace, with its own dirs under
#                              $CLUSTER_DIR/NAME, cgroup root /<CLUSTER_ID>-NAME, CNI bridge and pod
#                              subnet CLUSTER_NET.INDEX.0/24; wait until the node is Ready.
#                              Its parts, node_containerd_up NAME INDEX NS and node_kubelet_up NAME
#                              INDEX NS ADDR, start a node in a namespace of node_netns.
#                              CLUSTER_HTTP_REGISTRIES (HOST:PORT ...) are pulled from over plain HTTP.
#   cluster_node_kubeconfig NAME FILE [CA]  a kubeconfig for node NAME's kubelet (its token), naming
#                              the CA file as CA (default: this cluster's, where it is here)
#   kc ARGS...                 kubectl as cluster admin
#   in_ns CMD...               run CMD inside the cluster's namespace (in_node NAME CMD...: a node's)
#   node_ctr NAME ARGS...      ctr -n k8s.io against node NAME's containerd
#   deploy_overlay DIR IMAGE TAG  write DIR/kustomization.yaml over deploy/, setting the parent's image
#                              as `kustomize edit set image registry.example.com/quinistry=IMAGE:TAG` would
#   pod_on NODE COMPONENT      the name of the component's (parent, child) pod on NODE, not one being deleted
#   pod_pulled POD             the messages of POD's Pulled events
#   ds_rolled NAME [SECS]      wait until DaemonSet NAME has rolled out on every node (default 120 s)
#   cluster_down               delete every pod, wait until no task and no hostPort rule is left,
#                              stop the kubelets, the control plane, the containerds; unmount, remove
#                              cgroups, namespaces, files; restore the sysctls the kubelet changed
#   cluster_leftovers          print each thing of this cluster still on the machine; fails if any
# Logs are in $CLUSTER_DIR/logs (cluster_down keeps them when CLUSTER_KEEP_LOGS is a directory: they
# are copied there).

CLUSTER_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
KUBE_BIN=${KUBE_BIN:-$CLUSTER_ROOT/.tools/kubernetes/$KUBE_VERSION/$(go env GOHOSTARCH)}
ETCD_BIN=${ETCD_BIN:-$CLUSTER_ROOT/.tools/kubernetes/etcd/usr/bin/etcd}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
PAUSE_REF=quinistry.test/pause:v1
# The sysctls the kubelet sets at start (its container manager's kernel tunables).
CLUSTER_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

declare -gA CLUSTER_PID=() CLUSTER_NODE_NS=() CLUSTER_SYSCTL_WAS=() CLUSTER_HAD=()
CLUSTER_NODES=()
CLUSTER_NSES=()

_cl_log() { echo "cluster: $*" >&2; }

cluster_init() {
  local dir=${1:?usage: cluster_init DIR} s
  mkdir -p "$dir" && CLUSTER_DIR=$(cd "$dir" && pwd) || return 1
  CLUSTER_ID=qk8s$$
  CLUSTER_NS=$CLUSTER_ID
  CLUSTER_NET=10.$((100 + $$ % 100))
  CLUSTER_API=$CLUSTER_NET.0.1
  mkdir -p "$CLUSTER_DIR/logs" "$CLUSTER_DIR/pki"
  for s in "${CLUSTER_SYSCTLS[@]}"; do CLUSTER_SYSCTL_WAS[$s]=$(sysctl -n "$s"); done
  for s in /var/lib/kubelet /var/log/containers /var/lib/cni; do
    if [[ -e $s ]]; then CLUSTER_HAD[$s]=1; else CLUSTER_HAD[$s]=0; fi
  done
  CLUSTER_HOST_CHAINS=$(_cl_chains)
}

# _cl_chains: the host namespace's iptables and ip6tables chains, one "TOOL TABLE CHAIN" a line.
_cl_chains() {
  local t tool
  for tool in iptables ip6tables; do
    for t in filter nat mangle; do
      "$tool" -t "$t" -S 2>/dev/null | awk -v p="$tool $t" '$1 == "-N" {print p, $2}'
    done
  done | sort
}

_cl_wait() { # _cl_wait SECONDS WHAT CMD...: retry CMD every 0.2 s
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  _cl_log "timed out after ${secs}s waiting for $what"
  return 1
}

_cl_start() { # _cl_start NAME NS CMD...: start CMD in namespace NS, log to logs/NAME.log
  local name=$1 ns=$2
  shift 2
  nsenter --net="/run/netns/$ns" "$@" >"$CLUSTER_DIR/logs/$name.log" 2>&1 </dev/null &
  CLUSTER_PID[$name]=$!
}

_cl_stop() { # _cl_stop NAME: SIGTERM, SIGKILL after 10 s
  local pid=${CLUSTER_PID[$1]:-} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "CLUSTER_PID[$1]"
}

in_ns() { nsenter --net="/run/netns/$CLUSTER_NS" "$@"; }
in_node() { local ns=${CLUSTER_NODE_NS[$1]}; shift; nsenter --net="/run/netns/$ns" "$@"; }
kc() { in_ns "$KUBE_BIN/kubectl" --kubeconfig "$CLUSTER_DIR/admin.kubeconfig" "$@"; }
node_ctr() { local n=$1; shift; ctr --address "$CLUSTER_DIR/$n/containerd.sock" -n k8s.io "$@"; }

deploy_overlay() {
  mkdir -p "$1" && cat >"$1/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$1" "$CLUSTER_ROOT/deploy")
images:
  - name: registry.example.com/quinistry
    newName: $2
    newTag: $3
EOF
}

pod_on() {
  kc get pods -l "app.kubernetes.io/component=$2" --field-selector "spec.nodeName=$1" \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' | awk 'NF == 1 {print $1; exit}'
}

pod_pulled() { kc get events --field-selector "involvedObject.name=$1,reason=Pulled" -o jsonpath='{.items[*].message}'; }

ds_rolled() { kc rollout status "ds/$1" --timeout="${2:-120}s" >/dev/null; }

# _cl_kubeconfig FILE USER TOKEN [CA]: CA is where the reader finds the cluster's CA (default: its
# path here; a machine of its own is handed a copy)
_cl_kubeconfig() {
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CLUSTER_ID
  cluster:
    server: https://$CLUSTER_API:6443
    certificate-authority: ${4:-$CLUSTER_DIR/pki/ca.crt}
users:
- name: $2
  user:
    token: $3
contexts:
- name: $CLUSTER_ID
  context: {cluster: $CLUSTER_ID, user: $2}
current-context: $CLUSTER_ID
EOF
}

_cl_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# _cl_pki: a CA made for this run, the apiserver's serving certificate (its addresses in the SAN),
# a client certificate the apiserver shows kubelets, the service-account key.
_cl_pki() {
  local p=$CLUSTER_DIR/pki
  (
    cd "$p" || exit 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
      -subj "/CN=$CLUSTER_ID-ca" -days 2 &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout apiserver.key -out apiserver.csr \
        -subj "/CN=kube-apiserver" \
        -addext "subjectAltName=IP:127.0.0.1,IP:$CLUSTER_API,IP:$CLUSTER_NET.128.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default" &&
      openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -copy_extensions copyall -out apiserver.crt &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
        -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" &&
      openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out kubelet-client.crt &&
      openssl genrsa -out sa.key 2048
  ) >"$CLUSTER_DIR/logs/pki.log" 2>&1 || { _cl_log "making certificates failed:"; cat "$CLUSTER_DIR/logs/pki.log" >&2; return 1; }
}

cluster_pause_image() {
  local out=$CLUSTER_DIR/pause.tar a
  [[ -s $out ]] && return 0
  mkdir -p "$CLUSTER_DIR/pause"
  for a in amd64 arm64; do
    (cd "$CLUSTER_ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=$a go build -trimpath -ldflags '-s -w -buildid=' \
      -o "$CLUSTER_DIR/pause/pause-$a" ./internal/pause) || return 1
  done
  (cd "$CLUSTER_ROOT" && go run ./internal/pause/mkimage -o "$out" -ref "$PAUSE_REF" \
    "linux/amd64=$CLUSTER_DIR/pause/pause-amd64" "linux/arm64=$CLUSTER_DIR/pause/pause-arm64")
}

cluster_up() {
  local n d=$CLUSTER_DIR
  [[ -x $KUBE_BIN/kube-apiserver && -x $ETCD_BIN ]] ||
    { _cl_log "no Kubernetes binaries in $KUBE_BIN or no etcd at $ETCD_BIN: run scripts/install-kubernetes.sh"; return 1; }
  ip netns add "$CLUSTER_NS" || return 1
  CLUSTER_NSES+=("$CLUSTER_NS")
  ip -n "$CLUSTER_NS" link set lo up
  ip -n "$CLUSTER_NS" link add nodes0 type bridge
  ip -n "$CLUSTER_NS" addr add "$CLUSTER_API/24" dev nodes0
  ip -n "$CLUSTER_NS" link set nodes0 up
  _cl_pki || return 1

  CLUSTER_ADMIN_TOKEN=$(_cl_token)
  {
    echo "$CLUSTER_ADMIN_TOKEN,admin,admin,system:masters"
    echo "$(_cl_token),system:kube-controller-manager,kcm"
    echo "$(_cl_token),system:kube-scheduler,sched"
    for n in "$@"; do echo "$(_cl_token),system:node:$n,node-$n,system:nodes"; done
  } >"$d/tokens.csv"
  chmod 600 "$d/tokens.csv"
  _cl_kubeconfig "$d/admin.kubeconfig" admin "$CLUSTER_ADMIN_TOKEN"
  _cl_kubeconfig "$d/controller-manager.kubeconfig" system:kube-controller-manager "$(awk -F, '$2 == "system:kube-controller-manager" {print $1}' "$d/tokens.csv")"
  _cl_kubeconfig "$d/scheduler.kubeconfig" system:kube-scheduler "$(awk -F, '$2 == "system:kube-scheduler" {print $1}' "$d/tokens.csv")"

  _cl_start etcd "$CLUSTER_NS" "$ETCD_BIN" --name "$CLUSTER_ID" --data-dir "$d/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$CLUSTER_ID=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
    --logger zap --log-level warn
  _cl_wait 20 etcd in_ns curl -fs http://127.0.0.1:2379/health || return 1

  _cl_start kube-apiserver "$CLUSTER_NS" "$KUBE_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 \
    --advertise-address="$CLUSTER_API" --endpoint-reconciler-type=none \
    --cert-dir="$d/pki" --tls-cert-file="$d/pki/apiserver.crt" --tls-private-key-file="$d/pki/apiserver.key" \
    --client-ca-file="$d/pki/ca.crt" --token-auth-file="$d/tokens.csv" \
    --kubelet-client-certificate="$d/pki/kubelet-client.crt" --kubelet-client-key="$d/pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$d/pki/sa.key" \
    --service-account-signing-key-file="$d/pki/sa.key" --service-cluster-ip-range="$CLUSTER_NET.128.0/24" \
    --profiling=false
  _cl_wait 60 kube-apiserver kc get --raw /readyz || return 1

  _cl_start kube-controller-manager "$CLUSTER_NS" "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$d/controller-manager.kubeconfig" --controllers='*,-nodeipam' --leader-elect=false --use-service-account-credentials=true \
    --service-account-private-key-file="$d/pki/sa.key" --root-ca-file="$d/pki/ca.crt" \
    --bind-address=127.0.0.1 --secure-port=10257 --profiling=false
  _cl_start kube-scheduler "$CLUSTER_NS" "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$d/scheduler.kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259 \
    --profiling=false
  # pods are refused until the default service account exists
  _cl_wait 60 "the default service account" kc get serviceaccount default || return 1
}

node_netns() {
  local name=${1:?usage: node_netns NAME INDEX} idx=${2:?} ns=$CLUSTER_ID-$2 addr
  addr=$CLUSTER_NET.0.$((idx + 1))
  ip netns add "$ns" || return 1
  CLUSTER_NSES+=("$ns")
  ip -n "$ns" link set lo up
  ip -n "$CLUSTER_NS" link add "v$idx" type veth peer name eth0 netns "$ns" || return 1
  ip -n "$CLUSTER_NS" link set "v$idx" master nodes0 up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  CLUSTER_NODE_NS[$name]=$ns
  NODE_ADDR=$addr
}

# _cl_cgroup_dirs NAME: the node's cgroup root in every cgroup hierarchy mounted under /sys/fs/cgroup.
_cl_cgroup_dirs() {
  local m
  awk '$9 == "cgroup" || $9 == "cgroup2" {print $5}' /proc/self/mountinfo | grep '^/sys/fs/cgroup/' |
    while read -r m; do echo "$m/$CLUSTER_ID-$1"; done
}

node_containerd_up() {
  local name=$1 idx=$2 ns=$3 d=$CLUSTER_DIR/$1 reg
  mkdir -p "$d/cni/net.d" "$d/cni/ipam"
  cat >"$d/containerd.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = ""
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_REF"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$d/cni/net.d"
EOF
  for reg in ${CLUSTER_HTTP_REGISTRIES:-}; do
    printf '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."%s"]\n    endpoint = ["http://%s"]\n' "$reg" "$reg"
  done >>"$d/containerd.toml"
  cat >"$d/cni/net.d/10-$CLUSTER_ID.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "$CLUSTER_ID-$name",
  "plugins": [
    {"type": "bridge", "bridge": "qcni$idx", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$d/cni/ipam", "ranges": [[{"subnet": "$CLUSTER_NET.$idx.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  echo '{"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}' >"$d/cni/net.d/99-loopback.conf"
  _cl_start "$name-containerd" "$ns" containerd --config "$d/containerd.toml"
  _cl_wait 30 "$name's containerd" node_ctr "$name" version || return 1
  node_ctr "$name" images import --all-platforms "$CLUSTER_DIR/pause.tar" >/dev/null || return 1
}

node_kubelet_up() {
  local name=$1 idx=$2 ns=$3 addr=$4 d=$CLUSTER_DIR/$1 c
  for c in $(_cl_cgroup_dirs "$name"); do
    mkdir -p "$c" || return 1
    if [[ -e $c/cpuset.cpus ]]; then
      cat "$(dirname "$c")/cpuset.cpus" >"$c/cpuset.cpus"
      cat "$(dirname "$c")/cpuset.mems" >"$c/cpuset.mems"
    fi
  done
  cluster_node_kubeconfig "$name" "$d/kubelet.kubeconfig"
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $addr
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
cgroupDriver: cgroupfs
cgroupRoot: /$CLUSTER_ID-$name
failSwapOn: false
failCgroupV1: false
containerRuntimeEndpoint: unix://$d/containerd.sock
podLogsDir: $d/pod-logs
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $CLUSTER_DIR/pki/ca.crt}
authorization:
  mode: AlwaysAllow
resolvConf: ""
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF
  _cl_start "$name-kubelet" "$ns" "$KUBE_BIN/kubelet" --config="$d/kubelet.yaml" \
    --kubeconfig="$d/kubelet.kubeconfig" --root-dir="$d/kubelet" --cert-dir="$d/kubelet-pki" \
    --hostname-override="$name" --node-ip="$addr"
  CLUSTER_NODES+=("$name")
  CLUSTER_NODE_NS[$name]=$ns
  _cl_wait 60 "node $name Ready" kc wait --for=condition=Ready "node/$name" --timeout=1s || return 1
}

cluster_node_kubeconfig() {
  local name=${1:?usage: cluster_node_kubeconfig NAME FILE [CA]}
  _cl_kubeconfig "$2" "system:node:$name" "$(awk -F, -v u="system:node:$name" '$2 == u {print $1}' "$CLUSTER_DIR/tokens.csv")" "${3:-}"
}

node_up() {
  local name=${1:?usage: node_up NAME INDEX} idx=${2:?}
  mkdir -p "$CLUSTER_DIR/$name"
  cluster_pause_image || return 1
  node_containerd_up "$name" "$idx" "$CLUSTER_NS" || return 1
  node_kubelet_up "$name" "$idx" "$CLUSTER_NS" "$CLUSTER_API"
}

# _cl_node_quiet NAME: no task left in the node's containerd, and no hostPort DNAT rule in its namespace.
_cl_node_quiet() {
  [[ -z $(node_ctr "$1" tasks ls -q 2>/dev/null) ]] &&
    ! in_node "$1" iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -q dports
}

cluster_down() {
  local n p c m ns s errexit=0
  # best effort to the end, whatever fails on the way (also when called from an EXIT trap under set -e)
  [[ $- == *e* ]] && errexit=1
  set +e
  if [[ -n ${CLUSTER_PID[kube-apiserver]:-} ]]; then
    kc delete daemonsets,deployments,pods --all --wait=false >/dev/null 2>&1 || true
    for n in "${CLUSTER_NODES[@]}"; do
      [[ -n ${CLUSTER_PID[$n-kubelet]:-} ]] && _cl_wait 60 "$n's pods to go" _cl_node_quiet "$n"
    done
  fi
  for n in "${CLUSTER_NODES[@]}"; do _cl_stop "$n-kubelet"; done
  for p in kube-scheduler kube-controller-manager kube-apiserver etcd; do _cl_stop "$p"; done
  for p in "${!CLUSTER_PID[@]}"; do
    [[ $p == *-containerd ]] || continue
    n=${p%-containerd}
    # containers that outlived their pods: kill them, their shims go with them
    for c in $(node_ctr "$n" tasks ls -q 2>/dev/null); do node_ctr "$n" tasks kill -s KILL "$c" >/dev/null 2>&1; done
    _cl_stop "$p"
  done
  for p in "${!CLUSTER_PID[@]}"; do _cl_stop "$p"; done
  # shims of our containerds (their command lines name our sockets) and any process in our cgroups
  for p in $(pgrep -f -- "$CLUSTER_DIR/" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  for c in $(_cl_cgroup_dirs '*'); do
    for p in $(find $c -name cgroup.procs -exec cat {} + 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  done
  sleep 0.2
  # unmount everything under our directory and namespaces, deepest first
  awk -v d="$CLUSTER_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  for c in $(_cl_cgroup_dirs '*'); do
    [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  for ns in "${CLUSTER_NSES[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  CLUSTER_NSES=()
  # what the kubelet writes whatever it is told: /var/lib/kubelet (device-plugins), /var/log/containers
  for m in /var/lib/kubelet /var/log/containers /var/lib/cni; do
    find "$m" -maxdepth 1 -lname "$CLUSTER_DIR/*" -delete 2>/dev/null
    [[ ${CLUSTER_HAD[$m]:-1} == 0 ]] && rm -rf "$m"
  done
  for s in "${!CLUSTER_SYSCTL_WAS[@]}"; do
    [[ $(sysctl -n "$s") == "${CLUSTER_SYSCTL_WAS[$s]}" ]] || sysctl -qw "$s=${CLUSTER_SYSCTL_WAS[$s]}" >/dev/null
  done
  if [[ -n ${CLUSTER_KEEP_LOGS:-} ]]; then cp -r "$CLUSTER_DIR/logs/." "$CLUSTER_KEEP_LOGS/" 2>/dev/null; fi
  [[ -n ${CLUSTER_DIR:-} && $CLUSTER_DIR != / ]] && rm -rf "$CLUSTER_DIR"
  CLUSTER_NODES=()
  ((errexit)) && set -e
  return 0
}

cluster_leftovers() {
  local found=0 p s m errexit=0
  [[ $- == *e* ]] && errexit=1
  set +e
  for p in $(pgrep -f -- "$CLUSTER_DIR/" 2>/dev/null); do
    [[ $p == "$$" || $p == "$BASHPID" ]] && continue
    echo "process $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)"; found=1
  done
  if grep -F -e "$CLUSTER_DIR" -e "/run/netns/$CLUSTER_ID" /proc/self/mountinfo; then found=1; fi
  for m in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $m == "$CLUSTER_ID" || $m == "$CLUSTER_ID"-* ]] && { echo "network namespace $m"; found=1; }
  done
  if ip -o link show | grep -E "qcni|$CLUSTER_ID"; then found=1; fi
  for s in $(_cl_cgroup_dirs '*'); do
    for m in $s; do [[ -e $m ]] && { echo "cgroup $m"; found=1; }; done
  done
  if comm -13 <(echo "$CLUSTER_HOST_CHAINS") <(_cl_chains) | grep -E ' (CNI|KUBE)-'; then found=1; fi
  for m in /var/lib/kubelet /var/log/containers /var/lib/cni; do
    if [[ ${CLUSTER_HAD[$m]} == 0 && -e $m ]]; then echo "$m (made by this run)"; found=1; fi
    if [[ -d $m ]] && find "$m" -maxdepth 1 -lname "$CLUSTER_DIR/*" | grep .; then found=1; fi
  done
  for s in "${!CLUSTER_SYSCTL_WAS[@]}"; do
    [[ $(sysctl -n "$s") == "${CLUSTER_SYSCTL_WAS[$s]}" ]] ||
      { echo "sysctl $s=$(sysctl -n "$s"), was ${CLUSTER_SYSCTL_WAS[$s]}"; found=1; }
  done
  [[ -e $CLUSTER_DIR ]] && { echo "directory $CLUSTER_DIR"; found=1; }
  ((errexit)) && set -e
  ((found == 0))
}

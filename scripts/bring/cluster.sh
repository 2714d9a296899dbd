#!/usr/bin/env bash
# cluster.sh: a private Kubernetes cluster on this machine for the end-to-end tests
# (e2e/harness.StartCluster), from the binaries of scripts/install-kubernetes.sh (.tools/kubernetes:
# kubelet, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl; Debian's etcd), the
# containerd and runc of docker.io and Debian's CNI plugins. Nothing is installed or started
# system-wide; everything lives in network namespaces made here, named by CLUSTER_ID and addressed in
# CLUSTER_NET.0.0/16 (both given to up by the caller, which claims them: e2e/harness.ClaimWideSubnet),
# so hostPorts, CNI bridges and iptables chains go away with them.
#   up DIR [NODE...]     control plane in the cluster's namespace (bridge nodes0, apiserver at
#                        NET.0.1:6443) with a token for each NODE (default node1); prints
#                        CLUSTER_ID, CLUSTER_NS, CLUSTER_API, CLUSTER_NET, KUBECONFIG, KUBECTL, CA,
#                        PAUSE_REF, PAUSE_TAR, LOGS
#   node DIR NAME [TAR...]  containerd (the pause image and each TAR imported) and a kubelet for
#                        NAME; the first node runs in the cluster's namespace, later ones in a
#                        namespace of their own on nodes0. Waits until it is Ready. Prints NODE_NS,
#                        NODE_ADDR, NODE_SOCK (containerd), NODE_CGROUP (its cgroup root), NODE_PODS.
#                        CLUSTER_HTTP_REGISTRIES (HOST:PORT ...) are pulled from over plain HTTP.
#   kubeconfig DIR NAME FILE [CA]  write node NAME's kubelet kubeconfig (its token), naming CA
#   down DIR             delete every pod, stop everything by PID, unmount, remove cgroups,
#                        namespaces, what the kubelet wrote outside DIR; restore its sysctls. DIR/logs
#                        stays (the caller removes DIR).
# Asserts nothing; fails with one line on stderr (the logs are in DIR/logs).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
KUBE_BIN=${KUBE_BIN:-$ROOT/.tools/kubernetes/$KUBE_VERSION/$(go env GOHOSTARCH)}
ETCD_BIN=${ETCD_BIN:-$ROOT/.tools/kubernetes/etcd/usr/bin/etcd}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
PAUSE_REF=quinistry.test/pause:v1
# what the kubelet writes outside its root whatever it is told, and the sysctls it sets at start
OUTSIDE=(/var/lib/kubelet /var/log/containers /var/lib/cni)
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

verb=${1:-} D=${2:-}
fail() { echo "cluster.sh $verb: $*" >&2; exit 1; }
[[ -n $D ]] || { echo "usage: cluster.sh up|node|kubeconfig|down DIR ..." >&2; exit 2; }
mkdir -p "$D" && D=$(cd "$D" && pwd)

wait_for() { # wait_for SECONDS WHAT CMD...: retry CMD every 0.2 s
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  fail "timed out after ${secs}s waiting for $what (logs: $D/logs)"
}
start() { # start NAME NS CMD...: CMD in namespace NS, logging to logs/NAME.log, its PID in pids/NAME
  local name=$1 ns=$2
  shift 2
  nsenter --net="/run/netns/$ns" "$@" >"$D/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$D/pids/$name"
}
in_ns() { nsenter --net="/run/netns/$CLUSTER_NS" "$@"; }
kc() { in_ns "$KUBE_BIN/kubectl" --kubeconfig "$D/admin.kubeconfig" "$@"; }
ctr_at() { local s=$1; shift; ctr --address "$s" -n k8s.io "$@"; }
token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
token_of() { awk -F, -v u="$1" '$2 == u {print $1}' "$D/tokens.csv"; }
cgroups() { # cgroups NAME: the node's cgroup root in every hierarchy mounted under /sys/fs/cgroup
  awk '($9 == "cgroup" || $9 == "cgroup2") && $5 ~ "^/sys/fs/cgroup/" {print $5}' /proc/self/mountinfo |
    while read -r m; do echo "$m/$CLUSTER_ID-$1"; done
}
kubeconfig() { # kubeconfig FILE USER TOKEN [CA]
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: $CLUSTER_ID, cluster: {server: "https://$CLUSTER_API:6443", certificate-authority: "${4:-$D/pki/ca.crt}"}}]
users: [{name: "$2", user: {token: $3}}]
contexts: [{name: $CLUSTER_ID, context: {cluster: $CLUSTER_ID, user: "$2"}}]
current-context: $CLUSTER_ID
EOF
}

pki() { # a CA for this run, the apiserver's certificate, its client certificate to kubelets, the SA key
  local req=(openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  local sign=(openssl x509 -req -CA ca.crt -CAkey ca.key -CAcreateserial -days 2)
  cd "$D/pki" &&
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -subj "/CN=$CLUSTER_ID-ca" -days 2 &&
    "${req[@]}" -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" \
      -addext "subjectAltName=IP:127.0.0.1,IP:$CLUSTER_API,IP:$CLUSTER_NET.128.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default" &&
    "${sign[@]}" -in apiserver.csr -copy_extensions copyall -out apiserver.crt &&
    "${req[@]}" -keyout kubelet-client.key -out kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" &&
    "${sign[@]}" -in kubelet-client.csr -out kubelet-client.crt &&
    openssl genrsa -out sa.key 2048
}

pause_image() { # internal/pause for amd64 and arm64, as one image in $D/pause.tar
  local a
  for a in amd64 arm64; do
    (cd "$ROOT" && CGO_ENABLED=0 GOOS=linux GOARCH=$a go build -trimpath -ldflags '-s -w -buildid=' -o "$D/pause/pause-$a" ./internal/pause) || return 1
  done
  (cd "$ROOT" && go run ./internal/pause/mkimage -o "$D/pause.tar" -ref "$PAUSE_REF" \
    "linux/amd64=$D/pause/pause-amd64" "linux/arm64=$D/pause/pause-arm64")
}

up() {
  local n b
  for b in "$KUBE_BIN"/{kubelet,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl} "$ETCD_BIN"; do
    [[ -x $b ]] || fail "no $b: scripts/install-tools.sh builds it"
  done
  mkdir -p "$D/logs" "$D/pki" "$D/pids" "$D/pause"
  CLUSTER_ID=${CLUSTER_ID:-} CLUSTER_NET=${CLUSTER_NET:-}
  [[ ${CLUSTER_ID:-} =~ ^[a-z0-9]+$ && ${CLUSTER_NET:-} =~ ^10\.[0-9]+$ ]] || fail "CLUSTER_ID (a name) and CLUSTER_NET (10.N) must be set"
  echo "CLUSTER_ID=$CLUSTER_ID CLUSTER_NET=$CLUSTER_NET" >"$D/env"
  for n in "${SYSCTLS[@]}"; do echo "$n $(sysctl -n "$n")"; done >"$D/sysctl.was"
  for n in "${OUTSIDE[@]}"; do [[ -e $n ]] || echo "$n"; done >"$D/outside.new"
  load
  ip netns add "$CLUSTER_NS" || fail "ip netns add $CLUSTER_NS"
  echo "$CLUSTER_NS" >>"$D/netns"
  { ip -n "$CLUSTER_NS" link set lo up && ip -n "$CLUSTER_NS" link add nodes0 type bridge &&
    ip -n "$CLUSTER_NS" addr add "$CLUSTER_API/24" dev nodes0 && ip -n "$CLUSTER_NS" link set nodes0 up; } ||
    fail "the bridge nodes0 in $CLUSTER_NS"
  (pki) >"$D/logs/pki.log" 2>&1 || fail "making certificates: $(tail -1 "$D/logs/pki.log")"
  pause_image >"$D/logs/pause.log" 2>&1 || fail "building the pause image: $(tail -1 "$D/logs/pause.log")"

  (($#)) || set -- node1
  {
    echo "$(token),admin,admin,system:masters"
    echo "$(token),system:kube-controller-manager,kcm"
    echo "$(token),system:kube-scheduler,sched"
    for n in "$@"; do echo "$(token),system:node:$n,node-$n,system:nodes"; done
  } >"$D/tokens.csv"
  chmod 600 "$D/tokens.csv"
  kubeconfig "$D/admin.kubeconfig" admin "$(token_of admin)"
  kubeconfig "$D/controller-manager.kubeconfig" system:kube-controller-manager "$(token_of system:kube-controller-manager)"
  kubeconfig "$D/scheduler.kubeconfig" system:kube-scheduler "$(token_of system:kube-scheduler)"

  start etcd "$CLUSTER_NS" "$ETCD_BIN" --name "$CLUSTER_ID" --data-dir "$D/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$CLUSTER_ID=http://127.0.0.1:2380" --listen-metrics-urls http://127.0.0.1:2381 \
    --logger zap --log-level warn
  wait_for 30 etcd in_ns curl -fs http://127.0.0.1:2379/health
  start kube-apiserver "$CLUSTER_NS" "$KUBE_BIN/kube-apiserver" \
    --etcd-servers=http://127.0.0.1:2379 --bind-address=0.0.0.0 --secure-port=6443 \
    --advertise-address="$CLUSTER_API" --endpoint-reconciler-type=none \
    --cert-dir="$D/pki" --tls-cert-file="$D/pki/apiserver.crt" --tls-private-key-file="$D/pki/apiserver.key" \
    --client-ca-file="$D/pki/ca.crt" --token-auth-file="$D/tokens.csv" \
    --kubelet-client-certificate="$D/pki/kubelet-client.crt" --kubelet-client-key="$D/pki/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP --authorization-mode=Node,RBAC --allow-privileged=true \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$D/pki/sa.key" \
    --service-account-signing-key-file="$D/pki/sa.key" --service-cluster-ip-range="$CLUSTER_NET.128.0/24" \
    --profiling=false
  wait_for 90 kube-apiserver kc get --raw /readyz
  start kube-controller-manager "$CLUSTER_NS" "$KUBE_BIN/kube-controller-manager" \
    --kubeconfig="$D/controller-manager.kubeconfig" --controllers='*,-nodeipam' --leader-elect=false \
    --use-service-account-credentials=true --service-account-private-key-file="$D/pki/sa.key" \
    --root-ca-file="$D/pki/ca.crt" --bind-address=127.0.0.1 --secure-port=10257 --profiling=false
  start kube-scheduler "$CLUSTER_NS" "$KUBE_BIN/kube-scheduler" \
    --kubeconfig="$D/scheduler.kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port=10259 \
    --profiling=false
  # pods are refused until the default service account exists
  wait_for 90 "the default service account" kc get serviceaccount default
  cat <<EOF
CLUSTER_ID=$CLUSTER_ID
CLUSTER_NS=$CLUSTER_NS
CLUSTER_API=$CLUSTER_API
CLUSTER_NET=$CLUSTER_NET
KUBECONFIG=$D/admin.kubeconfig
KUBECTL=$KUBE_BIN/kubectl
CA=$D/pki/ca.crt
PAUSE_REF=$PAUSE_REF
PAUSE_TAR=$D/pause.tar
LOGS=$D/logs
EOF
}

load() { # the names up chose
  [[ -e $D/env ]] || fail "no cluster in $D"
  # shellcheck disable=SC2046
  export $(cat "$D/env")
  CLUSTER_NS=$CLUSTER_ID CLUSTER_API=$CLUSTER_NET.0.1
}

node() {
  local name=${1:?usage: cluster.sh node DIR NAME [TAR...]} idx ns addr d=$D/$1 c reg t
  shift
  load
  idx=1
  [[ ! -e $D/nodes ]] || idx=$(($(wc -l <"$D/nodes") + 1))
  [[ -n $(token_of "system:node:$name") ]] || fail "no token for $name: name it to up"
  echo "$name" >>"$D/nodes"
  mkdir -p "$d/cni/net.d" "$d/cni/ipam"
  if ((idx == 1)); then
    ns=$CLUSTER_NS addr=$CLUSTER_API
  else
    ns=$CLUSTER_ID-$idx addr=$CLUSTER_NET.0.$((idx + 1))
    ip netns add "$ns" || fail "ip netns add $ns"
    echo "$ns" >>"$D/netns"
    { ip -n "$ns" link set lo up && ip -n "$CLUSTER_NS" link add "v$idx" type veth peer name eth0 netns "$ns" &&
      ip -n "$CLUSTER_NS" link set "v$idx" master nodes0 up && ip -n "$ns" addr add "$addr/24" dev eth0 &&
      ip -n "$ns" link set eth0 up; } || fail "linking $ns to nodes0"
  fi
  echo "$ns" >"$d/ns"
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
{"cniVersion": "0.4.0", "name": "$CLUSTER_ID-$name", "plugins": [
  {"type": "bridge", "bridge": "qcni$idx", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$d/cni/ipam", "ranges": [[{"subnet": "$CLUSTER_NET.$idx.0/24"}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
  echo '{"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}' >"$d/cni/net.d/99-loopback.conf"
  start "$name-containerd" "$ns" containerd --config "$d/containerd.toml"
  wait_for 60 "$name's containerd" ctr_at "$d/containerd.sock" version
  for t in "$D/pause.tar" "$@"; do
    ctr_at "$d/containerd.sock" images import --all-platforms "$t" >>"$D/logs/$name-import.log" 2>&1 ||
      fail "ctr images import $t into $name's containerd: $(tail -1 "$D/logs/$name-import.log")"
  done

  for c in $(cgroups "$name"); do
    mkdir -p "$c" || fail "mkdir $c"
    if [[ -e $c/cpuset.cpus ]]; then
      cat "${c%/*}/cpuset.cpus" >"$c/cpuset.cpus" && cat "${c%/*}/cpuset.mems" >"$c/cpuset.mems"
    fi
  done
  kubeconfig "$d/kubelet.kubeconfig" "system:node:$name" "$(token_of "system:node:$name")"
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
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $D/pki/ca.crt}}
authorization: {mode: AlwaysAllow}
resolvConf: ""
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF
  start "$name-kubelet" "$ns" "$KUBE_BIN/kubelet" --config="$d/kubelet.yaml" \
    --kubeconfig="$d/kubelet.kubeconfig" --root-dir="$d/kubelet" --cert-dir="$d/kubelet-pki" \
    --hostname-override="$name" --node-ip="$addr"
  wait_for 120 "node $name Ready" kc wait --for=condition=Ready "node/$name" --timeout=1s
  cat <<EOF
NODE_NS=$ns
NODE_ADDR=$addr
NODE_SOCK=$d/containerd.sock
NODE_CGROUP=/$CLUSTER_ID-$name
NODE_PODS=$CLUSTER_NET.$idx.0/24
EOF
}

stop() { # stop NAME: SIGTERM to the PID started as NAME, SIGKILL after 10 s
  local f=$D/pids/$1 pid i
  [[ -e $f ]] || return 0
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

quiet() { # quiet NAME: no task left in the node's containerd, no hostPort DNAT rule in its namespace
  [[ -z $(ctr_at "$D/$1/containerd.sock" tasks ls -q 2>/dev/null) ]] &&
    ! nsenter --net="/run/netns/$(cat "$D/$1/ns")" iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -q dports
}

down() {
  local n p c m s v nodes=()
  [[ -e $D/env ]] || return 0
  load
  set +e
  [[ -e $D/nodes ]] && mapfile -t nodes <"$D/nodes"
  if [[ -e $D/pids/kube-apiserver ]]; then
    kc delete daemonsets,deployments,pods --all --wait=false >/dev/null 2>&1
    for n in "${nodes[@]}"; do
      [[ -e $D/pids/$n-kubelet ]] && (wait_for 60 "$n's pods to go" quiet "$n")
    done
  fi
  for n in "${nodes[@]}"; do stop "$n-kubelet"; done
  for p in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$p"; done
  for n in "${nodes[@]}"; do
    # containers that outlived their pods: kill them, their shims go with them
    for c in $(ctr_at "$D/$n/containerd.sock" tasks ls -q 2>/dev/null); do
      ctr_at "$D/$n/containerd.sock" tasks kill -s KILL "$c" >/dev/null 2>&1
    done
    stop "$n-containerd"
  done
  for p in "$D"/pids/*; do [[ -e $p ]] && stop "${p##*/}"; done
  # shims of our containerds (their command lines name our directory) and any process in our cgroups
  for p in $(pgrep -f -- "$D/"); do kill -KILL "$p" 2>/dev/null; done
  for c in $(cgroups '*'); do
    find "$c" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r p; do kill -KILL "$p"; done
  done
  # unmount everything under our directory, deepest first
  awk -v d="$D/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  for c in $(cgroups '*'); do [[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null; done
  [[ -e $D/netns ]] && while read -r n; do ip netns delete "$n"; done <"$D/netns"
  for m in "${OUTSIDE[@]}"; do find "$m" -maxdepth 1 -lname "$D/*" -delete 2>/dev/null; done
  [[ -e $D/outside.new ]] && while read -r m; do rm -rf "$m"; done <"$D/outside.new"
  [[ -e $D/sysctl.was ]] && while read -r s v; do
    [[ $(sysctl -n "$s") == "$v" ]] || sysctl -qw "$s=$v"
  done <"$D/sysctl.was"
  find "$D" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
  return 0
}

case $verb in
  up) up "${@:3}" ;;
  node) node "${@:3}" ;;
  kubeconfig)
    load
    kubeconfig "${4:?usage: cluster.sh kubeconfig DIR NAME FILE [CA]}" "system:node:$3" "$(token_of "system:node:$3")" "${5:-}"
    ;;
  down) down ;;
  *) echo "usage: cluster.sh up|node|kubeconfig|down DIR ..." >&2; exit 2 ;;
esac

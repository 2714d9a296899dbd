#!/usr/bin/env bash
# e2e-arm64vm.sh: quinistry on a real arm64 kernel. An arm64 machine (Debian's arm64 kernel, busybox,
# containerd and runc; scripts/install-arm64-node.sh) boots under qemu-system-aarch64 (TCG) on a tap
# device in a network namespace this suite makes, with quinistry (amd64, one per format) serving on the
# namespace's side of the tap. For each format (E2E_FORMATS, default "docker oci"):
#   in the machine  containerd pulls quinistry with no --platform, and runs it read-only on the host
#                   network (scripts/arm64-node/pull-run.job)
#   checked here    which platform it unpacked; that the registry's access log shows containerd
#                   fetching the arm64 manifest and never the amd64 one; that the container runs
#                   /quinistry-linux-arm64 as uid 65532 on a read-only root; that it serves the same
#                   list digest; and then, pulling from the machine's quinistry at the same time:
#                   crane (the list and both platform manifests byte for byte, both configs hashed),
#                   skopeo (copy --all to a dir:: list, manifests and every blob hashed) and a private
#                   dockerd (pull --platform linux/amd64 then linux/arm64: the digest it resolved, the
#                   image ID, the architecture)
# The machine powers itself off at the end of its job.
# Then the cluster step (the Kubernetes binaries of scripts/install-kubernetes.sh with the arm64
# kubelet must be there: missing ones are a FAIL): a cluster of scripts/bring/cluster.sh with node1 (amd64) in its namespace, and the
# machine booted again with the arm64 kubelet (scripts/arm64-node/k8s-node.job), its tap on the
# cluster's bridge, joining as node arm64vm. The parent DaemonSet (deploy/, image set by a kustomize
# overlay) pulls quinistry:latest from an origin quinistry in the cluster's namespace; the child
# pulls localhost:5000. Checked: both nodes Ready with their architectures; each node's kubelet
# asked the origin for its own platform's manifest only (the origin's access log, by address); the
# arm64 child resolved latest at its own node's parent; the machine runs both as
# /quinistry-linux-arm64, uid 65532, read-only root; every node serves the same list on 5000 and 5001.
# At the end the suite checks that no qemu, namespace, tap, process, mount (and of the cluster:
# cgroup, iptables chain, sysctl change) is left. Needs root and scripts/install-tools.sh.
# E2E_KEEP_TMP=1 keeps the temporary directory (console logs, access logs) for a post-mortem.
# E2E_ARM64_CLUSTER=0 skips the cluster step.
set -euo pipefail
START=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PATH=$ROOT/.tools/bin:$PATH
Q_TMP=$(mktemp -d)
source scripts/lib/quinistry.sh
source scripts/lib/dockerd.sh
source scripts/lib/arm64vm.sh
export DOCKER_CONFIG=$Q_TMP/docker-config
mkdir -p "$DOCKER_CONFIG"
read -r -a FORMATS <<<"${E2E_FORMATS:-docker oci}"
TMO=${E2E_TIMEOUT:-120}
VM_TIMEOUT=${VM_TIMEOUT:-900}

cleanup() {
  set +e
  if ((CHECKS_FAILED)) || [[ -z ${SUITE_DONE:-} ]]; then
    echo "e2e-arm64vm: the end of the node's console:"
    tail -n 30 "${VM_DIR:-/nonexistent}/console.log" 2>/dev/null | tr -d '\r' | sed 's/^/  | /'
  fi
  dockerd_stop "$Q_TMP/docker"
  q_stop_all
  vm_stop 0 2>/dev/null
  vm_net_down
  [[ -z ${CLUSTER_STARTED:-} ]] || scripts/bring/cluster.sh down "$Q_TMP/cluster"
  if [[ -n ${E2E_KEEP_TMP:-} ]]; then echo "e2e-arm64vm: kept $Q_TMP"; else rm -rf "$Q_TMP"; fi
}
trap cleanup EXIT
trap 'echo "e2e-arm64vm: aborted: line $LINENO exited with status $?" >&2' ERR

# fatal MSG: a step the rest depends on failed
fatal() {
  echo "FAIL $*"
  CHECKS_FAILED=$((CHECKS_FAILED + 1))
  checks_done e2e-arm64vm || true
  exit 1
}
elapsed() { echo "$(($(date +%s) - START)) s"; }
cr() { vm_in timeout "$TMO" crane --insecure "$@"; }
sk() { vm_in timeout "$TMO" skopeo "$@"; }
dk() { timeout "$TMO" "$DOCKER" "$@"; }
sha() { sha256sum | awk '{print "sha256:" $1}'; }
# absent WORD TEXT: WORD is not in TEXT
absent() { ! grep -q -- "$1" <<<"$2"; }
# a console line's KEY=VALUE field
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }
# manifests_asked LOG LIST [REMOTE]: containerd's manifest requests in a quinistry access log (only
# those from address REMOTE when given), comma-separated, with LIST and the digests in want[] named
# list, amd64-manifest and arm64-manifest
manifests_asked() {
  { grep -a "user_agent=containerd/.* remote=${3:-[^ ]*}\$" "$1" || true; } |
    sed -n 's/.*msg=request method=\([A-Z]*\) path=\/v2\/quinistry\/manifests\/\([^ ]*\) .*/\1 \2/p' |
    sed "s/${want[arm64]}/arm64-manifest/; s/${want[amd64]}/amd64-manifest/; s/$2/list/" | tr '\n' ',' | sed 's/,$//'
}

scripts/build.sh >/dev/null
IMAGE=$(scripts/install-arm64-node.sh --dir)
echo "node image: $IMAGE"
sed 's/^/  /' "$IMAGE/versions"
echo "qemu:       $("$VM_QEMU" --version | head -1)"
echo "setup done at $(elapsed)"

vm_net_up "$Q_TMP/vm"
NS1=$VM_NS
echo "namespace $VM_NS: tap $VM_TAP $VM_HOST_IP/24, node $VM_IP"
CTL=$((7000 + RANDOM % 1000))
regs=
for f in "${FORMATS[@]}"; do
  q_start "host-$f" nsenter --net="/run/netns/$VM_NS" "$ROOT/dist/quinistry-linux-amd64" \
    --addr "$VM_HOST_IP:0" --format "$f"
  regs+=",$f=${Q_ADDR[host-$f]}"
done
vm_start "$IMAGE" scripts/arm64-node/pull-run.job "regs=${regs#,}" "ctl=$CTL"
VM_START=$(date +%s)

# the private dockerd lives in the same namespace, and may pull over plain HTTP from the node
DOCKERD_WRAP=(nsenter --net="/run/netns/$VM_NS")
DOCKERD_ARGS=(--insecure-registry "$VM_IP:8080")
dockerd_start "$Q_TMP/docker"

line=$(vm_wait 'boot' 120) || line="(none)"
check "the node boots Debian's arm64 kernel: $line" grep -q 'machine=aarch64' <<<"$line"

NODE=$VM_IP:8080
for f in "${FORMATS[@]}"; do
  host=${Q_ADDR[host-$f]}
  log=$Q_TMP/host-$f.log
  echo "--- format $f: the node pulls from $host ($(elapsed))"
  # what the host serves
  list=$(cr digest "$host/quinistry:latest")
  declare -A want=() cfg=()
  for p in amd64 arm64; do
    want[$p]=$(cr digest --platform "linux/$p" "$host/quinistry:latest")
    cfg[$p]=$(cr manifest "$host/quinistry@${want[$p]}" | jq -r .config.digest)
  done
  echo "host serves list $list, linux/amd64 ${want[amd64]}, linux/arm64 ${want[arm64]}"

  pulled=$(vm_wait "pulled $f|pull-failed $f" 300) || pulled="(none)"
  check "the node's containerd, given no --platform, unpacked linux/arm64: $pulled" \
    grep -q 'unpacking linux/arm64' <<<"$pulled"
  images=$(vm_wait "images $f" 60) || images="(none)"
  check "the node's containerd stored the list $list as the image: $images" grep -qF "$list" <<<"$images"
  # the registry's access log, containerd's requests only
  fetched=$(manifests_asked "$log" "$list")
  check "the registry's log shows containerd fetching the arm64 manifest (${want[arm64]}): $fetched" \
    grep -q 'GET arm64-manifest' <<<"$fetched"
  check "the registry's log shows containerd never asking for the amd64 manifest (${want[amd64]}): $fetched" \
    absent amd64-manifest "$fetched"

  serving=$(vm_wait "serving $f|run-failed $f" 300) || serving="(none)"
  echo "node: $serving"
  check "the container runs $(field "$serving" exe) as uid $(field "$serving" uid) (real, effective, saved, fs)" \
    test "$(field "$serving" uid)" = 65532,65532,65532,65532 -a "$(field "$serving" exe)" = /quinistry-linux-arm64
  check "the container's root file system is mounted $(field "$serving" root)" \
    grep -qE '^ro(,|$)' <<<"$(field "$serving" root)"
  got=$(vm_in curl -fsSI --max-time 30 -H "Accept: $LIST_ACCEPT" "http://$NODE/v2/quinistry/manifests/latest" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}') || got=
  check "the node's quinistry (arm64 kernel) serves list $got, the host's is $list" test "$got" = "$list"

  # The three clients pull from the node at the same time (each waits mostly on the emulated
  # machine); their checks follow in order.
  out=$Q_TMP/pull-$f
  mkdir -p "$out"
  (
    cr manifest "$NODE/quinistry:latest" >"$out/list.node" || true
    cr manifest "$host/quinistry:latest" >"$out/list.host" || true
    for p in amd64 arm64; do
      cr digest --platform "linux/$p" "$NODE/quinistry:latest" >"$out/digest.$p" || true
      c=$(cr manifest "$NODE/quinistry@${want[$p]}" | jq -r .config.digest)
      echo "$c $(cr blob "$NODE/quinistry@$c" | sha)"
    done >"$out/configs"
  ) &
  crane_job=$!
  sk copy -q --all --preserve-digests --src-tls-verify=false "docker://$NODE/quinistry:latest" \
    "dir:$out/skopeo" >"$out/skopeo.log" 2>&1 &
  skopeo_job=$!
  (
    # the second pull needs only its config: the layers are the same blobs
    for p in amd64 arm64; do
      resolved=$(dk pull --platform "linux/$p" "$NODE/quinistry:latest" | sed -n 's/^Digest: //p') || true
      echo "$p $(dk image inspect -f '{{.Architecture}} {{.Id}}' "$NODE/quinistry:latest" || true) $resolved"
    done >"$out/docker"
  ) &
  docker_job=$!
  wait "$crane_job" "$skopeo_job" "$docker_job" || true

  # crane: the list and each platform's manifest byte for byte, and both configs
  check "crane: the node's list bytes equal the host's ($(sha <"$out/list.node"))" \
    cmp -s "$out/list.node" "$out/list.host"
  for p in amd64 arm64; do
    d=$(cat "$out/digest.$p")
    check "crane: the node's linux/$p manifest is $d, the host's ${want[$p]}" test "$d" = "${want[$p]}"
  done
  bad=$(awk '$1 != $2 {print $1}' "$out/configs")
  check "crane: both configs from the node hash to their digests ($(cut -d' ' -f1 "$out/configs" | tr '\n' ',' | sed 's/,$//'))${bad:+; wrong: $bad}" \
    test -z "$bad" -a "$(cut -d' ' -f1 "$out/configs" | sort | tr '\n' ' ')" = "$(printf '%s\n' "${cfg[@]}" | sort | tr '\n' ' ')"

  # skopeo: the list with both platforms in a dir:, every file hashed
  dir=$out/skopeo
  m=$( [[ -f $dir/manifest.json ]] && sha <"$dir/manifest.json") || m=
  inst=$(cd "$dir" 2>/dev/null && for x in *.manifest.json; do sha <"$x"; done | sort | tr '\n' ' ') || inst=
  bad=''
  n=0
  for b in "$dir"/*; do
    [[ ${b##*/} =~ ^[0-9a-f]{64}$ ]] || continue
    n=$((n + 1))
    [[ $(sha <"$b") == "sha256:${b##*/}" ]] || bad+=" ${b##*/}"
  done
  check "skopeo copy --all from the node: list $m, manifests ${inst% }, $n blobs each hashing to its name${bad:+; wrong: $bad}" \
    test "$m" = "$list" -a "${inst% }" = "$(printf '%s\n' "${want[@]}" | sort | tr '\n' ' ' | sed 's/ $//')" -a "$n" = 4 -a -z "$bad"

  # docker: both platforms, one after the other in one daemon
  for p in amd64 arm64; do
    seen=$(sed -n "s/^$p //p" "$out/docker")
    check "docker pull --platform linux/$p from the node: architecture, image ID, resolved digest: $seen (config ${cfg[$p]}, list $list)" \
      test "$seen" = "$p ${cfg[$p]} $list"
  done
  echo "clients done at $(elapsed)"

  vm_send "$CTL" "host-done-$f" || true
  stopped=$(vm_wait "stopped $f" 120) || stopped="(none)"
  check "the node stopped its container: $stopped" grep -q "stopped $f after host-done-$f" <<<"$stopped"
  unset want cfg
done

done_line=$(vm_wait 'job exit' 120) || done_line="(none)"
vm_stop 60 2>"$Q_TMP/vm-stop.err"
off=$(tr -d '\r' <"$VM_DIR/console.log" | grep -a -o 'reboot: Power down' | head -1) || off=
[[ -s $Q_TMP/vm-stop.err ]] && off="killed: $(cat "$Q_TMP/vm-stop.err")"
echo "node: $done_line; machine ran $(($(date +%s) - VM_START)) s"
check "the node's job ended and the machine powered itself off: $done_line; ${off:-no power-down line}" \
  test -n "$(grep 'job exit=0' <<<"$done_line")" -a "$off" = "reboot: Power down"

# the first machine's part is over: stop what served it, and keep what must be gone for the end
mapfile -t pids < <(printf '%s\n' "${Q_PID[@]}" "$(cat "$Q_TMP/docker/dockerd.ours" 2>/dev/null)")
dockerd_stop "$Q_TMP/docker"
q_stop_all
vm_net_down
left=$(vm_leftovers)
echo "the machine's own part: $(elapsed)"

# --- The cluster step: the machine joins a Kubernetes cluster (scripts/bring/cluster.sh) as node
# arm64vm, beside node1 (amd64, the control plane's namespace). Its tap sits on the cluster's bridge.
# The parent DaemonSet's image is quinistry:latest on an origin quinistry (amd64, in the cluster's
# namespace, plain HTTP); each node's kubelet pulls its own platform from it; the child pulls
# localhost:5000 from its own node's parent.
KUBE_VERSION=v1.34.4
KUBE_DIR=$ROOT/.tools/kubernetes/$KUBE_VERSION
missing=
for b in "$KUBE_DIR/$(go env GOHOSTARCH)"/{kubelet,kube-apiserver,kube-controller-manager,kube-scheduler,kubectl} \
  "$ROOT/.tools/kubernetes/etcd/usr/bin/etcd" "$KUBE_DIR/arm64/kubelet"; do
  [[ -x $b ]] || missing+=" $b"
done
# defect 7 of issue 18: missing binaries used to skip the cluster step and pass
check "cluster: the Kubernetes binaries are installed (scripts/install-tools.sh builds them)${missing:+; missing:$missing}" test -z "$missing"
if [[ ${E2E_ARM64_CLUSTER:-1} == 0 ]]; then
  echo "e2e-arm64vm: the cluster step is skipped (E2E_ARM64_CLUSTER=0)"
elif [[ -z $missing ]]; then
  kstart=$(date +%s)
  kelapsed() { echo "$(($(date +%s) - kstart)) s"; }
  ARM=arm64vm
  CLUSTER_DIR=$Q_TMP/cluster
  CLUSTER_STARTED=1
  for s in vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
    echo "$s $(sysctl -n "$s")"
  done >"$Q_TMP/sysctl.was"
  # bring VERB ARGS...: scripts/bring/cluster.sh VERB CLUSTER_DIR ARGS..., its KEY=VALUE lines set as variables
  bring() {
    local out k v
    out=$(scripts/bring/cluster.sh "$1" "$CLUSTER_DIR" "${@:2}") || return 1
    while IFS='=' read -r k v; do [[ -n $k ]] && printf -v "$k" '%s' "$v"; done <<<"$out"
  }
  kc() { in_ns "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }
  in_ns() { nsenter --net="/run/netns/$CLUSTER_NS" "$@"; }
  pod_on() {
    kc get pods -l "app.kubernetes.io/component=$2" --field-selector "spec.nodeName=$1" \
      -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.metadata.deletionTimestamp}{"\n"}{end}' | awk 'NF == 1 {print $1; exit}'
  }
  pod_pulled() { kc get events --field-selector "involvedObject.name=$1,reason=Pulled" -o jsonpath='{.items[*].message}'; }
  bring up node1 "$ARM" || fatal "the control plane (logs: $CLUSTER_DIR/logs)"
  q_start origin nsenter --net="/run/netns/$CLUSTER_NS" "$ROOT/dist/quinistry-linux-amd64" --addr "$CLUSTER_API:0"
  ORIGIN=${Q_ADDR[origin]}
  WANT=$(in_ns curl -fsSI -H "Accept: $LIST_ACCEPT" "http://$ORIGIN/v2/quinistry/manifests/latest" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}')
  declare -A want=()
  for p in amd64 arm64; do want[$p]=$(in_ns crane --insecure digest --platform "linux/$p" "$ORIGIN/quinistry:latest"); done
  echo "origin $ORIGIN serves list $WANT, linux/amd64 ${want[amd64]}, linux/arm64 ${want[arm64]}"

  # the machine's own files: the arm64 kubelet, its kubeconfig and the cluster's CA, the pause image
  kroot=$Q_TMP/kube-root
  mkdir -p "$kroot/usr/bin" "$kroot/etc/kubernetes"
  cp "$KUBE_DIR/arm64/kubelet" "$kroot/usr/bin/kubelet"
  cp "$CA" "$PAUSE_TAR" "$kroot/etc/kubernetes/"
  scripts/bring/cluster.sh kubeconfig "$CLUSTER_DIR" "$ARM" "$kroot/etc/kubernetes/kubelet.kubeconfig" /etc/kubernetes/ca.crt
  (cd "$kroot" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0) >"$Q_TMP/kube-node.cpio"
  ARM_IP=$CLUSTER_NET.0.4
  vm_net_attach "$Q_TMP/vm-k8s" "$CLUSTER_NS" nodes0 "$ARM_IP" "$CLUSTER_API" || fatal "the machine's tap on the cluster's bridge"
  VM_EXTRA_CPIO=("$IMAGE/kube.cpio" "$Q_TMP/kube-node.cpio")
  vm_start "$IMAGE" scripts/arm64-node/k8s-node.job "name=$ARM" "pause=$PAUSE_REF" "podcidr=$CLUSTER_NET.3.0/24" \
    "http=$ORIGIN" "ctl=$CTL" "hostname=$ARM"
  # node1 and the DaemonSets while the machine boots
  CLUSTER_HTTP_REGISTRIES=$ORIGIN bring node node1 || fatal "node1 (logs: $CLUSTER_DIR/logs)"
  mkdir -p "$Q_TMP/overlay"
  printf 'resources: [%s]\nimages: [{name: registry.example.com/quinistry, newName: %s, newTag: latest}]\n' \
    "$(realpath --relative-to="$Q_TMP/overlay" deploy)" "$ORIGIN/quinistry" >"$Q_TMP/overlay/kustomization.yaml"
  kc apply -k "$Q_TMP/overlay" >/dev/null || fatal "kubectl apply -k"
  kc apply -f deploy/child.yaml >/dev/null || fatal "kubectl apply -f deploy/child.yaml"

  line=$(vm_wait 'boot' 120) || line="(none)"
  check "cluster: the control plane and node1 are up ($(kelapsed)); the machine boots: $line" grep -q 'machine=aarch64' <<<"$line"
  line=$(vm_wait 'cri' 300) || line="(none)"
  check "cluster: the machine's containerd serves the CRI with the arm64 pause image imported: $line" grep -q '^QNODE cri ok pause=1 ' <<<"$line"
  line=$(vm_wait 'kubelet (v|exited)' 300) || line="(none)"
  check "cluster: the machine's arm64 kubelet is healthy: $line" grep -q "kubelet $KUBE_VERSION healthz=ok" <<<"$line"
  for ((i = 0; i < 300; i++)); do kc wait --for=condition=Ready "node/$ARM" --timeout=1s >/dev/null 2>&1 && break; sleep 1; done
  nodes=$(kc get nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.nodeInfo.architecture} {.status.nodeInfo.kernelVersion} {.status.nodeInfo.containerRuntimeVersion} {.status.nodeInfo.kubeletVersion} {.status.conditions[?(@.type=="Ready")].status};{end}')
  echo "kubectl get nodes ($(kelapsed)): $nodes"
  check "cluster: kubectl get nodes shows node1 amd64 and $ARM arm64 (Debian's arm64 kernel, containerd 1.6), both $KUBE_VERSION and Ready: $nodes" \
    bash -c 'grep -qE "^node1 amd64 .* $2 True\$" <<<"$1" && grep -qE "^$3 arm64 [^ ]+-arm64 containerd://1\.6\.[^ ]+ $2 True\$" <<<"$1"' \
    _ "$(tr ';' '\n' <<<"$nodes")" "$KUBE_VERSION" "$ARM"

  # rolled_on_each COMPONENT: wait for the component's DaemonSet, then check it runs one pod on each node
  rolled_on_each() {
    local pods
    kc rollout status "ds/quinistry-$1" --timeout=600s >/dev/null || true
    pods=$(kc get pods -l "app.kubernetes.io/component=$1" -o jsonpath='{range .items[*]}{.spec.nodeName}:{.metadata.name}:{.status.phase} {end}')
    check "cluster: the $1 DaemonSet has one running pod on each node ($(kelapsed)): $pods" \
      test "$(tr ' ' '\n' <<<"$pods" | grep ':Running$' | cut -d: -f1 | sort | xargs)" = "$ARM node1"
  }
  rolled_on_each parent
  P_ARM=$(pod_on "$ARM" parent)
  check "cluster: $ARM's parent $P_ARM pulled from the origin: $(pod_pulled "$P_ARM")" \
    grep -q "Successfully pulled image \"$ORIGIN/quinistry:latest\"" <<<"$(pod_pulled "$P_ARM")"
  seen=$(manifests_asked "$Q_TMP/origin.log" "$WANT" "$ARM_IP")
  check "cluster: the origin's log shows $ARM ($ARM_IP) asking for the arm64 manifest and never the amd64 one: $seen" \
    bash -c '[[ $1 == *"GET arm64-manifest"* && $1 != *amd64-manifest* ]]' _ "$seen"
  seen=$(manifests_asked "$Q_TMP/origin.log" "$WANT" "$CLUSTER_API")
  check "cluster: and node1 ($CLUSTER_API) asking for the amd64 manifest and never the arm64 one: $seen" \
    bash -c '[[ $1 == *"GET amd64-manifest"* && $1 != *arm64-manifest* ]]' _ "$seen"

  rolled_on_each child
  C_ARM=$(pod_on "$ARM" child)
  check "cluster: $ARM's child $C_ARM pulled from localhost:5000: $(pod_pulled "$C_ARM")" \
    grep -q 'Successfully pulled image "localhost:5000/quinistry:latest"' <<<"$(pod_pulled "$C_ARM")"
  # The arm64 parent's own log (through the apiserver and the machine's kubelet): the child's pull
  # resolved latest there. The list and arm64 manifest it named were already in the node's content
  # store (the parent's pull brought them), so containerd asks for nothing else.
  seen=$({ kc logs "$P_ARM" 2>/dev/null || true; } | jq -rR 'fromjson? | select(.msg == "request" and (.user_agent | startswith("containerd/"))) | "\(.method) \(.path) \(.status)"' |
    sed 's|/v2/quinistry/manifests/||' | sed "s/${want[arm64]}/arm64-manifest/; s/${want[amd64]}/amd64-manifest/; s/$WANT/list/" | tr '\n' ',' | sed 's/,$//')
  check "cluster: $ARM's child resolved latest at its own node's parent $P_ARM (its node's containerd in that parent's log: $seen), never asking for the amd64 manifest" \
    bash -c '[[ $1 == *"HEAD latest 200"* && $1 != *amd64-manifest* ]]' _ "$seen"

  # what runs on the machine, as its own kernel sees it
  vm_send "$CTL" report || true
  line=$(vm_wait 'report' 60) || line="(none)"
  procs=$(tr -d '\r' <"$VM_DIR/console.log" | sed -n 's/^QNODE process //p' | awk '{print $2, $3, $4}' | sort | uniq -c | xargs)
  check "cluster: $ARM runs two quinistry processes (parent and child), each /quinistry-linux-arm64 as uid 65532 on a read-only root: $procs" \
    grep -qE '^2 exe=/quinistry-linux-arm64 uid=65532,65532,65532,65532 root=ro(,[^ ]*)?$' <<<"$procs"

  # and what runs on node1, as the host's kernel sees it
  procs=$(for pid in $(ctr --address "$NODE_SOCK" -n k8s.io tasks ls | awk 'NR > 1 {print $2}'); do
    exe=$(readlink "/proc/$pid/exe" || true)
    if [[ $exe == */quinistry-linux-* ]]; then echo "exe=${exe##*/} uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")"; fi
  done | sort | uniq -c | xargs)
  check "cluster: node1 runs two quinistry processes, each quinistry-linux-amd64 as uid 65532: $procs" \
    test "$procs" = "2 exe=quinistry-linux-amd64 uid=65532"

  # every node serves the same list, on both ports
  served=
  for at in "$CLUSTER_API:5000" "$CLUSTER_API:5001" "$ARM_IP:5000" "$ARM_IP:5001"; do
    d=$(in_ns curl -fsSI --max-time 30 -H "Accept: $LIST_ACCEPT" "http://$at/v2/quinistry/manifests/latest" |
      tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}') || d=
    served+="$at=${d:-none} "
  done
  check "cluster: every node serves list $WANT on ports 5000 and 5001 (node1 at $CLUSTER_API, $ARM at $ARM_IP, from the cluster's namespace): ${served% }" \
    test "$(tr ' ' '\n' <<<"${served% }" | cut -d= -f2 | sort -u)" = "$WANT"

  vm_send "$CTL" "done" || true
  line=$(vm_wait 'job exit' 120) || line="(none)"
  vm_stop 60 2>"$Q_TMP/vm-stop.err"
  check "cluster: $ARM's kubelet stopped, its job ended and the machine powered itself off: $line" \
    test -n "$(grep 'job exit=0' <<<"$line")" -a ! -s "$Q_TMP/vm-stop.err"
  mapfile -t -O "${#pids[@]}" pids < <(printf '%s\n' "${Q_PID[@]}" "$(cat "$CLUSTER_DIR"/pids/* 2>/dev/null)")
  q_stop_all
  vm_net_down
  scripts/bring/cluster.sh down "$CLUSTER_DIR"
  CLUSTER_STARTED=
  # what of the cluster is left: namespaces, cgroup roots, sysctl changes (processes and mounts below)
  left+=$(ip netns list | awk -v id="$CLUSTER_ID" '$1 == id || index($1, id "-") == 1 {printf " namespace %s", $1}')
  left+=$(find /sys/fs/cgroup -maxdepth 2 -name "$CLUSTER_ID-*" -printf ' cgroup %p')
  left+=$(while read -r s v; do [[ $(sysctl -n "$s") == "$v" ]] || echo -n " sysctl $s"; done <"$Q_TMP/sysctl.was")
  left+=$(vm_leftovers)
  echo "the cluster step: $(kelapsed)"
fi

# nothing of the run may be left
for p in "${pids[@]}"; do
  if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then left+=" pid $p"; fi
done
[[ -e /run/netns/$NS1 ]] && left+=" namespace $NS1"
left+=$(awk -v d="$Q_TMP/" 'index($5, d) == 1 {printf " mount %s", $5}' /proc/self/mountinfo)
left+=$(pgrep -f -- "$Q_TMP/" | sed 's/^/ pid /' | tr -d '\n' || true)
check "nothing left: no qemu, namespace ($NS1${CLUSTER_NS:+, $CLUSTER_NS}), tap, process, mount${CLUSTER_NS:+, cgroup, iptables chain or sysctl change}${left:+; left:$left}" test -z "$left"

SUITE_DONE=1
echo "e2e-arm64vm: $(elapsed) in all"
checks_done e2e-arm64vm

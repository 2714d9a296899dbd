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
# The machine powers itself off at the end; the suite then checks that no qemu, namespace, tap,
# process or mount of its own is left. Needs root and scripts/install-arm64-node.sh (install-tools.sh).
# E2E_KEEP_TMP=1 keeps the temporary directory (console log, access logs) for a post-mortem.
# E2E_ARM64_KUBELET=1 adds a first step towards a Kubernetes node: the arm64 kubelet, standalone, on
# the node's CRI (see scripts/arm64-node/kubelet.job); the node does not join a cluster yet.
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
  if [[ -n ${E2E_KEEP_TMP:-} ]]; then echo "e2e-arm64vm: kept $Q_TMP"; else rm -rf "$Q_TMP"; fi
}
trap cleanup EXIT
trap 'echo "e2e-arm64vm: aborted: line $LINENO exited with status $?" >&2' ERR

elapsed() { echo "$(($(date +%s) - START)) s"; }
cr() { vm_in timeout "$TMO" crane --insecure "$@"; }
sk() { vm_in timeout "$TMO" skopeo "$@"; }
dk() { timeout "$TMO" "$DOCKER" "$@"; }
sha() { sha256sum | awk '{print "sha256:" $1}'; }
# absent WORD TEXT: WORD is not in TEXT
absent() { ! grep -q -- "$1" <<<"$2"; }
# a console line's KEY=VALUE field
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }

scripts/build.sh >/dev/null
IMAGE=$(scripts/install-arm64-node.sh --dir)
echo "node image: $IMAGE"
sed 's/^/  /' "$IMAGE/versions"
echo "qemu:       $("$VM_QEMU" --version | head -1)"
echo "setup done at $(elapsed)"

vm_net_up "$Q_TMP/vm"
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
  fetched=$(grep -a 'user_agent=containerd' "$log" | sed -n 's/.*msg=request method=\([A-Z]*\) path=\/v2\/quinistry\/manifests\/\([^ ]*\) .*/\1 \2/p' |
    sed "s/${want[arm64]}/arm64-manifest/; s/${want[amd64]}/amd64-manifest/; s/$list/list/" | tr '\n' ',' | sed 's/,$//')
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
  m=$( [[ -f $dir/manifest.json ]] && sha <"$dir/manifest.json")
  inst=$(cd "$dir" 2>/dev/null && for x in *.manifest.json; do sha <"$x"; done | sort | tr '\n' ' ')
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
off=$(tr -d '\r' <"$VM_DIR/console.log" | grep -a -o 'reboot: Power down' | head -1)
[[ -s $Q_TMP/vm-stop.err ]] && off="killed: $(cat "$Q_TMP/vm-stop.err")"
echo "node: $done_line; machine ran $(($(date +%s) - VM_START)) s"
check "the node's job ended and the machine powered itself off: $done_line; ${off:-no power-down line}" \
  test -n "$(grep 'job exit=0' <<<"$done_line")" -a "$off" = "reboot: Power down"

# A first step towards the node joining Kubernetes (E2E_ARM64_KUBELET=1, with the arm64 kubelet that
# scripts/install-kubernetes.sh cross-builds): boot the node again with the image's Kubernetes layer
# and the kubelet, and run the kubelet standalone against containerd's CRI.
KUBELET_ARM64=$ROOT/.tools/kubernetes/${KUBE_VERSION:-v1.34.4}/arm64/kubelet
if [[ -n ${E2E_ARM64_KUBELET:-} ]]; then
  if [[ -x $KUBELET_ARM64 ]]; then
    kstart=$(date +%s)
    mkdir -p "$Q_TMP/kubelet-root/usr/bin"
    cp "$KUBELET_ARM64" "$Q_TMP/kubelet-root/usr/bin/kubelet"
    (cd "$Q_TMP/kubelet-root" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0) >"$Q_TMP/kubelet.cpio"
    VM_EXTRA_CPIO=("$IMAGE/kube.cpio" "$Q_TMP/kubelet.cpio")
    vm_start "$IMAGE" scripts/arm64-node/kubelet.job
    kv=$(vm_wait 'kubelet version' 300) || kv="(none)"
    check "the node runs the arm64 kubelet: $kv" grep -q "version=${KUBE_VERSION:-v1.34.4} " <<<"$kv"
    kh=$(vm_wait 'kubelet healthz' 300) || kh="(none)"
    check "the arm64 kubelet, standalone, is healthy on containerd's CRI: $kh" \
      grep -q 'healthz=ok runtime=containerd-1.6.20.* started=yes' <<<"$kh"
    kdone=$(vm_wait 'job exit' 120) || kdone="(none)"
    vm_stop 60 2>"$Q_TMP/vm-stop.err"
    check "the kubelet node's job ended and the machine powered itself off: $kdone" \
      test -n "$(grep 'job exit=0' <<<"$kdone")" -a ! -s "$Q_TMP/vm-stop.err"
    echo "kubelet step: $(($(date +%s) - kstart)) s"
  else
    echo "e2e-arm64vm: E2E_ARM64_KUBELET is set but there is no $KUBELET_ARM64: skipped"
  fi
fi

# teardown, then look for anything left
mapfile -t pids < <(printf '%s\n' "${Q_PID[@]}" "$(cat "$Q_TMP/docker/dockerd.ours" 2>/dev/null)")
dockerd_stop "$Q_TMP/docker"
q_stop_all
vm_net_down
left=$(vm_leftovers)
for p in "${pids[@]}"; do
  if [[ -n $p ]] && kill -0 "$p" 2>/dev/null; then left+=" pid $p"; fi
done
left+=$(awk -v d="$Q_TMP/" 'index($5, d) == 1 {printf " mount %s", $5}' /proc/self/mountinfo)
left+=$(pgrep -f -- "$Q_TMP/" | sed 's/^/ pid /' | tr -d '\n' || true)
check "nothing left: no qemu, namespace $VM_NS, tap $VM_TAP, process or mount${left:+; left:$left}" test -z "$left"

SUITE_DONE=1
echo "e2e-arm64vm: $(elapsed) in all"
checks_done e2e-arm64vm

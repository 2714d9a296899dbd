# shellcheck shell=bash
# An emulated arm64 machine (qemu-system-aarch64, TCG) on a tap device inside a network namespace of
# its own, for end-to-end tests. The image comes from scripts/install-arm64-node.sh. Source it, then:
#   vm_net_up DIR           make a network namespace with a tap device and a private /24 of its own
#                           (unique names and subnet per run). Sets VM_DIR, VM_NS, VM_TAP, VM_HOST_IP
#                           (the namespace's end of the tap) and VM_IP (the machine's address).
#   vm_net_attach DIR NS BRIDGE ADDR GW  instead, put the machine on BRIDGE inside the existing
#                           namespace NS (a cluster's, say) at ADDR (in BRIDGE's /24), routing through
#                           GW. The tap is this run's; the namespace stays the caller's.
#   vm_in CMD...            run CMD inside that namespace (nsenter --net: /sys and cgroups stay as they are)
#   vm_start IMAGE JOB [K=V...]  boot IMAGE (a directory with vmlinuz and initrd.cpio) with the
#                           executable file JOB appended to its initramfs as /job (its init runs it, then
#                           powers off). Each K=V goes on the kernel command line as qnode.K=V and
#                           reaches JOB as QNODE_K. The serial console goes to $VM_DIR/console.log.
#                           qemu is killed after VM_TIMEOUT seconds (default 600) whatever happens.
#                           The cpio archives in the array VM_EXTRA_CPIO are appended too (before JOB),
#                           e.g. the image's kube.cpio.
#   vm_wait REGEX [SECS]    wait for a console line "QNODE ..." matching REGEX (extended); print it.
#                           Fails if the machine stops or SECS (default 300) pass first.
#   vm_send PORT TEXT       connect to VM_IP:PORT from the namespace (retrying until the machine
#                           listens, up to 60 s) and send TEXT
#   vm_stop [SECS]          wait up to SECS (default 60) for the machine to power itself off, then
#                           kill qemu
#   vm_net_down             delete the tap, and the namespace when vm_net_up made it
#   vm_leftovers            print what is left of this run (qemu, namespace, tap); empty when clean
# Machine: -M virt -cpu cortex-a57 -smp 2 -m 2048 (-cpu max is about 3x slower under TCG: it emulates
# pointer authentication), virtio-net-pci on the tap, virtio-rng-pci, -no-reboot, panic=-1.

VM_QEMU=${VM_QEMU:-qemu-system-aarch64}
VM_PID=
VM_OWN_NS=

vm_net_up() {
  VM_DIR=$1
  mkdir -p "$VM_DIR"
  local id=$(($$ % 10000))$((RANDOM % 100)) net=$((RANDOM % 64 + 64)).$((RANDOM % 256))
  VM_NS=qvm-$id
  VM_TAP=qvt$id
  VM_HOST_IP=10.$net.1
  VM_IP=10.$net.2
  ip netns add "$VM_NS" || return 1
  VM_OWN_NS=1
  ip -n "$VM_NS" link set lo up &&
    ip -n "$VM_NS" tuntap add dev "$VM_TAP" mode tap &&
    ip -n "$VM_NS" addr add "$VM_HOST_IP/24" dev "$VM_TAP" &&
    ip -n "$VM_NS" link set "$VM_TAP" up
}

vm_net_attach() {
  VM_DIR=$1 VM_NS=$2 VM_IP=$4 VM_HOST_IP=$5
  mkdir -p "$VM_DIR"
  VM_TAP=qvt$(($$ % 10000))$((RANDOM % 100))
  VM_OWN_NS=
  ip -n "$VM_NS" tuntap add dev "$VM_TAP" mode tap &&
    ip -n "$VM_NS" link set "$VM_TAP" master "$3" up
}

vm_in() { nsenter --net="/run/netns/$VM_NS" "$@"; }

vm_start() {
  local image=$1 job=$2 kv append jobdir mac
  shift 2
  mac=$(printf '52:54:00:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
  jobdir=$VM_DIR/jobroot
  rm -rf "$jobdir" && mkdir -p "$jobdir" && install -m 0755 "$job" "$jobdir/job" || return 1
  # the kernel unpacks concatenated cpio archives one after the other
  { cat "$image/initrd.cpio" ${VM_EXTRA_CPIO[@]+"${VM_EXTRA_CPIO[@]}"} && (cd "$jobdir" && echo job | cpio --quiet -o -H newc -R 0:0); } \
    >"$VM_DIR/initrd.cpio" || return 1
  append="console=ttyAMA0 panic=-1 quiet qnode.ip=$VM_IP/24 qnode.gw=$VM_HOST_IP"
  for kv in "$@"; do append+=" qnode.$kv"; done
  : >"$VM_DIR/console.log"
  vm_in timeout -s KILL "${VM_TIMEOUT:-600}" "$VM_QEMU" -M virt -cpu cortex-a57 -smp 2 -m 2048 \
    -nodefaults -display none -monitor none -no-reboot -no-user-config \
    -kernel "$image/vmlinuz" -initrd "$VM_DIR/initrd.cpio" -append "$append" \
    -serial "file:$VM_DIR/console.log" -pidfile "$VM_DIR/qemu.pid" \
    -netdev "tap,id=n0,ifname=$VM_TAP,script=no,downscript=no" \
    -device "virtio-net-pci,netdev=n0,romfile=,mac=$mac" \
    -device virtio-rng-pci >"$VM_DIR/qemu.log" 2>&1 </dev/null &
  VM_PID=$!
}

vm_wait() {
  local re=$1 secs=${2:-300} i line
  for ((i = 0; i < secs * 10; i++)); do
    line=$(tr -d '\r' <"$VM_DIR/console.log" | grep -a -E "^QNODE ($re)" | head -1)
    if [[ -n $line ]]; then echo "$line"; return 0; fi
    if ! kill -0 "$VM_PID" 2>/dev/null; then
      # the machine stopped: one last look
      line=$(tr -d '\r' <"$VM_DIR/console.log" | grep -a -E "^QNODE ($re)" | head -1)
      [[ -n $line ]] && { echo "$line"; return 0; }
      echo "vm_wait: the machine stopped before /$re/" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "vm_wait: no /$re/ on the console after $secs s" >&2
  return 1
}

vm_send() {
  local port=$1 text=$2 i
  for ((i = 0; i < 600; i++)); do
    # shellcheck disable=SC2016
    vm_in bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "%s\n" "$2" >&3' "$VM_IP" "$port" "$text" 2>/dev/null && return 0
    kill -0 "$VM_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

vm_stop() {
  local secs=${1:-60} i qpid
  [[ -n $VM_PID ]] || return 0
  for ((i = 0; i < secs * 10; i++)); do kill -0 "$VM_PID" 2>/dev/null || break; sleep 0.1; done
  qpid=$(cat "$VM_DIR/qemu.pid" 2>/dev/null || true)
  if kill -0 "$VM_PID" 2>/dev/null; then
    echo "vm_stop: the machine did not power off in $secs s: killing qemu" >&2
    [[ -n $qpid && $(cat "/proc/$qpid/comm" 2>/dev/null) == qemu-system-* ]] && kill -KILL "$qpid"
    kill -KILL "$VM_PID" 2>/dev/null
  fi
  wait "$VM_PID" 2>/dev/null
  VM_PID=
  return 0
}

vm_net_down() {
  [[ -n ${VM_NS:-} ]] || return 0
  ip -n "$VM_NS" link del "$VM_TAP" 2>/dev/null || true
  [[ -z $VM_OWN_NS ]] || ip netns del "$VM_NS" 2>/dev/null || true
  return 0
}

vm_leftovers() {
  local qpid
  qpid=$(cat "$VM_DIR/qemu.pid" 2>/dev/null || true)
  [[ -n $qpid && $(cat "/proc/$qpid/comm" 2>/dev/null) == qemu-system-* ]] && echo "qemu pid $qpid"
  [[ -n ${VM_PID:-} ]] && kill -0 "$VM_PID" 2>/dev/null && echo "qemu wrapper pid $VM_PID"
  [[ -n $VM_OWN_NS && -e /run/netns/$VM_NS ]] && echo "namespace $VM_NS"
  ip -o link show "$VM_TAP" >/dev/null 2>&1 && echo "tap $VM_TAP"
  [[ -e /run/netns/$VM_NS ]] && ip -n "$VM_NS" -o link show "$VM_TAP" >/dev/null 2>&1 && echo "tap $VM_TAP in $VM_NS"
  return 0
}

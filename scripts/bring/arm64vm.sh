#!/usr/bin/env bash
# arm64vm.sh: an emulated arm64 machine (qemu-system-aarch64, TCG) on a tap device, for the end-to-end
# tests (e2e/harness.StartMachine). The image comes from scripts/install-arm64-node.sh.
#   up DIR NS BRIDGE     a tap device in network namespace NS (one the test made: a harness.Network's
#                        switch namespace, or a cluster's), on BRIDGE there, up; prints TAP=<name>
#                        and records NS and the tap in DIR/tap
#   start DIR IMAGE JOB ADDR/LEN GW [K=V...]
#                        boot IMAGE (vmlinuz, initrd.cpio) with its NIC on DIR's tap, in DIR's
#                        namespace. JOB (executable) goes into the initramfs as /job, which its /init
#                        runs and then powers off. Each K=V reaches JOB as QNODE_K (qnode.K=V on the
#                        kernel command line, with qnode.ip=ADDR/LEN and qnode.gw=GW). Each path in
#                        ARM64VM_EXTRA (space-separated) is appended to the initramfs before JOB: a
#                        cpio archive as it is, a directory packed as root's. Prints CONSOLE=<the
#                        serial console's file>, QEMU_LOG=<qemu's own output> and MAC=<the NIC's
#                        address>, then becomes the machine (exec: timeout -s KILL, qemu): it exits
#                        when the machine powers off, or after ARM64VM_TIMEOUT seconds (default 900)
#                        whatever happens.
#   down DIR NS BRIDGE   kill a qemu of DIR still running (its pidfile), delete the tap if its
#                        namespace is still there
# Machine: -M virt -cpu cortex-a57 -smp 2 -m 2048 (-cpu max is about 3x slower under TCG: it emulates
# pointer authentication), virtio-net-pci on the tap, virtio-rng-pci, -no-reboot, panic=-1.
# Asserts nothing; fails with one line on stderr.
set -euo pipefail
verb=${1:-} dir=${2:-}
usage() { echo "usage: arm64vm.sh up|down DIR NS BRIDGE | start DIR IMAGE JOB ADDR/LEN GW [K=V...]" >&2; exit 2; }
fail() { echo "arm64vm.sh $verb: $*" >&2; exit 1; }
[[ -n $dir ]] || usage
QEMU=${ARM64VM_QEMU:-qemu-system-aarch64}
# the tap's name: one per namespace is enough, and the namespaces are the test's own
TAP=qvm0

case $verb in
  up)
    ns=${3:-} bridge=${4:-}
    [[ -n $ns && -n $bridge ]] || usage
    mkdir -p "$dir" || fail "cannot make $dir"
    [[ -e /run/netns/$ns ]] || fail "no network namespace $ns"
    ip -n "$ns" tuntap add dev "$TAP" mode tap 2>/dev/null || fail "cannot add tap $TAP in $ns"
    echo "$ns $TAP" >"$dir/tap"
    ip -n "$ns" link set "$TAP" master "$bridge" up 2>/dev/null || fail "cannot put $TAP on $bridge in $ns"
    echo "TAP=$TAP"
    ;;
  start)
    image=${3:-} job=${4:-} addr=${5:-} gw=${6:-}
    [[ -n $image && -n $job && -n $addr && -n $gw ]] || usage
    shift 6
    [[ -e $dir/tap ]] || fail "no tap in $dir: run up first"
    read -r ns tap <"$dir/tap"
    [[ -f $image/vmlinuz && -f $image/initrd.cpio ]] || fail "no vmlinuz and initrd.cpio in $image"
    command -v "$QEMU" >/dev/null || fail "no $QEMU: scripts/install-arm64-node.sh installs it"
    jobroot=$dir/jobroot
    { rm -rf "$jobroot" && mkdir -p "$jobroot" && install -m 0755 "$job" "$jobroot/job"; } || fail "cannot take $job"
    # the kernel unpacks concatenated cpio archives one after the other
    {
      cat "$image/initrd.cpio"
      for x in ${ARM64VM_EXTRA:-}; do
        if [[ -d $x ]]; then
          (cd "$x" && find . -mindepth 1 | cpio --quiet -o -H newc -R 0:0)
        else
          cat "$x"
        fi
      done
      (cd "$jobroot" && echo job | cpio --quiet -o -H newc -R 0:0)
    } >"$dir/initrd.cpio" || fail "cannot pack the initramfs"
    append="console=ttyAMA0 panic=-1 quiet qnode.ip=$addr qnode.gw=$gw"
    for kv in "$@"; do append+=" qnode.$kv"; done
    mac=$(printf '52:54:00:%02x:%02x:%02x' $((RANDOM % 256)) $((RANDOM % 256)) $((RANDOM % 256)))
    : >"$dir/console.log"
    rm -f "$dir/qemu.pid"
    echo "CONSOLE=$dir/console.log"
    echo "QEMU_LOG=$dir/qemu.log"
    echo "MAC=$mac"
    exec >"$dir/qemu.log" 2>&1 </dev/null
    exec timeout -s KILL "${ARM64VM_TIMEOUT:-900}" nsenter --net="/run/netns/$ns" "$QEMU" \
      -M virt -cpu cortex-a57 -smp 2 -m 2048 \
      -nodefaults -display none -monitor none -no-reboot -no-user-config \
      -kernel "$image/vmlinuz" -initrd "$dir/initrd.cpio" -append "$append" \
      -serial "file:$dir/console.log" -pidfile "$dir/qemu.pid" \
      -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
      -device "virtio-net-pci,netdev=n0,romfile=,mac=$mac" \
      -device virtio-rng-pci
    ;;
  down)
    if [[ -e $dir/qemu.pid ]]; then
      pid=$(cat "$dir/qemu.pid")
      if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == qemu-system-* ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    if [[ -e $dir/tap ]]; then
      read -r ns tap <"$dir/tap"
      if [[ -e /run/netns/$ns ]] && ip -n "$ns" link show "$tap" >/dev/null 2>&1; then
        ip -n "$ns" link del "$tap" || fail "cannot delete tap $tap in $ns"
      fi
      rm -f "$dir/tap"
    fi
    ;;
  *) usage ;;
esac

#!/usr/bin/env bash
# install-arm64-node.sh: an arm64 machine to boot under qemu-system-aarch64, made from Debian packages
# only, and the host's qemu to boot it. Idempotent: quick when everything is cached.
#   host (apt):    qemu-system-arm (qemu-system-aarch64), cpio
#   image (arm64 debs from Debian bookworm, through a private apt configuration; see scripts/lib/debs.sh):
#                  the kernel linux-image-arm64 resolves to, busybox-static, containerd, runc, libc6,
#                  libseccomp2; packed with scripts/arm64-node/{init,containerd.toml} into an
#                  uncompressed initramfs (the kernel unpacks it far faster under emulation than a
#                  compressed one)
#   Kubernetes layer (kube.cpio, appended by a test that makes the node a Kubernetes node): the CNI
#                  plugins bridge, host-local, loopback and portmap (containernetworking-plugins),
#                  iptables (nft) with its libraries, and the modules a CNI bridge and hostPorts need,
#                  listed in load order in /etc/qnode/modules.kube
# The image goes to .tools/arm64-node/<key>/{vmlinuz,initrd.cpio,kube.cpio,versions}, where <key> is a hash of
# the package versions and of the files the image is made from: a new Debian update or a changed
# init makes a new image, and an unchanged one is reused.
#   install-arm64-node.sh          build if needed, print one line naming the image and its versions
#   install-arm64-node.sh --dir    the same, but print only the image directory (for the e2e suite)
# ARM64_NODE_CACHE and DEBS_CACHE move the image and package caches (to time a cold build, say).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/lib/debs.sh"
source "$ROOT/scripts/lib/apt.sh"
NODE_SRC=$ROOT/scripts/arm64-node
CACHE=${ARM64_NODE_CACHE:-$ROOT/.tools/arm64-node}
SUITE=bookworm
# name=version glob: a Debian point or security update still matches, another upstream does not
PKGS=(linux-image-arm64='6.1.*' busybox-static='1:1.35.0*' containerd='1.6.20~ds1*' runc='1.1.5+ds1*'
  libc6='2.36*' libseccomp2='2.5.4*')
KUBE_PKGS=(containernetworking-plugins='1.1.1+ds1*' iptables='1.8.9*' libip4tc2='1.8.9*' libip6tc2='1.8.9*'
  libxtables12='1.8.9*' libmnl0='1.0.4*' libnetfilter-conntrack3='1.0.9*' libnfnetlink0='1.0.2*' libnftnl11='1.2.4*')
HOST_PKGS=(qemu-system-arm='1:7.2*' cpio='2.13*')
# modules the node loads at boot, with what they depend on (found from each .ko's depends=)
NODE_MODULES=(virtio_pci virtio_net virtio_rng overlay)
# and those of the Kubernetes layer: a CNI bridge with veths, iptables-nft with the matches and
# targets of the portmap plugin and the kubelet. crc32c_generic first: libcrc32c (for nf_conntrack) names it
# only as a soft dependency (softdep=pre: crc32c, an alias), and fails to load without it.
KUBE_MODULES=(crc32c_generic bridge br_netfilter veth nf_conntrack nf_nat nft_compat nft_chain_nat xt_nat xt_MASQUERADE
  xt_addrtype xt_conntrack xt_multiport xt_mark xt_comment xt_tcpudp)

log() { echo "install-arm64-node: $*" >&2; }
die() { log "$*"; exit 1; }

# --- host: qemu-system-aarch64 and cpio from apt
apt_ensure install-arm64-node "${HOST_PKGS[@]}"

# --- resolve versions. apt-cache reads the whole package list for each question (seconds each), so
# the answers are kept beside the image cache until the lists are refreshed (once a day) or PKGS changes.
declare -A VER=()
_debs_update "$SUITE" arm64
resolved=$CACHE/resolved-$SUITE-arm64
stamp="$(stat -c %Y "$DEBS_CACHE/$SUITE-arm64/lists/.updated") ${PKGS[*]} ${KUBE_PKGS[*]}"
if [[ $(head -1 "$resolved" 2>/dev/null) == "$stamp" ]]; then
  while read -r name v; do VER[$name]=$v; done < <(tail -n +2 "$resolved")
  KPKG=$(sed -n 's/^KPKG //p' "$resolved")
else
  declare -A CAND=()
  mapfile -t names < <(printf '%s\n' "${PKGS[@]}" "${KUBE_PKGS[@]}" | cut -d= -f1)
  while read -r name v; do CAND[$name]=$v; done < <(debs_versions "$SUITE" arm64 "${names[@]}")
  for spec in "${PKGS[@]}" "${KUBE_PKGS[@]}"; do
    name=${spec%%=*}
    v=${CAND[$name]:-}
    [[ -n $v && $v != none ]] || die "no $name in $SUITE/arm64"
    # shellcheck disable=SC2053
    [[ $v == ${spec#*=} ]] || die "$name is $v in $SUITE/arm64, pinned to ${spec#*=}: update PKGS"
    VER[$name]=$v
  done
  # the meta package depends on exactly one ABI package: linux-image-6.1.0-N-arm64 (= VERSION)
  KPKG=$(_debs_apt apt-cache "$SUITE" arm64 show "linux-image-arm64=${VER[linux-image-arm64]}" |
    sed -n 's/^Depends: *\(linux-image-[0-9][^ ,]*-arm64\) .*/\1/p' | head -1)
  [[ -n $KPKG ]] || die "cannot resolve linux-image-arm64 ${VER[linux-image-arm64]} to its ABI package"
  mkdir -p "$CACHE"
  { echo "$stamp"; for n in "${!VER[@]}"; do echo "$n ${VER[$n]}"; done; echo "KPKG $KPKG"; } >"$resolved.$$"
  mv "$resolved.$$" "$resolved"
fi
KVER=${KPKG#linux-image-}
VER[$KPKG]=${VER[linux-image-arm64]}

versions=$(for n in "$KPKG" busybox-static containerd runc libc6 libseccomp2; do echo "$n ${VER[$n]}"; done)
kube_versions=$(for spec in "${KUBE_PKGS[@]}"; do echo "${spec%%=*} ${VER[${spec%%=*}]}"; done)
key=$( { echo "$versions"; echo "$kube_versions"; echo "${NODE_MODULES[*]} ${KUBE_MODULES[*]}"; cat "$NODE_SRC/init" "$NODE_SRC/containerd.toml" "$0"; } |
  sha256sum | cut -c1-16)
OUT=$CACHE/$key

report() {
  if [[ ${1:-} == --dir ]]; then echo "$OUT"; else
    echo "arm64 node:  $OUT (kernel $KVER, $(echo "$versions" | tail -n +2 | tr '\n' ',' | sed 's/,$//; s/,/, /g'))"
  fi
}
if [[ -f $OUT/initrd.cpio && -f $OUT/vmlinuz && -f $OUT/kube.cpio ]]; then touch "$OUT"; report "${1:-}"; exit 0; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ -f $OUT/initrd.cpio && -f $OUT/vmlinuz && -f $OUT/kube.cpio ]]; then touch "$OUT"; report "${1:-}"; exit 0; fi
start=$(date +%s)
log "building $OUT (kernel $KVER)"
work=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
debs=$work/debs
rootfs=$work/root
debs_fetch "$debs" "$SUITE" arm64 "$KPKG=${VER[$KPKG]}" "busybox-static=${VER[busybox-static]}" \
  "containerd=${VER[containerd]}" "runc=${VER[runc]}" "libc6=${VER[libc6]}" \
  "libseccomp2=${VER[libseccomp2]}" >/dev/null
kdebs=$work/kube-debs
kspecs=()
for spec in "${KUBE_PKGS[@]}"; do kspecs+=("${spec%%=*}=${VER[${spec%%=*}]}"); done
debs_fetch "$kdebs" "$SUITE" arm64 "${kspecs[@]}" >/dev/null

# --- the root file system
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,lib,usr/lib,etc/qnode,etc/containerd,var/lib,run,tmp,proc,sys,dev}
cp -a "$debs/bin/busybox" "$rootfs/bin/"
cp -a "$debs/usr/bin/"{containerd,ctr,containerd-shim-runc-v2} "$rootfs/usr/bin/"
cp -a "$debs/usr/sbin/runc" "$rootfs/usr/sbin/"
cp -a "$debs/lib/ld-linux-aarch64.so.1" "$debs/lib/aarch64-linux-gnu" "$rootfs/lib/"
mkdir -p "$rootfs/usr/lib/aarch64-linux-gnu"
cp -a "$debs/usr/lib/aarch64-linux-gnu/"libseccomp.so.2* "$rootfs/usr/lib/aarch64-linux-gnu/"
install -m 0755 "$NODE_SRC/init" "$rootfs/init"
install -m 0644 "$NODE_SRC/containerd.toml" "$rootfs/etc/containerd/config.toml"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
printf '# no name server: the node reaches only addresses on its own subnet\nnameserver 127.0.0.1\n' \
  >"$rootfs/etc/resolv.conf"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
echo "$versions" >"$rootfs/etc/qnode/versions"

# --- kernel modules in dependency order, from each module's depends= (the package has no modules.dep)
mods=$debs/lib/modules/$KVER
[[ -d $mods ]] || die "no modules for $KVER in $KPKG"
declare -A KO=() SEEN=()
while IFS= read -r f; do
  n=${f##*/}
  n=${n%.ko}
  KO[${n//-/_}]=${f#"$mods"/}
done < <(find "$mods/kernel" -name '*.ko')
visit() {
  local n=${1//-/_} dep deps
  [[ -z ${SEEN[$n]:-} ]] || return 0
  SEEN[$n]=1
  if [[ -z ${KO[$n]:-} ]]; then
    grep -q "/${n}.ko\$\|/${n//_/-}.ko\$" "$mods/modules.builtin" || die "module $n: no .ko and not built in"
    return 0
  fi
  deps=$(tr '\0' '\n' <"$mods/${KO[$n]}" | sed -n 's/^depends=//p' | head -1)
  for dep in ${deps//,/ }; do visit "$dep"; done
  order+=("${KO[$n]}")
}
# modules ROOT LIST NAME...: copy the modules NAME and what they need (not loaded by an earlier list)
# under ROOT, and write their load order to ROOT/etc/qnode/LIST
modules() {
  local root=$1 list=$2 ko
  shift 2
  order=()
  for m in "$@"; do visit "$m"; done
  for ko in "${order[@]}"; do
    mkdir -p "$root/lib/modules/$KVER/$(dirname "$ko")"
    cp "$mods/$ko" "$root/lib/modules/$KVER/$ko"
  done
  mkdir -p "$root/etc/qnode"
  printf '%s\n' "${order[@]}" >"$root/etc/qnode/$list"
}
modules "$rootfs" modules "${NODE_MODULES[@]}"
node_order=("${order[@]}")

# --- the Kubernetes layer
kroot=$work/kube-root
mkdir -p "$kroot/usr/lib/cni" "$kroot/usr/sbin" "$kroot/usr/lib/aarch64-linux-gnu" "$kroot/etc/qnode"
for plugin in bridge host-local loopback portmap; do cp -a "$kdebs/usr/lib/cni/$plugin" "$kroot/usr/lib/cni/"; done
cp -a "$kdebs/usr/sbin/xtables-nft-multi" "$kroot/usr/sbin/"
for t in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s xtables-nft-multi "$kroot/usr/sbin/$t"
done
cp -a "$kdebs/usr/lib/aarch64-linux-gnu/." "$kroot/usr/lib/aarch64-linux-gnu/"
modules "$kroot" modules.kube "${KUBE_MODULES[@]}"
kube_order=("${order[@]}")
echo "$kube_versions" >"$kroot/etc/qnode/versions.kube"

# --- pack
mkdir -p "$work/out"
cp "$debs/boot/vmlinuz-$KVER" "$work/out/vmlinuz"
(cd "$rootfs" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
  >"$work/out/initrd.cpio"
(cd "$kroot" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible) \
  >"$work/out/kube.cpio"
{ echo "$versions"; echo "modules ${node_order[*]}"; echo "$kube_versions"; echo "kube modules ${kube_order[*]}"; } \
  >"$work/out/versions"
rm -rf "$OUT"
mv "$work/out" "$OUT"
log "built in $(($(date +%s) - start)) s: $(du -sh "$OUT/initrd.cpio" | cut -f1) initramfs, modules: ${node_order[*]##*/}; Kubernetes layer $(du -sh "$OUT/kube.cpio" | cut -f1)"
# images this script no longer makes, unused for a week (each worktree may have its own)
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -regex '.*/[0-9a-f]\{16\}' -mtime +7 -exec rm -rf {} +
report "${1:-}"

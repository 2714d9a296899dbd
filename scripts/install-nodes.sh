#!/usr/bin/env bash
# install-nodes.sh: what TestNodes (e2e/nodes_test.go) needs beyond scripts/install-tools.sh, fetched as Debian
# packages and unpacked into private folders (these are not installed system-wide; the host's apt sources,
# architectures and binfmt_misc are not touched):
#   .tools/nodes/qemu    Debian 13's static qemu-user 10.x (amd64): Debian 12's 7.2 rejects
#                        prctl(PR_SET_CHILD_SUBREAPER) and emulates no /proc/cpuinfo
#   .tools/nodes/arm64   Debian 12's arm64 containerd, ctr, runc and skopeo, with the arm64 libraries they load
# Idempotent: debs_fetch skips a package already unpacked at its version; the .debs are cached under
# .tools/apt. Pinned to the versions below; prints them. Also installs iproute2 from apt when `ip` is missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/lib/debs.sh"
source "$ROOT/scripts/lib/apt.sh"
DEST=${NODES_TOOLS:-$ROOT/.tools/nodes}

QEMU_PKGS=(qemu-user=1:10.0*)
ARM64_PKGS=(containerd=1.6.20~ds1-1* runc=1.1.5+ds1-1* skopeo=1.9.3+ds1-1*
  libc6 libgcc-s1 libseccomp2 libgpgme11 libassuan0 libgpg-error0 libdevmapper1.02.1 libselinux1
  libpcre2-8-0 libudev1)

# iproute2 (ip netns, veth, bridge) is not in every minimal Debian: install it when missing
apt_ensure install-nodes iproute2

# resolve SUITE ARCH SPEC...: NAME=VERSION for each spec, the version glob matched against the candidate.
resolve() {
  local suite=$1 arch=$2 spec name want have
  shift 2
  for spec in "$@"; do
    name=${spec%%=*}
    have=$(debs_version "$suite" "$arch" "$name")
    want=${spec#*=}
    [[ $spec == *=* ]] || want='*'
    # shellcheck disable=SC2053  # the version part is a glob on purpose
    [[ -n $have && $have == $want ]] || { echo "install-nodes: $name in $suite/$arch is '$have', want $want" >&2; return 1; }
    echo "$name=$have"
  done
}

# have DIR SPEC...: every package is unpacked in DIR at a version its spec allows (the quick path).
have() {
  local dir=$1 spec got
  shift
  for spec in "$@"; do
    got=$(cut -d' ' -f1 "$dir/.debs/${spec%%=*}" 2>/dev/null) || return 1
    # shellcheck disable=SC2053  # the version part is a glob on purpose
    [[ $spec != *=* || $got == ${spec#*=} ]] || return 1
  done
}

if ! have "$DEST/qemu" "${QEMU_PKGS[@]}" || ! have "$DEST/arm64" "${ARM64_PKGS[@]}"; then
  mapfile -t q < <(resolve trixie amd64 "${QEMU_PKGS[@]}")
  mapfile -t a < <(resolve bookworm arm64 "${ARM64_PKGS[@]}")
  ((${#q[@]} == ${#QEMU_PKGS[@]} && ${#a[@]} == ${#ARM64_PKGS[@]})) || exit 1
  debs_fetch "$DEST/qemu" trixie amd64 "${q[@]}" | sed 's/^/install-nodes: unpacked /'
  debs_fetch "$DEST/arm64" bookworm arm64 "${a[@]}" | sed 's/^/install-nodes: unpacked /'
fi

QEMU=$DEST/qemu/usr/bin/qemu-aarch64
ldd "$QEMU" 2>&1 | grep -Eq 'statically linked|not a dynamic executable' ||
  { echo "install-nodes: $QEMU is not a static executable" >&2; exit 1; }
for b in containerd ctr containerd-shim-runc-v2 runc skopeo; do
  [[ -x $DEST/arm64/usr/bin/$b || -x $DEST/arm64/usr/sbin/$b ]] || { echo "install-nodes: no arm64 $b in $DEST/arm64" >&2; exit 1; }
done
echo "qemu-user:   $("$QEMU" --version | head -1) ($QEMU)"
echo "arm64 debs:  $(cd "$DEST/arm64/.debs" && for p in containerd runc skopeo; do printf '%s %s  ' "$p" "$(cut -d' ' -f1 "$p")"; done)"

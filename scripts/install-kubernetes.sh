#!/usr/bin/env bash
# install-kubernetes.sh: build the Kubernetes binaries the cluster tests run, from the Go module
# proxy, at a pinned version, into $ROOT/.tools/kubernetes/<version>/<goarch>/ (git-ignored).
# Idempotent: a second run finds the binaries and does nothing.
# Also what the cluster needs besides (scripts/lib/cluster.sh): etcd from Debian's etcd-server,
# unpacked privately into .tools/kubernetes/etcd/ (no service), and Debian's CNI plugins
# (containernetworking-plugins, /usr/lib/cni) from apt. containerd and runc come with docker.io.
#   KUBE_ARCHES   which GOARCHes to build (default: this machine's). arm64 builds only the kubelet.
# k8s.io/kubernetes's go.mod replaces its 31 staging modules with ./staging/..., which the module
# zip lacks, so the binaries are built from a throw-away module that requires k8s.io/kubernetes and
# replaces each staging module with its published v0.<minor>.<patch>. The -X flags stamp the
# version, or the node reports v0.0.0-master. A cold build takes about 11 minutes on 2 cores, and the
# arm64 kubelet after it about 8 more (472 s measured).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.34.4}
STAGING_VERSION=v0.${KUBE_VERSION#v1.}
KUBE_DIR=$ROOT/.tools/kubernetes/$KUBE_VERSION
HOST_ARCH=$(go env GOHOSTARCH)
read -r -a arches <<<"${KUBE_ARCHES:-$HOST_ARCH}"

# Staging modules of k8s.io/kubernetes v1.34 (its go.mod replace block).
STAGING=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)

want() { # want GOARCH: the commands to build for it
  if [[ $1 == "$HOST_ARCH" ]]; then
    echo kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl
  else
    echo kubelet
  fi
}

have_all() {
  local arch=$1 cmd
  for cmd in $(want "$arch"); do [[ -x $KUBE_DIR/$arch/$cmd ]] || return 1; done
}

ETCD_VERSION="3.4.23*"
CNI_VERSION="1.1.1*"

# --- etcd: Debian's etcd-server for this machine, unpacked privately
source "$ROOT/scripts/lib/debs.sh"
source "$ROOT/scripts/lib/apt.sh"
etcd_dir=$ROOT/.tools/kubernetes/etcd
# shellcheck disable=SC2053  # the version is a glob on purpose
if [[ $("$etcd_dir/usr/bin/etcd" --version 2>/dev/null | awk '/^etcd Version/ {print $3}') != $ETCD_VERSION ]]; then
  echo "install-kubernetes: fetching etcd-server ($ETCD_VERSION) into $etcd_dir"
  debs_fetch "$etcd_dir" bookworm "$(dpkg --print-architecture)" etcd-server >/dev/null
fi

# --- CNI plugins from apt, with no service started; flock: other installs run at the same time
apt_ensure install-kubernetes "containernetworking-plugins=$CNI_VERSION"

todo=()
for arch in "${arches[@]}"; do have_all "$arch" || todo+=("$arch"); done
if ((${#todo[@]} == 0)); then
  echo "install-kubernetes: $KUBE_VERSION present for ${arches[*]}; $("$etcd_dir/usr/bin/etcd" --version | head -1); CNI plugins $(dpkg-query -W -f='${Version}' containernetworking-plugins)"
  exit 0
fi

export GOTOOLCHAIN=local GOFLAGS=-mod=mod
mod=$KUBE_DIR/module
mkdir -p "$mod"
if [[ ! -f $mod/go.sum ]]; then
  echo "install-kubernetes: resolving k8s.io/kubernetes $KUBE_VERSION (downloads ~570 MB of modules the first time)"
  {
    echo "module quinistry.test/kubebuild"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    for m in "${STAGING[@]}"; do echo "	k8s.io/$m => k8s.io/$m $STAGING_VERSION"; done
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'EOF'
//go:build tools

// Package tools names the Kubernetes commands this throw-away module builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
  (cd "$mod" && go mod tidy -e 2>&1 | grep -v '^go: downloading' >&2) || true
  [[ -s $mod/go.sum ]] || { echo "install-kubernetes: go mod tidy failed" >&2; rm -f "$mod/go.sum"; exit 1; }
fi

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
for arch in "${todo[@]}"; do
  cmds=$(want "$arch")
  cold="about 11 minutes"
  [[ $arch == "$HOST_ARCH" ]] || cold="about 8 minutes, after the host's build"
  echo "install-kubernetes: building $KUBE_VERSION for linux/$arch: $cmds ($cold cold on 2 cores, seconds when the Go build cache is warm)"
  start=$(date +%s)
  out=$KUBE_DIR/$arch
  mkdir -p "$out.tmp"
  pkgs=()
  for c in $cmds; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$mod" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "$ldflags" -o "$out.tmp/" "${pkgs[@]}")
  rm -rf "$out" && mv "$out.tmp" "$out"
  echo "install-kubernetes: linux/$arch built in $(($(date +%s) - start)) s"
done
"$KUBE_DIR/$HOST_ARCH/kubelet" --version 2>/dev/null || true

#!/usr/bin/env bash
# Installs what the end-to-end tests need, at pinned versions, and prints their versions.
# Idempotent and quick when all is present; non-interactive (CI runs it as root with no stdin).
#   apt:  docker.io (dockerd 20.10, containerd, runc), qemu-user-static, skopeo, curl, jq, ca-certificates,
#         iproute2 (ip and ss, for the e2e suites)
#   Go:   crane, gotestsum and the OCI conformance test binary, into $ROOT/.tools/bin
#   scripts/install-kubernetes.sh: Kubernetes v1.34.4, etcd, CNI plugins (for e2e-kubernetes.sh), and
#         the arm64 kubelet (for TestArm64VM's cluster step)
# The docker CLI 28 at /usr/local/bin/docker stays first in PATH; docker.io's /usr/bin/docker is an older one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.tools/bin
CRANE_VERSION=v0.22.1
CONFORMANCE_MOD=github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
# name=upstream-version glob (Debian 12); rebuilds and security updates still match
APT_PKGS=(docker.io=20.10.24* qemu-user-static=1:7.2* skopeo=1.9.3* curl=7.88* jq=1.6* openssl=3.0* ca-certificates iproute2
  shellcheck=0.9.0*)

export DEBIAN_FRONTEND=noninteractive GOBIN=$BIN GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$BIN"

# --- apt: only update/install when a package is missing or not at the pinned version
source "$ROOT/scripts/lib/apt.sh"
apt_ensure install-tools "${APT_PKGS[@]}"

# --- crane
if [[ $("$BIN/crane" version 2>/dev/null) != "$CRANE_VERSION" ]]; then
  echo "install-tools: go install crane@$CRANE_VERSION"
  go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" 2>&1 | grep -v '^go: downloading' >&2 || true
  [[ $("$BIN/crane" version 2>/dev/null) == "$CRANE_VERSION" ]] || { echo "install-tools: crane install failed" >&2; exit 1; }
fi

# --- gotestsum: runs every Go test stage of scripts/test.sh (JUnit XML and go test -json under results/)
GOTESTSUM_VERSION=v1.13.0
if [[ $("$BIN/gotestsum" --version 2>/dev/null) != "gotestsum version $GOTESTSUM_VERSION" ]]; then
  echo "install-tools: go install gotestsum@$GOTESTSUM_VERSION"
  go install "gotest.tools/gotestsum@$GOTESTSUM_VERSION" 2>&1 | grep -v '^go: downloading' >&2 || true
  [[ $("$BIN/gotestsum" --version 2>/dev/null) == "gotestsum version $GOTESTSUM_VERSION" ]] || { echo "install-tools: gotestsum install failed" >&2; exit 1; }
fi

# --- CNCF distribution registry: the push target of TestTravel (e2e/) and the baseline of bench.sh
REGISTRY_VERSION=v3.1.2
if ! "$BIN/registry" --version 2>/dev/null | grep -q " $REGISTRY_VERSION"; then
  echo "install-tools: go install registry@$REGISTRY_VERSION"
  go install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION" 2>&1 | grep -v '^go: downloading' >&2 || true
  "$BIN/registry" --version 2>/dev/null | grep -q " $REGISTRY_VERSION" || { echo "install-tools: registry install failed" >&2; exit 1; }
fi

# --- OCI distribution-spec conformance suite, as a test binary built in a throwaway module
if [[ ! -x $BIN/conformance.test ]]; then
  echo "install-tools: building conformance.test ($CONFORMANCE_VERSION)"
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && go mod init conformance-build && go get "$CONFORMANCE_MOD@$CONFORMANCE_VERSION" &&
        go test -c -o "$BIN/conformance.test" "$CONFORMANCE_MOD") >"$tmp.log" 2>&1; then
    cat "$tmp.log" >&2; rm -rf "$tmp" "$tmp.log"
    echo "install-tools: conformance build failed" >&2; exit 1
  fi
  rm -rf "$tmp" "$tmp.log"
fi

"$ROOT/scripts/install-sbom.sh"  # syft, oras, regctl and chromium for TestSbom
"$ROOT/scripts/install-nodes.sh" # arm64 containerd/ctr/skopeo and qemu-user 10.x for e2e-nodes.sh, unpacked privately
# --- the arm64 machine of TestArm64VM: qemu-system-aarch64 and a node image from Debian's arm64 packages
"$ROOT/scripts/install-arm64-node.sh"
# --- Kubernetes v1.34.4 (built from the module proxy for this machine's arch, and the arm64 kubelet
# that TestArm64VM's machine joins the cluster with), etcd and CNI plugins
kube_arches=$(go env GOHOSTARCH)
[[ $kube_arches == arm64 ]] || kube_arches+=" arm64"
KUBE_ARCHES=$kube_arches "$ROOT/scripts/install-kubernetes.sh"

# --- versions (docker resolves to /usr/local/bin/docker, the CLI 28, when present)
DOCKER=/usr/local/bin/docker; [[ -x $DOCKER ]] || DOCKER=docker
echo "docker CLI:  $("$DOCKER" --version) ($DOCKER; first docker in PATH: $(command -v docker))"
echo "dockerd:     $(dockerd --version)"
echo "containerd:  $(containerd --version)"
echo "runc:        $(runc --version | head -1)"
echo "skopeo:      $(skopeo --version)"
echo "qemu:        $(qemu-aarch64-static --version | head -1)"
echo "crane:       $("$BIN/crane" version)"
echo "gotestsum:   $("$BIN/gotestsum" --version)"
echo "shellcheck:  $(shellcheck --version | sed -n 2p)"
echo "registry:    $("$BIN/registry" --version | cut -d' ' -f2-)"
echo "conformance: $(go version -m "$BIN/conformance.test" | awk -v m="$CONFORMANCE_MOD" '$1=="mod" && $2==m {print m"@"$3}')"
echo "curl:        $(curl --version | head -1 | cut -d' ' -f1-2)"
echo "jq:          $(jq --version)"

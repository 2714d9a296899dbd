#!/usr/bin/env bash
# Installs what the end-to-end tests need, at pinned versions, and prints their versions.
# Idempotent and quick when all is present; non-interactive (CI runs it as root with no stdin).
#   apt:  docker.io (dockerd 20.10, containerd, runc), qemu-user-static, skopeo, curl, jq, ca-certificates,
#         iproute2, shellcheck, chromium (headless, TestSbom's page test)
#   Go:   crane, gotestsum, the CNCF registry, syft, oras, regctl, cosign and the OCI conformance test binary,
#         into $ROOT/.tools/bin
#   scripts/install-nodes.sh, install-arm64-node.sh, install-kubernetes.sh: TestNodes' arm64 tools, the
#         arm64 machine, and Kubernetes v1.34.4, etcd, CNI plugins and the arm64 kubelet
# The docker CLI 28 at /usr/local/bin/docker stays first in PATH; docker.io's /usr/bin/docker is an older one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.tools/bin
CONFORMANCE_MOD=github.com/opencontainers/distribution-spec/conformance
CONFORMANCE_VERSION=v0.0.0-20260831232431-97274622c111
# name=upstream-version glob (Debian 12); rebuilds and security updates still match
APT_PKGS=(docker.io=20.10.24* qemu-user-static=1:7.2* skopeo=1.9.3* curl=7.88* jq=1.6* openssl=3.0* ca-certificates iproute2
  shellcheck=0.9.0* chromium=156.* fonts-dejavu-core=2.37*)

export DEBIAN_FRONTEND=noninteractive GOBIN=$BIN GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$BIN"

# --- apt: only update/install when a package is missing or not at the pinned version
source "$ROOT/scripts/lib/apt.sh"
apt_ensure install-tools "${APT_PKGS[@]}"

# go_tool NAME VERSION MODULE/PATH: go install MODULE/PATH@VERSION unless NAME at VERSION is there
# (go version -m reads the module version the binary was built from, whatever its CLI prints)
go_tool() {
  local name=$1 version=$2 pkg=$3
  if [[ -x $BIN/$name ]] && go version -m "$BIN/$name" | awk '$1=="mod"{print $3}' | grep -qx "$version"; then
    return
  fi
  echo "install-tools: go install $pkg@$version"
  go install "$pkg@$version" 2>&1 | grep -v '^go: downloading' >&2 || true
  go version -m "$BIN/$name" 2>/dev/null | awk '$1=="mod"{print $3}' | grep -qx "$version" ||
    { echo "install-tools: $name $version install failed" >&2; exit 1; }
}
go_tool crane v0.22.1 github.com/google/go-containerregistry/cmd/crane
go_tool gotestsum v1.13.0 gotest.tools/gotestsum # runs scripts/test.sh's Go stages (JUnit and JSON in results/)
go_tool registry v3.1.2 github.com/distribution/distribution/v3/cmd/registry # the CNCF registry: push target, bench baseline
go_tool syft v1.57.1 github.com/anchore/syft/cmd/syft # TestSbom: SBOM scanner, and OCI artifact clients
go_tool oras v1.3.6 oras.land/oras/cmd/oras
go_tool regctl v0.11.7 github.com/regclient/regclient/cmd/regctl
go_tool cosign v3.1.3 github.com/sigstore/cosign/v3/cmd/cosign # TestAttest: signs and verifies offline (a long cold build)

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

"$ROOT/scripts/install-nodes.sh" # arm64 containerd/ctr/skopeo and qemu-user 10.x for TestNodes, unpacked privately
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
echo "syft:        $(go version -m "$BIN/syft" | awk '$1=="mod"{print $3}')"
echo "oras:        $("$BIN/oras" version 2>/dev/null | awk '/^Version:/{print $2}')"
echo "regctl:      $("$BIN/regctl" version --format '{{.VCSTag}}' 2>/dev/null)"
echo "cosign:      $(go version -m "$BIN/cosign" | awk '$1=="mod"{print $3}')"
echo "chromium:    $(chromium --version 2>/dev/null)"
echo "gotestsum:   $("$BIN/gotestsum" --version)"
echo "shellcheck:  $(shellcheck --version | sed -n 2p)"
echo "registry:    $("$BIN/registry" --version | cut -d' ' -f2-)"
echo "conformance: $(go version -m "$BIN/conformance.test" | awk -v m="$CONFORMANCE_MOD" '$1=="mod" && $2==m {print m"@"$3}')"
echo "curl:        $(curl --version | head -1 | cut -d' ' -f1-2)"
echo "jq:          $(jq --version)"

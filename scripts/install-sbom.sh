#!/usr/bin/env bash
# Installs what TestSbom (e2e/sbom_test.go) needs, at pinned versions, into $ROOT/.tools/bin, and prints their
# versions. Idempotent: quick when everything is present.
#   Go module proxy: syft (SBOM scanner), oras and regctl (OCI artifact clients)
#   apt: chromium (headless, for the HTML page), under the shared apt lock
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/.tools/bin
SYFT_VERSION=v1.57.1
ORAS_VERSION=v1.3.6
REGCTL_VERSION=v0.11.7
# name=upstream-version glob (Debian 12); security rebuilds still match
APT_PKGS=(chromium=156.* fonts-dejavu-core=2.37*)

export DEBIAN_FRONTEND=noninteractive GOBIN=$BIN GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
mkdir -p "$BIN"

# go_tool NAME VERSION MODULE/PATH: go install MODULE/PATH@VERSION unless NAME at VERSION is there.
# go version -m reads the version the binary was built from, whatever its CLI prints.
go_tool() {
  local name=$1 version=$2 pkg=$3
  if [[ -x $BIN/$name ]] && go version -m "$BIN/$name" | awk '$1=="mod"{print $3}' | grep -qx "$version"; then
    return
  fi
  echo "install-sbom: go install $pkg@$version"
  go install "$pkg@$version" 2>&1 | grep -v '^go: downloading' >&2 || true
  go version -m "$BIN/$name" 2>/dev/null | awk '$1=="mod"{print $3}' | grep -qx "$version" ||
    { echo "install-sbom: $name $version install failed" >&2; exit 1; }
}
go_tool syft "$SYFT_VERSION" github.com/anchore/syft/cmd/syft
go_tool oras "$ORAS_VERSION" oras.land/oras/cmd/oras
go_tool regctl "$REGCTL_VERSION" github.com/regclient/regclient/cmd/regctl

# --- chromium from Debian, without starting any service
source "$ROOT/scripts/lib/apt.sh"
apt_ensure install-sbom "${APT_PKGS[@]}"

# syft built by go install prints no version of its own: go version -m reads the module's
echo "syft:        $(go version -m "$BIN/syft" | awk '$1=="mod"{print $3}')"
echo "oras:        $("$BIN/oras" version 2>/dev/null | awk '/^Version:/{print $2}') ($ORAS_VERSION)"
echo "regctl:      $("$BIN/regctl" version --format '{{.VCSTag}}' 2>/dev/null) ($REGCTL_VERSION)"
echo "chromium:    $(chromium --version 2>/dev/null)"

# shellcheck shell=bash
# Debian packages for other architectures and releases, fetched through a private apt
# configuration and unpacked into a folder: nothing is installed system-wide, the host's apt
# state, architectures and sources are not touched. Source it, then:
#   debs_fetch DEST SUITE ARCH PKG[=VERSION]...
#       download each package (exactly those named: no dependencies are resolved) for ARCH from
#       Debian SUITE (bookworm, trixie, ...) and unpack each with dpkg-deb -x into DEST. The .debs
#       and package lists are cached under $DEBS_CACHE (default $ROOT/.tools/apt), keyed by
#       suite and architecture; a package already unpacked into DEST (by name and version) is
#       skipped. Prints one line per package unpacked: "NAME VERSION ARCH".
#   debs_version SUITE ARCH PKG
#       the candidate version of PKG in SUITE for ARCH.
#   debs_versions SUITE ARCH PKG...
#       "PKG VERSION" for each PKG, from one apt-cache run (each run reads the whole package list);
#       a package SUITE does not have gets the version "none".
# The lists are refreshed when older than a day.

DEBS_MIRROR=${DEBS_MIRROR:-http://deb.debian.org/debian}
DEBS_KEYRING=${DEBS_KEYRING:-/usr/share/keyrings/debian-archive-keyring.gpg}
DEBS_CACHE=${DEBS_CACHE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.tools/apt}

# _debs_apt TOOL SUITE ARCH ARGS...: apt-get or apt-cache with a private configuration for SUITE/ARCH.
_debs_apt() {
  local tool=$1 suite=$2 arch=$3 dir=$DEBS_CACHE/$2-$3
  shift 3
  mkdir -p "$dir/lists/partial" "$dir/archives/partial" "$dir/etc/preferences.d" "$dir/etc/apt.conf.d"
  [[ -f $dir/status ]] || : >"$dir/status"
  if [[ ! -f $dir/etc/sources.list ]]; then
    echo "deb [arch=$arch signed-by=$DEBS_KEYRING] $DEBS_MIRROR $suite main" >"$dir/etc/sources.list"
  fi
  "$tool" -q \
    -o Dir::Etc="$dir/etc" -o Dir::Etc::SourceList="$dir/etc/sources.list" -o Dir::Etc::SourceParts=- \
    -o Dir::Etc::Parts="$dir/etc/apt.conf.d" -o Dir::Etc::PreferencesParts="$dir/etc/preferences.d" \
    -o Dir::State="$dir" -o Dir::State::Lists="$dir/lists" -o Dir::State::status="$dir/status" \
    -o Dir::Cache="$dir" -o Dir::Cache::Archives="$dir/archives" \
    -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= \
    -o APT::Architecture="$arch" -o APT::Architectures::="$arch" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

# _debs_update SUITE ARCH: fetch the package lists unless fresh (under a day old).
_debs_update() {
  local dir=$DEBS_CACHE/$1-$2 stamp
  stamp=$dir/lists/.updated
  if [[ -z $(find "$stamp" -mmin -1440 2>/dev/null) ]]; then
    _debs_apt apt-get "$1" "$2" update >/dev/null || { echo "debs: apt-get update for $1/$2 failed" >&2; return 1; }
    mkdir -p "$dir/lists" && touch "$stamp"
  fi
}

debs_version() {
  _debs_update "$1" "$2" || return 1
  _debs_apt apt-cache "$1" "$2" policy "$3" 2>/dev/null | awk '/Candidate:/ {print $2; exit}'
}

debs_versions() {
  local suite=$1 arch=$2
  shift 2
  _debs_update "$suite" "$arch" || return 1
  _debs_apt apt-cache "$suite" "$arch" policy "$@" 2>/dev/null |
    awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1); sub(/:[a-z0-9]+$/, "", p)} /^  Candidate:/ {print p, ($2 == "(none)" ? "none" : $2)}'
}

debs_fetch() {
  local dest=$1 suite=$2 arch=$3 spec name version deb dir=$DEBS_CACHE/$2-$3
  shift 3
  _debs_update "$suite" "$arch" || return 1
  mkdir -p "$dest/.debs"
  for spec in "$@"; do
    name=${spec%%=*}
    version=${spec#*=}
    [[ $spec == *=* ]] || version=$(debs_version "$suite" "$arch" "$name")
    [[ -n $version ]] || { echo "debs: no package $name in $suite/$arch" >&2; return 1; }
    if [[ $(cat "$dest/.debs/$name" 2>/dev/null) == "$version $arch" ]]; then
      continue
    fi
    deb=$(compgen -G "$dir/archives/${name}_${version//:/%3a}_*.deb" | head -1 || true)
    if [[ -z $deb ]]; then
      (cd "$dir/archives" && _debs_apt apt-get "$suite" "$arch" download "$name=$version" >/dev/null) ||
        { echo "debs: download of $name=$version ($suite/$arch) failed" >&2; return 1; }
      deb=$(compgen -G "$dir/archives/${name}_${version//:/%3a}_*.deb" | head -1 || true)
      [[ -n $deb ]] || { echo "debs: $name=$version downloaded but not found in the cache" >&2; return 1; }
    fi
    dpkg-deb -x "$deb" "$dest" || { echo "debs: cannot unpack $deb" >&2; return 1; }
    echo "$version $arch" >"$dest/.debs/$name"
    echo "$name $version $arch"
  done
}

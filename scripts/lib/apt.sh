# shellcheck shell=bash
# Debian packages from apt for the install scripts. Source it, then:
#   apt_ensure WHO SPEC...
#       install each SPEC (NAME, or NAME=VERSION where VERSION is a glob such as 1.1.1*) that is
#       missing or at another version, and say so on one line that starts with WHO. Every install
#       script takes the same lock, so that they may run at the same time, and no package script
#       starts a service meanwhile (a policy-rc.d that refuses, for the time of the install).
apt_ensure() {
  local who=$1 spec have rc=0 made_policy=
  local policy=/usr/sbin/policy-rc.d lock=/var/lock/quinistry-apt.lock
  local -a missing=()
  shift
  for spec in "$@"; do
    have=$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' "${spec%%=*}" 2>/dev/null || true)
    # shellcheck disable=SC2053  # the version part is a glob on purpose
    if [[ $have != ii* ]] || { [[ $spec == *=* ]] && [[ ${have#ii } != ${spec#*=} ]]; }; then
      missing+=("$spec")
    fi
  done
  ((${#missing[@]})) || return 0
  echo "$who: apt-get install ${missing[*]}"
  # the lock covers the policy file too: another install must not remove it while this one runs
  (
    flock 9 || exit
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    status=$?
    [[ -z $made_policy ]] || rm -f "$policy"
    exit "$status"
  ) 9>"$lock" || rc=$?
  ((rc == 0)) || echo "$who: apt-get install ${missing[*]} failed (exit $rc)" >&2
  return "$rc"
}

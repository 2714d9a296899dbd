# shellcheck shell=bash
# The CNCF distribution registry (.tools/bin/registry) as a push target for end-to-end tests. Source it
# after scripts/lib/quinistry.sh, with $REGAUTH (deploy/internal/regauth, for free ports) and a PIDS
# array (the caller stops them) set, then call:
# reg_start NAME [YAML [SCHEME]]: a CNCF registry on a free port, storage under $Q_TMP/NAME; YAML is
# appended to the config (an auth: section, or indented lines that continue http:); SCHEME is http
# (default) or https; sets REG.
reg_start() {
  local name=$1 auth=${2:-} scheme=${3:-http} port i
  port=$("$REGAUTH" port)
  mkdir -p "$Q_TMP/$name"
  cat >"$Q_TMP/$name/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $Q_TMP/$name/data
http:
  addr: 127.0.0.1:$port
$auth
EOF
  registry serve "$Q_TMP/$name/config.yml" >"$Q_TMP/$name/log" 2>&1 &
  PIDS+=($!)
  REG=127.0.0.1:$port
  for ((i = 0; i < 100; i++)); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' "$scheme://$REG/v2/") =~ ^(200|401)$ ]] && return 0
    sleep 0.1
  done
  echo "reg_start: registry $name did not start:" >&2
  cat "$Q_TMP/$name/log" >&2
  return 1
}

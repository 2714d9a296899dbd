# shellcheck shell=bash
# Throw-away test hosts ("nodes"): network namespaces joined through a bridge that lives in a namespace
# of its own, each node with its own address. Names, subnet and ports are unique per run, so two runs
# (or two suites) never collide; nothing is configured outside the namespaces made here, except the
# /etc/docker/certs.d/HOST:PORT entries dockerd needs, which are removed again. Source it (after
# scripts/lib/quinistry.sh and scripts/lib/dockerd.sh), then:
#   nodes_init                   pick this run's id, subnet and temporary folder ($NODES_TMP); make the switch
#   node_add NAME                a node: namespace, veth to the switch, address NODE_IP[NAME], loopback up
#   node_run NAME CMD...         run CMD with the node's network (nsenter --net, not ip netns exec, so /sys and
#                                the cgroup v1 mounts stay as they are)
#   node_port                    a free-looking port number, unique in this run (20000-59999)
#   node_quinistry NAME QNAME CMD...  start CMD (a quinistry binary and flags) in the node as q_start would
#                                (empty environment plus $Q_ENV): Q_PID[QNAME], logs in $Q_TMP/QNAME.log;
#                                nodes_ready sets Q_ADDR[QNAME]
#   node_dockerd NAME [FLAGS...] start a private dockerd (and its containerd) in the node; NODE_DOCKER[NAME] is
#                                its -H value. FLAGS are added to dockerd's (--insecure-registry ..., say)
#   node_containerd NAME         start a private containerd (the host's) in the node; NODE_CTR[NAME] is its socket
#   node_arm64 NAME              start an arm64 node: a private user and mount namespace in the node with an
#                                aarch64 binfmt_misc registration of its own (qemu-user, flags FP) and Debian's
#                                arm64 containerd in it; NODE_CTR[NAME] is its socket
#   nodes_ready                  wait (NODES_TIMEOUT, default 60 s) until every server and daemon started above
#                                answers; they start in parallel, so start them all, then call this once
#   node_arm64_run NAME CMD...   run CMD (an arm64 executable, ctr or skopeo, say) inside that namespace, with
#                                the node's network; the arm64 libraries come from QEMU_LD_PREFIX
#   node_certs_d HOST:PORT CA    trust CA for HOST:PORT in dockerd (/etc/docker/certs.d/HOST:PORT/ca.crt); fails
#                                when the entry exists already (it is not ours)
#   node_hosts_toml DIR HOST:PORT CA  a containerd hosts directory entry (DIR/HOST:PORT/hosts.toml) trusting CA
#   nodes_ca NAME                a private CA made now: $NODES_TMP/pki/NAME.crt and .key (P-256, one day)
#   nodes_cert CA NAME SAN [START END]  a server key pair signed by CA for SAN ("IP:10.1.2.3", "DNS:x"):
#                                $NODES_TMP/pki/NAME.crt and .key; valid from now for a day, or from START to END
#                                (openssl's YYYYMMDDHHMMSSZ: an expired certificate, say)
#   nodes_teardown               stop everything started here by PID, unmount, delete the namespaces, remove
#                                the certs.d entries and $NODES_TMP. Idempotent: call it from an EXIT trap too
#   nodes_leftovers              print what a teardown left behind (namespace, veth, mount, process, certs.d
#                                entry); status 0 only when nothing is left
# The arm64 tools come from scripts/install-nodes.sh ($NODES_TOOLS, default .tools/nodes).

NODES_TOOLS=${NODES_TOOLS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.tools/nodes}
NODES_ID=
NODES_NET=
NODES_TMP=
NODES_SWITCH=
declare -gA NODE_IP=() NODE_NS=() NODE_DOCKER=() NODE_CTR=() _NODE_CTR_PID=() _NODE_DOCKER_DIR=()
declare -ga _NODES_CERTS=() _NODES_PORTS=() _NODES_MADE_DIRS=() _NODES_WAIT=()
_NODES_NEXT=2

nodes_init() {
  local r i
  # the id: a 15-bit number from the PID and randomness, one to one with the subnet, 10.128.0.0/9 cut in
  # /24s. A run whose switch namespace already exists holds it: take another.
  for ((i = 0; i < 20; i++)); do
    r=$(( ($$ * 7919 + RANDOM) % 32768 ))
    NODES_ID=$(printf 'qn%04x' "$r")
    NODES_NET=10.$((128 + (r >> 8))).$((r & 255))
    NODES_SWITCH=$NODES_ID-sw
    [[ -e /run/netns/$NODES_SWITCH ]] || break
  done
  ip netns add "$NODES_SWITCH" || { NODES_ID=; return 1; }
  NODES_TMP=$(mktemp -d "/tmp/$NODES_ID.XXXX") || return 1
  ip -n "$NODES_SWITCH" link add br0 type bridge &&
    ip -n "$NODES_SWITCH" link set br0 up &&
    ip -n "$NODES_SWITCH" link set lo up
}

node_add() {
  local name=$1 ns=$NODES_ID-$1 n=$_NODES_NEXT
  ip netns add "$ns" || return 1
  NODE_NS[$name]=$ns
  # veth names: at most 15 characters, unique to this run (the id) and node (its number)
  ip link add "${NODES_ID}n$n" netns "$ns" type veth peer name "${NODES_ID}s$n" netns "$NODES_SWITCH" || return 1
  ip -n "$NODES_SWITCH" link set "${NODES_ID}s$n" master br0 up &&
    ip -n "$ns" link set "${NODES_ID}n$n" name eth0 &&
    ip -n "$ns" addr add "$NODES_NET.$n/24" dev eth0 &&
    ip -n "$ns" link set eth0 up &&
    ip -n "$ns" link set lo up || return 1
  # shellcheck disable=SC2034  # for the suites that source this
  NODE_IP[$name]=$NODES_NET.$n
  _NODES_NEXT=$((n + 1))
}

node_run() {
  local ns=${NODE_NS[$1]:?node_run: no node $1}
  shift
  nsenter --net="/run/netns/$ns" "$@"
}

node_port() {
  local p
  while :; do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    [[ " ${_NODES_PORTS[*]} " != *" $p "* ]] && break
  done
  _NODES_PORTS+=("$p")
  echo "$p"
}

node_quinistry() {
  local name=$1 qname=$2 exe
  shift 2
  local -a extra=()
  read -ra extra <<<"${Q_ENV:-}"
  exe=$(command -v "$1") || { echo "node_quinistry: $1 not found" >&2; return 1; }
  shift
  # as q_start does: an empty environment plus the K=V words of $Q_ENV
  nsenter --net="/run/netns/${NODE_NS[$name]:?node_quinistry: no node $name}" env -i "${extra[@]}" "$exe" "$@" \
    >"$Q_TMP/$qname.out" 2>"$Q_TMP/$qname.log" </dev/null &
  Q_PID["$qname"]=$!
  _NODES_WAIT+=("quinistry $qname $! $Q_TMP/$qname.log")
}

node_dockerd() {
  local name=$1 dir=$NODES_TMP/$1-docker pid
  shift
  mkdir -p "$dir"
  # its own configuration file, and in it its own trust key: else dockerd 20.10 writes /etc/docker/key.json
  printf '{"deprecated-key-path": "%s"}\n' "$dir/key.json" >"$dir/daemon.json"
  nsenter --net="/run/netns/${NODE_NS[$name]:?node_dockerd: no node $name}" \
    dockerd --config-file="$dir/daemon.json" --storage-driver="${DOCKERD_STORAGE_DRIVER:-vfs}" --iptables=false --ip6tables=false \
    --bridge=none --ip-masq=false --host="unix://$dir/docker.sock" --data-root="$dir/data" \
    --exec-root="$dir/exec" --pidfile="$dir/dockerd.pid" "$@" >"$dir/dockerd.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/dockerd.ours"
  _NODE_DOCKER_DIR[$name]=$dir
  NODE_DOCKER[$name]=unix://$dir/docker.sock
  _NODES_WAIT+=("dockerd $name $pid $dir/dockerd.log")
}

# _node_containerd_config DIR: a containerd configuration with everything under DIR, the native
# snapshotter only (no mounts left to undo), and no CRI.
_node_containerd_config() {
  cat >"$1/config.toml" <<EOF
version = 2
root = "$1/root"
state = "$1/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$1/containerd.sock"
[ttrpc]
  address = "$1/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$1/opt"
EOF
}

nodes_ready() {
  local w kind name pid log i ok
  for w in "${_NODES_WAIT[@]}"; do
    read -r kind name pid log <<<"$w"
    ok=
    for ((i = 0; i < ${NODES_TIMEOUT:-60} * 10; i++)); do
      if [[ $kind == quinistry ]]; then
        Q_ADDR["$name"]=$(sed -n 's/.*msg=ready addr=\([^ ]*\).*/\1/p' "$log" | head -1)
        [[ -z ${Q_ADDR[$name]} ]] || ok=1
      elif [[ $kind == dockerd ]]; then
        "$DOCKER" -H "${NODE_DOCKER[$name]}" info >/dev/null 2>&1 && ok=1
      else
        [[ -S ${NODE_CTR[$name]} ]] && ok=1
      fi
      [[ -z $ok ]] || break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if [[ -z $ok ]]; then
      echo "nodes_ready: $kind in $name (pid $pid) did not answer; end of $log:" >&2
      grep -v 'module=grpc' "$log" | tail -n 10 >&2
      return 1
    fi
  done
  _NODES_WAIT=()
}

node_containerd() {
  local name=$1 dir=$NODES_TMP/$1-ctrd pid
  mkdir -p "$dir"
  _node_containerd_config "$dir"
  nsenter --net="/run/netns/${NODE_NS[$name]:?node_containerd: no node $name}" \
    containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
  pid=$!
  _NODE_CTR_PID[$name]=$pid
  NODE_CTR[$name]=$dir/containerd.sock
  _NODES_WAIT+=("containerd $name $pid $dir/containerd.log")
}

# The aarch64 ELF header and mask, as binfmt_misc takes them (it decodes the \x escapes itself).
_NODES_AARCH64_MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
_NODES_AARCH64_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

node_arm64() {
  local name=$1 dir=$NODES_TMP/$1-arm64 pid i me qemu=$NODES_TOOLS/qemu/usr/bin/qemu-aarch64
  local arm=$NODES_TOOLS/arm64
  [[ -x $qemu && -x $arm/usr/bin/containerd ]] || { echo "node_arm64: run scripts/install-nodes.sh first" >&2; return 1; }
  mkdir -p "$dir/binfmt"
  _node_containerd_config "$dir"
  mkfifo "$dir/go"
  # A new user namespace (root maps to root, all ids) and mount namespace, in the node's network. Inside:
  # a binfmt_misc instance of its own (kernel >= 6.7), the aarch64 registration, then arm64 containerd.
  # shellcheck disable=SC2016  # expanded by the inner bash
  nsenter --net="/run/netns/${NODE_NS[$name]:?node_arm64: no node $name}" \
    unshare --user --mount --propagation private -- bash -c '
      read -r _ <"$1/go" || exit 1
      mount -t binfmt_misc binfmt_misc "$1/binfmt" || exit 1
      printf "%s\n" ":$2:M::$3:$4:$5:FP" >"$1/binfmt/register" || exit 1
      export QEMU_LD_PREFIX=$6 PATH=$6/usr/bin:$6/usr/sbin:$PATH
      exec "$6/usr/bin/containerd" --config "$1/config.toml"' \
    _ "$dir" "$NODES_ID-aarch64" "$_NODES_AARCH64_MAGIC" "$_NODES_AARCH64_MASK" "$qemu" "$arm" \
    >"$dir/containerd.log" 2>&1 </dev/null &
  pid=$!
  _NODE_CTR_PID[$name]=$pid
  NODE_CTR[$name]=$dir/containerd.sock
  # map all ids once unshare has made the user namespace, then let it go on
  me=$(readlink /proc/self/ns/user)
  for ((i = 0; i < 100; i++)); do
    [[ $(readlink "/proc/$pid/ns/user" 2>/dev/null) != "$me" ]] && break
    sleep 0.02
  done
  echo "0 0 4294967294" >"/proc/$pid/uid_map" && echo "0 0 4294967294" >"/proc/$pid/gid_map" || return 1
  echo >"$dir/go"
  _NODES_WAIT+=("containerd $name $pid $dir/containerd.log")
}

node_arm64_run() {
  local name=$1 pid=${_NODE_CTR_PID[$1]:?node_arm64_run: no arm64 node $1} arm=$NODES_TOOLS/arm64
  shift
  QEMU_LD_PREFIX=$arm PATH=$arm/usr/bin:$arm/usr/sbin:$PATH \
    nsenter --target "$pid" --user --mount --net="/run/netns/${NODE_NS[$name]}" -- "$@"
}

node_certs_d() {
  local d=/etc/docker/certs.d/$1 p
  [[ ! -e $d ]] || { echo "node_certs_d: $d exists already, not ours" >&2; return 1; }
  # remember the folders made here, to remove them when they are empty again
  for p in /etc/docker /etc/docker/certs.d "$d"; do
    [[ -d $p ]] || { mkdir "$p" && _NODES_MADE_DIRS=("$p" "${_NODES_MADE_DIRS[@]}"); } || return 1
  done
  _NODES_CERTS+=("$d")
  cp "$2" "$d/ca.crt"
}

node_hosts_toml() {
  mkdir -p "$1/$2"
  cat >"$1/$2/hosts.toml" <<EOF
server = "https://$2"

[host."https://$2"]
  capabilities = ["pull", "resolve"]
  ca = "$3"
EOF
}

nodes_ca() {
  local d=$NODES_TMP/pki
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "/CN=$NODES_ID test CA $1" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$d/$1.key" -out "$d/$1.crt" 2>/dev/null
}

nodes_cert() {
  local ca=$NODES_TMP/pki/$1 name=$2 san=$3 d=$NODES_TMP/pki/$2.ca when=(-days 1)
  [[ -z ${4:-} ]] || when=(-startdate "$4" -enddate "$5")
  rm -rf "$d" && mkdir -p "$d" && : >"$d/index.txt" && openssl rand -hex 16 >"$d/serial" || return 1
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
    -keyout "$d/new.key" -out "$d/req.csr" 2>/dev/null || return 1
  # openssl ca, because it takes any validity period (openssl x509 -req 3.0 only takes -days)
  printf '%s\n' '[ca]' 'default_ca = test' '[test]' "database = $d/index.txt" "new_certs_dir = $d" "serial = $d/serial" \
    'default_md = sha256' 'policy = any' 'unique_subject = no' 'email_in_dn = no' '[any]' 'commonName = supplied' \
    '[server]' 'basicConstraints = critical,CA:FALSE' 'keyUsage = critical,digitalSignature' \
    'extendedKeyUsage = serverAuth' "subjectAltName = $san" >"$d/ca.cnf"
  openssl ca -batch -notext -config "$d/ca.cnf" -cert "$ca.crt" -keyfile "$ca.key" -extensions server \
    "${when[@]}" -in "$d/req.csr" -out "$d/new.crt" 2>"$d/ca.log" ||
    { cat "$d/ca.log" >&2; return 1; }
  # replace the pair by renames, so a server reloading it never reads half a file
  mv -f "$d/new.key" "$NODES_TMP/pki/$name.key" && mv -f "$d/new.crt" "$NODES_TMP/pki/$name.crt"
}

# _nodes_stop_pid PID: TERM, wait up to 10 s, KILL.
_nodes_stop_pid() {
  local i
  kill -0 "$1" 2>/dev/null || return 0
  kill -TERM "$1" 2>/dev/null
  for ((i = 0; i < 100; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

nodes_teardown() {
  local - n d m
  set +e
  [[ -n $NODES_ID ]] || return 0
  # signal every server and containerd at once, so their shutdowns overlap, then stop each for good
  kill -TERM "${Q_PID[@]}" "${_NODE_CTR_PID[@]}" 2>/dev/null
  q_stop_all
  for n in "${!_NODE_DOCKER_DIR[@]}"; do dockerd_stop "${_NODE_DOCKER_DIR[$n]}"; done
  for n in "${!_NODE_CTR_PID[@]}"; do _nodes_stop_pid "${_NODE_CTR_PID[$n]}"; done
  _NODE_DOCKER_DIR=() _NODE_CTR_PID=()
  for d in "${_NODES_CERTS[@]}"; do rm -rf "$d"; done
  # (another run may have put something there meanwhile: then the folder stays)
  for d in "${_NODES_MADE_DIRS[@]}"; do rmdir "$d" 2>/dev/null; done
  _NODES_CERTS=() _NODES_MADE_DIRS=()
  # anything still mounted under the temporary folder (deepest first), then the namespaces (their veths
  # go with them)
  if [[ -n $NODES_TMP ]]; then
    awk -v d="$NODES_TMP/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" || true
    done
  fi
  for n in $(ip netns list | awk -v p="$NODES_ID-" 'index($1, p) == 1 {print $1}'); do ip netns delete "$n"; done
  [[ -z $NODES_TMP ]] || rm -rf "$NODES_TMP"
}

nodes_leftovers() {
  local - left=() p d
  set +e
  [[ -n $NODES_ID ]] || return 0
  mapfile -t -O 0 left < <(ip netns list | awk -v p="$NODES_ID-" 'index($1, p) == 1 {print "namespace " $1}')
  mapfile -t -O "${#left[@]}" left < <(ip -o link show | awk -v p="$NODES_ID" '$2 ~ p {print "link " $2}')
  mapfile -t -O "${#left[@]}" left < <(awk -v p="$NODES_ID" 'index($5, p) {print "mount " $5}' /proc/self/mountinfo)
  for p in $(pgrep -f -- "$NODES_ID"); do left+=("process $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-100)"); done
  for p in "${Q_PID[@]}" "${_NODE_CTR_PID[@]}"; do kill -0 "$p" 2>/dev/null && left+=("process $p"); done
  for d in /etc/docker/certs.d/"$NODES_NET".*; do [[ -e $d ]] && left+=("certs.d $d"); done
  [[ ! -e $NODES_TMP ]] || left+=("folder $NODES_TMP")
  ((${#left[@]} == 0)) && return 0
  printf '  left: %s\n' "${left[@]}"
  return 1
}

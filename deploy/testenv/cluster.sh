#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for hangar's integration tests.
#
#   deploy/testenv/cluster.sh up [--full]   start; prints `export KUBECONFIG=...` (and more) on stdout
#   deploy/testenv/cluster.sh env           print the same exports for a running cluster
#   deploy/testenv/cluster.sh status        show what runs; exit 0 only if the apiserver is ready
#   deploy/testenv/cluster.sh down          stop everything and delete the state dir
#   deploy/testenv/cluster.sh restart-apiserver [SECONDS]   stop the apiserver, wait, start it again
#
#   up        etcd + kube-apiserver (like controller-runtime's envtest; nothing schedules or runs pods)
#   up --full also kube-controller-manager, kube-scheduler and kwok with one fake Ready node, so a
#             Deployment gets scheduled pods that kwok marks Running/Ready (no containers run)
#   up --node --full plus a real node (kubelet + containerd/runc, CNI, kube-proxy, CoreDNS) in a
#             network namespace of its own, tainted hangar.test/real-node (see node.sh); needs
#             `build.sh --node` and, as root, containerd, runc, socat, the CNI plugins;
#             `kubectl logs/exec/port-forward` work there (the API server's egress, node.sh)
#
# Binaries come from deploy/testenv/build.sh's cache (or HANGAR_TESTENV_BIN).
# State (certs, kubeconfigs, etcd data, logs, pids): ${HANGAR_TESTENV_STATE:-${TMPDIR:-/tmp}/hangar-testenv}
# Everything listens on 127.0.0.1 only, on free ports picked at start.
set -euo pipefail
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

BIN="$TESTENV_BIN"
STATE="${HANGAR_TESTENV_STATE:-${TMPDIR:-/tmp}/hangar-testenv}"
MARK="$STATE/.hangar-testenv"            # only a dir carrying this marker is ever deleted by `down`
COMPONENTS=(kwok kube-scheduler kube-controller-manager kube-apiserver etcd)   # stop order
ADMIN_TOKEN_FILE="$STATE/admin.token"
# shellcheck source=node.sh
source "$TESTENV_DIR/node.sh"

log() { printf '[testenv-cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# refuse a state dir inside the project's work tree (or a non-absolute one)
case "$STATE" in /*) ;; *) die "HANGAR_TESTENV_STATE must be an absolute path: $STATE" ;; esac
ROOT="$(cd "$TESTENV_DIR/../.." && pwd)"
case "$STATE/" in "$ROOT"/*) die "state dir $STATE is inside the work tree $ROOT" ;; esac

pid_of() { [[ -s "$STATE/$1.pid" ]] && cat "$STATE/$1.pid"; }
# alive NAME: the recorded pid runs (not a zombie) and is really our process: its command line
# names $STATE, or it is this script's own child that has not exec'd its program yet (right after
# `start`, a loaded machine can take a while to exec a 100 MB binary; its command line is then
# still this script's). No pipeline: `grep -q` exiting early fails a pipe under pipefail.
alive() {
  local pid stat rest state ppid cmd
  pid="$(pid_of "$1")" || return 1
  stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || return 1
  rest="${stat##*) }"; state="${rest%% *}"; rest="${rest#* }"; ppid="${rest%% *}"
  [[ "$state" != Z && "$state" != X ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"$STATE/"* || "$ppid" == "$$" ]]
}

# free_port: a random TCP port on 127.0.0.1 nobody listens on (and not handed out in this run),
# BELOW the kernel's ephemeral range: a port inside it can be taken as the source port of one of
# the hundreds of client connections (apiserver -> etcd, ...) opened before its listener binds.
USED_PORTS=" "
EPHEMERAL_LOW="$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
PORT_LO=10000; PORT_HI=$(( EPHEMERAL_LOW - 1 ))
(( PORT_HI - PORT_LO >= 1000 )) || { PORT_LO=1025; PORT_HI=$(( EPHEMERAL_LOW - 1 )); }
free_port() {
  local p i
  for i in $(seq 1 200); do
    p=$(( PORT_LO + (RANDOM * 32768 + RANDOM) % (PORT_HI - PORT_LO + 1) ))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then USED_PORTS+="$p "; echo "$p"; return 0; fi
  done
  die "no free port found"
}

# start NAME CMD...: detached (own session, no inherited stdio), pid + log in $STATE
start() {
  local name=$1; shift
  setsid "$@" </dev/null >"$STATE/$name.log" 2>&1 &
  echo $! >"$STATE/$name.pid"
}

# wait_for WHAT SECONDS CMD...: retry CMD until it succeeds
wait_for() {
  local what=$1 t=$2 comp=$3; shift 3
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$comp" ]] && ! alive "$comp"; then
      tail -n 30 "$STATE/$comp.log" >&2 || true
      die "$comp exited while waiting for $what (log: $STATE/$comp.log)"
    fi
    (( SECONDS < end )) || { [[ -n "$comp" ]] && tail -n 30 "$STATE/$comp.log" >&2; die "timeout (${t}s) waiting for $what"; }
    sleep 0.25
  done
}

kc() { "$BIN/kubectl" --kubeconfig="$STATE/kubeconfig" "$@"; }
api_get() { curl -fsS -m 5 --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "$(cat "$STATE/api.url")$1"; }

print_env() {
  echo "export KUBECONFIG=$STATE/kubeconfig"
  echo "export HANGAR_TESTENV_APISERVER=$(cat "$STATE/api.url")"
  echo "export HANGAR_TESTENV_BIN=$BIN"
  echo "export HANGAR_TESTENV_STATE=$STATE"
  echo "export HANGAR_TESTENV_MODE=$(cat "$STATE/mode")"
  if [[ "$(cat "$STATE/mode")" == node ]]; then
    echo "export HANGAR_TESTENV_NODE=$NODE_NAME"
    echo "export HANGAR_TESTENV_NODE_NETNS=$(cat "$STATE/node/netns")"
    echo "export HANGAR_TESTENV_NODE_TAINT=$NODE_TAINT_KEY"
  fi
}

# ---------------------------------------------------------------- PKI
# signed CN O EXT NAME: NAME.crt + NAME.key, signed by the CA (run inside $STATE/pki)
signed() {
  local subj="/CN=$1${2:+/O=$2}"
  openssl req -newkey rsa:2048 -nodes -keyout "$4.key" -out "$4.csr" -subj "$subj" 2>/dev/null
  printf '%s\n' "$3" >"$4.ext"
  openssl x509 -req -in "$4.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$4.crt" -days 3650 \
    -extfile "$4.ext" 2>/dev/null
  rm -f "$4.csr" "$4.ext"
  chmod 600 "$4.key"
}

gen_pki() {
  local d="$STATE/pki"; mkdir -p "$d"; chmod 700 "$d"
  ( cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=hangar-testenv-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    signed kube-apiserver "" $'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment' apiserver
    signed hangar-testenv-admin system:masters $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment' admin
    signed system:kube-controller-manager "" $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment' kcm
    signed system:kube-scheduler "" $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment' scheduler
    # service-account token signing key pair
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
  # static bearer token for the admin too (curl, quick checks); random per cluster
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ADMIN_TOKEN_FILE"
  echo "$(cat "$ADMIN_TOKEN_FILE"),hangar-testenv-admin-token,hangar-testenv-admin-token-uid,system:masters" >"$d/tokens.csv"
  chmod 600 "$ADMIN_TOKEN_FILE" "$d/tokens.csv" "$d"/*.key
}

# write_kubeconfig FILE CERTNAME
write_kubeconfig() {
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: hangar-testenv
  cluster:
    server: $(cat "$STATE/api.url")
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $STATE/pki/$2.crt
    client-key: $STATE/pki/$2.key
contexts:
- name: hangar-testenv
  context: {cluster: hangar-testenv, user: $2, namespace: default}
current-context: hangar-testenv
KC
  chmod 600 "$1"
}

# ---------------------------------------------------------------- up
up() {
  local full=0 node=0
  case "${1:-}" in --full) full=1 ;; --node) full=1; node=1 ;; "") ;; *) die "usage: $0 up [--full|--node]" ;; esac
  if alive kube-apiserver && api_get /readyz >/dev/null 2>&1; then
    local mode; mode="$(cat "$STATE/mode")"
    if [[ $node == 1 && $mode != node ]] || [[ $full == 1 && $mode == minimal ]]; then die "already up in mode '$mode' at $STATE; run '$0 down' first"; fi
    log "already up ($mode) at $STATE"
    print_env; return 0
  fi
  [[ -e "$STATE" ]] && { log "stale state at $STATE: cleaning up"; down; }

  local need=(kube-apiserver etcd kubectl) b
  [[ $full == 1 ]] && need+=(kube-controller-manager kube-scheduler kwok kwok-stages.yaml)
  for b in "${need[@]}"; do [[ -e "$BIN/$b" ]] || die "missing $BIN/$b: run deploy/testenv/build.sh first"; done
  [[ $node == 0 ]] || node_check

  local t0=$SECONDS
  mkdir -p "$STATE"; chmod 700 "$STATE"; : >"$MARK"
  trap 'rc=$?; if [[ $rc != 0 ]]; then log "up failed; logs kept in $STATE (run: $0 down)"; fi' EXIT
  if [[ $node == 1 ]]; then echo node; elif [[ $full == 1 ]]; then echo full; else echo minimal; fi >"$STATE/mode"

  local etcd_port etcd_peer api_port kcm_port sched_port kwok_port
  etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port)
  kcm_port=$(free_port); sched_port=$(free_port); kwok_port=$(free_port)
  echo "https://127.0.0.1:$api_port" >"$STATE/api.url"
  printf 'etcd=%s etcd-peer=%s kube-apiserver=%s kube-controller-manager=%s kube-scheduler=%s kwok=%s\n' \
    "$etcd_port" "$etcd_peer" "$api_port" "$kcm_port" "$sched_port" "$kwok_port" >"$STATE/ports"

  gen_pki
  write_kubeconfig "$STATE/kubeconfig" admin
  write_kubeconfig "$STATE/kcm.kubeconfig" kcm
  write_kubeconfig "$STATE/scheduler.kubeconfig" scheduler

  # --- etcd (no fsync: test data only)
  start etcd "$BIN/etcd" --name=hangar-testenv --data-dir="$STATE/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="hangar-testenv=http://127.0.0.1:$etcd_peer" \
    --unsafe-no-fsync=true --quota-backend-bytes=$((2 * 1024 * 1024 * 1024)) --log-level=warn
  wait_for "etcd /health" 30 etcd curl -fsS -m 2 "http://127.0.0.1:$etcd_port/health"

  # --- kube-apiserver. PodSecurity admission is on by default; ServiceAccount admission only with
  # --full, where kube-controller-manager creates the `default` ServiceAccount of each namespace
  # (envtest disables it the same way, or every pod create would fail on the missing account).
  # with the real node, the `kubernetes` Service points at the node-side API relay (node.sh), the
  # one address of the API server that pods can reach (and its endpoints are written at all:
  # without a node nothing could reach them); node_apiserver_prepare adds the flags of the API
  # server's way to the kubelet (logs, exec, port-forward: its egress into the node's netns)
  local advertise=127.0.0.1 reconciler=none NODE_API_ARGS=()
  [[ $node == 0 ]] || { advertise=$NODE_IP; reconciler=lease; node_apiserver_prepare; }
  local admission=()
  [[ $full == 1 ]] || admission=(--disable-admission-plugins=ServiceAccount)
  local api_cmd=("$BIN/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address="$advertise" --secure-port="$api_port" \
    --endpoint-reconciler-type="$reconciler" \
    --tls-cert-file="$STATE/pki/apiserver.crt" --tls-private-key-file="$STATE/pki/apiserver.key" \
    --client-ca-file="$STATE/pki/ca.crt" --token-auth-file="$STATE/pki/tokens.csv" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --api-audiences=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE/pki/sa.pub" --service-account-signing-key-file="$STATE/pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/16 --allow-privileged=true \
    --authorization-mode=RBAC --anonymous-auth=false \
    "${admission[@]}" "${NODE_API_ARGS[@]}" --profiling=false --v=1)
  # kept for `restart-apiserver`
  printf '%q ' "${api_cmd[@]}" >"$STATE/kube-apiserver.cmd"
  start kube-apiserver "${api_cmd[@]}"
  wait_for "kube-apiserver /readyz" 120 kube-apiserver api_get /readyz

  if [[ $full == 1 ]]; then
    # --node-monitor-grace-period: an API server outage in a fault test keeps kwok from renewing
    # the fake node's lease; past the grace period (default 40-50 s, an outage plus the renew
    # interval can reach it) the node lifecycle controller marks every pod there unready, and
    # kwok never marks them ready again. The test node is never really gone: give it 10 minutes.
    start kube-controller-manager "$BIN/kube-controller-manager" \
      --kubeconfig="$STATE/kcm.kubeconfig" --leader-elect=false \
      --bind-address=127.0.0.1 --secure-port="$kcm_port" \
      --service-account-private-key-file="$STATE/pki/sa.key" --root-ca-file="$STATE/pki/ca.crt" \
      --use-service-account-credentials=true --cluster-name=hangar-testenv \
      --concurrent-deployment-syncs=5 --profiling=false --v=1 \
      --node-monitor-grace-period=600s
    start kube-scheduler "$BIN/kube-scheduler" \
      --kubeconfig="$STATE/scheduler.kubeconfig" --leader-elect=false \
      --bind-address=127.0.0.1 --secure-port="$sched_port" --profiling=false --v=1
    start kwok "$BIN/kwok" --kubeconfig="$STATE/kubeconfig" --config="$BIN/kwok-stages.yaml" \
      --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
      --cidr=10.244.0.0/16 --node-ip=127.0.0.1 --node-lease-duration-seconds=40 \
      --server-address="127.0.0.1:$kwok_port"
    wait_for "kube-controller-manager /healthz" 60 kube-controller-manager curl -fksS -m 2 "https://127.0.0.1:$kcm_port/healthz"
    wait_for "kube-scheduler /healthz" 60 kube-scheduler curl -fksS -m 2 "https://127.0.0.1:$sched_port/healthz"
    wait_for "kwok /healthz" 60 kwok curl -fsS -m 2 "http://127.0.0.1:$kwok_port/healthz"
    # one fake node without taints (kwok's annotation selects it), so any pod can be scheduled there
    kc apply -f - >/dev/null <<'NODE'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
spec: {}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "110"}
  capacity: {cpu: "32", memory: 256Gi, pods: "110"}
NODE
    wait_for "node kwok-node-0 Ready" 60 kwok kc wait --for=condition=Ready node/kwok-node-0 --timeout=5s
    # the ServiceAccount admission plugin needs default/default before the first pod there
    wait_for "serviceaccount default/default" 60 kube-controller-manager kc get serviceaccount default -n default
  fi
  [[ $node == 0 ]] || node_up "$api_port"
  trap - EXIT
  log "up ($(cat "$STATE/mode")) in $((SECONDS - t0)) s; state: $STATE"
  print_env
}

# ---------------------------------------------------------------- down
down() {
  [[ -e "$STATE" ]] || { log "nothing at $STATE"; return 0; }
  [[ -e "$MARK" ]] || die "$STATE has no $MARK marker: not deleting it"
  local c pid
  node_down
  for c in "${COMPONENTS[@]}"; do alive "$c" && kill -TERM "$(pid_of "$c")" 2>/dev/null || true; done
  for _ in $(seq 1 40); do
    local any=0
    for c in "${COMPONENTS[@]}"; do alive "$c" && any=1; done
    [[ $any == 0 ]] && break
    sleep 0.25
  done
  for c in "${COMPONENTS[@]}"; do
    if alive "$c"; then pid="$(pid_of "$c")"; log "$c ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf -- "$STATE"
  log "down: stopped and removed $STATE"
}

# restart-apiserver [SECONDS]: stop kube-apiserver, keep it down SECONDS (default 3), start it again
# with the same flags and wait until it is ready (fault injection for tests; etcd keeps the data)
restart_apiserver() {
  local down_for="${1:-3}" pid cmd
  [[ -s "$STATE/kube-apiserver.cmd" ]] || die "not up (no $STATE/kube-apiserver.cmd)"
  if alive kube-apiserver; then
    pid="$(pid_of kube-apiserver)"; kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do alive kube-apiserver || break; sleep 0.25; done
    alive kube-apiserver && kill -KILL "$pid" 2>/dev/null || true
  fi
  log "kube-apiserver stopped; down for ${down_for}s"
  sleep "$down_for"
  eval "cmd=($(cat "$STATE/kube-apiserver.cmd"))"
  mv -f "$STATE/kube-apiserver.log" "$STATE/kube-apiserver.log.1" 2>/dev/null || true
  start kube-apiserver "${cmd[@]}"
  wait_for "kube-apiserver /readyz" 120 kube-apiserver api_get /readyz
  log "kube-apiserver ready again"
}

status() {
  [[ -e "$MARK" ]] || { echo "not up (no state at $STATE)"; return 1; }
  local c
  echo "state: $STATE  mode: $(cat "$STATE/mode" 2>/dev/null)  ports: $(cat "$STATE/ports" 2>/dev/null)"
  for c in etcd kube-apiserver kube-controller-manager kube-scheduler kwok "${NODE_COMPONENTS[@]}"; do
    if alive "$c"; then echo "  $c: running (pid $(pid_of "$c"))"
    elif [[ -e "$STATE/$c.pid" ]]; then echo "  $c: DEAD (log $STATE/$c.log)"; fi
  done
  if api_get /readyz >/dev/null 2>&1; then echo "  apiserver /readyz: ok ($(cat "$STATE/api.url"))"; return 0
  else echo "  apiserver /readyz: NOT ok"; return 1; fi
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  env) [[ -s "$STATE/api.url" ]] || die "not up (no state at $STATE)"; print_env ;;
  status) status ;;
  restart-apiserver) shift; restart_apiserver "$@" ;;
  *) echo "usage: $0 up [--full|--node] | down | env | status | restart-apiserver [SECONDS]" >&2; exit 2 ;;
esac

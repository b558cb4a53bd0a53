#!/usr/bin/env bash
# Discovery benchmark (issue 5): a catalog of N servers in one ConfigMap, or in one Git repository
# (file://), against the real control plane. Measures
#   - source created -> all N MCPServers applied,
#   - catalog changed (every entry's image) -> all N MCPServers updated,
#   - a no-change refresh: write requests (hangar_api_writes_total) over WINDOW seconds of
#     refreshes every 5 s (goal: 0), and the controller's CPU over that window.
# The controller runs discovery alone (--reconcile-servers=false), so the figures are discovery's.
#
#   eval "$(deploy/testenv/cluster.sh up)"
#   benches/discovery-1000.sh [configmap|git] [N=1000] [WINDOW=30]
#
# Bounded: N servers, gives up after 10 minutes per phase, deletes its namespace at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-configmap}"; N="${2:-1000}"; WINDOW="${3:-30}"
: "${KUBECONFIG:?start the test cluster first: eval \"\$(deploy/testenv/cluster.sh up)\"}"
: "${HANGAR_TESTENV_BIN:?}"
export PATH="$HANGAR_TESTENV_BIN:$PATH"
NS=hangar-dbench-$$
WORK=$(mktemp -d)
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cargo build --release --quiet
HANGAR=target/release/hangar
"$HANGAR" crds | kubectl apply --server-side --field-manager=hangar-crds --force-conflicts -f - >/dev/null
kubectl wait --for=condition=Established crd/mcpdiscoverysources.mcp-hangar.io --timeout=60s >/dev/null
kubectl create namespace "$NS" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
HANGAR_CACHE_DIR="$WORK/cache" "$HANGAR" controller --metrics-addr "127.0.0.1:$port" --namespace "$NS" \
  --reconcile-servers=false 2>/tmp/hangar-dbench-controller.log &
CTL=$!
trap 'kill $CTL 2>/dev/null || true; kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.2; done
metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
cpu() { awk '{print $14 + $15}' "/proc/$CTL/stat"; }
tck=$(getconf CLK_TCK)

catalog() { # $1 = image tag
  echo "servers:"
  for i in $(seq -w 0 $((N - 1))); do
    printf '  - name: s%s\n    image: ghcr.io/example/mcp-bench:%s\n' "$i" "$1"
  done
}
publish() { # $1 = image tag
  if [[ $MODE == git ]]; then
    catalog "$1" >"$WORK/repo/catalog.yaml"
    git -C "$WORK/repo" add -A && git -C "$WORK/repo" commit -qm "tag $1"
  else
    catalog "$1" >"$WORK/providers.yaml"
    kubectl create configmap catalog -n "$NS" --from-file=providers.yaml="$WORK/providers.yaml" \
      --dry-run=client -o yaml | kubectl apply --server-side --field-manager=bench -f - >/dev/null
  fi
}
count() { # servers at image tag $1
  kubectl get mcpservers -n "$NS" -o jsonpath='{range .items[*]}{.spec.image}{"\n"}{end}' | grep -c ":$1\$" || true
}
wait_all() { # $1 = tag
  local deadline=$(( $(date +%s) + 600 ))
  until (( $(count "$1") >= N )); do
    (( $(date +%s) < deadline )) || { log "gave up: $(count "$1")/$N at :$1"; tail -20 /tmp/hangar-dbench-controller.log >&2; exit 1; }
    sleep 0.5
  done
}

if [[ $MODE == git ]]; then
  git init -q -b main "$WORK/repo"
  git -C "$WORK/repo" config user.email bench@example.com; git -C "$WORK/repo" config user.name bench
  SPEC="  type: Git\n  git:\n    url: file://$WORK/repo\n    ref: main"
else
  SPEC="  type: ConfigMap\n  configMapRef:\n    name: catalog"
fi
publish 1.0.0
log "$MODE: source of $N servers"
t0=$(date +%s.%N)
printf "apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPDiscoverySource\nmetadata:\n  name: bench\n  namespace: $NS\nspec:\n$SPEC\n  mode: Authoritative\n  refreshInterval: 5s\n" \
  | kubectl apply --server-side --field-manager=bench -f - >/dev/null
wait_all 1.0.0
t1=$(date +%s.%N)
log "changing every entry"
publish 2.0.0
t2=$(date +%s.%N)
wait_all 2.0.0
t3=$(date +%s.%N)
sleep 6   # let the sync that made the change finish writing its status
w0=$(metric hangar_api_writes_total); r0=$(metric 'mcp_operator_reconcile_total{kind="MCPDiscoverySource"'); c0=$(cpu)
sleep "$WINDOW"
w1=$(metric hangar_api_writes_total); r1=$(metric 'mcp_operator_reconcile_total{kind="MCPDiscoverySource"'); c1=$(cpu)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$CTL/status")
python3 - "$MODE" "$N" "$t0" "$t1" "$t2" "$t3" "$w0" "$w1" "$r0" "$r1" "$c0" "$c1" "$tck" "$hwm" "$WINDOW" <<'PY'
import sys
mode, n, t0, t1, t2, t3, w0, w1, r0, r1, c0, c1, tck, hwm, win = sys.argv[1:]
f = float
print(f"{mode}: {n} servers")
print(f"source created -> all applied: {f(t1)-f(t0):.1f} s")
print(f"catalog changed -> all updated: {f(t3)-f(t2):.1f} s")
print(f"no-change refreshes in {win} s: {int(f(r1)-f(r0))}, write requests: {int(f(w1)-f(w0))}, controller CPU {(f(c1)-f(c0))/f(tck):.2f} s")
print(f"controller peak RSS: {int(hwm)/1024:.0f} MiB")
PY

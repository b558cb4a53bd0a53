#!/usr/bin/env bash
# How many servers one controller keeps checked (issue 4): N remote MCPServers pointing at real
# Python SDK MCP servers on loopback, each probed by the controller every INTERVAL; measures the
# controller's CPU over WINDOW seconds once all are Ready, hence CPU per probe, and what one core
# (or a quarter of one) covers at a 30 s interval.
#
#   eval "$(deploy/testenv/cluster.sh up)"      # the minimal control plane is enough (no pods)
#   deploy/testenv/mcp-servers.sh
#   benches/probe-capacity.sh [N=200] [WINDOW=90] [INTERVAL=30s] [SERVERS=4]
#
# Bounded: N servers, gives up after 10 minutes, deletes its namespace and stops its processes.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200}"; WINDOW="${2:-90}"; INTERVAL="${3:-30s}"; SERVERS="${4:-4}"
: "${KUBECONFIG:?start the test cluster first: eval \"\$(deploy/testenv/cluster.sh up)\"}"
export PATH="${HANGAR_TESTENV_BIN:?}:$PATH"
CACHE="$(deploy/testenv/mcp-servers.sh)"
PY="$CACHE/venv/bin/python"
NS="probe-bench-$$"
log() { printf '[probe-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cargo build --release --quiet
HANGAR=target/release/hangar
"$HANGAR" crds | kubectl apply --server-side --field-manager=hangar-crds --force-conflicts -f - >/dev/null
kubectl wait --for=condition=Established crd/mcpservers.mcp-hangar.io --timeout=60s >/dev/null
kubectl create namespace "$NS" >/dev/null

PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
PORTS=()
for _ in $(seq 1 "$SERVERS"); do
  p=$(freeport)
  "$PY" tests/support/mcp/server.py streamable-http "$p" >/dev/null 2>&1 & PIDS+=($!)
  PORTS+=("$p")
done
for p in "${PORTS[@]}"; do until (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do sleep 0.2; done; done

mport=$(freeport)
"$HANGAR" controller --metrics-addr "127.0.0.1:$mport" --namespace "$NS" --probe-services=false \
  2>/tmp/hangar-probe-bench.log & CTL=$!; PIDS+=("$CTL")
until curl -fsS "http://127.0.0.1:$mport/readyz" >/dev/null 2>&1; do sleep 0.2; done

for i in $(seq -w 0 $((N - 1))); do
  port=${PORTS[$((10#$i % SERVERS))]}
  printf 'apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: r%s\n  namespace: %s\nspec:\n  mode: remote\n  endpoint: http://127.0.0.1:%s/mcp\n  healthCheck:\n    interval: %s\n---\n' "$i" "$NS" "$port" "$INTERVAL"
done >/tmp/hangar-probe-bench.yaml
log "creating $N remote MCPServers on $SERVERS Python SDK servers, interval $INTERVAL"
kubectl apply --server-side --field-manager=bench -f /tmp/hangar-probe-bench.yaml >/dev/null
deadline=$(( $(date +%s) + 600 ))
while :; do
  ready=$(kubectl get mcpservers -n "$NS" -o jsonpath='{range .items[*]}{.status.state}{"\n"}{end}' | grep -c '^Ready$' || true)
  (( ready >= N )) && break
  (( $(date +%s) < deadline )) || { log "gave up: $ready/$N Ready"; exit 1; }
  sleep 2
done
log "all $N Ready; measuring ${WINDOW}s"
cpu() { awk '{print $14 + $15}' "/proc/$CTL/stat"; }
metric() { curl -fsS "http://127.0.0.1:$mport/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
c0=$(cpu); w0=$(metric hangar_api_writes_total); r0=$(metric mcp_operator_reconcile_total)
sleep "$WINDOW"
c1=$(cpu); w1=$(metric hangar_api_writes_total); r1=$(metric mcp_operator_reconcile_total)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$CTL/status")
python3 - "$N" "$WINDOW" "$INTERVAL" "$c0" "$c1" "$(getconf CLK_TCK)" "$r0" "$r1" "$w0" "$w1" "$hwm" <<'PY'
import sys
n, win, interval, c0, c1, tck, r0, r1, w0, w1, hwm = sys.argv[1:]
cpu = (float(c1) - float(c0)) / float(tck)
checks = float(r1) - float(r0)   # every requeue of a remote server is one probe
per = cpu / checks if checks else float("nan")
print(f"servers: {n}, interval {interval}, window {win} s")
print(f"checks in the window: {int(checks)} ({checks / float(win):.1f}/s)")
print(f"controller CPU in the window: {cpu:.2f} s ({100 * cpu / float(win):.1f}% of one core)")
print(f"CPU per check (probe + reconcile): {1000 * per:.2f} ms")
print(f"servers one core keeps checked every 30 s: {30 / per:.0f}; with a quarter core: {7.5 / per:.0f}")
print(f"write requests in the window: {int(float(w1) - float(w0))}")
print(f"controller peak RSS: {int(hwm) / 1024:.0f} MiB")
PY

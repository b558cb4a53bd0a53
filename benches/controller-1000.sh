#!/usr/bin/env bash
# Reconcile benchmark (issue 3): create N MCPServers at once against the real control plane and
# measure
#   - wall time until all N report state Ready (kwok makes their pods Ready),
#   - the controller's CPU time (user+sys) and peak RSS (VmHWM) over the run,
#   - write requests the controller sends at steady state over WINDOW seconds with no changes
#     (its own counter hangar_api_writes_total, which every write goes through; goal: 0).
#
#   eval "$(deploy/testenv/cluster.sh up --full)"
#   benches/controller-1000.sh [N=1000] [WINDOW=60]
#
# Bounded: at most N servers, gives up after 20 minutes, deletes its namespace at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"; WINDOW="${2:-60}"
: "${KUBECONFIG:?start the test cluster first: eval \"\$(deploy/testenv/cluster.sh up --full)\"}"
: "${HANGAR_TESTENV_BIN:?}"
export PATH="$HANGAR_TESTENV_BIN:$PATH"
NS=hangar-bench-$$
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

cargo build --release --quiet
HANGAR=target/release/hangar
"$HANGAR" crds | kubectl apply --server-side --field-manager=hangar-crds --force-conflicts -f - >/dev/null
kubectl wait --for=condition=Established crd/mcpservers.mcp-hangar.io --timeout=60s >/dev/null

# One fake node holds 110 pods: add kwok nodes so N pods fit.
nodes=$(( (N + 99) / 100 ))
for i in $(seq 0 $((nodes - 1))); do
  cat <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-bench-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-bench-$i, kubernetes.io/os: linux, type: kwok}
status:
  allocatable: {cpu: "64", memory: 256Gi, pods: "200"}
  capacity: {cpu: "64", memory: 256Gi, pods: "200"}
---
NODE
done | kubectl apply -f - >/dev/null

kubectl create namespace "$NS" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$HANGAR" controller --metrics-addr "127.0.0.1:$port" --namespace "$NS" --probe-services=false 2>/tmp/hangar-bench-controller.log &
CTL=$!
trap 'kill $CTL 2>/dev/null || true; kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true' EXIT
until curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do sleep 0.2; done
metric() { curl -fsS "http://127.0.0.1:$port/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }
cpu() { awk '{print $14 + $15}' "/proc/$CTL/stat"; }   # clock ticks
tck=$(getconf CLK_TCK)
cpu0=$(cpu)

gen() {
  for i in $(seq -w 0 $((N - 1))); do
    printf 'apiVersion: mcp-hangar.io/v1alpha1\nkind: MCPServer\nmetadata:\n  name: s%s\n  namespace: %s\nspec:\n  mode: container\n  image: ghcr.io/example/mcp-bench:1.0.0\n---\n' "$i" "$NS"
  done
}
# 20 files created by 20 kubectl processes at once: one kubectl alone sends its requests one by one
# (1,000 took 335 s here), which would measure kubectl, not the controller.
rm -rf /tmp/hangar-bench-servers && mkdir -p /tmp/hangar-bench-servers
gen | awk -v d=/tmp/hangar-bench-servers 'BEGIN{n=0} /^apiVersion/{n++} {print > (d "/" (n % 20) ".yaml")}'
log "creating $N MCPServers"
t0=$(date +%s.%N)
pids=()
for f in /tmp/hangar-bench-servers/*.yaml; do kubectl create -f "$f" >/dev/null & pids+=($!); done
wait "${pids[@]}"
t_created=$(date +%s.%N)
deadline=$(( $(date +%s) + 1200 ))
while :; do
  ready=$(kubectl get mcpservers -n "$NS" -o jsonpath='{range .items[*]}{.status.state}{"\n"}{end}' | grep -c '^Ready$' || true)
  (( ready >= N )) && break
  (( $(date +%s) < deadline )) || { log "gave up: $ready/$N Ready after 20 min"; exit 1; }
  sleep 2
done
t_ready=$(date +%s.%N)
cpu1=$(cpu)
log "all $N Ready"

w0=$(metric hangar_api_writes_total)
r0=$(metric 'mcp_operator_reconcile_total')
sleep "$WINDOW"
w1=$(metric hangar_api_writes_total)
r1=$(metric 'mcp_operator_reconcile_total')
cpu2=$(cpu)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$CTL/status")

python3 - "$N" "$t0" "$t_created" "$t_ready" "$cpu0" "$cpu1" "$cpu2" "$tck" "$hwm" "$w0" "$w1" "$r0" "$r1" "$WINDOW" <<'PY'
import sys
n, t0, tc, tr, c0, c1, c2, tck, hwm, w0, w1, r0, r1, win = sys.argv[1:]
f = float
print(f"servers: {n}")
print(f"creating all (20 parallel kubectl create): {f(tc)-f(t0):.1f} s")
print(f"create -> all Ready: {f(tr)-f(t0):.1f} s")
print(f"controller CPU until all Ready: {(f(c1)-f(c0))/f(tck):.1f} s")
print(f"controller CPU in the {win} s steady window: {(f(c2)-f(c1))/f(tck):.2f} s")
print(f"controller peak RSS: {int(hwm)/1024:.0f} MiB")
print(f"write requests in the {win} s steady window: {int(f(w1)-f(w0))} (reconciles: {int(f(r1)-f(r0))})")
PY

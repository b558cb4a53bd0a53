#!/usr/bin/env bash
# End-to-end check of a running `cluster.sh up --full` cluster with kubectl:
#  1. namespace labelled pod-security.kubernetes.io/enforce=restricted
#  2. a restricted-compliant Deployment there: pods scheduled on the kwok node, Ready, availableReplicas
#  3. a privileged pod in that namespace is rejected by PodSecurity admission
#  4. kubectl apply --server-side works (and field managers are recorded)
#  5. a CRD becomes Established and a custom object can be created
#  6. a ServiceAccount token (TokenRequest) authenticates, and RBAC limits it
# Usage: deploy/testenv/smoke.sh   (KUBECONFIG from `cluster.sh env` is used when unset)
# Exit 0 and a final "N passed, 0 failed" line when everything holds.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if [[ -z "${KUBECONFIG:-}" || -z "${HANGAR_TESTENV_BIN:-}" ]]; then eval "$("$HERE/cluster.sh" env)"; fi
K="$HANGAR_TESTENV_BIN/kubectl"
NS="hangar-smoke-$$"
CRD_GROUP="smoke.hangar.test"
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   - $*"; }
bad() { fail=$((fail + 1)); echo "FAIL - $*"; }
cleanup() {
  "$K" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  "$K" delete crd "widgets.$CRD_GROUP" --wait=false >/dev/null 2>&1 || true
  "$K" delete clusterrole "$NS-reader" >/dev/null 2>&1 || true
}
trap cleanup EXIT
t0=$SECONDS

# 1. restricted namespace
"$K" create namespace "$NS" >/dev/null
"$K" label namespace "$NS" pod-security.kubernetes.io/enforce=restricted pod-security.kubernetes.io/enforce-version=latest >/dev/null
[[ "$("$K" get ns "$NS" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" == restricted ]] \
  && ok "namespace $NS enforces restricted" || bad "namespace label"

# 2. restricted-compliant Deployment -> Ready pods through kwok
"$K" -n "$NS" apply -f - >/dev/null <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: web
        image: registry.invalid/hangar/web:1
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        resources: {requests: {cpu: 10m, memory: 16Mi}, limits: {memory: 32Mi}}
EOF
if "$K" -n "$NS" wait --for=condition=Available deployment/web --timeout=90s >/dev/null; then
  ok "deployment web Available"
else bad "deployment web not Available"; "$K" -n "$NS" get deploy,rs,pods -o wide || true; fi
avail="$("$K" -n "$NS" get deployment web -o jsonpath='{.status.availableReplicas}')"
[[ "$avail" == 2 ]] && ok "deployment web availableReplicas=2" || bad "availableReplicas=$avail"
ready="$("$K" -n "$NS" get pods -l app=web -o jsonpath='{range .items[*]}{.spec.nodeName}/{.status.phase}/{.status.conditions[?(@.type=="Ready")].status}{" "}{end}')"
[[ "$ready" == "kwok-node-0/Running/True kwok-node-0/Running/True " ]] && ok "pods on kwok-node-0 Running+Ready: $ready" || bad "pods: $ready"

# 3. privileged pod rejected by PodSecurity admission
if out="$("$K" -n "$NS" run priv --image=registry.invalid/x:1 --restart=Never \
      --overrides='{"spec":{"containers":[{"name":"priv","image":"registry.invalid/x:1","securityContext":{"privileged":true}}]}}' 2>&1)"; then
  bad "privileged pod was admitted: $out"
else
  [[ "$out" == *"violates PodSecurity \"restricted:latest\""* && "$out" == *privileged* ]] \
    && ok "privileged pod rejected: $(echo "$out" | head -c 160)..." || bad "unexpected error: $out"
fi

# 4. server-side apply
"$K" -n "$NS" apply --server-side --field-manager=hangar-smoke -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {a: "1"}
EOF
"$K" -n "$NS" apply --server-side --field-manager=hangar-smoke -f - >/dev/null <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {a: "2", b: "3"}
EOF
mgr="$("$K" -n "$NS" get cm ssa --show-managed-fields -o jsonpath='{.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}')"
val="$("$K" -n "$NS" get cm ssa -o jsonpath='{.data.a}{.data.b}')"
[[ "$mgr" == hangar-smoke/Apply && "$val" == 23 ]] && ok "server-side apply (manager $mgr, data a+b=$val)" || bad "ssa: $mgr $val"
# a conflicting manager must be refused without --force-conflicts
if "$K" -n "$NS" apply --server-side --field-manager=other -f - >/dev/null 2>&1 <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata: {name: ssa}
data: {a: "9"}
EOF
then bad "ssa conflict not detected"; else ok "server-side apply conflict detected for a second manager"; fi

# 5. CRD Established + custom object
"$K" apply --server-side -f - >/dev/null <<EOF
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.$CRD_GROUP}
spec:
  group: $CRD_GROUP
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer, minimum: 1}}}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
EOF
if "$K" wait --for=condition=Established "crd/widgets.$CRD_GROUP" --timeout=30s >/dev/null; then ok "CRD widgets.$CRD_GROUP Established"; else bad "CRD not Established"; fi
for _ in $(seq 1 40); do "$K" api-resources --api-group="$CRD_GROUP" 2>/dev/null | grep -q widgets && break; sleep 0.25; done
printf 'apiVersion: %s/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n' "$CRD_GROUP" | "$K" -n "$NS" apply --server-side -f - >/dev/null \
  && ok "custom object Widget/w1 created" || bad "custom object"
if printf 'apiVersion: %s/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0}\n' "$CRD_GROUP" | "$K" -n "$NS" apply --server-side -f - >/dev/null 2>&1; then
  bad "schema validation did not reject size=0"; else ok "CRD schema validation rejects size=0"; fi

# 6. ServiceAccount token + RBAC
"$K" -n "$NS" create serviceaccount ctrl >/dev/null
"$K" create clusterrole "$NS-reader" --verb=get,list,watch --resource=configmaps >/dev/null
"$K" -n "$NS" create rolebinding ctrl-reader --clusterrole="$NS-reader" --serviceaccount="$NS:ctrl" >/dev/null
tok="$("$K" -n "$NS" create token ctrl --duration=10m)"
SA=("$K" --kubeconfig=/dev/null --server="$HANGAR_TESTENV_APISERVER" --certificate-authority="$HANGAR_TESTENV_STATE/pki/ca.crt" --token="$tok")
who="$("${SA[@]}" auth whoami -o jsonpath='{.status.userInfo.username}' 2>&1 || true)"
[[ "$who" == "system:serviceaccount:$NS:ctrl" ]] && ok "SA token authenticates as $who" || bad "whoami: $who"
"${SA[@]}" -n "$NS" get configmap ssa >/dev/null 2>&1 && ok "SA can get configmaps (RoleBinding)" || bad "SA get configmap"
if "${SA[@]}" -n "$NS" get secrets >/dev/null 2>&1; then bad "SA could list secrets"; else ok "SA forbidden to list secrets (RBAC)"; fi

echo "smoke took $((SECONDS - t0)) s"
echo "smoke: $pass passed, $fail failed"
[[ $fail == 0 ]]

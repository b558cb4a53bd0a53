# The real test node of `cluster.sh up --node` (sourced by cluster.sh, not executed): a kubelet with
# containerd + runc, CNI bridge + host-local, kube-proxy (iptables) and CoreDNS, all inside a network
# namespace of its own, so that pod, node and Service addresses exist only there.
#
#   root netns                       node netns $NODE_NS
#   127.0.0.1:API  kube-apiserver <- socat <- $STATE/node/api.sock <- socat 0.0.0.0:API <- kubelet,
#                                                                     kube-proxy, CoreDNS, pods
#   (pods reach the API at the `kubernetes` Service: 10.0.0.1:443 -> 10.245.0.1:API, the apiserver's
#   --advertise-address in this mode)
#   kube-apiserver -> $STATE/node/egress.sock -> socat + egress-connect.sh -> kubelet 10.245.0.1:10250
#   (the apiserver's EgressSelectorConfiguration: its `cluster` traffic, i.e. to kubelets, pods and
#   Services, is HTTP CONNECT over that unix socket, served from inside the node's netns; so
#   `kubectl logs/exec/port-forward` work. TLS both ways: the kubelet's serving cert and the
#   apiserver's client cert come from the cluster's CA; the kubelet authorizes it by webhook
#   (SubjectAccessReview), RBAC binding system:kubelet-api-admin)
#
# Pods: 10.245.0.0/24 on bridge hgr0 (10.245.0.1 is the node). Services: 10.0.0.0/16, DNS 10.0.0.10.
# The node is tainted hangar.test/real-node=true:NoSchedule, so that only pods that tolerate it
# (the real-node tests) land there; everything else stays on kwok's fake node.
# Images: no registry is reachable; deploy/image/build.sh builds them and loads them here.
# `down` removes every process (by the netns's pid list), mount, cgroup and the netns it made.

NODE_NAME=hangar-node-0
NODE_IP=10.245.0.1
NODE_POD_CIDR=10.245.0.0/24
NODE_DNS_IP=10.0.0.10
NODE_TAINT_KEY=hangar.test/real-node
NODE_COMPONENTS=(api-egress kube-proxy kubelet coredns containerd api-relay-node api-relay-root)   # stop order
NODE_KUBELET_USER=kube-apiserver-kubelet-client   # the apiserver's identity at the kubelet

# the netns and cgroup names, unique per state dir
node_id() { printf '%s' "$STATE" | sha256sum | cut -c1-8; }
NODE_NS="hangar-$(node_id)"
NODE_CGROUP="hangar-node-$(node_id)"
in_node() { nsenter --net="/run/netns/$NODE_NS" "$@"; }
ctr_node() { ctr --address "$STATE/node/containerd/containerd.sock" -n k8s.io "$@"; }

node_check() {
  local t missing=()
  for t in containerd runc ctr socat nsenter iptables ip mmdebstrap umoci gcc; do command -v "$t" >/dev/null || missing+=("$t"); done
  for t in bridge host-local loopback; do [[ -x /usr/lib/cni/$t ]] || missing+=("containernetworking-plugins(/usr/lib/cni/$t)"); done
  [[ ${#missing[@]} == 0 ]] || die "the real node needs: ${missing[*]} (apt-get install containerd runc socat containernetworking-plugins iptables mmdebstrap umoci)"
  for t in kubelet kube-proxy "coredns-$COREDNS_VERSION"; do
    [[ -x "$BIN/$t" ]] || die "missing $BIN/$t: run deploy/testenv/build.sh --node first"
  done
}

# cgroup v1 here: kubelet's cgroupRoot must exist in every hierarchy (cpuset seeded from its parent)
node_cgroups() {
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ "$h" == */unified/ ]] && continue
    mkdir -p "$h$NODE_CGROUP"
  done
  if [[ -d /sys/fs/cgroup/cpuset/$NODE_CGROUP ]]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/$NODE_CGROUP/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/$NODE_CGROUP/cpuset.mems"
  fi
}

# node_apiserver_prepare (before the API server starts): the kubelet's serving cert and the API
# server's client cert for it, its egress config; sets NODE_API_ARGS (the caller's) to its flags.
# InternalIP first: the default prefers the Hostname address, which resolves nowhere.
node_apiserver_prepare() {
  local d="$STATE/node"
  mkdir -p "$d"
  ( cd "$STATE/pki"
    signed "$NODE_NAME" "" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME"$'\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment' kubelet-serving
    signed "$NODE_KUBELET_USER" "" $'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment' apiserver-kubelet-client
  )
  cat >"$d/egress.yaml" <<EOF
apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport: {uds: {udsName: $d/egress.sock}}
EOF
  NODE_API_ARGS=(--egress-selector-config-file="$d/egress.yaml" --kubelet-preferred-address-types=InternalIP,Hostname
    --kubelet-certificate-authority="$STATE/pki/ca.crt"
    --kubelet-client-certificate="$STATE/pki/apiserver-kubelet-client.crt" --kubelet-client-key="$STATE/pki/apiserver-kubelet-client.key")
}

node_up() {
  local api_port=$1
  node_check
  local d="$STATE/node"
  mkdir -p "$d"/{containerd,cni,ipam,kubelet,logs}
  echo "$NODE_NS" >"$d/netns"

  # --- the node's network namespace: loopback, the pod bridge with the node's address, a route for
  # Service addresses (kube-proxy DNATs them in OUTPUT/PREROUTING), forwarding for bridged pods
  ip netns add "$NODE_NS"
  ip -n "$NODE_NS" link set lo up
  ip -n "$NODE_NS" link add hgr0 type bridge
  ip -n "$NODE_NS" addr add "$NODE_IP/24" dev hgr0
  ip -n "$NODE_NS" link set hgr0 up
  ip -n "$NODE_NS" route add 10.0.0.0/16 dev hgr0 src "$NODE_IP"
  in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  # what `ip netns exec $NODE_NS` mounts over /etc/resolv.conf: a process run so (the tests'
  # controller) resolves NAME.NS.svc like a pod
  mkdir -p "/etc/netns/$NODE_NS"
  printf 'nameserver %s\nsearch svc.cluster.local cluster.local\noptions ndots:5\n' "$NODE_DNS_IP" >"/etc/netns/$NODE_NS/resolv.conf"

  # --- the API server, reached from the node's netns through a unix socket (no address crosses)
  start api-relay-root socat "UNIX-LISTEN:$d/api.sock,fork,mode=600" "TCP:127.0.0.1:$api_port"
  wait_for "api relay socket" 10 api-relay-root test -S "$d/api.sock"
  start api-relay-node nsenter --net="/run/netns/$NODE_NS" socat "TCP-LISTEN:$api_port,fork,reuseaddr" "UNIX-CONNECT:$d/api.sock"
  wait_for "api relay in the node netns" 10 api-relay-node in_node curl -fsS -m 2 --cacert "$STATE/pki/ca.crt" \
    -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "https://127.0.0.1:$api_port/readyz"
  # --- the other way: the API server's egress (egress.yaml) to the kubelet, pods and Services
  start api-egress nsenter --net="/run/netns/$NODE_NS" socat "UNIX-LISTEN:$d/egress.sock,fork,mode=600" "EXEC:$TESTENV_DIR/egress-connect.sh"
  wait_for "api egress socket" 10 api-egress test -S "$d/egress.sock"

  # --- containerd (Debian's 1.6) with runc; restrict_oom_score_adj: this machine gives root no
  # CAP_SYS_RESOURCE, so the sandbox's oom_score_adj -998 cannot be written
  cat >"$d/containerd/config.toml" <<EOF
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$d/containerd/containerd.sock"
[ttrpc]
  address = "$d/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "hangar.test/pause:1"
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
EOF
  cat >"$d/cni/10-hangar.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "hangar-node", "plugins": [
  {"type": "bridge", "bridge": "hgr0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$d/ipam"}}]}
EOF
  start containerd nsenter --net="/run/netns/$NODE_NS" containerd --config "$d/containerd/config.toml"
  wait_for "containerd" 30 containerd ctr_node version

  # --- images (built from Debian packages, cached; see deploy/image/build.sh)
  "$TESTENV_DIR/../image/build.sh" --load "$d/containerd/containerd.sock" ${HANGAR_NODE_IMAGES:-pause mcp-python mcp-everything} \
    >"$d/images" 2>"$d/logs/images.log" || { tail -n 20 "$d/logs/images.log" >&2; die "building the node's images failed"; }

  # --- kubelet. The admin's credentials (RBAC only here, no Node authorizer); cgroupfs on cgroup v1
  # (failCgroupV1: false, kubelet >= 1.35 refuses v1 otherwise); no eviction on a full-ish disk;
  # image GC off (the images cannot be pulled again)
  node_cgroups
  printf 'nameserver %s\n' "$NODE_DNS_IP" >"$d/resolv.conf"
  local kubelet_healthz kp_healthz kp_metrics dns_ready
  kubelet_healthz=$(free_port); kp_healthz=$(free_port); kp_metrics=$(free_port); dns_ready=$(free_port)
  cat >"$d/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
containerRuntimeEndpoint: unix://$d/containerd/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
tlsCertFile: $STATE/pki/kubelet-serving.crt
tlsPrivateKeyFile: $STATE/pki/kubelet-serving.key
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: $STATE/pki/ca.crt}}
authorization: {mode: Webhook}
clusterDNS: [$NODE_DNS_IP]
clusterDomain: cluster.local
resolvConf: $d/resolv.conf
failSwapOn: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
registerWithTaints: [{key: $NODE_TAINT_KEY, value: "true", effect: NoSchedule}]
serializeImagePulls: false
EOF
  # the API server's client cert may use the kubelet API (logs, exec, ...; the kubelet asks by
  # SubjectAccessReview)
  kc create clusterrolebinding hangar-testenv:apiserver-kubelet --clusterrole=system:kubelet-api-admin \
    --user="$NODE_KUBELET_USER" >/dev/null
  start kubelet nsenter --net="/run/netns/$NODE_NS" "$BIN/kubelet" --config="$d/kubelet.yaml" \
    --kubeconfig="$STATE/kubeconfig" --root-dir="$d/kubelet" --hostname-override="$NODE_NAME" \
    --node-ip="$NODE_IP" --v=1

  # --- kube-proxy (iptables, in the node's netns only)
  cat >"$d/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $STATE/kubeconfig}
hostnameOverride: $NODE_NAME
clusterCIDR: $NODE_POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:$kp_healthz
metricsBindAddress: 127.0.0.1:$kp_metrics
nodePortAddresses: [primary]
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start kube-proxy nsenter --net="/run/netns/$NODE_NS" "$BIN/kube-proxy" --config="$d/kube-proxy.yaml" --v=1

  # --- CoreDNS on the node's address, answering cluster.local from the API; the kube-dns Service
  # (10.0.0.10) points at it with a hand-made EndpointSlice (it runs as a process, not a pod)
  cat >"$d/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $STATE/kubeconfig hangar-testenv
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
    ready 127.0.0.1:$dns_ready
}
EOF
  start coredns nsenter --net="/run/netns/$NODE_NS" "$BIN/coredns-$COREDNS_VERSION" -conf "$d/Corefile"
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $NODE_DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: 53}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: hangar-testenv}
addressType: IPv4
endpoints: [{addresses: ["$NODE_IP"], conditions: {ready: true}}]
ports:
- {name: dns, port: 53, protocol: UDP}
- {name: dns-tcp, port: 53, protocol: TCP}
EOF

  wait_for "node $NODE_NAME Ready" 120 kubelet kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
  wait_for "kube-proxy /healthz" 60 kube-proxy in_node curl -fsS -m 2 "http://127.0.0.1:$kp_healthz/healthz"
  wait_for "CoreDNS /ready" 60 coredns in_node curl -fsS -m 2 "http://127.0.0.1:$dns_ready/ready"
  # the kubelet API as `kubectl logs/exec` reach it: API server -> egress -> kubelet (TLS, authz)
  wait_for "the kubelet through the API server's egress" 30 api-egress kc get --raw "/api/v1/nodes/$NODE_NAME/proxy/healthz"
}

# the containers' processes: in the kubelet's cgroup tree (they live in the pods' netns, not the node's)
node_cgroup_pids() { find /sys/fs/cgroup -path "*/$NODE_CGROUP/*" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u; }

# node_down: every process of the node (its components, containerd's shims in the node's netns, the
# containers in the kubelet's cgroups), then the mounts under the state dir, the netns, the cgroups
node_down() {
  local d="$STATE/node" ns pid c m
  [[ -d "$d" ]] || return 0
  ns="$(cat "$d/netns" 2>/dev/null || echo "$NODE_NS")"
  for c in "${NODE_COMPONENTS[@]}"; do alive "$c" && kill -TERM "$(pid_of "$c")" 2>/dev/null || true; done
  sleep 1
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local left=()
    [[ -e "/run/netns/$ns" ]] && left+=($(ip netns pids "$ns" 2>/dev/null))
    left+=($(node_cgroup_pids))
    for c in "${NODE_COMPONENTS[@]}"; do alive "$c" && left+=("$(pid_of "$c")"); done
    [[ ${#left[@]} == 0 ]] && break
    for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    sleep 0.5
  done
  # deepest first; a lazy unmount for what a dying process still holds
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done \
    < <(awk -v p="$d/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r)
  rm -rf -- "/etc/netns/$ns"
  if [[ -e "/run/netns/$ns" ]]; then ip netns del "$ns" 2>/dev/null || log "could not delete netns $ns"; fi
  for _ in 1 2 3 4 5; do
    find /sys/fs/cgroup -depth -type d -path "*/$NODE_CGROUP*" -exec rmdir {} \; 2>/dev/null || true
    compgen -G "/sys/fs/cgroup/*/$NODE_CGROUP" >/dev/null || break
    sleep 0.5
  done
  compgen -G "/sys/fs/cgroup/*/$NODE_CGROUP" >/dev/null && log "cgroups /sys/fs/cgroup/*/$NODE_CGROUP still busy"
  return 0
}

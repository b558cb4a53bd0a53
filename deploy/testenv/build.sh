#!/usr/bin/env bash
# Build the real control-plane binaries for hangar's integration tests from Go modules and cache
# them OUTSIDE the work tree. Idempotent: anything already in the cache is skipped.
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl <- k8s.io/kubernetes   (tools/k8s)
#   etcd, etcdctl                                                     <- go.etcd.io/etcd/...  (tools/etcd)
#   kwok (+ kwok-stages.yaml)                                         <- sigs.k8s.io/kwok     (tools/kwok)
#   helm                                                              <- helm.sh/helm/v3      (tools/helm)
#
# Versions live only in tools/*/go.mod; go.sum there pins every module hash (commit both).
# Cache: ${HANGAR_TESTENV_CACHE:-$HOME/.cache/hangar-testenv}/<version-key>/bin
#   kubelet, kube-proxy (with --node)                                 <- k8s.io/kubernetes   (tools/k8s)
#   coredns-<version> (with --node)                                   <- github.com/coredns/coredns (tools/coredns/main.go: only the plugins node.sh uses)
#
# Usage: deploy/testenv/build.sh [--print-bin] [--node]
#   --print-bin: only print the bin dir, build nothing;  --node: also the real node's binaries
# Env:   HANGAR_TESTENV_CACHE  cache root;  HANGAR_TESTENV_GO_P  go build -p (default 2)
#        GOSUMDB               default off here (checksum DB unreachable; go.sum is the pin)
set -euo pipefail
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"

if [[ "${1:-}" == "--print-bin" ]]; then echo "$TESTENV_BIN"; exit 0; fi
NODE=0
[[ "${1:-}" == "--node" ]] && NODE=1

export GOTOOLCHAIN=local      # never download another Go toolchain
export CGO_ENABLED=0          # static binaries, like upstream release builds
export GOSUMDB="${GOSUMDB:-off}"
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly -p=${HANGAR_TESTENV_GO_P:-2}"
NICE=(nice -n "${HANGAR_TESTENV_NICE:-10}")

mkdir -p "$TESTENV_BIN"
# one build per cache dir at a time (two checkouts / CI + developer on the same machine)
exec 9>"$TESTENV_OUT/.lock"
flock 9

log() { printf '[testenv-build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
have() { local b; for b in "$@"; do [[ -x "$TESTENV_BIN/$b" ]] || return 1; done; }

# ensure_sum DIR: make sure tools/DIR/go.mod+go.sum are complete for the `tool` packages
# (first run after a version bump); with a committed go.sum this only checks.
ensure_sum() {
  local d="$TESTENV_TOOLS/$1" pkgs="${2:-tool}"
  if [[ ! -s "$d/go.sum" ]] || ! ( cd "$d" && go list -deps "$pkgs" >/dev/null 2>&1 ); then
    log "$1: go.sum missing or incomplete -> go mod tidy (commit tools/$1/go.mod and go.sum afterwards)"
    ( cd "$d" && GOFLAGS="-mod=mod" "${NICE[@]}" go mod tidy )
  fi
}

# gobuild DIR NAME=PKG...  builds each PKG as NAME into a temp dir, then moves them into the
# cache in one step, so an interrupted build never leaves a half-written binary behind.
gobuild() {
  local dir=$1 ldflags=$2; shift 2
  local tmp; tmp="$(mktemp -d "$TESTENV_OUT/tmp.XXXXXX")"
  local pkgs=() pair
  for pair in "$@"; do pkgs+=("${pair#*=}"); done
  local t0=$SECONDS
  local same=1
  for pair in "$@"; do [[ "${pair%%=*}" == "${pair##*/}" ]] || same=0; done
  if [[ $# -gt 1 && $same == 1 ]]; then
    # one go build for several commands: shared packages are compiled once
    ( cd "$TESTENV_TOOLS/$dir" && "${NICE[@]}" go build -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}" )
  else
    for pair in "$@"; do
      ( cd "$TESTENV_TOOLS/$dir" && "${NICE[@]}" go build -ldflags "$ldflags" -o "$tmp/${pair%%=*}" "${pair#*=}" )
    done
  fi
  for pair in "$@"; do mv -f "$tmp/${pair%%=*}" "$TESTENV_BIN/${pair%%=*}"; done
  rmdir "$tmp"
  log "$dir: built $(printf '%s ' "${@%%=*}")in $((SECONDS - t0)) s"
  echo "$dir $((SECONDS - t0))s $(date -u +%FT%TZ)" >>"$TESTENV_OUT/build-times.txt"
}

k8s_ldflags() {  # version stamping, same variables as kubernetes' hack/lib/version.sh
  local minor="${K8S_VERSION#v1.}" p out="-s -w"
  minor="${minor%%.*}"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    out+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$out"
}

log "cache: $TESTENV_OUT"
total0=$SECONDS

if have kube-apiserver kube-controller-manager kube-scheduler kubectl; then
  log "k8s $K8S_VERSION: cached"
else
  ensure_sum k8s
  log "k8s $K8S_VERSION: building kube-apiserver kube-controller-manager kube-scheduler kubectl (cold: tens of minutes)"
  gobuild k8s "$(k8s_ldflags)" \
    kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
    kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
    kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
    kubectl=k8s.io/kubernetes/cmd/kubectl
fi

if have etcd etcdctl; then
  log "etcd $ETCD_VERSION: cached"
else
  ensure_sum etcd
  # package main of go.etcd.io/etcd/server/v3 would be named "server" by go build: name it etcd
  gobuild etcd "-s -w" etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3
fi

if have kwok; then
  log "kwok $KWOK_VERSION: cached"
else
  ensure_sum kwok
  gobuild kwok "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" \
    kwok=sigs.k8s.io/kwok/cmd/kwok
fi

if have helm; then
  log "helm $HELM_VERSION: cached"
else
  ensure_sum helm
  gobuild helm "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
    helm=helm.sh/helm/v3/cmd/helm
fi

if [[ $NODE == 1 ]]; then
  if have kubelet kube-proxy; then
    log "kubelet, kube-proxy $K8S_VERSION: cached"
  else
    ensure_sum k8s
    gobuild k8s "$(k8s_ldflags)" kubelet=k8s.io/kubernetes/cmd/kubelet kube-proxy=k8s.io/kubernetes/cmd/kube-proxy
  fi
  if have "coredns-$COREDNS_VERSION"; then
    log "coredns $COREDNS_VERSION: cached"
  else
    ensure_sum coredns .
    gobuild coredns "-s -w" "coredns-$COREDNS_VERSION=."
  fi
fi

# kwok Stage definitions (upstream's "fast" node/pod stages + node heartbeat with leases), taken
# from the same kwok module version; cluster.sh --full passes this file to kwok --config.
if [[ ! -s "$TESTENV_BIN/kwok-stages.yaml" ]]; then
  src="$(cd "$TESTENV_TOOLS/kwok" && go mod download -json sigs.k8s.io/kwok | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')/kustomize/stage"
  tmpf="$(mktemp "$TESTENV_OUT/tmp.XXXXXX")"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    printf -- '---\n# from sigs.k8s.io/kwok@%s kustomize/stage/%s\n' "$KWOK_VERSION" "$f"
    sed '/^---[[:space:]]*$/d' "$src/$f"
  done >"$tmpf"
  chmod 644 "$tmpf"; mv -f "$tmpf" "$TESTENV_BIN/kwok-stages.yaml"
  log "kwok-stages.yaml written"
fi

log "done in $((SECONDS - total0)) s"
"$TESTENV_BIN/kube-apiserver" --version >&2
"$TESTENV_BIN/kubectl" version --client >&2 2>/dev/null || true
"$TESTENV_BIN/etcd" --version 2>&1 | sed -n 1p >&2   # sed reads to the end: no SIGPIPE under pipefail
"$TESTENV_BIN/kwok" --version >&2 2>/dev/null || true
"$TESTENV_BIN/helm" version --short >&2
echo "$TESTENV_BIN"

# Shared by build.sh and cluster.sh (sourced, not executed).
# Derives the cache key from the wrapper modules' go.mod files, so bumping a version there
# automatically selects (and builds) a new cache directory.
TESTENV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TESTENV_TOOLS="$TESTENV_DIR/tools"
TESTENV_REV=1   # bump when build flags change in a way that must invalidate cached binaries

# modver DIR MODULE -> the version DIR/go.mod requires for MODULE
modver() {
  sed -n "s#^[[:space:]]*\(require[[:space:]]\{1,\}\)\{0,1\}$2[[:space:]]\{1,\}\(v[^[:space:]]*\).*#\2#p" \
    "$TESTENV_TOOLS/$1/go.mod" | head -n1
}
K8S_VERSION="$(modver k8s k8s.io/kubernetes)"
ETCD_VERSION="$(modver etcd go.etcd.io/etcd/server/v3)"
KWOK_VERSION="$(modver kwok sigs.k8s.io/kwok)"
HELM_VERSION="$(modver helm helm.sh/helm/v3)"
# the real node's DNS; not part of the cache key (its binary carries the version in its name), so
# adding the node to a cached control plane builds only the node's parts
COREDNS_VERSION="$(modver coredns github.com/coredns/coredns)"
for _v in COREDNS_VERSION K8S_VERSION ETCD_VERSION KWOK_VERSION HELM_VERSION; do
  [[ -n "${!_v}" ]] || { echo "testenv: cannot read $_v from $TESTENV_TOOLS/*/go.mod" >&2; exit 1; }
done
# The go version is part of the key (static binaries embed the runtime); fall back to "go-unknown"
# so that cluster.sh still works where only the cache, not the toolchain, is present.
TESTENV_GO="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || echo go-unknown)"
TESTENV_KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_${TESTENV_GO}_r${TESTENV_REV}"
TESTENV_CACHE_ROOT="${HANGAR_TESTENV_CACHE:-${HOME}/.cache/hangar-testenv}"
TESTENV_OUT="$TESTENV_CACHE_ROOT/$TESTENV_KEY"
TESTENV_BIN="${HANGAR_TESTENV_BIN:-$TESTENV_OUT/bin}"

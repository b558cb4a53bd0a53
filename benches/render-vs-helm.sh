#!/usr/bin/env bash
# `hangar render` against `helm template` of an equivalent plain chart, side by side.
#
# The chart (benches/render-vs-helm/) renders what hangar renders for the generated MCPServers
# (benches/render.rs): each MCPServer with its defaults written out, and for container servers a
# ServiceAccount, a Deployment with a config hash (sha256 of the spec), a Service, a
# NetworkPolicy, HPA and PDB where enabled; each group and its Service. Its values are the same
# servers (values-of.py, PyYAML). The two are run alternately RUNS times each, to the same
# /dev/null; medians of wall and user+sys CPU time, and the ratios, are printed.
#
# Usage: benches/render-vs-helm.sh [RUNS] [SERVERS]   (default 5 runs, 10000 servers)
# Env:   HANGAR_BENCH_DIR  where inputs go (default /tmp/hangar-bench)
#        HELM              the helm binary (default: `helm` on PATH, else the test environment's,
#                          deploy/testenv/build.sh)
#        BIN               the hangar binary (default target/release/hangar, built unless
#                          SKIP_BUILD=1)
#        BASE              a second hangar binary, run in the same alternation (e.g. an older build)
# Needs: /usr/bin/time (Debian package `time`), python3 with PyYAML.
set -euo pipefail

cd "$(dirname "$0")/.."
runs=${1:-5}
n=${2:-10000}
dir=${HANGAR_BENCH_DIR:-/tmp/hangar-bench}
bin=${BIN:-target/release/hangar}
chart=benches/render-vs-helm

if [[ ! -x /usr/bin/time ]]; then
    echo "error: /usr/bin/time is missing (apt-get install time)" >&2
    exit 2
fi
helm=${HELM:-$(command -v helm || true)}
if [[ -z $helm ]]; then
    # shellcheck source=../deploy/testenv/lib.sh
    source deploy/testenv/lib.sh
    helm=$TESTENV_BIN/helm
fi
if [[ ! -x $helm ]]; then
    echo "error: no helm: put it on PATH, set HELM, or run deploy/testenv/build.sh" >&2
    exit 2
fi
if [[ ${SKIP_BUILD:-0} != 1 && -z ${BIN:-} ]]; then
    cargo build --release --bin hangar >&2
fi
input="$dir/servers-$n.yaml"
if [[ ! -s $input ]]; then
    HANGAR_BENCH_GEN="$dir" cargo bench --bench render >&2
fi
values="$dir/values-$n.json"
if [[ ! -s $values || $values -ot $input ]]; then
    python3 "$chart/values-of.py" <"$input" >"$values"
fi
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
export HELM_CACHE_HOME=$home/cache HELM_CONFIG_HOME=$home/config HELM_DATA_HOME=$home/data

echo "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "hangar:  $bin ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ', src dirty'))"
echo "helm:    $helm ($("$helm" version --short 2>/dev/null))"
hangar_docs=$("$bin" render "$input" | grep -c '^kind:')
helm_docs=$("$helm" template bench "$chart" -f "$values" -f "$chart/defaults.yaml" | grep -c '^kind:')
echo "objects: hangar $hangar_docs, helm $helm_docs ($n servers)"

# run NAME CMD...: one timed run, appended to NAME's lists.
declare -A wall cpu
run() {
    local name=$1
    shift
    local stats
    # %e wall seconds, %U user, %S sys, %x exit status.
    stats=$(/usr/bin/time -f '%e %U %S %x' "$@" 2>&1 >/dev/null | tail -1)
    read -r w u s code <<<"$stats"
    if [[ $code != 0 ]]; then
        echo "error: $name exited $code" >&2
        exit 1
    fi
    wall[$name]+="$w "
    cpu[$name]+="$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }') "
}
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

names=(hangar helm)
[[ -n ${BASE:-} ]] && names=(base hangar helm)
for ((r = 0; r < runs; r++)); do
    [[ -n ${BASE:-} ]] && run base "$BASE" render "$input"
    run hangar "$bin" render "$input"
    run helm "$helm" template bench "$chart" -f "$values" -f "$chart/defaults.yaml"
done
printf '%-7s %14s %16s   %s\n' "" median_wall_s median_cpu_s "runs (wall / user+sys)"
for name in "${names[@]}"; do
    printf '%-7s %14s %16s   %s/ %s\n' "$name" "$(median <<<"${wall[$name]}")" "$(median <<<"${cpu[$name]}")" "${wall[$name]}" "${cpu[$name]}"
done
awk -v hw="$(median <<<"${wall[helm]}")" -v hc="$(median <<<"${cpu[helm]}")" \
    -v w="$(median <<<"${wall[hangar]}")" -v c="$(median <<<"${cpu[hangar]}")" \
    'BEGIN { printf "helm / hangar: %.0fx wall, %.0fx CPU (medians)\n", hw / w, hc / c }'

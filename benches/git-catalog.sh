#!/usr/bin/env bash
# The fetch + compile part of "a catalog of 1,000 servers from one Git repo: time from change to
# all MCPServers applied": `hangar render --catalog git+URL` (the same fetch the controller's Git
# source calls) against a repository made here and served by `git daemon` on loopback.
#
# Median wall time over RUNS runs of:
#   local    `hangar render ns.yaml --catalog DIR`   (compile only: the baseline)
#   cold     the same catalog from git://, empty cache (clone, depth 1)
#   warm     again, nothing changed (ref listing only; the commit is in the cache)
#   change   after a new commit that changes one entry (listing + an incremental shallow fetch)
#   file     from file:// with a warm cache
#
# Usage: benches/git-catalog.sh [RUNS]     (default 5)
# Env:   SERVERS        catalog size (default 1000)
#        HANGAR_BENCH_DIR  scratch dir (default /tmp/hangar-bench-git)
#        BIN            the hangar binary (default: build and use target/release/hangar)
set -euo pipefail

cd "$(dirname "$0")/.."
runs=${1:-5}
n=${SERVERS:-1000}
dir=${HANGAR_BENCH_DIR:-/tmp/hangar-bench-git}

if [[ -z ${BIN:-} ]]; then
    cargo build --release --bin hangar >&2
    BIN=target/release/hangar
fi
bin=$(realpath "$BIN")

rm -rf "$dir"
mkdir -p "$dir/work/catalogs"
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
g() { git -c user.name=bench -c user.email=bench@example.com -c init.defaultBranch=main "$@"; }

# 1,000 servers in 10 files: image, env, resources, labels (like a team catalog).
per=$(((n + 9) / 10))
for ((f = 0; f < 10; f++)); do
    {
        echo "servers:"
        for ((i = f * per; i < (f + 1) * per && i < n; i++)); do
            cat <<EOF
  - name: tools-$i
    namespace: team-$((i % 10))
    image: ghcr.io/example/mcp-tools-$((i % 50)):1.$((i % 7)).0
    labels:
      mcp-hangar.io/category: tools
    env:
      - name: TEAM
        value: team-$((i % 10))
      - name: LOG_LEVEL
        value: info
    resources:
      requests: {cpu: 50m, memory: 64Mi}
      limits: {cpu: 500m, memory: 256Mi}
EOF
        done
    } >"$dir/work/catalogs/team-$f.yaml"
done
for ((t = 0; t < 10; t++)); do
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-%d\n---\n' "$t"
done >"$dir/ns.yaml"

g init -q --bare "$dir/catalog.git"
g -C "$dir/work" init -q
g -C "$dir/work" add -A
g -C "$dir/work" commit -q -m catalog
g -C "$dir/work" push -q "$dir/catalog.git" HEAD:main

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
git daemon --base-path="$dir" --export-all --reuseaddr --listen=127.0.0.1 --port="$port" "$dir" 2>"$dir/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

export HANGAR_CACHE_DIR="$dir/cache"
url="git+git://127.0.0.1:$port/catalog.git#main:catalogs"

# Prints the wall time of one run in microseconds; fails if hangar fails. The fetch's own time
# (hangar's debug log line `git fetch ... ms=N`) is appended to $dir/fetch-ms.
one() {
    local start end
    start=$(date +%s%N)
    HANGAR_LOG=hangar::source::git=debug NO_COLOR=1 "$bin" render "$dir/ns.yaml" "$@" >/dev/null 2>"$dir/stderr" || {
        cat "$dir/stderr" >&2
        exit 1
    }
    end=$(date +%s%N)
    sed 's/\x1b\[[0-9;]*m//g' "$dir/stderr" | grep -o 'git fetch.* ms=[0-9]*' | grep -o '[0-9]*$' >>"$dir/fetch-ms" || true
    echo $(((end - start) / 1000))
}

median() { sort -n | sed -n "$(((runs + 1) / 2))p"; }

declare -A result fetch
measure() {
    local name=$1 prepare=$2
    shift 2
    local walls=()
    : >"$dir/fetch-ms"
    for ((r = 0; r < runs; r++)); do
        $prepare
        walls+=("$(one "$@")")
    done
    result[$name]=$(printf '%s\n' "${walls[@]}" | median)
    fetch[$name]=$( (cat "$dir/fetch-ms"; echo) | grep . | median || true)
}

nothing() { :; }
cold() { rm -rf "$HANGAR_CACHE_DIR"; }
commit_change() {
    sed -i "0,/image: ghcr.io\/example\/mcp-tools-0:[0-9.]*/s//image: ghcr.io\/example\/mcp-tools-0:9.$RANDOM.0/" "$dir/work/catalogs/team-0.yaml"
    g -C "$dir/work" commit -q -am change
    g -C "$dir/work" push -q "$dir/catalog.git" HEAD:main
}

objects=$("$bin" render "$dir/ns.yaml" --catalog "$dir/work/catalogs" | grep -c '^kind:')
measure local nothing --catalog "$dir/work/catalogs"
measure cold cold --catalog "$url"
measure warm nothing --catalog "$url"
measure change commit_change --catalog "$url"
one --catalog "git+file://$dir/catalog.git#main:catalogs" >/dev/null
measure file nothing --catalog "git+file://$dir/catalog.git#main:catalogs"

echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "binary:  $bin ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo "catalog: $n servers in 10 files ($(du -sk "$dir/work/catalogs" | cut -f1) KiB) -> $objects objects; $runs runs, median"
printf '%-7s %10s %12s %10s\n' case wall_s over_local fetch_s
for k in local cold warm change file; do
    awk -v k="$k" -v us="${result[$k]}" -v base="${result[local]}" -v f="${fetch[$k]:-}" \
        'BEGIN { printf "%-7s %10.3f %+12.3f %10s\n", k, us / 1e6, (us - base) / 1e6, f == "" ? "-" : sprintf("%.3f", f / 1e3) }'
done

#!/usr/bin/env bash
# End-to-end `hangar render FILE > /dev/null`: median wall time and max peak RSS over RUNS runs
# for generated inputs of 1,000 / 10,000 / 100,000 MCPServers.
#
# Usage: benches/render-cli.sh [RUNS]        (default 5)
# Env:   HANGAR_BENCH_DIR  where inputs go (default /tmp/hangar-bench)
#        SIZES             space-separated sizes (default "1000 10000 100000")
#        SKIP_BUILD=1      use the existing target/release/hangar
# Needs: /usr/bin/time (Debian package `time`).
set -euo pipefail

cd "$(dirname "$0")/.."
runs=${1:-5}
dir=${HANGAR_BENCH_DIR:-/tmp/hangar-bench}
sizes=${SIZES:-"1000 10000 100000"}

if [[ ! -x /usr/bin/time ]]; then
    echo "error: /usr/bin/time is missing (apt-get install time)" >&2
    exit 2
fi

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --bin hangar >&2
fi
# The generator lives in the bench (same inputs as the criterion benchmarks); this mode writes
# the files and exits without measuring.
HANGAR_BENCH_GEN="$dir" cargo bench --bench render >&2

bin=target/release/hangar
echo "machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "binary:  $bin ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src 2>/dev/null || echo ', src dirty'))"
printf '%-8s %10s %12s %12s %12s  %s\n' servers input_MB median_s min_s max_s max_rss_MB
for n in $sizes; do
    file="$dir/servers-$n.yaml"
    walls=()
    rss_max=0
    for ((r = 0; r < runs; r++)); do
        start=$(date +%s%N)
        # %M: peak resident set size in KiB; %x: exit status.
        stats=$(/usr/bin/time -f '%M %x' "$bin" render "$file" 2>&1 >/dev/null | tail -1)
        end=$(date +%s%N)
        read -r rss code <<<"$stats"
        if [[ $code != 0 ]]; then
            echo "error: hangar render $file exited $code" >&2
            exit 1
        fi
        walls+=("$(((end - start) / 1000))") # microseconds
        ((rss > rss_max)) && rss_max=$rss
    done
    sorted=$(printf '%s\n' "${walls[@]}" | sort -n)
    median=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
    min=$(head -1 <<<"$sorted")
    max=$(tail -1 <<<"$sorted")
    size=$(stat -c %s "$file")
    awk -v n="$n" -v sz="$size" -v med="$median" -v mn="$min" -v mx="$max" -v rss="$rss_max" \
        'BEGIN { printf "%-8s %10.1f %12.3f %12.3f %12.3f  %.1f\n", n, sz / 1e6, med / 1e6, mn / 1e6, mx / 1e6, rss / 1024 }'
done

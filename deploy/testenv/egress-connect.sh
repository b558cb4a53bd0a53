#!/usr/bin/env bash
# One connection of the API server's egress into the real node's network namespace (node.sh).
# The kube-apiserver's EgressSelectorConfiguration sends its `cluster` traffic (to the kubelet:
# logs, exec, port-forward; pods/proxy, services/proxy) as HTTP CONNECT over the unix socket
# $STATE/node/egress.sock. socat, running inside the node's netns, starts this script for each
# connection, on its stdin/stdout. It reads `CONNECT IPv4:PORT HTTP/1.1` and the headers, connects
# to that address from inside the node's netns (the only addresses it can reach), answers 200 (502
# when the connect fails, 400 on anything else) and relays the bytes.
set -u
IFS= read -r line || exit 1
line=${line%$'\r'}
read -r method target _ <<<"$line"
if [[ "$method" != CONNECT || ! "$target" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}:[0-9]{1,5}$ ]]; then
  printf 'HTTP/1.1 400 Bad Request\r\n\r\n'
  exit 1
fi
# the headers (the API server sends only Host), up to the empty line; bash reads a socket a byte
# at a time, so nothing after them is consumed
while IFS= read -r h; do [[ -z "${h%$'\r'}" ]] && break; done
if ! exec 3<>"/dev/tcp/${target%:*}/${target##*:}"; then
  printf 'HTTP/1.1 502 Bad Gateway\r\n\r\n'
  exit 1
fi
printf 'HTTP/1.1 200 Connection established\r\n\r\n'
exec socat - FD:3

#!/usr/bin/env bash
# The one-machine demo: no cluster, no API server. Builds `multus`, makes a network namespace standing for a pod,
# and runs `multus` as a container runtime would (CNI ADD) with two delegates from Debian's reference plugins:
# eth0 from `bridge` (the pod's primary network) and net1 from `macvlan` on a veth made as master (the user
# guide's macvlan-conf: 192.168.1.0/24, .200 to .216, a default route via .1), both with host-local IPAM.
# It prints the result and the pod's interfaces, then DELs and removes everything (unless --keep).
#   scripts/demo.sh           run and clean up
#   scripts/demo.sh --keep    leave the namespace "multus-demo" for inspection (scripts/demo.sh --clean removes it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\n== %s\n' "$*"; }
[ "$(id -u)" -eq 0 ] || { echo "run as root: the demo makes a network namespace and links" >&2; exit 1; }

NS=multus-demo; MASTER=mdemo0; BR=mdemo-br
WORK=/tmp/multus-demo
cleanup() {
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$MASTER" 2>/dev/null || true
    ip link del "$BR" 2>/dev/null || true
    rm -rf "$WORK"
}
if [ "${1:-}" = --clean ]; then cleanup; exit 0; fi

need=()
for p in containernetworking-plugins iproute2; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"; apt-get update -qq; apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p multus-cni
BIN=$PWD/target/release/multus

cleanup
mkdir -p "$WORK"
ip netns add "$NS"
ip -n "$NS" link set lo up
ip link add "$MASTER" type veth peer name "${MASTER}p"
ip link set "$MASTER" up; ip link set "${MASTER}p" up

cat > "$WORK/00-multus.conf" <<JSON
{
  "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
  "binDir": "/usr/lib/cni", "cniDir": "$WORK/cache", "logLevel": "verbose", "logFile": "$WORK/multus.log",
  "delegates": [
    { "cniVersion": "1.0.0", "name": "pod-network", "type": "bridge", "bridge": "$BR",
      "ipam": { "type": "host-local", "subnet": "10.244.7.0/24", "dataDir": "$WORK/ipam" } },
    { "cniVersion": "0.3.0", "name": "macvlan-conf", "type": "macvlan", "master": "$MASTER", "mode": "bridge",
      "ipam": { "type": "host-local", "subnet": "192.168.1.0/24", "rangeStart": "192.168.1.200",
                "rangeEnd": "192.168.1.216", "routes": [ { "dst": "0.0.0.0/0" } ], "gateway": "192.168.1.1",
                "dataDir": "$WORK/ipam" } }
  ]
}
JSON
run() {
    CNI_COMMAND=$1 CNI_CONTAINERID=demo-pod CNI_NETNS=/var/run/netns/$NS CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
        "$BIN" < "$WORK/00-multus.conf"
}
say "multus config ($WORK/00-multus.conf)"; cat "$WORK/00-multus.conf"
say "CNI ADD through multus: the result returned to the runtime (the default network's)"
run ADD
say "interfaces in the pod (ip -n $NS addr)"
ip -n "$NS" addr
say "ip -n $NS route"
ip -n "$NS" route
say "CNI CHECK"; run CHECK && echo "CHECK: ok"
say "host-local reservations"; find "$WORK/ipam" -type f | sort
if [ "${1:-}" = --keep ]; then
    say "kept: ip netns exec $NS ip a; remove with scripts/demo.sh --clean"
    exit 0
fi
say "CNI DEL"; run DEL && echo "DEL: ok"
say "interfaces after DEL"; ip -n "$NS" -br link
say "reservations after DEL"; find "$WORK/ipam" -type f -regex '.*/[0-9.]*' | sort; echo "(none)"
cleanup

#!/usr/bin/env bash
# The one-machine demo: no cluster, no API server. Installs what it needs (Debian's reference CNI plugins,
# iproute2), builds `multus`, and runs `multus demo`: the user guide's example (deploy/examples/: the
# macvlan-conf NAD and sample-pod) attached through the meta-plugin's own code to a network namespace
# standing for the pod (eth0 from the bridge plugin, built in, net1 macvlan on a veth the demo makes as
# master), the network-status annotation as `kubectl describe pod` shows it, `ip a show dev net1` inside,
# CHECK, DEL, and a look that nothing is left.
#   scripts/demo.sh           run and clean up
#   scripts/demo.sh --keep    leave it for inspection (scripts/demo.sh --clean removes it)
#   scripts/demo.sh --help    the other options (--master, --nad, --pod)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root: the demo makes a network namespace and links" >&2; exit 1; }

need=()
for p in containernetworking-plugins iproute2; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"; apt-get update -qq; apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release -q -p multus-cni
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/multus
exec "$BIN" demo --nad deploy/examples/macvlan-conf.yaml --pod deploy/examples/sample-pod.yaml "$@"

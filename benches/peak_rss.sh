#!/usr/bin/env bash
# Peak RSS (GNU time's %M) of one CNI call: VERSION, and macvlan + host-local ADD into a fresh netns on a veth
# master, for a plugin binary (ours run as `macvlan` through a symlink, or the reference one). Root.
#   benches/peak_rss.sh [BIN] [RUNS]      default BIN: target/release/multus, RUNS 5
set -euo pipefail
BIN=${1:-target/release/multus}; RUNS=${2:-5}
BIN=$(readlink -f "$BIN")
[ -x /usr/bin/time ] || apt-get install -y -qq time >/dev/null
D=$(mktemp -d); ln -s "$BIN" "$D/macvlan"
M=rss$$; ip link add "$M" type veth peer name "${M}p"; ip link set "$M" up
trap 'ip link del "$M" 2>/dev/null; rm -rf "$D"' EXIT
conf() { printf '{"cniVersion":"1.0.0","name":"rss","type":"macvlan","master":"%s","ipam":{"type":"host-local","subnet":"10.123.0.0/24","dataDir":"%s/ipam","routes":[{"dst":"0.0.0.0/0"}]}}' "$M" "$D"; }
v=(); a=()
for i in $(seq "$RUNS"); do
    v+=("$(echo '{}' | CNI_COMMAND=VERSION /usr/bin/time -f %M "$D/macvlan" 2>&1 >/dev/null | tail -1)")
    ns=rssns$$-$i; ip netns add "$ns"
    a+=("$(conf | CNI_COMMAND=ADD CNI_CONTAINERID=c$i CNI_NETNS=/var/run/netns/$ns CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni \
        /usr/bin/time -f %M "$D/macvlan" 2>&1 >/dev/null | tail -1)")
    conf | CNI_COMMAND=DEL CNI_CONTAINERID=c$i CNI_NETNS=/var/run/netns/$ns CNI_IFNAME=net1 CNI_PATH=/usr/lib/cni "$D/macvlan" >/dev/null
    ip netns del "$ns"
done
med() { printf '%s\n' "$@" | sort -n | awk '{x[NR]=$1} END{print x[int((NR+1)/2)]}'; }
echo "$BIN: VERSION median $(med "${v[@]}") KiB, macvlan+host-local ADD median $(med "${a[@]}") KiB (runs: ${a[*]})"

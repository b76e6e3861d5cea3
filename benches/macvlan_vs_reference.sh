#!/bin/sh
# macvlan + host-local ADD and DEL as processes, side by side in one run:
#   - ours: the multus binary started as `macvlan` (a symlink), the built-in macvlan delegate; host-local is
#     whatever the binary's registry resolves (in-process once registered, else /usr/lib/cni/host-local);
#   - the reference /usr/lib/cni/macvlan (Debian containernetworking-plugins 1.1.1) with its host-local;
#   - one `ip -n NS -batch` process doing the same kernel work (link, address, up, default route), and for DEL
#     `ip -n NS link del`.
# Then the peak RSS of one ADD of each (GNU time, max over 5 runs; the figure covers the process tree).
# Needs root, hyperfine, /usr/bin/time, python3. Prints a markdown section for BENCHMARKS.md.
# Usage: benches/macvlan_vs_reference.sh   (RUNS=n to change the number of runs, default 60;
#        MULTUS_BIN=path to benchmark an already built binary instead of building one)
set -eu
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
RUNS="${RUNS:-60}"
if [ -n "${MULTUS_BIN:-}" ]; then
    MULTUS="$(realpath "$MULTUS_BIN")"
else
    cargo build -q --release -p multus-cni
    MULTUS="$(cd "$CARGO_TARGET_DIR" && pwd)/release/multus"
fi
REF=/usr/lib/cni/macvlan
[ -x "$REF" ] || { echo "missing $REF: apt-get install -y containernetworking-plugins" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "missing hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time: apt-get install -y time" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

# One netns per row, so that no row's links or routes get in another's way.
NO=mvbench-o NR=mvbench-r NS=mvbench-i
WORK=$(mktemp -d /tmp/mv-bench.XXXXXX)
cleanup() {
    for n in $NO $NR $NS; do ip netns del $n 2>/dev/null || true; done
    ip link del mvbo0 2>/dev/null || true
    ip link del mvbr0 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
for n in $NO $NR $NS; do
    ip netns del $n 2>/dev/null || true
    ip netns add $n
    ip -n $n link set lo up
done
# Masters: one host veth for each plugin, one veth end inside the netns for ip -batch.
ip link add mvbo0 type veth peer name mvbo1 && ip link set mvbo0 up && ip link set mvbo1 up
ip link add mvbr0 type veth peer name mvbr1 && ip link set mvbr0 up && ip link set mvbr1 up
ip link add mvbi0 type veth peer name mvbi1 netns $NS && ip link set mvbi0 up && ip -n $NS link set mvbi1 up

mkdir -p "$WORK/bin"
ln -s "$MULTUS" "$WORK/bin/macvlan"
OURS="$WORK/bin/macvlan"
conf() { # master dataDir
    printf '{"cniVersion":"1.0.0","name":"mvbench","type":"macvlan","master":"%s","mode":"bridge","ipam":{"type":"host-local","subnet":"10.210.0.0/24","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"%s"}}' "$1" "$2"
}
conf mvbo0 "$WORK/data-ours" > "$WORK/ours.json"
conf mvbr0 "$WORK/data-ref" > "$WORK/ref.json"
# Layer 2 only (no IPAM): the plugins' own cost next to `ip` doing link + up.
printf '{"cniVersion":"1.0.0","name":"mvbench","type":"macvlan","master":"mvbo0","mode":"bridge"}' > "$WORK/ours-l2.json"
printf '{"cniVersion":"1.0.0","name":"mvbench","type":"macvlan","master":"mvbr0","mode":"bridge"}' > "$WORK/ref-l2.json"
printf 'link add link mvbi1 name net1 type macvlan mode bridge\nlink set net1 up\n' > "$WORK/batch-l2"
cat > "$WORK/batch" <<B
link add link mvbi1 name net1 type macvlan mode bridge
addr add 10.210.0.2/24 dev net1
link set net1 up
route add default via 10.210.0.1 dev net1
B
E="CNI_CONTAINERID=bench CNI_PATH=/usr/lib/cni CNI_IFNAME=net1"
EO="$E CNI_NETNS=/run/netns/$NO"
ER="$E CNI_NETNS=/run/netns/$NR"
OADD="$EO CNI_COMMAND=ADD $OURS < $WORK/ours.json > /dev/null"
ODEL="$EO CNI_COMMAND=DEL $OURS < $WORK/ours.json > /dev/null"
RADD="$ER CNI_COMMAND=ADD $REF < $WORK/ref.json > /dev/null"
RDEL="$ER CNI_COMMAND=DEL $REF < $WORK/ref.json > /dev/null"
IADD="ip -n $NS -batch $WORK/batch"
IDEL="ip -n $NS link del net1"

# sanity: each ADD works once and its DEL cleans up
sh -c "$OADD" && sh -c "$ODEL"
sh -c "$RADD" && sh -c "$RDEL"
sh -c "$IADD" && sh -c "$IDEL"

hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/add.json" \
    -n "ours ADD" --prepare "sh -c '$ODEL'" "$OADD" \
    -n "reference ADD" --prepare "sh -c '$RDEL'" "$RADD" \
    -n "ip -batch" --prepare "sh -c '$IDEL 2>/dev/null; true'" "$IADD"
sh -c "$ODEL"; sh -c "$RDEL"; sh -c "$IDEL 2>/dev/null; true"
hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/del.json" \
    -n "ours DEL" --prepare "sh -c '$OADD'" "$ODEL" \
    -n "reference DEL" --prepare "sh -c '$RADD'" "$RDEL" \
    -n "ip link del" --prepare "sh -c '$IADD'" "$IDEL"

hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/l2.json" \
    -n "ours L2 ADD" --prepare "sh -c '$EO CNI_COMMAND=DEL $OURS < $WORK/ours-l2.json'" \
        "$EO CNI_COMMAND=ADD $OURS < $WORK/ours-l2.json > /dev/null" \
    -n "reference L2 ADD" --prepare "sh -c '$ER CNI_COMMAND=DEL $REF < $WORK/ref-l2.json'" \
        "$ER CNI_COMMAND=ADD $REF < $WORK/ref-l2.json > /dev/null" \
    -n "ip -batch L2" --prepare "sh -c '$IDEL 2>/dev/null; true'" "ip -n $NS -batch $WORK/batch-l2"
sh -c "$EO CNI_COMMAND=DEL $OURS < $WORK/ours-l2.json"; sh -c "$ER CNI_COMMAND=DEL $REF < $WORK/ref-l2.json"
sh -c "$IDEL 2>/dev/null; true"

rss() { # max KiB over 5 ADDs: binary, its DEL, env, config
    max=0
    for i in 1 2 3 4 5; do
        sh -c "$2" 2>/dev/null || true
        k=$(sh -c "$3 CNI_COMMAND=ADD /usr/bin/time -f %M $1 < $4 2>&1 >/dev/null | tail -1")
        [ "$k" -gt "$max" ] && max=$k
    done
    sh -c "$2" 2>/dev/null || true
    echo "$max"
}
RSS_O=$(rss "$OURS" "$ODEL" "$EO" "$WORK/ours.json")
RSS_R=$(rss "$REF" "$RDEL" "$ER" "$WORK/ref.json")
RSS_I=0
for i in 1 2 3 4 5; do
    sh -c "$IDEL 2>/dev/null; true"
    k=$(/usr/bin/time -f %M ip -n $NS -batch "$WORK/batch" 2>&1 | tail -1)
    [ "$k" -gt "$RSS_I" ] && RSS_I=$k
done
sh -c "$IDEL 2>/dev/null; true"

python3 - "$WORK/add.json" "$WORK/del.json" "$RSS_O" "$RSS_R" "$RSS_I" "$RUNS" "$WORK/l2.json" <<'PY'
import json, sys
add = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
dele = {r["command"]: r for r in json.load(open(sys.argv[2]))["results"]}
l2 = {r["command"]: r for r in json.load(open(sys.argv[7]))["results"]}
rss_o, rss_r, rss_i, runs = (int(x) for x in sys.argv[3:7])
ms = lambda r: r["median"] * 1000
mn = lambda r: r["min"] * 1000
def row(title, group, a, b, c, cname, target):
    A, B, C = group[a], group[b], group[c]
    return (f"| {title} | {ms(A):.2f} ms ({mn(A):.2f}) | {ms(B):.2f} ms ({mn(B):.2f}) | {ms(C):.2f} ms ({mn(C):.2f}) {cname} "
            f"| {ms(A)/ms(C):.2f}x ({mn(A)/mn(C):.2f}x) | {ms(B)/ms(C):.2f}x ({mn(B)/mn(C):.2f}x) | {target} |")
print(f"""
| macvlan + host-local ({runs} runs: median (min)) | ours | reference 1.1.1 | `ip` | ours / `ip` | reference / `ip` | target |
|---|---|---|---|---|---|---|
{row("ADD (link, address, up, default route)", add, "ours ADD", "reference ADD", "ip -batch", "(`ip -n NS -batch`)", "<= 1.0x")}
{row("DEL", dele, "ours DEL", "reference DEL", "ip link del", "(`ip -n NS link del`)", "<= 1.05x")}
{row("L2-only ADD (no IPAM; `ip`: link, up)", l2, "ours L2 ADD", "reference L2 ADD", "ip -batch L2", "", "")}
| peak RSS of an ADD (max of 5) | {rss_o/1024:.2f} MiB | {rss_r/1024:.2f} MiB | {rss_i/1024:.2f} MiB | | | <= 4 MiB |
""")
PY

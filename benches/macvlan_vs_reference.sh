#!/bin/sh
# macvlan + host-local ADD and DEL as processes, side by side in one run:
#   - ours: the multus binary started as `macvlan` (a symlink), the built-in macvlan delegate; host-local is
#     whatever the binary's registry resolves (in-process once registered, else /usr/lib/cni/host-local);
#   - the reference /usr/lib/cni/macvlan (Debian containernetworking-plugins 1.1.1) with its host-local;
#   - one `ip -n NS -batch` process doing the same kernel work (link, address, up, default route), and for DEL
#     `ip -n NS link del`.
# The three take turns run by run (see "Timing" below), so that load changes on a shared machine hit them alike.
# Then the peak RSS of one ADD of each (GNU time, max over 5 runs; the figure covers the process tree).
# Needs root, /usr/bin/time, python3. Prints a markdown section for BENCHMARKS.md.
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
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time: apt-get install -y time" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

# One netns per row, so that no row's links or routes get in another's way.
NO=mvbench-o NR=mvbench-r NS=mvbench-i
WORK=$(mktemp -d /tmp/mv-bench.XXXXXX)
cleanup() {
    for n in $NO $NR $NS; do ip netns del $n 2>/dev/null || true; done
    ip link del mvbo0 2>/dev/null || true
    ip link del mvbr0 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
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

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# sanity: each ADD works once and its DEL cleans up
sh -c "$OADD" && sh -c "$ODEL"
sh -c "$RADD" && sh -c "$RDEL"
sh -c "$IADD" && sh -c "$IDEL"

# Timing: interleaved. Every run of every command is preceded by its untimed opposite (ADD by DEL and vice
# versa), and the commands take turns run by run, in an order that rotates, so that a change of load on a
# shared machine hits them alike (hyperfine's one block per command turned load drift into ratios of up to
# 1.7x, and its shell-start-up correction, needed for the stdin redirection, was noisier than the figures).
# Each command is started directly (no shell), its config on stdin from the file; wall time from spawn to
# exit. 3 warm-up runs each.
python3 - "$WORK" "$RUNS" "$OURS" "$REF" "$NO" "$NR" "$NS" <<'PY'
import json, os, subprocess, sys, time
work, runs, ours, ref, no, nr, ns = sys.argv[1], int(sys.argv[2]), *sys.argv[3:]
def plugin(binary, netns, verb, conf):
    env = dict(os.environ, CNI_COMMAND=verb, CNI_CONTAINERID="bench", CNI_PATH="/usr/lib/cni",
               CNI_IFNAME="net1", CNI_NETNS=f"/run/netns/{netns}")
    return ([binary], env, f"{work}/{conf}")
ip = lambda *a: (["ip", "-n", ns, *a], None, None)
def run(cmd):
    argv, env, stdin = cmd
    f = open(stdin, "rb") if stdin else subprocess.DEVNULL
    t = time.perf_counter()
    subprocess.run(argv, env=env, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.perf_counter() - t
    if stdin:
        f.close()
    return t
groups = {
    "add": [("ours ADD", plugin(ours, no, "DEL", "ours.json"), plugin(ours, no, "ADD", "ours.json")),
            ("reference ADD", plugin(ref, nr, "DEL", "ref.json"), plugin(ref, nr, "ADD", "ref.json")),
            ("ip -batch", ip("link", "del", "net1"), ip("-batch", f"{work}/batch"))],
    "del": [("ours DEL", plugin(ours, no, "ADD", "ours.json"), plugin(ours, no, "DEL", "ours.json")),
            ("reference DEL", plugin(ref, nr, "ADD", "ref.json"), plugin(ref, nr, "DEL", "ref.json")),
            ("ip link del", ip("-batch", f"{work}/batch"), ip("link", "del", "net1"))],
    "l2": [("ours L2 ADD", plugin(ours, no, "DEL", "ours-l2.json"), plugin(ours, no, "ADD", "ours-l2.json")),
           ("reference L2 ADD", plugin(ref, nr, "DEL", "ref-l2.json"), plugin(ref, nr, "ADD", "ref-l2.json")),
           ("ip -batch L2", ip("link", "del", "net1"), ip("-batch", f"{work}/batch-l2"))],
}
for g, cmds in groups.items():
    times = {name: [] for name, _, _ in cmds}
    for i in range(runs + 3):
        k = i % len(cmds)
        for name, prepare, cmd in cmds[k:] + cmds[:k]:
            run(prepare)
            t = run(cmd)
            if i >= 3:
                times[name].append(t)
    if g != "del":  # leave nothing behind for the next group: the DEL / link del of the last ADD
        for name, prepare, cmd in cmds:
            run(prepare)
    json.dump(times, open(f"{work}/{g}.json", "w"))
PY

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

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "$(date -u +%FT%TZ), $(nproc) CPUs, load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo "binary: $MULTUS ($(stat -c %s "$MULTUS") bytes)"
python3 - "$WORK" "$RSS_O" "$RSS_R" "$RSS_I" <<'PY'
import json, statistics, sys
work = sys.argv[1]
rss_o, rss_r, rss_i = (int(x) for x in sys.argv[2:5])
load = lambda g: json.load(open(f"{work}/{g}.json"))
add, dele, l2 = load("add"), load("del"), load("l2")
runs = len(add["ours ADD"])
ms = lambda t: statistics.median(t) * 1000
mn = lambda t: min(t) * 1000
def row(title, group, a, b, c, cname, target):
    A, B, C = group[a], group[b], group[c]
    return (f"| {title} | {ms(A):.2f} ms ({mn(A):.2f}) | {ms(B):.2f} ms ({mn(B):.2f}) | {ms(C):.2f} ms ({mn(C):.2f}) {cname} "
            f"| {ms(A)/ms(C):.2f}x ({mn(A)/mn(C):.2f}x) | {ms(B)/ms(C):.2f}x ({mn(B)/mn(C):.2f}x) | {target} |")
print(f"""
| macvlan + host-local ({runs} interleaved runs: median (min)) | ours | reference 1.1.1 | `ip` | ours / `ip` | reference / `ip` | target |
|---|---|---|---|---|---|---|
{row("ADD (link, address, up, default route)", add, "ours ADD", "reference ADD", "ip -batch", "(`ip -n NS -batch`)", "<= 1.0x")}
{row("DEL", dele, "ours DEL", "reference DEL", "ip link del", "(`ip -n NS link del`)", "<= 1.05x")}
{row("L2-only ADD (no IPAM; `ip`: link, up)", l2, "ours L2 ADD", "reference L2 ADD", "ip -batch L2", "", "")}
| peak RSS of an ADD (max of 5) | {rss_o/1024:.2f} MiB | {rss_r/1024:.2f} MiB | {rss_i/1024:.2f} MiB | | | <= 4 MiB |
""")
PY

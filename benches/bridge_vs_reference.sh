#!/bin/sh
# bridge + host-local ADD and DEL as processes, taking turns run by run:
#   - ours: the multus binary started as `bridge` (a symlink): the built-in bridge, host-local in-process;
#   - the reference /usr/lib/cni/bridge (Debian containernetworking-plugins 1.1.1), which execs host-local.
# Each has its own netns, bridge and dataDir. Prints the median and p90 of ADD and DEL (ms), and the load.
# Needs root and python3. Usage: benches/bridge_vs_reference.sh  (RUNS=n, default 40; MULTUS_BIN=path to use
# an already built binary instead of building one)
set -eu
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
if [ -n "${MULTUS_BIN:-}" ]; then
    MULTUS="$(realpath "$MULTUS_BIN")"
else
    cargo build -q --release -p multus-cni
    MULTUS="$(cd "$CARGO_TARGET_DIR" && pwd)/release/multus"
fi
[ -x /usr/lib/cni/bridge ] || { echo "missing /usr/lib/cni/bridge" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
WORK=$(mktemp -d /tmp/br-bench.XXXXXX)
cleanup() {
    for n in brbench-o brbench-r; do ip netns del $n 2>/dev/null || true; done
    for b in brbo0 brbr0; do ip link del $b 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
for n in brbench-o brbench-r; do
    ip netns del $n 2>/dev/null || true
    ip netns add $n
    ip -n $n link set lo up
done
mkdir -p "$WORK/bin"
ln -s "$MULTUS" "$WORK/bin/bridge"
WORK="$WORK" RUNS="${RUNS:-40}" python3 - <<'PY'
import json, os, statistics, subprocess, time
work, runs = os.environ["WORK"], int(os.environ["RUNS"])
def conf(br, data):
    return json.dumps({"cniVersion": "1.0.0", "name": "brbench", "type": "bridge", "bridge": br,
        "isDefaultGateway": True, "ipam": {"type": "host-local", "subnet": "10.211.0.0/24", "dataDir": data}}).encode()
sides = {"ours": (work + "/bin/bridge", "brbench-o", conf("brbo0", work + "/data-o")),
         "reference": ("/usr/lib/cni/bridge", "brbench-r", conf("brbr0", work + "/data-r"))}
times = {k: {"ADD": [], "DEL": []} for k in sides}
for i in range(runs + 3):
    for name, (plugin, ns, stdin) in sides.items():
        for cmd in ("ADD", "DEL"):
            env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": "bench", "CNI_NETNS": "/run/netns/" + ns,
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni", "PATH": "/usr/bin:/bin"}
            t = time.perf_counter()
            p = subprocess.run([plugin], input=stdin, env=env, capture_output=True)
            dt = (time.perf_counter() - t) * 1000
            if p.returncode != 0:
                raise SystemExit(f"{name} {cmd}: {p.stdout} {p.stderr}")
            if i >= 3:
                times[name][cmd].append(dt)
for name, t in times.items():
    for cmd, v in t.items():
        v.sort()
        print(f"{name:9} {cmd}: median {statistics.median(v):6.2f} ms, p90 {v[int(len(v) * 0.9)]:6.2f} ms ({len(v)} runs)")
print("load:", open("/proc/loadavg").read().strip())
PY

#!/bin/sh
# host-local ADD as a process: this crate's CNI front end vs the reference binary
# (/usr/lib/cni/host-local, Debian containernetworking-plugins 1.1.1), in a /16 that is empty,
# 50 % and 99 % full, one at a time and 8 at once. Needs hyperfine and python3.
# Usage: benches/host_local_vs_reference.sh [data dir parent, default /tmp]
#
# Each timed run is one ADD; the attachment is released before each run (untimed `--prepare`):
#  - "reference ADD": released by the reference;
#  - "ours ADD": released by ours, so our persisted index (<dataDir>/.multus-index/) is valid:
#    a node where only this plugin runs;
#  - "ours ADD after a reference DEL": released by the reference, so the directory changed since
#    our index was saved and ours lists it and lstats every file (reads only new ones).
# Ours' first run on each store (a full read of the directory, as the first ADD on a node) is
# not timed. HOST_LOCAL_INDEX=off|rewrite in the environment runs ours without a persisted index
# or with a whole snapshot per change (see examples/host_local_cni.rs). The machine's load is
# printed before and after each block (`uptime`).
set -eu
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
cargo build -q --release -p multus-ipam --example host_local_cni
OURS="$CARGO_TARGET_DIR/release/examples/host_local_cni"
THEIRS=/usr/lib/cni/host-local
[ -x "$THEIRS" ] || { echo "missing $THEIRS: apt-get install -y containernetworking-plugins" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "missing hyperfine: apt-get install -y hyperfine" >&2; exit 1; }
PARENT="${1:-/tmp}"
WORK=$(mktemp -d "$PARENT/hl-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fill() { # dir fraction
    python3 - "$1" "$2" <<'PY'
import os, sys
d, frac = sys.argv[1], float(sys.argv[2])
os.makedirs(d, exist_ok=True)
x = 0x2545F4914F6CDD1D
for host in range(2, 65535):
    x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF; x ^= x >> 7; x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
    if (x % 10000) / 10000.0 < frac:
        ip = "10.200.%d.%d" % (host >> 8, host & 255)
        with open(os.path.join(d, ip), "w") as f:
            f.write("fill%d\r\neth0" % host)
PY
}

for pct in 0 50 99; do
    DATA="$WORK/d$pct"
    fill "$DATA/bench" "0.$pct"
    [ "$pct" = 0 ] && rm -f "$DATA"/bench/10.* 2>/dev/null || true
    CONF="$WORK/conf$pct.json"
    printf '{"cniVersion":"1.0.0","name":"bench","type":"bridge","ipam":{"type":"host-local","dataDir":"%s","subnet":"10.200.0.0/16"}}' "$DATA" > "$CONF"
    E="CNI_CONTAINERID=hf CNI_NETNS=/proc/self/ns/net CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni"
    # Ours' first run on this store builds its index.
    sh -c "$E CNI_COMMAND=DEL $OURS < $CONF"
    echo "load before ${pct}%: $(uptime)"
    hyperfine -N --warmup 3 --runs "${RUNS:-40}" --export-markdown "$WORK/one$pct.md" \
        --prepare "sh -c '$E CNI_COMMAND=DEL $THEIRS < $CONF'" \
        -n "reference ADD, ${pct}% full" "sh -c '$E CNI_COMMAND=ADD $THEIRS < $CONF > /dev/null'" \
        --prepare "sh -c '$E CNI_COMMAND=DEL $OURS < $CONF'" \
        -n "ours ADD, ${pct}% full" "sh -c '$E CNI_COMMAND=ADD $OURS < $CONF > /dev/null'" \
        --prepare "sh -c '$E CNI_COMMAND=DEL $THEIRS < $CONF'" \
        -n "ours ADD after a reference DEL, ${pct}% full" "sh -c '$E CNI_COMMAND=ADD $OURS < $CONF > /dev/null'"
    cat "$WORK/one$pct.md"
    # 8 processes at once (distinct container IDs), released (by the same plugin) before each run.
    P8=""; D8=""
    for i in 1 2 3 4 5 6 7 8; do
        P8="$P8 CNI_CONTAINERID=p$i CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni CNI_COMMAND=ADD BIN < $CONF > /dev/null &"
        D8="$D8 CNI_CONTAINERID=p$i CNI_NETNS=/x CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni CNI_COMMAND=DEL BIN < $CONF;"
    done
    hyperfine -N --warmup 2 --runs "${RUNS:-40}" --export-markdown "$WORK/eight$pct.md" \
        --prepare "sh -c '$(echo "$D8" | sed "s|BIN|$THEIRS|g")'" \
        -n "reference 8 ADDs at once, ${pct}% full" "sh -c '$(echo "$P8" | sed "s|BIN|$THEIRS|g") wait'" \
        --prepare "sh -c '$(echo "$D8" | sed "s|BIN|$OURS|g")'" \
        -n "ours 8 ADDs at once, ${pct}% full" "sh -c '$(echo "$P8" | sed "s|BIN|$OURS|g") wait'"
    cat "$WORK/eight$pct.md"
    echo "load after ${pct}%: $(uptime)"
done

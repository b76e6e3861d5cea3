#!/bin/sh
# host-local allocations per second with N allocators at once on one store (an empty /16), side by side:
#   - the reference /usr/lib/cni/host-local (Debian containernetworking-plugins 1.1.1), one process per ADD;
#   - ours as a process: the multus binary started as `host-local` (a symlink), one process per ADD;
#   - ours in-process: N threads, each with its own multus_ipam::Network handle.
# For N = 1, 8 and 40 (the same number of allocations in all, TOTAL, default 800), REPEAT times each
# (default 3), the three taking turns; a fresh store for every run. Each run checks that every allocation
# succeeded and that no address was given twice. Prints the machine's load before and after.
# Usage: benches/host_local_concurrency.sh   (MULTUS_BIN=path to use an already built release binary)
set -eu
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
TOTAL="${TOTAL:-800}"
REPEAT="${REPEAT:-3}"
cargo build -q --release -p multus-benches --example host_local_concurrency
DRIVER="$CARGO_TARGET_DIR/release/examples/host_local_concurrency"
if [ -n "${MULTUS_BIN:-}" ]; then
    MULTUS="$(realpath "$MULTUS_BIN")"
else
    cargo build -q --release -p multus-cni
    MULTUS="$(cd "$CARGO_TARGET_DIR" && pwd)/release/multus"
fi
REF=/usr/lib/cni/host-local
[ -x "$REF" ] || { echo "missing $REF: apt-get install -y containernetworking-plugins" >&2; exit 1; }
WORK=$(mktemp -d /tmp/hl-conc.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/bin"
ln -s "$MULTUS" "$WORK/bin/host-local"
echo "load before: $(uptime)"
run=0
for n in 1 8 40; do
    k=$((TOTAL / n))
    for r in $(seq "$REPEAT"); do
        for mode in "$REF" "$WORK/bin/host-local" in-process; do
            run=$((run + 1))
            "$DRIVER" "$mode" "$n" "$k" "$WORK/store$run"
            rm -rf "$WORK/store$run"
        done
    done
done
echo "load after: $(uptime)"

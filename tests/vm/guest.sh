#!/bin/bash
# Runs inside the VM test bed's guest, as root, in the host's root filesystem (9p, read-only, under a tmpfs overlay).
# Called by tests/vm/init.sh with the run's env file (written by tests/vm/run.sh) as $1. Loads the kernel modules the
# tests need and runs each VM test binary; its exit status is the suite's.
set -uo pipefail
say() { printf '[guest] %s\n' "$*"; }

[ -n "${1:-}" ] && [ -f "$1" ] || { say "FATAL: env file '${1:-}' not found"; exit 97; }
# shellcheck disable=SC1090
source "$1"
export RUST_BACKTRACE=1

say "kernel $(uname -r), $(nproc) cpus, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB"
for m in igb igbvf ipvlan 8021q dummy macvlan vfio-pci; do
    modprobe "$m" || { say "FATAL: modprobe $m failed"; exit 96; }
done
say "modules loaded: igb igbvf ipvlan 8021q dummy macvlan vfio-pci"
# Hugepages for DPDK (vm_dpdk runs dpdk-testpmd): 64 x 2 MiB, hugetlbfs at /dev/hugepages.
mkdir -p /dev/hugepages
mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages || say "WARNING: cannot mount hugetlbfs"
echo 64 >/proc/sys/vm/nr_hugepages || say "WARNING: cannot reserve hugepages"
say "hugepages: $(cat /proc/sys/vm/nr_hugepages) x 2 MiB at /dev/hugepages"
ip link set lo up
ip -br link

hostname multus-vm 2>/dev/null || true
if [ "$MULTUS_VM_MODE" = shell ]; then
    say "interactive shell; MULTUS_IN_VM=1, repo at $MULTUS_VM_REPO; 'exit' powers the VM off"
    say "VM test binaries: $(dirname "$(dirname "$MULTUS_BIN")")/debug/deps/vm_*-<hash> (run one with --nocapture); multus: $MULTUS_BIN"
    cd "$MULTUS_VM_REPO" || true
    if command -v setsid >/dev/null; then
        setsid -c /bin/bash -i </dev/ttyS0 >/dev/ttyS0 2>&1
    else
        /bin/bash -i
    fi
    exit 0
fi

cd "$MULTUS_VM_REPO/multus-cni" || exit 95
overall=0
passed=0
failed=0
for t in "${MULTUS_VM_TESTS[@]}"; do
    name=$(basename "$t")
    say "=== running $name${MULTUS_VM_FILTER:+ (filter '$MULTUS_VM_FILTER')}"
    start=$(date +%s)
    args=(--test-threads=1 --nocapture)
    [ -n "$MULTUS_VM_FILTER" ] && args+=("$MULTUS_VM_FILTER")
    "$t" "${args[@]}" 2>&1 | tee /tmp/test-out.txt
    rc=${PIPESTATUS[0]}
    p=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\1/p' /tmp/test-out.txt | tail -n1)
    f=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed; \([0-9][0-9]*\) failed.*/\2/p' /tmp/test-out.txt | tail -n1)
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    say "=== $name: exit $rc, ${p:-0} passed, ${f:-0} failed, $(( $(date +%s) - start ))s"
    [ "$rc" = 0 ] || overall=1
done
if [ "$overall" != 0 ]; then
    say "FAILED: $failed tests failed, $passed passed (a test binary exited non-zero)"
    exit 1
fi
if [ "$passed" = 0 ]; then
    say "FAILED: no test ran${MULTUS_VM_FILTER:+ (filter '$MULTUS_VM_FILTER' matched nothing)}"
    exit 2
fi
say "PASSED: $passed tests passed"
exit 0

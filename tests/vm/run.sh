#!/usr/bin/env bash
# The VM test bed: boots a Debian 6.12 kernel under QEMU (software emulation) with an emulated igb SR-IOV NIC behind
# a PCIe root port, an emulated Intel IOMMU and the host's root filesystem shared read-only over 9p (with a tmpfs
# overlay on top), loads igb/igbvf/ipvlan/8021q/dummy/macvlan/vfio-pci, reserves 64 2 MiB hugepages (for
# dpdk-testpmd, from the host's dpdk-dev), and runs the project's VM tests (the
# `multus-cni/tests/vm_*.rs` test binaries, built on the host with `--features vm-tests`) inside, as root.
#
# Usage:
#   tests/vm/run.sh                 build, boot, run every VM test; exit status is the suite's
#   tests/vm/run.sh <filter>        run only the tests whose name contains <filter> (libtest filter)
#   tests/vm/run.sh --shell         boot to an interactive root shell in the guest (exit the shell to power off)
#   tests/vm/run.sh --setup         only install what is missing and build the initramfs
#
# Environment:
#   VM_CACHE            where the initramfs and run files go (default: ~/.cache/multus-vm, outside the repo)
#   VM_TIMEOUT          seconds before one boot is killed (default 900)
#   VM_ATTEMPTS         boots tried when the guest's kernel reports a stall (default 2; see section 4)
#   VM_MEM              guest memory in MiB (default 2048)
#   VM_KERNEL_VERSION   which installed kernel to boot (default: newest one in /lib/modules with a /boot/vmlinuz)
#   CARGO_TARGET_DIR    respected (default <repo>/target)
#   MULTUS_VM_PLUGIN    passed to the guest: a plugin to run instead of target/release/multus (development only)
#   VM_SKIP_INSTALL=1   never run apt-get (fail if something is missing)
#   VM_PROFILE=release  test the release build of multus (default: the dev build the workspace tests made)
set -euo pipefail

say() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] ERROR: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VM_CACHE=${VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/multus-vm}
VM_ATTEMPTS=${VM_ATTEMPTS:-2}
VM_TIMEOUT=${VM_TIMEOUT:-900}
VM_MEM=${VM_MEM:-2048}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}

MODE=test
FILTER=""
case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --shell) MODE=shell ;;
    --setup) MODE=setup ;;
    --*) die "unknown option $1 (try --help)" ;;
    "") ;;
    *) FILTER=$1 ;;
esac
[ $# -le 1 ] || die "at most one argument (a test name filter, --shell or --setup)"

# ---------------------------------------------------------------------------------------------------------------------
# 1. Install what is missing.
# ---------------------------------------------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install packages"
    SUDO=(sudo)
fi

pkg_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }

newest_kernel() {
    local v best=""
    for d in /lib/modules/*/; do
        [ -d "$d" ] || continue
        v=$(basename "$d")
        [ -f "/boot/vmlinuz-$v" ] || continue
        if [ -z "$best" ] || [ "$(printf '%s\n%s\n' "$best" "$v" | sort -V | tail -n1)" = "$v" ]; then best=$v; fi
    done
    printf '%s' "$best"
}

APT_UPDATED=0
apt_update_once() {
    if [ "$APT_UPDATED" = 0 ]; then
        say "apt-get update"
        "${SUDO[@]}" apt-get update -qq >&2
        APT_UPDATED=1
    fi
}

install_missing() {
    local missing=() bp_missing=()
    # QEMU 10 of bookworm-backports needs these from backports too (bookworm's own are older); named here, as
    # `pkg/bookworm-backports` takes only the packages named from backports.
    command -v qemu-system-x86_64 >/dev/null ||
        bp_missing+=(qemu-system-x86 qemu-system-common qemu-system-data seabios)
    local kver
    kver=${VM_KERNEL_VERSION:-$(newest_kernel)}
    if [ -z "$kver" ] || [ ! -f "/boot/vmlinuz-$kver" ] || [ ! -d "/lib/modules/$kver/kernel" ]; then
        bp_missing+=(linux-image-amd64)
    fi
    pkg_installed busybox-static || missing+=(busybox-static)
    [ -x /usr/lib/cni/ipvlan ] && [ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
    command -v modprobe >/dev/null || [ -x /sbin/modprobe ] || missing+=(kmod)
    command -v cpio >/dev/null || missing+=(cpio)
    command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
    command -v xz >/dev/null || missing+=(xz-utils)
    command -v zstd >/dev/null || missing+=(zstd)
    # dpdk-testpmd (the DPDK proof in vm_dpdk) is in dpdk-dev, not in the dpdk package.
    [ -x /usr/bin/dpdk-testpmd ] || missing+=(dpdk-dev)

    if [ ${#missing[@]} -eq 0 ] && [ ${#bp_missing[@]} -eq 0 ]; then
        say "all host packages present (qemu, kernel $kver, busybox-static, CNI plugins, dpdk-testpmd)"
        return
    fi
    [ "${VM_SKIP_INSTALL:-0}" = 1 ] && die "missing: ${bp_missing[*]} ${missing[*]} (and VM_SKIP_INSTALL=1)"
    if [ ${#bp_missing[@]} -gt 0 ]; then
        if ! grep -rqsE '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            say "adding bookworm-backports to /etc/apt/sources.list.d/bookworm-backports.list"
            echo 'deb http://deb.debian.org/debian bookworm-backports main' |
                "${SUDO[@]}" tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
        fi
        apt_update_once
        say "installing from bookworm-backports: ${bp_missing[*]} (takes a minute or two)"
        # `pkg/bookworm-backports` takes only these packages (and what they strictly need) from backports,
        # rather than `-t bookworm-backports`, which also upgrades e.g. systemd/udev on the host.
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${bp_missing[@]/%//bookworm-backports}" >&2
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        apt_update_once
        say "installing: ${missing[*]}"
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >&2
    fi
}

install_missing
KVER=${VM_KERNEL_VERSION:-$(newest_kernel)}
[ -n "$KVER" ] && [ -f "/boot/vmlinuz-$KVER" ] || die "no bootable kernel found in /boot after install"
KERNEL=/boot/vmlinuz-$KVER
[ -r "$KERNEL" ] || die "$KERNEL is not readable (run as root)"
MODPROBE=$(command -v modprobe || echo /sbin/modprobe)

# ---------------------------------------------------------------------------------------------------------------------
# 2. The initramfs: static busybox, the modules needed to mount the host root (9p over virtio, overlay), an init.
# ---------------------------------------------------------------------------------------------------------------------
mkdir -p "$VM_CACHE"
INITRD=$VM_CACHE/initramfs-$KVER.cpio.gz
INIT_SRC=$REPO/tests/vm/init.sh

build_initramfs() {
    local root=$VM_CACHE/initramfs-$KVER.d
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,proc,sys,mnt,newroot,lib/modules}
    cp /bin/busybox "$root/bin/busybox"
    file -b /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
        ldd /bin/busybox 2>&1 | grep -q 'not a dynamic' || die "/bin/busybox is not static (install busybox-static)"
    cp "$INIT_SRC" "$root/init"
    chmod 755 "$root/init"
    # Modules in load order: --show-depends prints `insmod <path>` lines, dependencies first.
    : >"$root/modules.order"
    local mod line path name
    for mod in virtio_pci 9pnet_virtio 9p overlay; do
        "$MODPROBE" -S "$KVER" --show-depends "$mod" >"$VM_CACHE/deps.tmp" ||
            die "modprobe -S $KVER --show-depends $mod failed"
        while read -r line; do
            case "$line" in
                builtin*) continue ;;
                insmod*) path=$(awk '{print $2}' <<<"$line") ;;
                *) die "unexpected modprobe output: $line" ;;
            esac
            name=$(basename "$path")
            name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
            grep -qx "$name" "$root/modules.order" && continue
            case "$path" in
                *.xz) xz -dc "$path" >"$root/lib/modules/$name" ;;
                *.zst) zstd -qdc "$path" >"$root/lib/modules/$name" ;;
                *.gz) gzip -dc "$path" >"$root/lib/modules/$name" ;;
                *) cp "$path" "$root/lib/modules/$name" ;;
            esac
            echo "$name" >>"$root/modules.order"
        done <"$VM_CACHE/deps.tmp"
    done
    rm -f "$VM_CACHE/deps.tmp"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
    say "built $INITRD ($(tr '\n' ' ' <"$root/modules.order"))"
}

if [ ! -s "$INITRD" ] || [ "$INIT_SRC" -nt "$INITRD" ] || [ "${BASH_SOURCE[0]}" -nt "$INITRD" ]; then
    build_initramfs
else
    say "initramfs up to date: $INITRD"
fi
[ "$MODE" = setup ] && { say "setup done"; exit 0; }

# ---------------------------------------------------------------------------------------------------------------------
# 3. Build the multus binary and the VM test binaries on the host.
# ---------------------------------------------------------------------------------------------------------------------
RUN_DIR=$(mktemp -d "$VM_CACHE/run.XXXXXX")
TESTS=()
if [ "$MODE" = test ]; then
    cd "$REPO"
    # The dev profile by default: the workspace tests have just built it, so CI builds nothing twice; the VM tests
    # check behaviour, not speed. VM_PROFILE=release tests the release binary.
    PROFILE_ARGS=()
    if [ "${VM_PROFILE:-dev}" = release ]; then PROFILE_ARGS=(--release); fi
    say "cargo build ${PROFILE_ARGS[*]} -p multus-cni"
    cargo build "${PROFILE_ARGS[@]}" -p multus-cni --bin multus --message-format=json-render-diagnostics >"$RUN_DIR/build.json"
    # The binary's path as cargo reports it (honours CARGO_TARGET_DIR and .cargo/config target-dir).
    MULTUS_BIN=$(grep '"reason":"compiler-artifact"' "$RUN_DIR/build.json" | grep '"name":"multus"' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n1)
    [ -n "$MULTUS_BIN" ] && [ -x "$MULTUS_BIN" ] || die "cargo did not report a built multus binary"
    say "multus binary: $MULTUS_BIN"
    say "cargo test -p multus-cni --features vm-tests --test 'vm_*' --no-run"
    cargo test -p multus-cni --features vm-tests --test 'vm_*' --no-run --message-format=json-render-diagnostics \
        >"$RUN_DIR/cargo.json"
    # One compiler-artifact line per test target; its "executable" is the test binary.
    mapfile -t TESTS < <(grep '"reason":"compiler-artifact"' "$RUN_DIR/cargo.json" | grep '"kind":\["test"\]' |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | sort -u)
    [ ${#TESTS[@]} -gt 0 ] || die "no VM test binaries were built (multus-cni/tests/vm_*.rs)"
    for t in "${TESTS[@]}"; do say "test binary: $t"; done
fi

# What the guest reads (through the 9p-shared host root, where this path is the same).
{
    printf 'export MULTUS_VM_MODE=%q\n' "$MODE"
    printf 'export MULTUS_VM_FILTER=%q\n' "$FILTER"
    printf 'export MULTUS_VM_REPO=%q\n' "$REPO"
    printf 'export MULTUS_BIN=%q\n' "${MULTUS_BIN:-$TARGET_DIR/release/multus}"
    printf 'export MULTUS_VM_PLUGIN=%q\n' "${MULTUS_VM_PLUGIN:-}"
    printf 'MULTUS_VM_TESTS=(%s)\n' "$(printf '%q ' "${TESTS[@]}")"
} >"$RUN_DIR/guest.env"

# ---------------------------------------------------------------------------------------------------------------------
# 4. Boot. The exit status comes back on a second serial port (ttyS1 -> a file); the console is the first one.
# ---------------------------------------------------------------------------------------------------------------------
QEMU_PID_FILE=$RUN_DIR/qemu.pid
STATUS_FILE=$RUN_DIR/status
LOG=$RUN_DIR/console.log
: >"$STATUS_FILE"

TIMEOUT_PID=""
TAIL_PID=""
WATCH_PID=""
cleanup() {
    local pid
    if [ -n "$WATCH_PID" ]; then kill "$WATCH_PID" 2>/dev/null || true; fi
    if [ -n "$TIMEOUT_PID" ]; then kill -TERM "$TIMEOUT_PID" 2>/dev/null || true; fi
    if [ -s "$QEMU_PID_FILE" ]; then
        pid=$(cat "$QEMU_PID_FILE" 2>/dev/null || true)
        if [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q qemu "/proc/$pid/comm" 2>/dev/null; then
            say "killing QEMU (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                grep -q qemu "/proc/$pid/comm" 2>/dev/null || break
                sleep 0.5
            done
            if grep -q qemu "/proc/$pid/comm" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
    fi
    if [ -n "$TAIL_PID" ]; then kill "$TAIL_PID" 2>/dev/null || true; fi
    if [ -s "$LOG" ]; then cp "$LOG" "$VM_CACHE/last-console.log" 2>/dev/null || true; fi
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

case "$RUN_DIR$REPO" in *[[:space:]]*) die "paths with spaces are not supported: $REPO, $RUN_DIR" ;; esac
APPEND="console=ttyS0 intel_iommu=on panic=-1 loglevel=4 multus_vm_env=$RUN_DIR/guest.env"
APPEND+=" multus_vm_guest=$REPO/tests/vm/guest.sh"
QEMU=(qemu-system-x86_64
    -machine q35,kernel-irqchip=split -accel tcg,thread=single -cpu max -m "$VM_MEM" -smp 2
    -device intel-iommu,intremap=on,caching-mode=on
    -device pcie-root-port,id=rp0,slot=1
    -device igb,bus=rp0,netdev=n0 -netdev hubport,id=n0,hubid=0
    -fsdev local,id=hostfs,path=/,security_model=none,readonly=on
    -device virtio-9p-pci,fsdev=hostfs,mount_tag=host
    -kernel "$KERNEL" -initrd "$INITRD" -append "$APPEND"
    -nographic -no-reboot -pidfile "$QEMU_PID_FILE")

if [ "$MODE" = shell ]; then
    say "booting $KVER to a shell (exit the shell or Ctrl-A X to leave)"
    "${QEMU[@]}" -serial mon:stdio -serial "file:$STATUS_FILE"
    exit 0
fi

# One boot. QEMU runs in the background (so a signal to this script is handled at once, by the traps) and writes the
# console to $LOG, which tail shows live. A watcher ends the boot early when the guest's kernel reports an RCU stall
# or a hung task: under emulation such a guest does not recover (seen in CI: a vCPU's timer never fired again and the
# VM sat until the timeout), so waiting for VM_TIMEOUT would only lose time. Sets QEMU_RC, HUNG and ELAPSED.
HANG_PATTERN='rcu: INFO: rcu_[a-z]+ detected stalls|blocked for more than [0-9]+ seconds'
watch_for_hang() {
    while kill -0 "$1" 2>/dev/null; do
        if grep -qE "$HANG_PATTERN" "$LOG"; then
            : >"$RUN_DIR/hung"
            kill -TERM "$(cat "$QEMU_PID_FILE" 2>/dev/null)" 2>/dev/null || true
            return
        fi
        sleep 5
    done
}
boot_once() {
    : >"$STATUS_FILE"
    : >"$LOG"
    rm -f "$RUN_DIR/hung" "$QEMU_PID_FILE"
    local start
    start=$(date +%s)
    timeout --kill-after=10 "$VM_TIMEOUT" "${QEMU[@]}" -monitor none -serial stdio -serial "file:$STATUS_FILE" \
        </dev/null >"$LOG" 2>&1 &
    TIMEOUT_PID=$!
    tail -n +1 -f --pid="$TIMEOUT_PID" "$LOG" &
    TAIL_PID=$!
    watch_for_hang "$TIMEOUT_PID" &
    WATCH_PID=$!
    QEMU_RC=0
    wait "$TIMEOUT_PID" || QEMU_RC=$?
    TIMEOUT_PID=""
    wait "$TAIL_PID" || true
    TAIL_PID=""
    kill "$WATCH_PID" 2>/dev/null || true
    wait "$WATCH_PID" 2>/dev/null || true
    WATCH_PID=""
    HUNG=0
    [ -e "$RUN_DIR/hung" ] && HUNG=1
    ELAPSED=$(( $(date +%s) - start ))
}

attempt=1
while :; do
    say "booting $KVER under QEMU (tcg), timeout ${VM_TIMEOUT}s; ${#TESTS[@]} test binaries${FILTER:+, filter '$FILTER'}; attempt $attempt of $VM_ATTEMPTS"
    boot_once
    [ "$HUNG" = 1 ] || break
    cp "$LOG" "$VM_CACHE/hung-console.log" 2>/dev/null || true
    say "the guest's kernel reported a stall after ${ELAPSED}s (console log: $VM_CACHE/hung-console.log)"
    [ "$attempt" -lt "$VM_ATTEMPTS" ] || die "the guest stalled on each of $VM_ATTEMPTS boots; console log: $VM_CACHE/hung-console.log"
    attempt=$((attempt + 1))
done

[ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ] && die "the VM did not finish within ${VM_TIMEOUT}s (hang?); console log: $VM_CACHE/last-console.log"
STATUS=$(tr -dc '0-9\n' <"$STATUS_FILE" | grep -E '^[0-9]+$' | tail -n1 || true)
[ -n "$STATUS" ] || die "the guest reported no exit status (QEMU exit $QEMU_RC after ${ELAPSED}s); console log: $VM_CACHE/last-console.log"
if [ "$STATUS" = 0 ]; then
    say "VM suite PASSED in ${ELAPSED}s"
else
    say "VM suite FAILED (guest status $STATUS) in ${ELAPSED}s; console log: $VM_CACHE/last-console.log"
fi
exit "$STATUS"

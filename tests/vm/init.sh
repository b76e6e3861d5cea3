#!/bin/busybox sh
# /init of the VM test bed's initramfs (copied in by tests/vm/run.sh; runs as PID 1 under busybox sh).
# Loads 9p + overlay, mounts the host's root (9p tag "host", read-only) under a tmpfs-backed overlay at /newroot,
# runs the guest script there with chroot, reports its exit status on ttyS1 (and the console), and powers off.
# Kernel command line parameters that reach us as environment: multus_vm_env, multus_vm_guest.
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

report() {
    echo "$1" >/dev/ttyS1
    echo "MULTUS_VM_EXIT=$1"
    sync
    sleep 1
    poweroff -f
    echo o >/proc/sysrq-trigger
    sleep 10
}
fail() { echo "init: FATAL: $*"; report 98; }

for m in $(cat /modules.order); do
    insmod "/lib/modules/$m" || fail "insmod $m"
done

mkdir -p /mnt/host /mnt/rw
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /mnt/host || fail "mount 9p host root"
mount -t tmpfs -o size=75% tmpfs /mnt/rw || fail "mount tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot ||
    fail "mount overlay"

mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
# /tmp stays the overlay's (writable through its tmpfs upper layer) rather than a fresh tmpfs: the repository,
# and so the guest script and test binaries, may live under the host's /tmp (CI clones anywhere).
mount -t tmpfs tmpfs /newroot/run
mkdir -p /newroot/run/netns /newroot/root
# /proc etc. now live under /newroot only; keep the ttyS1 path we report on reachable from here.
mkdir -p /dev && mount -t devtmpfs devtmpfs /dev

[ -n "${multus_vm_guest:-}" ] || fail "no multus_vm_guest= on the kernel command line"
[ -f "/newroot$multus_vm_guest" ] || fail "guest script $multus_vm_guest not found in the host root"

chroot /newroot /usr/bin/env -i HOME=/root TERM="${TERM:-linux}" MULTUS_IN_VM=1 \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash "$multus_vm_guest" "${multus_vm_env:-}"
report $?

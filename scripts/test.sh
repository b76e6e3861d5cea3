#!/usr/bin/env bash
# Installs what the tests need and runs every test of the project:
#   1. formatting, clippy and rustdoc (warnings are errors);
#   2. the workspace's unit, integration and doc tests, as root: the integration tests make real network
#      namespaces, veth pairs, bridges and macvlan links, and run Debian's reference CNI plugins as delegates
#      and as the behaviour to compare against;
#   3. the VM suite (tests/vm/run.sh): a Debian 6.12 kernel under QEMU with an emulated SR-IOV NIC and IOMMU,
#      for what this machine's kernel cannot do (ipvlan, vlan, dummy, SR-IOV, vfio);
#   4. thick-mode interop with upstream Go Multus v4.2.2 (tests/interop/go-multus.sh): its real multus-shim
#      against our daemon and our shim against its multus-daemon, built here from its vendored source (a local
#      mirror: GitHub is not reachable from these machines; without one the step says NOT RUN, loudly, in the
#      last line too);
#   5. the e2e test (tests/e2e/run.sh): a real single-node Kubernetes built from Debian's sources, Multus
#      installed by our DaemonSet from our image, the user guide and what users do, torn down after.
# Environment: SKIP_VM=1 skips step 3, SKIP_E2E=1 step 5 (for a quick local loop only; CI sets neither).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '[test] %s\n' "$*" >&2; }

[ "$(id -u)" -eq 0 ] || { say "run as root: the tests make network namespaces and links"; exit 1; }

need=()
for p in containernetworking-plugins iproute2 jq; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" = installed ] || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
mkdir -p /var/run/netns
py_need=()
for m in jsonschema yaml pytest kubernetes_validate; do
    python3 -c "import $m" 2>/dev/null || py_need+=("$m")
done
if [ ${#py_need[@]} -gt 0 ]; then
    say "installing Python test tools (pytest, jsonschema, pyyaml, kubernetes-validate)"
    python3 -m pip install -q --disable-pip-version-check pytest jsonschema pyyaml kubernetes-validate 2>&1 | grep -v -i "warning" || true
fi

# A full run writes about 8 GiB (the workspace's target ~3 GiB, our release image, the VM, interop and e2e
# caches): say so up front when the disk has less, rather than failing later with a compiler's I/O error.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ "${free_kib:-0}" -lt $(( 10 * 1024 * 1024 )) ]; then
    say "WARNING: only $(( free_kib / 1024 )) MiB free on $(df -P . | awk 'NR == 2 { print $6 }'); a full run needs ~8 GiB"
fi

start=$(date +%s)
say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --features multus-cni/vm-tests,multus-daemon/go-interop -- -D warnings
say "cargo doc (-D warnings: broken links, unclosed tags)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
say "cargo test --workspace"
cargo test --workspace
say "deployment manifests (kubernetes-validate against the Kubernetes schemas)"
python3 -m pytest -q -p no:cacheprovider deploy/tests
say "workspace tests passed in $(( $(date +%s) - start )) s"

if [ "${SKIP_VM:-0}" = 1 ]; then
    say "SKIP_VM=1: the VM suite was NOT run"
else
    say "VM suite"
    bash tests/vm/run.sh
fi

not_run=""
say "thick-mode interop with Go Multus v4.2.2 (tests/interop/go-multus.sh)"
interop_start=$(date +%s)
interop_rc=0
bash tests/interop/go-multus.sh || interop_rc=$?
case "$interop_rc" in
    0) say "interop passed in $(( $(date +%s) - interop_start )) s" ;;
    3) not_run=" (NOT RUN: the Go Multus interop, no upstream source on this machine)"
       say "the Go Multus interop was NOT RUN: no upstream source on this machine (see above)" ;;
    *) exit "$interop_rc" ;;
esac

if [ "${SKIP_E2E:-0}" = 1 ]; then
    say "SKIP_E2E=1: the e2e test (a real cluster) was NOT run"
else
    say "e2e test: a real single-node Kubernetes (tests/e2e/run.sh)"
    e2e_start=$(date +%s)
    bash tests/e2e/run.sh
    say "e2e test passed in $(( $(date +%s) - e2e_start )) s"
fi
say "all tests passed in $(( $(date +%s) - start )) s$not_run"

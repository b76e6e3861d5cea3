#!/usr/bin/env bash
# The e2e test: a real single-node Kubernetes (tests/e2e/cluster.sh) with Multus installed by our own DaemonSet
# from our own image, and the scenarios of tests/e2e/scenarios/ (pytest + kubectl) run against it.
#
#   bash tests/e2e/run.sh              build, set up, bring the cluster up, install, run every scenario, tear down
#   bash tests/e2e/run.sh -k guide     only the scenarios pytest's -k selects
#   bash tests/e2e/run.sh --keep       leave the cluster up afterwards (tests/e2e/cluster.sh down to stop it)
#   bash tests/e2e/run.sh --up         bring it up with Multus installed and stop there (implies --keep)
#
# The cluster is always torn down on exit unless --keep/--up; a failure prints the log lines that matter.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"

KEEP=0
UP_ONLY=0
PYTEST_ARGS=()
IMAGE_REPO=e2e.local/multus-rs
IMAGE_TAG=e2e
# A second tag of the same image: the upgrade-in-place scenario moves the DaemonSet to it.
IMAGE_TAG_NEXT=e2e-next
# The thick image (deploy/Dockerfile.thick: multus-daemon + the shim), which the thick scenario installs.
IMAGE_TAG_THICK=e2e-thick

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
            --keep) KEEP=1 ;;
            --up) UP_ONLY=1; KEEP=1 ;;
            -k) PYTEST_ARGS+=(-k "$2"); shift ;;
            -h | --help) usage ;;
            *) echo "unknown argument: $1" >&2; usage ;;
        esac
        shift
    done
}

build_binary() {
    log "cargo build --release -p multus-cni; cargo build --release -p multus-daemon"
    # one invocation each, as deploy/Dockerfile.thick builds them (the daemon's features stay out of `multus`)
    (cd "$REPO" && cargo build --release -q -p multus-cni && cargo build --release -q -p multus-daemon)
}

# Our images from the release binaries (deploy/image.py reads deploy/Dockerfile's and deploy/Dockerfile.thick's
# final stage), into the cluster's state (made by `cluster.sh up`).
build_image() {
    python3 "$REPO/deploy/image.py" --tag "$IMAGE_REPO:$IMAGE_TAG" --out "$E2E_STATE/multus-image.tar"
    python3 "$REPO/deploy/image.py" --tag "$IMAGE_REPO:$IMAGE_TAG_NEXT" --out "$E2E_STATE/multus-image-next.tar"
    python3 "$REPO/deploy/image.py" --dockerfile "$REPO/deploy/Dockerfile.thick" --tag "$IMAGE_REPO:$IMAGE_TAG_THICK" \
        --out "$E2E_STATE/multus-image-thick.tar"
}

# Our manifests with the local image and the cluster's private CNI directories, applied; waits for the
# DaemonSet's pod to have written the Multus config.
install_multus() {
    local ctr_sock=/run/multus-e2e/containerd.sock
    ctr --address "$ctr_sock" -n k8s.io images import "$E2E_STATE/multus-image.tar" >/dev/null
    ctr --address "$ctr_sock" -n k8s.io images import "$E2E_STATE/multus-image-next.tar" >/dev/null
    ctr --address "$ctr_sock" -n k8s.io images import "$E2E_STATE/multus-image-thick.tar" >/dev/null
    cat >"$E2E_STATE/values.yaml" <<EOF
image: {repository: $IMAGE_REPO, tag: $IMAGE_TAG, pullPolicy: Never}
cni: {confDir: $E2E_STATE/cni/net.d, binDir: $E2E_STATE/cni/bin}
multus: {logFile: $E2E_STATE/logs/multus.log, logLevel: debug}
EOF
    python3 "$REPO/deploy/render.py" --values "$E2E_STATE/values.yaml" >"$E2E_STATE/multus.yaml"
    log "kubectl apply (deploy/render.py with $E2E_STATE/values.yaml)"
    kubectl apply -f "$E2E_STATE/multus.yaml" >/dev/null
    kubectl rollout status -n kube-system daemonset/kube-multus-ds --timeout=180s >/dev/null
    local i
    for i in $(seq 1 60); do
        ls "$E2E_STATE"/cni/net.d/00-multus.conf* >/dev/null 2>&1 && break
        sleep 1
    done
    ls "$E2E_STATE"/cni/net.d/00-multus.conf* >/dev/null 2>&1 || die "the DaemonSet wrote no 00-multus config"
    log "Multus installed: $(ls "$E2E_STATE"/cni/net.d/)"
}

# The log lines that matter when something failed: errors of the kubelet, containerd, the API server, and
# Multus' own log and the DaemonSet pod's output.
print_logs() {
    local l=$E2E_STATE/logs f
    [ -d "$l" ] || return 0
    for f in kubelet containerd kube-apiserver kube-controller-manager kube-scheduler; do
        [ -f "$l/$f.log" ] || continue
        echo "----- $f (errors, last 40) -----"
        grep -E '^(E[0-9]{4}|F[0-9]{4})|level=(error|fatal)|multus|CNI|cni' "$l/$f.log" | tail -n 40 || true
    done
    if [ -f "$l/multus.log" ]; then
        echo "----- multus.log (last 40) -----"
        tail -n 40 "$l/multus.log"
    fi
    echo "----- the DaemonSet's pod -----"
    kubectl logs -n kube-system -l name=multus --tail=40 2>/dev/null || true
    echo "----- pods and recent events -----"
    kubectl get pods -A -o wide 2>/dev/null || true
    kubectl get events -A --sort-by=.lastTimestamp 2>/dev/null | tail -n 30 || true
}

teardown() {
    local rc=$?
    set +e
    [ "$rc" -eq 0 ] || print_logs >&2
    if [ "$KEEP" = 1 ]; then
        log "--keep: the cluster stays up; $(bash "$HERE/cluster.sh" env | head -1); tests/e2e/cluster.sh down"
    else
        bash "$HERE/cluster.sh" down
    fi
    log "e2e $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $(( $(date +%s) - START )) s"
    exit "$rc"
}

main() {
    parse_args "$@"
    [ "$(id -u)" -eq 0 ] || die "run as root"
    START=$(date +%s)
    build_binary
    bash "$HERE/setup.sh"
    eval "$(bash "$HERE/cluster.sh" env)"
    if [ -d "$E2E_STATE/pids" ]; then
        log "a cluster of an earlier run is still up (--keep, or a killed run): taking it down first"
        bash "$HERE/cluster.sh" down
    fi
    trap teardown EXIT
    bash "$HERE/cluster.sh" up
    build_image
    install_multus
    if [ "$UP_ONLY" = 1 ]; then
        log "--up: cluster up with Multus installed"
        return 0
    fi
    log "scenarios"
    (cd "$REPO" && python3 -m pytest -p no:cacheprovider -v "${PYTEST_ARGS[@]}" tests/e2e/scenarios)
}

main "$@"

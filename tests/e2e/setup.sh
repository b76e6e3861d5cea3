#!/usr/bin/env bash
# Installs and builds what the e2e cluster needs, from Debian packages and Debian's own `kubernetes` source
# package alone (nothing is downloaded from elsewhere):
#   - packages: etcd-server, containerd, runc, containernetworking-plugins, busybox-static, golang-1.22-go
#     (bookworm-backports), golang-github-modern-go-reflect2-dev, iptables;
#   - kubectl from `kubernetes-client`, unpacked into the cache (another package may own /usr/bin/kubectl);
#   - kube-apiserver, kube-controller-manager, kube-scheduler and kubelet built from `apt-get source kubernetes`
#     (1.20.2) in GOPATH mode with Go 1.22 (reflect2 1.0.2 swapped in, the OpenAPI definitions generated as `make` would);
#   - the pause and busybox images as docker-archive tarballs (tests/e2e/images.py).
# Everything is kept under $E2E_CACHE (default /var/cache/multus-e2e/k8s-<version>), outside the repository, with
# the Go build cache: a second run finds the binaries and rebuilds nothing.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"

K8S_SRC_VERSION=1.20.2
GO=/usr/lib/go-1.22/bin/go
# What the cluster runs (the scheduler binds the DaemonSet's and every other pod to the node).
COMPONENTS=(kubelet kube-controller-manager kube-apiserver kube-scheduler)

# apt sources: bookworm-backports (Go 1.22) and a deb-src line for the kubernetes source package.
apt_sources() {
    local changed=0
    if ! grep -rqs '^deb .*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo 'deb http://deb.debian.org/debian bookworm-backports main' \
            >/etc/apt/sources.list.d/multus-e2e-backports.list
        changed=1
    fi
    if ! grep -rqs '^deb-src .*bookworm main' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # signed-by as the image's deb822 sources say it (apt refuses two values for one source)
        echo 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]' \
            'http://deb.debian.org/debian bookworm main' \
            >/etc/apt/sources.list.d/multus-e2e-src.list
        changed=1
    fi
    if [ "$changed" = 1 ] || [ ! -e "$E2E_CACHE/.apt-updated" ]; then
        log "apt-get update"
        apt-get -o DPkg::Lock::Timeout=900 update -qq
        mkdir -p "$E2E_CACHE" && touch "$E2E_CACHE/.apt-updated"
    fi
}

is_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = installed ]; }

# Debian packages. Services are not started by the install (the cluster starts its own processes).
packages() {
    local need=() p
    for p in etcd-server containerd runc containernetworking-plugins busybox-static iptables \
        golang-github-modern-go-reflect2-dev dpkg-dev openssl iproute2 curl python3-yaml; do
        is_installed "$p" || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        log "installing ${need[*]}"
        with_policy_rc_d apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends \
            "${need[@]}" >/dev/null
    fi
    if ! is_installed golang-1.22-go; then
        log "installing golang-1.22-go (bookworm-backports)"
        apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends -t bookworm-backports \
            golang-1.22-go >/dev/null
    fi
    python3 -c 'import pytest' 2>/dev/null || python3 -m pip install -q pytest
}

# Runs "$@" with a policy-rc.d that forbids starting services, if there is none yet (removed afterwards).
with_policy_rc_d() {
    if [ -e /usr/sbin/policy-rc.d ]; then "$@"; return; fi
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    local rc=0
    "$@" || rc=$?
    rm -f /usr/sbin/policy-rc.d
    return "$rc"
}

# kubectl from Debian's kubernetes-client, unpacked into the cache.
kubectl_bin() {
    [ -x "$E2E_BIN/kubectl" ] && return
    log "kubectl from kubernetes-client"
    local d; d=$(mktemp -d)
    (cd "$d" && apt-get download -qq kubernetes-client && dpkg-deb -x kubernetes-client_*.deb root)
    install -D -m 0755 "$d/root/usr/bin/kubectl" "$E2E_BIN/kubectl"
    rm -rf "$d"
}

# The source tree at $GOPATH/src/k8s.io/kubernetes, unpacked once, reflect2 1.0.2 swapped in.
k8s_source() {
    local tree="$E2E_GOPATH/src/k8s.io/kubernetes"
    [ -e "$tree/.multus-e2e-ready" ] && return
    log "apt-get source kubernetes"
    rm -rf "$E2E_CACHE/src" "$tree"
    mkdir -p "$E2E_CACHE/src" "$(dirname "$tree")"
    (cd "$E2E_CACHE/src" && apt-get source -qq kubernetes >/dev/null)
    local dir; dir=$(find "$E2E_CACHE/src" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -1)
    [ -n "$dir" ] || die "apt-get source kubernetes left no tree"
    mv "$dir" "$tree"
    rm -rf "$E2E_CACHE/src"
    # reflect2 1.0.1 (vendored) breaks with Go >= 1.18; 1.0.2 has the same API.
    rm -rf "$tree/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
    touch "$tree/.multus-e2e-ready"
}

go_env() {
    env GOPATH="$E2E_GOPATH" GOCACHE="$E2E_CACHE/gocache" GO111MODULE=off GOPROXY=off GOTOOLCHAIN=local \
        GOFLAGS= CGO_ENABLED=0 PATH="/usr/lib/go-1.22/bin:$PATH" "$@"
}

# pkg/generated/openapi/zz_generated.openapi.go, which `make` generates (Makefile.generated_files): openapi-gen over
# every package tagged +k8s:openapi-gen=, staging packages under their vendor/ names.
openapi() {
    local tree="$E2E_GOPATH/src/k8s.io/kubernetes" out=pkg/generated/openapi/zz_generated.openapi.go
    [ -s "$tree/$out" ] && return
    log "generating $out"
    cd "$tree"
    go_env "$GO" build -o "$E2E_CACHE/tools/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    local pkgs
    pkgs=$(grep -rl --include='*.go' '+k8s:openapi-gen=' pkg cmd staging/src/k8s.io vendor/k8s.io \
        | grep -v -e '/testdata/' -e '_examples' -e '/test/' -e '^vendor/k8s.io/kube-openapi/' \
        | xargs -n1 dirname | LC_ALL=C sort -u \
        | sed -e 's#^staging/src/#vendor/#' | LC_ALL=C sort -u \
        | sed -e 's#^#k8s.io/kubernetes/#' | paste -sd, -)
    go_env "$E2E_CACHE/tools/openapi-gen" --logtostderr -v 1 -i "$pkgs" \
        -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
        -h hack/boilerplate/boilerplate.generatego.txt -r /dev/null
    [ -s "$tree/$out" ] || die "openapi-gen wrote no $out"
    cd - >/dev/null
}

# go build of one component, with the version stamped as the release's scripts stamp it.
build_component() {
    local name=$1 tree="$E2E_GOPATH/src/k8s.io/kubernetes"
    [ -x "$E2E_BIN/$name" ] && return
    log "building $name (GOPATH mode, Go 1.22)"
    local v=k8s.io/kubernetes/vendor/k8s.io/component-base/version
    local ldflags="-s -w -X $v.gitVersion=v$K8S_SRC_VERSION -X $v.gitMajor=1 -X $v.gitMinor=20 -X $v.gitTreeState=clean"
    (cd "$tree" && go_env "$GO" build -ldflags "$ldflags" -o "$E2E_BIN/$name.tmp" "./cmd/$name")
    mv "$E2E_BIN/$name.tmp" "$E2E_BIN/$name"
}

main() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    local start; start=$(date +%s)
    mkdir -p "$E2E_BIN" "$E2E_CACHE/tools"
    apt_sources
    packages
    kubectl_bin
    local c missing=0
    for c in "${COMPONENTS[@]}"; do [ -x "$E2E_BIN/$c" ] || missing=1; done
    if [ "$missing" = 1 ]; then
        k8s_source
        openapi
        for c in "${COMPONENTS[@]}"; do build_component "$c"; done
    fi
    python3 "$HERE/images.py" --out "$E2E_CACHE/images" --go "$GO" --gocache "$E2E_CACHE/gocache"
    log "setup done in $(( $(date +%s) - start )) s (cache: $E2E_CACHE)"
}

main "$@"

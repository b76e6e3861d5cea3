#!/usr/bin/env bash
# Thick-mode protocol interop with upstream Go Multus v4.2.2, for real (see tests/interop/README.md):
#   1. installs what is missing (Debian packages only: golang-1.23-go from bookworm-backports, the reference
#      CNI plugins, iproute2, util-linux);
#   2. extracts upstream's source (tag v4.2.2, from the local mirror) into the cache directory;
#   3. builds upstream's cmd/multus-shim and cmd/multus-daemon offline with its vendor/ tree, and our
#      interop-apiproxy (tests/interop/apiproxy: a protobuf -> JSON front for the API stand-in, since
#      upstream's client-go writes protobuf bodies) with the same vendor/; steps 2 and 3 are skipped when
#      the binaries are there already;
#   4. runs `cargo test -p multus-daemon --features go-interop --test go_interop` with GO_MULTUS_SHIM,
#      GO_MULTUS_DAEMON and GO_MULTUS_APIPROXY naming them.
# Needs root (network namespaces, links, a private mount namespace for upstream's daemon).
#
# Environment (all optional):
#   GO_MULTUS_CACHE   where source, binaries and GOCACHE live (default /var/cache/multus-go-interop/v4.2.2);
#                     outside the repository, so a second run builds nothing
#   GO_MULTUS_MIRROR  the upstream git directory holding tag v4.2.2 (default: the first of
#                     <repo>/../.mirror/k8snetworkplumbingwg+multus-cni/repo and
#                     /work/.mirror/k8snetworkplumbingwg+multus-cni/repo that has the tag)
#
# Exit status: 0 passed; 1 failed; 3 not run: no upstream source and no binaries built before on this machine
# (the source comes only from a local mirror: GitHub is not reachable from these machines).
#   CARGO_TEST_ARGS   extra arguments after `--` for the test binary (e.g. a test name, --nocapture)
set -euo pipefail

TAG=v4.2.2
CACHE=${GO_MULTUS_CACHE:-/var/cache/multus-go-interop/$TAG}
MIRROR_NAME=k8snetworkplumbingwg+multus-cni/repo
GO_PKG=golang-1.23-go
GOROOT_DIR=/usr/lib/go-1.23
REPO=$(cd "$(dirname "$0")/../.." && pwd)

step() { printf '\n==> %s\n' "$*"; }

# The first git directory that holds the tag: GO_MULTUS_MIRROR, then a mirror beside the repository, then
# /work's. Empty when there is none.
find_mirror() {
    local c
    for c in "${GO_MULTUS_MIRROR:-}" "$REPO/../.mirror/$MIRROR_NAME" "/work/.mirror/$MIRROR_NAME"; do
        if [ -n "$c" ] && git -C "$c" rev-parse -q --verify "$TAG^{commit}" >/dev/null 2>&1; then
            printf '%s' "$c"
            return
        fi
    done
}
die() {
    printf 'go-multus.sh: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, links, unshare -m)"

step "1/4 Debian packages: $GO_PKG (bookworm-backports), containernetworking-plugins, iproute2, util-linux"
missing=()
[ -x "$GOROOT_DIR/bin/go" ] || missing+=("$GO_PKG/bookworm-backports")
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/macvlan ] && [ -x /usr/lib/cni/host-local ] ||
    missing+=(containernetworking-plugins)
command -v ip >/dev/null || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
if [ ${#missing[@]} -eq 0 ]; then
    echo "all present"
else
    if [[ " ${missing[*]} " == *" $GO_PKG/bookworm-backports "* ]] &&
        ! grep -rqs '^deb .*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "adding bookworm-backports to /etc/apt/sources.list.d/bookworm-backports.list"
        echo 'deb http://deb.debian.org/debian bookworm-backports main' >/etc/apt/sources.list.d/bookworm-backports.list
    fi
    echo "installing: ${missing[*]}"
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" || die "apt-get install ${missing[*]} failed"
fi
GO=$GOROOT_DIR/bin/go
"$GO" version

BIN=$CACHE/bin
SRC=$CACHE/src
BINARIES=(multus-shim multus-daemon interop-apiproxy)
todo=()
for b in "${BINARIES[@]}"; do [ -x "$BIN/$b" ] || todo+=("$b"); done
# interop-apiproxy is ours: built again when its source here differs from the copy it was built from.
if [ -x "$BIN/interop-apiproxy" ] &&
    ! cmp -s "$REPO/tests/interop/apiproxy/main.go" "$SRC/cmd/interop-apiproxy/main.go"; then
    todo+=(interop-apiproxy)
fi
if [ ${#todo[@]} -eq 0 ]; then
    step "2/4 upstream source: skipped (binaries present in $BIN)"
    step "3/4 build: skipped (${BINARIES[*]} present in $BIN; remove them to rebuild)"
else
    if [ -f "$SRC/.complete" ]; then
        step "2/4 upstream source $TAG: present in $SRC"
    else
        MIRROR=$(find_mirror)
        if [ -z "$MIRROR" ]; then
            printf 'go-multus.sh: NOT RUN: no git directory with upstream tag %s (GO_MULTUS_MIRROR, %s, %s) and no\n' \
                "$TAG" "$REPO/../.mirror/$MIRROR_NAME" "/work/.mirror/$MIRROR_NAME" >&2
            printf 'go-multus.sh: binaries built before in %s\n' "$BIN" >&2
            exit 3
        fi
        step "2/4 upstream source $TAG from $MIRROR into $SRC"
        rm -rf "$SRC"
        mkdir -p "$SRC"
        git -C "$MIRROR" archive "$TAG" | tar -x -C "$SRC" || die "git archive $TAG failed"
        [ -d "$SRC/vendor" ] || die "$TAG has no vendor/ (cannot build offline)"
        git -C "$MIRROR" rev-parse "$TAG^{commit}" >"$SRC/.commit"
        # go.mod asks for go 1.23.4; backports has 1.23.5. Lower the go line only if the toolchain is older.
        want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$SRC/go.mod")
        have=$("$GO" env GOVERSION | sed 's/^go//')
        if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
            echo "NOTE: go.mod asks for go $want, the toolchain is $have: lowering the go line to $have"
            sed -i "s/^go $want\$/go $have/" "$SRC/go.mod"
        else
            echo "go.mod: go $want, toolchain $have: unchanged"
        fi
        touch "$SRC/.complete"
    fi
    # Our test helper (a protobuf -> JSON front for the API stand-in) is built inside upstream's module, so
    # that upstream's vendor/ serves its imports.
    mkdir -p "$SRC/cmd/interop-apiproxy"
    cp "$REPO/tests/interop/apiproxy/main.go" "$SRC/cmd/interop-apiproxy/main.go"

    step "3/4 build ${todo[*]} (offline: -mod=vendor, GOTOOLCHAIN=local, GOPROXY=off, CGO_ENABLED=0)"
    mkdir -p "$BIN" "$CACHE/gocache" "$CACHE/gopath"
    commit=$(cat "$SRC/.commit" 2>/dev/null || echo unknown)
    pkg=gopkg.in/k8snetworkplumbingwg/multus-cni.v4/pkg/multus
    ldflags="-X $pkg.version=$TAG -X $pkg.commit=$commit -X $pkg.gitTreeState=clean -X $pkg.releaseStatus=,released"
    start=$(date +%s)
    for cmd in "${todo[@]}"; do
        echo "building $cmd"
        (cd "$SRC" && env GOFLAGS=-mod=vendor GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off CGO_ENABLED=0 \
            GOCACHE="$CACHE/gocache" GOPATH="$CACHE/gopath" GOMODCACHE="$CACHE/gopath/pkg/mod" \
            "$GO" build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "./cmd/$cmd") ||
            die "go build ./cmd/$cmd failed"
        mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    done
    echo "built in $(($(date +%s) - start)) s"
fi
"$BIN/multus-shim" -version
"$BIN/multus-daemon" -version || true # exits 4 after printing its version, as upstream's does

step "4/4 cargo test -p multus-daemon --features go-interop --test go_interop"
cd "$REPO"
export GO_MULTUS_SHIM=$BIN/multus-shim GO_MULTUS_DAEMON=$BIN/multus-daemon GO_MULTUS_APIPROXY=$BIN/interop-apiproxy
# One test at a time: upstream's daemon registers its metrics globally and every test starts its own
# daemons and links; the output of each test is shown.
# shellcheck disable=SC2086
cargo test -p multus-daemon --features go-interop --test go_interop -- --test-threads=1 ${CARGO_TEST_ARGS:-}
echo "go-multus.sh: passed"

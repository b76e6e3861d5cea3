# Shared by the e2e scripts: where things are, logging.
# shellcheck shell=bash
E2E_K8S_VERSION=${E2E_K8S_VERSION:-1.20.2}
# Built binaries, the Go build cache, the source tree and the images: outside the repository, kept between runs.
E2E_CACHE=${E2E_CACHE:-/var/cache/multus-e2e/k8s-$E2E_K8S_VERSION}
E2E_BIN=$E2E_CACHE/bin
E2E_GOPATH=$E2E_CACHE/gopath
# The running cluster's state (certs, etcd data, kubeconfigs, logs, pid files); removed by `cluster.sh down`.
E2E_STATE=${E2E_STATE:-/var/tmp/multus-e2e}

log() { printf '[e2e %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

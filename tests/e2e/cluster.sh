#!/usr/bin/env bash
# A real single-node Kubernetes on this machine: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd + runc, kubelet, and Debian's reference plugins as the primary network (bridge cni0, host-local
# 10.244.0.0/24).
#
#   tests/e2e/cluster.sh up      start it (binaries from tests/e2e/setup.sh); prints nothing but logs
#   tests/e2e/cluster.sh down    stop exactly what `up` started and put the host back as it was
#   tests/e2e/cluster.sh env     print the variables a shell needs to use it (KUBECONFIG, PATH, ...)
#   tests/e2e/cluster.sh kubelet-stop | kubelet-start    (a scenario restarts the kubelet)
#
# Everything it makes is under $E2E_STATE (/var/tmp/multus-e2e) and /run/multus-e2e: certificates, etcd's data,
# kubeconfigs, logs, pid files, containerd's root and state, the kubelet's root, the CNI config and binary
# directories the runtime uses (so the host's /etc/cni/net.d and /opt/cni/bin are not touched), and the record of
# what it changed outside them (links, an iptables rule, sysctls, directories that did not exist, every mount's
# propagation: `up` makes / shared for the thick DaemonSet) for `down`.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/e2e/lib.sh
. "$HERE/lib.sh"

S=$E2E_STATE
RUN=/run/multus-e2e
SOCK=$RUN/containerd.sock
NODE=e2e-node
MASTER=e2e-master          # the macvlan master the NADs name (a veth: dummy links do not exist here)
SERVICE_IP=10.0.0.1        # the `kubernetes` service; no kube-proxy, so one DNAT rule to the API server
POD_CIDR=10.244.0.0/24
KUBECTL=$E2E_BIN/kubectl
# Paths outside $S that the cluster's programs create if missing; `down` removes those that `up` found missing.
# The last line: what the thick DaemonSet's hostPath volumes (DirectoryOrCreate) and its daemon (the socket dir)
# create on the host.
HOST_DIRS=(/var/log/pods /var/log/containers /run/containerd /var/lib/cni/multus /var/lib/cni/results /var/lib/cni
    /var/run/netns
    /run/multus /run/k8s.cni.cncf.io /etc/cni/multus/net.d /etc/cni/multus /etc/cni /var/lib/kubelet)
CGROUP_ROOT=/sys/fs/cgroup

node_ip() { ip -4 route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p'; }
kc() { "$KUBECTL" --kubeconfig "$S/admin.kubeconfig" "$@"; }
ctr_() { ctr --address "$SOCK" -n k8s.io "$@"; }

# ---------------------------------------------------------------------------------------------- what the host had
record_host() {
    mkdir -p "$S/record"
    local d
    for d in "${HOST_DIRS[@]}"; do
        [ -e "$d" ] || echo "$d" >>"$S/record/created-dirs"
    done
    ls -1 /var/lib/cni/multus 2>/dev/null >"$S/record/multus-cache-before" || true
    # Every mount's propagation, restored exactly by `down` (`up` makes / shared, below).
    findmnt -rn -o TARGET,PROPAGATION >"$S/record/propagation"
    ip netns list 2>/dev/null | awk '{print $1}' >"$S/record/netns-before" || true
    sysctl -n net.ipv4.ip_forward >"$S/record/ip_forward"
    local c
    for c in "$CGROUP_ROOT"/*/; do
        [ -e "$c/kubepods" ] || echo "$c/kubepods" >>"$S/record/created-cgroups"
    done
}

# The thick DaemonSet mounts the host's / with HostToContainer propagation (upstream's `hostroot` volume, its
# chrootDir), which the runtime allows only from a shared or slave mount; / is shared on a systemd node, private on
# this machine: made shared for the cluster's life (/ alone, not its submounts), put back by `down`.
share_root() {
    local p; p=$(findmnt -rn -o PROPAGATION --target / | head -1)
    case $p in
        *shared*) ;;
        *) mount --make-shared / && log "/ made a shared mount (was $p)" ;;
    esac
}

# Every mount that is still there gets the propagation `up` recorded (each flag as it was: private, shared,
# slave, unbindable, or slave+shared).
restore_propagation() {
    local f=$S/record/propagation target prop now
    [ -f "$f" ] || return 0
    while read -r target prop; do
        target=$(printf '%b' "$target")  # findmnt -r writes a space as \x20
        now=$(findmnt -rn -o PROPAGATION --mountpoint "$target" 2>/dev/null | tail -1) || continue
        [ -n "$now" ] && [ "$now" != "$prop" ] || continue
        case $prop in
            private) mount --make-private "$target" ;;
            shared) mount --make-private "$target" && mount --make-shared "$target" ;;
            slave) mount --make-slave "$target" ;;
            unbindable) mount --make-unbindable "$target" ;;
            shared,slave) mount --make-slave "$target" && mount --make-shared "$target" ;;
            *) false ;;
        esac && log "mount $target: propagation $now -> $prop" ||
            log "mount $target: propagation $prop not restored (is $now)"
    done <"$f"
    # Every mount as `up` found it (ours are gone by now); the record is kept for `down`'s verdict.
    cp "$f" "$RUN.propagation-before" 2>/dev/null || true
}

# After everything is down: the mounts and their propagation are what `up` recorded, else an error (exit 1).
check_propagation() {
    local f=$RUN.propagation-before
    [ -f "$f" ] || return 0
    if findmnt -rn -o TARGET,PROPAGATION | diff "$f" - >&2; then
        rm -f "$f"
        return 0
    fi
    rm -f "$f"
    log "error: the mounts or their propagation differ from what up recorded (diff above: < before, > now)"
    return 1
}

# ------------------------------------------------------------------------------------------------------ certificates
certs() {
    local p=$S/pki ip=$1
    mkdir -p "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=multus-e2e-ca \
        -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    # The API server's serving certificate: every name a client uses (the service IP reaches it through DNAT).
    cat >"$p/apiserver.ext" <<EOF
subjectAltName = IP:127.0.0.1, IP:$ip, IP:$SERVICE_IP, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage = serverAuth
EOF
    sign apiserver /CN=kube-apiserver "$p/apiserver.ext"
    # One client identity in system:masters for kubectl, the kubelet, the controller manager and the API
    # server's calls to the kubelet: this cluster tests Multus, not Kubernetes' authorization.
    printf 'extendedKeyUsage = clientAuth\n' >"$p/client.ext"
    sign admin "/O=system:masters/CN=multus-e2e-admin" "$p/client.ext"
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
    local k
    for k in admin; do
        kubeconfig "$S/$k.kubeconfig" "https://127.0.0.1:6443" "$p/$k.crt" "$p/$k.key"
    done
}

sign() {
    local p=$S/pki name=$1 subj=$2 ext=$3
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$p/$name.key" -out "$p/$name.csr" 2>/dev/null
    openssl x509 -req -in "$p/$name.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial -days 2 \
        -extfile "$ext" -out "$p/$name.crt" 2>/dev/null
}

kubeconfig() {
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "$2", certificate-authority: "$S/pki/ca.crt"}
users:
- name: e2e
  user: {client-certificate: "$3", client-key: "$4"}
contexts:
- name: e2e
  context: {cluster: e2e, user: e2e}
current-context: e2e
EOF
}

# ----------------------------------------------------------------------------------------------------- processes
# start NAME CMD...: runs it in its own session, output to logs/NAME.log, pid in pids/NAME.
start() {
    local name=$1; shift
    mkdir -p "$S/logs" "$S/pids"
    setsid "$@" >>"$S/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$S/pids/$name"
    log "started $name (pid $!)"
}

# stop NAME: SIGTERM, up to 20 s, then SIGKILL; only the pid `start` recorded, only if it is still that program.
stop() {
    local name=$1 f=$S/pids/$1 pid i
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not stop on SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
        log "stopped $name"
    fi
    rm -f "$f"
}

# wait_for DESC SECONDS CMD...: retries CMD every second until it succeeds or the bound passes.
wait_for() {
    local desc=$1 bound=$2 i; shift 2
    for i in $(seq 1 "$bound"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "$desc: not ready within $bound s"
}

# ---------------------------------------------------------------------------------------------------- the pieces
network() {
    # The macvlan master the NADs use, and the primary network's config and plugins, private to the cluster.
    ip link add "$MASTER" type veth peer name "$MASTER-p"
    ip link set "$MASTER" up
    ip link set "$MASTER-p" up
    mkdir -p "$S/cni/net.d" "$S/cni/bin"
    cp /usr/lib/cni/* "$S/cni/bin/"
    cat >"$S/cni/net.d/10-e2e-bridge.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "e2e-primary",
  "plugins": [
    { "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
      "ipam": { "type": "host-local", "subnet": "$POD_CIDR", "dataDir": "$S/cni/networks" } }
  ]
}
EOF
    # The `kubernetes` service (the address the DaemonSet's multus writes into its kubeconfig) -> the API server.
    local rule=(-d "$SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "$1:6443" -m comment --comment multus-e2e)
    iptables -t nat -A OUTPUT "${rule[@]}"
    printf '%s\n' "${rule[*]}" >"$S/record/iptables-nat-output"
}

etcd_up() {
    start etcd etcd --name e2e --data-dir "$S/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster e2e=http://127.0.0.1:2380 --log-level warn
    wait_for etcd 60 curl -fsS http://127.0.0.1:2379/health
}

apiserver_up() {
    local p=$S/pki ip=$1
    start kube-apiserver "$E2E_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
        --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$ip" --insecure-port=0 \
        --tls-cert-file="$p/apiserver.crt" --tls-private-key-file="$p/apiserver.key" --client-ca-file="$p/ca.crt" \
        --service-account-key-file="$p/sa.pub" --service-account-signing-key-file="$p/sa.key" \
        --service-account-issuer=https://kubernetes.default.svc --api-audiences=https://kubernetes.default.svc \
        --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC --allow-privileged=true \
        --kubelet-client-certificate="$p/admin.crt" --kubelet-client-key="$p/admin.key" \
        --kubelet-preferred-address-types=InternalIP --v=1
    wait_for kube-apiserver 120 kc get --raw /readyz
}

controller_manager_up() {
    local p=$S/pki
    start kube-controller-manager "$E2E_BIN/kube-controller-manager" --kubeconfig="$S/admin.kubeconfig" \
        --service-account-private-key-file="$p/sa.key" --root-ca-file="$p/ca.crt" --leader-elect=false \
        --use-service-account-credentials=false --port=0 --secure-port=0 --v=1
    # Pods need the default service account and its token (made by the controller manager).
    wait_for "the default service account's token" 120 sh -c \
        "'$KUBECTL' --kubeconfig '$S/admin.kubeconfig' get sa default -o jsonpath='{.secrets[0].name}' | grep -q ."
}

scheduler_up() {
    start kube-scheduler "$E2E_BIN/kube-scheduler" --kubeconfig="$S/admin.kubeconfig" --leader-elect=false \
        --port=0 --secure-port=0 --v=1
}

containerd_up() {
    mkdir -p "$S/containerd" "$RUN"
    cat >"$S/containerd/config.toml" <<EOF
version = 2
root = "$S/containerd/root"
state = "$RUN/containerd"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$RUN/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$S/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "e2e.local/pause:1"
  # root here lacks CAP_SYS_RESOURCE: without this every sandbox fails on oom_score_adj -998
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$S/cni/bin"
    conf_dir = "$S/cni/net.d"
    max_conf_num = 1
EOF
    start containerd containerd --config "$S/containerd/config.toml"
    wait_for containerd 60 ctr_ version
    local img
    for img in "$E2E_CACHE/images/pause.tar" "$E2E_CACHE/images/busybox.tar"; do
        ctr_ images import "$img" >/dev/null
    done
}

kubelet_up() {
    local ip=$1
    mkdir -p "$S/kubelet" "$S/manifests"
    kubeconfig "$S/kubelet.kubeconfig" "https://127.0.0.1:6443" "$S/pki/admin.crt" "$S/pki/admin.key"
    cat >"$S/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
cgroupDriver: cgroupfs
failSwapOn: false
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: "$S/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
clusterDNS: [10.0.0.10]
clusterDomain: cluster.local
staticPodPath: "$S/manifests"
fileCheckFrequency: 2s
makeIPTablesUtilChains: false
readOnlyPort: 0
volumePluginDir: "$S/kubelet/volume-plugins"
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
EOF
    start kubelet "$E2E_BIN/kubelet" --config="$S/kubelet/config.yaml" --kubeconfig="$S/kubelet.kubeconfig" \
        --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" --root-dir="$S/kubelet" \
        --cert-dir="$S/kubelet/pki" --hostname-override="$NODE" --node-ip="$ip" \
        --pod-infra-container-image=e2e.local/pause:1 --v=2
    wait_for "node $NODE registered" 90 kc get node "$NODE"
    kc wait --for=condition=Ready "node/$NODE" --timeout=120s >/dev/null
}

up() {
    [ "$(id -u)" -eq 0 ] || die "run as root"
    [ -x "$E2E_BIN/kubelet" ] || die "no binaries in $E2E_BIN: run tests/e2e/setup.sh"
    if [ -d "$S/pids" ] && [ -n "$(ls -A "$S/pids" 2>/dev/null)" ]; then
        die "a cluster is already up ($S/pids): tests/e2e/cluster.sh down first"
    fi
    rm -rf "$S"
    mkdir -p "$S"
    local ip; ip=$(node_ip)
    [ -n "$ip" ] || die "no node IP (no default route?)"
    record_host
    share_root
    local start_s; start_s=$(date +%s)
    certs "$ip"
    network "$ip"
    etcd_up
    apiserver_up "$ip"
    controller_manager_up
    scheduler_up
    containerd_up
    kubelet_up "$ip"
    log "cluster up in $(( $(date +%s) - start_s )) s: node $NODE ($ip); $(env_lines | head -1)"
}

env_lines() {
    echo "export KUBECONFIG=$S/admin.kubeconfig"
    echo "export PATH=$E2E_BIN:\$PATH"
    echo "export E2E_STATE=$S E2E_MASTER=$MASTER E2E_NODE=$NODE E2E_CONTAINERD=$SOCK"
}

# ------------------------------------------------------------------------------------------------------------ down
# Pods first, through the cluster (so each gets its CNI DEL), within a bound; whatever remains is forced below.
drain() {
    kc get --raw /readyz >/dev/null 2>&1 || return 0
    [ -S "$SOCK" ] || return 0
    log "deleting every pod"
    rm -f "$S"/manifests/*
    kc delete daemonsets --all --all-namespaces --wait=false >/dev/null 2>&1 || true
    kc delete pods --all --all-namespaces --grace-period=5 --timeout=90s >/dev/null 2>&1 ||
        log "some pods did not go within 90 s; forcing"
}

# The runtime's remains: every task and container of the k8s.io namespace, then the shims (found by our socket).
force_containers() {
    [ -S "$SOCK" ] || return 0
    local t c
    for t in $(ctr_ tasks ls -q 2>/dev/null); do
        ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
    done
    sleep 1
    for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
    for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" >/dev/null 2>&1 || true; done
}

kill_shims() {
    local d pid cmd
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        cmd=$({ tr '\0' ' ' <"$d/cmdline"; } 2>/dev/null) || continue
        case $cmd in
            containerd-shim*" -address $SOCK "* | */containerd-shim*" -address $SOCK "*)
                log "killing containerd shim $pid"
                kill -KILL "$pid" 2>/dev/null || true ;;
        esac
    done
}

# Mounts under our directories, deepest first (overlay rootfs, shm, secrets, netns of pods).
unmount_ours() {
    local m
    for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($S|$RUN)/" | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

remove_netns() {
    local n
    for n in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        grep -qx "$n" "$S/record/netns-before" 2>/dev/null && continue
        case $n in cni-*) ;; *) continue ;; esac
        umount -l "/var/run/netns/$n" 2>/dev/null || true
        rm -f "/var/run/netns/$n"
    done
}

restore_host() {
    local r=$S/record
    ip link del "$MASTER" 2>/dev/null || true
    ip link del cni0 2>/dev/null || true
    if [ -f "$r/iptables-nat-output" ]; then
        # shellcheck disable=SC2046
        iptables -t nat -D OUTPUT $(cat "$r/iptables-nat-output") 2>/dev/null || true
    fi
    [ -f "$r/ip_forward" ] && sysctl -q -w "net.ipv4.ip_forward=$(cat "$r/ip_forward")" >/dev/null
    # Cache entries the cluster's pods left (any is a leak the scenarios would have failed on).
    if [ -d /var/lib/cni/multus ] && [ -f "$r/multus-cache-before" ]; then
        local e
        for e in $(ls -1A /var/lib/cni/multus); do
            grep -qxF "$e" "$r/multus-cache-before" || rm -rf "/var/lib/cni/multus/${e:?}"
        done
    fi
    # containerd's libcni result cache: the entries of our two networks (the primary, Multus)
    rm -f /var/lib/cni/results/e2e-primary-* /var/lib/cni/results/multus-cni-network-*
    # cgroups the kubelet made, deepest first (empty by now: every container is gone).
    if [ -f "$r/created-cgroups" ]; then
        local c
        while read -r c; do
            [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done <"$r/created-cgroups"
    fi
    if [ -f "$r/created-dirs" ]; then
        local d
        while read -r d; do
            case $d in
                /var/lib/cni | /var/lib/cni/multus | /var/lib/cni/results | /var/run/netns) rmdir "$d" 2>/dev/null || true ;;
                *) rm -rf "$d" ;;
            esac
        done <"$r/created-dirs"
    fi
}

down() {
    [ -d "$S" ] || { log "nothing to take down ($S does not exist)"; return 0; }
    drain
    stop kubelet
    force_containers
    stop containerd
    kill_shims
    stop kube-scheduler
    stop kube-controller-manager
    stop kube-apiserver
    stop etcd
    unmount_ours
    remove_netns
    restore_host
    restore_propagation
    rm -rf "$RUN" "$S"
    check_propagation
    log "cluster down; host restored"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    # for the scenario that restarts the kubelet mid-way
    kubelet-stop) stop kubelet ;;
    kubelet-start) kubelet_up "$(node_ip)" ;;
    env) env_lines ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac

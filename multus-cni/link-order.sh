#!/usr/bin/env bash
# Regenerates multus-cni/link-order.txt: the functions of the `multus` binary that its common CNI calls run,
# most common first, for the linker to lay out together (build.rs passes the file to lld as
# --symbol-ordering-file).
#
# Why: a plugin lives a few milliseconds and its peak RSS is mostly the binary's code that page faults map,
# and the kernel maps code 64 KiB around each fault. Scattered over the 2.9 MB of text, the ~0.5 MB an ADD
# runs touched about 40 such windows (2.5 MiB); laid out together it touches a third of that.
#
# How: the release binary runs each call under callgrind, which lists every function executed; their
# (mangled) names go into the file in this order: standalone macvlan + host-local ADD, DEL, VERSION; then
# CHECK, layer-2 ADD/DEL, standalone host-local; then the meta-plugin with built-in macvlan delegates.
# Names carry a hash of the crate and the item's path, not of its code: the file stays valid while code
# changes, and a name that no longer exists is skipped by the linker. Re-run it after a toolchain or
# dependency update, or when benches/peak_rss.sh shows the ADD's RSS creeping up.
#
# Needs root (network namespaces), valgrind, python3.
#   multus-cni/link-order.sh [BIN]      default BIN: $CARGO_TARGET_DIR/release/multus (built first)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
if [ $# -ge 1 ]; then
    BIN=$(readlink -f "$1")
else
    cargo build -q --release -p multus-cni
    BIN=$(readlink -f "$CARGO_TARGET_DIR/release/multus")
fi
command -v valgrind >/dev/null || { echo "missing valgrind: apt-get install -y valgrind" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
OUT=multus-cni/link-order.txt
W=$(mktemp -d /tmp/link-order.XXXXXX)
NS=lo$$; M=lom$$
cleanup() { ip netns del "$NS" 2>/dev/null || true; ip link del "${M}a" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up
ip link add "${M}a" type veth peer name "${M}b"; ip link set "${M}a" up; ip link set "${M}b" up
mkdir -p "$W/bin"
for t in macvlan host-local; do ln -s "$BIN" "$W/bin/$t"; done
ln -s "$BIN" "$W/bin/multus"
export CNI_CONTAINERID=linkorder CNI_PATH=/usr/lib/cni CNI_NETNS=/run/netns/$NS
ipam='"ipam":{"type":"host-local","subnet":"10.213.0.0/24","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'$W'/ipam"}'
printf '{"cniVersion":"1.1.0","name":"lo","type":"macvlan","master":"%s","mode":"bridge",%s}' "${M}a" "$ipam" > "$W/mv.json"
printf '{"cniVersion":"1.1.0","name":"lo","type":"macvlan","master":"%s"}' "${M}a" > "$W/l2.json"
printf '{"cniVersion":"1.1.0","name":"lo","type":"multus","cniDir":"%s/cache","delegates":[{"cniVersion":"1.1.0","name":"a","type":"macvlan","master":"%s",%s},{"cniVersion":"1.1.0","name":"b","type":"macvlan","master":"%s"}]}' \
    "$W" "${M}a" "$ipam" "${M}a" > "$W/meta.json"

n=0
cg() { # group command plugin config [ifname]
    n=$((n + 1))
    CNI_COMMAND=$2 CNI_IFNAME=${5:-net1} valgrind -q --tool=callgrind --demangle=no \
        --callgrind-out-file="$W/cg.$1.$n" "$W/bin/$3" < "$4" > "$W/out.$n" || true
    if grep -q '"code"' "$W/out.$n"; then echo "warning: $3 $2 failed: $(cat "$W/out.$n")" >&2; fi
}
# Group 1: what the #4 benchmark runs (ADD, DEL), and VERSION.
cg 1 ADD macvlan "$W/mv.json"
cg 1 DEL macvlan "$W/mv.json"
echo '{"cniVersion":"1.1.0"}' > "$W/v.json"; cg 1 VERSION macvlan "$W/v.json"
# Group 2: CHECK (with the ADD's result as prevResult), layer 2, host-local alone.
CNI_COMMAND=ADD CNI_IFNAME=net1 "$W/bin/macvlan" < "$W/mv.json" > "$W/prev.json"
python3 - "$W/mv.json" "$W/prev.json" > "$W/check.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["prevResult"] = json.load(open(sys.argv[2])); print(json.dumps(c))
PY
cg 2 CHECK macvlan "$W/check.json"
CNI_COMMAND=DEL CNI_IFNAME=net1 "$W/bin/macvlan" < "$W/mv.json"
cg 2 ADD macvlan "$W/l2.json"
cg 2 DEL macvlan "$W/l2.json"
# (an IPAM plugin gets its parent's config)
cg 2 ADD host-local "$W/mv.json"
cg 2 DEL host-local "$W/mv.json"
# Group 3: the meta-plugin (kubeconfig-less) with two built-in macvlan delegates.
cg 3 ADD multus "$W/meta.json" eth0
cg 3 DEL multus "$W/meta.json" eth0

python3 - "$BIN" "$OUT" "$W"/cg.1.* -- "$W"/cg.2.* -- "$W"/cg.3.* <<'PY'
import re, subprocess, sys
binary, out, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
groups, cur = [], []
for a in rest:
    if a == "--":
        groups.append(cur); cur = []
    else:
        cur.append(a)
groups.append(cur)
# Names the binary defines in .text (nm), so that only real, orderable symbols go in.
defined = set()
for line in subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout.splitlines():
    p = line.split()
    if len(p) == 3 and p[1] in "tTwW":
        defined.add(p[2])
line_re = re.compile(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
order, seen = [], set()
for files in groups:
    for f in files:
        obs, fns, ob = {}, {}, None
        for line in open(f, errors="replace"):
            m = line_re.match(line.rstrip("\n"))
            if not m:
                continue
            kind, i, name = m.groups()
            table = obs if kind.endswith("ob") else fns
            if name is not None:
                table[i] = name
            if kind == "ob":
                ob = obs[i]
            elif kind == "fn" and ob == binary:
                sym = re.sub(r"'\d+$", "", fns[i])
                if sym in defined and sym not in seen:
                    seen.add(sym); order.append(sym)
# A name's hashes (legacy `17h<16 hex>E`, v0 crate disambiguators `Cs<base62>_`) change with the crate's
# metadata (any dependency's version or features), its path does not: write the name with its hashes as `*`
# when that pattern matches this one function only (the usual case); a generic function's pattern matches
# all its instantiations, most of them cold, so those keep their exact names.
def pattern(n):
    n = re.sub(r"17h[0-9a-f]{16}E$", "17h*", n)
    return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", n)
matches = {}
for d in defined:
    p = pattern(d)
    matches[p] = matches.get(p, 0) + 1
lines = []
for sym in order:
    p = pattern(sym)
    lines.append(p if matches[p] == 1 else sym)
with open(out, "w") as o:
    o.write("# Functions of `multus` run by common CNI calls, most common first: made by link-order.sh,\n"
            "# used by build.rs (one linker-script pattern per line; `*` stands for a hash).\n")
    o.write("\n".join(lines) + "\n")
print(f"{out}: {len(lines)} functions, {sum(1 for l in lines if '*' in l)} as patterns", file=sys.stderr)
PY

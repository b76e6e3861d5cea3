"""What every e2e scenario uses: kubectl, the guide's NAD and pod made local (the harness's master link, the local
busybox image, the IPAM store under the cluster's state), and the node's view (cache, reservations, netns, the
Multus config). Run through tests/e2e/run.sh, which brings the cluster up and installs Multus first.

Every wait has a bound; nothing is timed."""
import json
import os
import pathlib
import subprocess
import time

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "deploy" / "examples"
STATE = pathlib.Path(os.environ.get("E2E_STATE", "/var/tmp/multus-e2e"))
MASTER = os.environ.get("E2E_MASTER", "e2e-master")
NODE = os.environ.get("E2E_NODE", "e2e-node")
CONF_DIR = STATE / "cni" / "net.d"
NETWORKS = STATE / "networks"  # the e2e NADs' host-local dataDir (never the host's /var/lib/cni/networks)
PRIMARY_NETWORKS = STATE / "cni" / "networks"  # the primary network's (cluster.sh)
CACHE = pathlib.Path("/var/lib/cni/multus")
IMAGE = "e2e.local/busybox:1"
MULTUS_MANIFEST = STATE / "multus.yaml"  # what run.sh rendered and applied
GUIDE_RANGE = [f"192.168.1.{i}" for i in range(200, 217)]
WAIT = "120s"


def kubectl(*args, check=True, input=None, timeout=180):
    p = subprocess.run(["kubectl", *args], capture_output=True, text=True, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def apply(*docs, namespace=None):
    ns = ["-n", namespace] if namespace else []
    kubectl("apply", *ns, "-f", "-", input=yaml.safe_dump_all(docs))


def get(kind, name, namespace="default"):
    return json.loads(kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


# -------------------------------------------------------------------------------------------------- the guide, local
def guide_nad(name="macvlan-conf", config_edit=None):
    """deploy/examples/macvlan-conf.yaml with master = the harness's veth and the IPAM store under the cluster's
    state; config_edit(config dict) may change more."""
    nad = yaml.safe_load((EXAMPLES / "macvlan-conf.yaml").read_text())
    nad["metadata"]["name"] = name
    config = json.loads(nad["spec"]["config"])
    config["master"] = MASTER
    config["ipam"]["dataDir"] = str(NETWORKS)
    if config_edit:
        config_edit(config)
    nad["spec"]["config"] = json.dumps(config)
    return nad


def guide_pod(name="sample-pod", networks="macvlan-conf", annotations=None):
    """deploy/examples/sample-pod.yaml with the local busybox image (nothing can be pulled here)."""
    pod = yaml.safe_load((EXAMPLES / "sample-pod.yaml").read_text())
    pod["metadata"]["name"] = name
    ann = pod["metadata"].setdefault("annotations", {})
    if networks is None:
        ann.pop("k8s.v1.cni.cncf.io/networks", None)
    else:
        ann["k8s.v1.cni.cncf.io/networks"] = networks
    ann.update(annotations or {})
    pod["spec"]["terminationGracePeriodSeconds"] = 2
    for c in pod["spec"]["containers"]:
        c["image"] = IMAGE
        c["imagePullPolicy"] = "Never"
    return pod


def wait_running(*names, namespace="default", timeout=WAIT):
    kubectl("wait", "-n", namespace, "--for=condition=Ready", *[f"pod/{n}" for n in names],
            f"--timeout={timeout}", timeout=600)


def delete_pods(*names, namespace="default"):
    if names:
        kubectl("delete", "-n", namespace, "pod", *names, "--wait=true", "--timeout=120s", timeout=300)


def network_status(name, namespace="default"):
    ann = get("pod", name, namespace)["metadata"].get("annotations", {})
    return json.loads(ann.get("k8s.v1.cni.cncf.io/network-status", "[]"))


def by_interface(status):
    return {s["interface"]: s for s in status}


def exec_ip(name, *args, namespace="default"):
    return kubectl("exec", "-n", namespace, name, "--", "ip", *args).stdout


def events(name, namespace="default"):
    out = kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                  "-o", "json").stdout
    return json.loads(out)["items"]


def eventually(what, check, bound=60):
    """Retries check() once a second until it returns a true value, within `bound` seconds (not a timing
    assertion: a bound on how long to wait for a state)."""
    last = None
    for _ in range(bound):
        last = check()
        if last:
            return last
        time.sleep(1)
    raise AssertionError(f"{what}: not so within {bound} s (last: {last!r})")


# ------------------------------------------------------------------------------------------------ the node's view
def reservations(store=NETWORKS):
    """host-local reservations of the e2e NADs (or of the primary network): {ip: 'containerID ifname'}."""
    out = {}
    for f in store.glob("*/*"):
        if f.name[0].isdigit() and not f.name.startswith("last_reserved_ip"):
            out[f.name] = f.read_text().replace("\r\n", " ")
    return out


def cache_entries():
    return sorted(p.name for p in CACHE.iterdir()) if CACHE.is_dir() else []


def netns():
    return sorted(p.name for p in pathlib.Path("/var/run/netns").glob("cni-*"))


def macvlans_on_host():
    out = subprocess.run(["ip", "-o", "-d", "link", "show", "type", "macvlan"], capture_output=True,
                         text=True).stdout
    return [line for line in out.splitlines() if line.strip()]


def multus_conf():
    """The Multus config file in the runtime's config dir, parsed, or None."""
    files = sorted(CONF_DIR.glob("00-multus.conf*"))
    return json.loads(files[0].read_text()) if files else None


def multus_plugin(conf):
    return conf["plugins"][0] if "plugins" in conf else conf


def retiring_until_the_last_pod(old_ip, cache_before):
    """With a retiring Multus config in place and the pod `made-before` holding `old_ip` on net1: a new pod
    `made-after` gets the primary network alone although it names the NAD; `made-before`, deleted, is undone
    from the cache (its address, cache entry and macvlan gone); the retiring config then removes itself."""
    apply(guide_pod("made-after"))
    wait_running("made-after")
    links = exec_ip("made-after", "-o", "link")
    assert "eth0" in links and "net1" not in links, links
    assert list(reservations()) == [old_ip]
    delete_pods("made-before")
    assert reservations() == {}
    assert cache_entries() == cache_before
    assert macvlans_on_host() == []
    eventually("the retiring config removed once nothing is cached", lambda: multus_conf() is None, 30)


def wait_multus_installed():
    kubectl("rollout", "status", "-n", "kube-system", "daemonset/kube-multus-ds", f"--timeout={WAIT}", timeout=300)

    def installed():
        c = multus_conf()
        return c is not None and "kubeconfig" in multus_plugin(c) and "retiring" not in multus_plugin(c)
    eventually("00-multus config written by the DaemonSet", installed)


def install_multus(manifest=MULTUS_MANIFEST):
    kubectl("apply", "-f", str(manifest))
    wait_multus_installed()


def render(tmp_path, **multus_values):
    """Our manifests rendered with run.sh's values and these `multus` keys over them."""
    values = yaml.safe_load((STATE / "values.yaml").read_text())
    values.setdefault("multus", {}).update(multus_values)
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    out = subprocess.run(["python3", str(REPO / "deploy" / "render.py"), "--values", str(f)], capture_output=True,
                         text=True, check=True).stdout
    manifest = tmp_path / "multus.yaml"
    manifest.write_text(out)
    return manifest


@pytest.fixture
def clean_node():
    """Around a scenario: the node holds nothing of ours before and after (no reservation, cache entry, pod
    netns or macvlan link left), and its pods are deleted even when it fails."""
    before = (reservations(), cache_entries(), netns())
    assert before[0] == {}, f"reservations left by an earlier scenario: {before[0]}"
    yield
    kubectl("delete", "pods", "--all", "-n", "default", "--wait=true", "--timeout=180s", check=False, timeout=300)
    eventually(f"no reservation left (left: {reservations()})", lambda: reservations() == {}, 30)
    eventually(f"no primary address left (left: {reservations(PRIMARY_NETWORKS)})",
               lambda: reservations(PRIMARY_NETWORKS) == {}, 30)
    assert cache_entries() == before[1], f"leaked cache entries: {set(cache_entries()) - set(before[1])}"
    # the runtime removes a sandbox's netns a moment after its CNI DEL
    eventually(f"pod netns removed (left: {set(netns()) - set(before[2])})", lambda: netns() == before[2], 30)
    assert macvlans_on_host() == [], f"macvlan links on the host: {macvlans_on_host()}"


def nad(name, namespace="default", **kw):
    doc = guide_nad(name, **kw)
    doc["metadata"]["namespace"] = namespace
    return doc


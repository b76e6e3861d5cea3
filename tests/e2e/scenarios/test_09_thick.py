"""Thick mode on a real node (README, "Thick mode"): the node switched from thin to thick, the user guide through
the shim, then removal of the thick DaemonSet.

- switch: the thin DaemonSet deleted as the removal scenario deletes it (nothing cached, so its `multus uninstall`
  removes the config), then `deploy/render.py --thick` with the thick image (deploy/Dockerfile.thick, built by
  deploy/image.py) applied; the daemon answers /readyz, has copied the shim to the node's CNI bin dir and written
  `00-multus.conf` of type `multus-shim` naming its socket;
- the guide: sample-pod Running with network-status (eth0 default, net1 in 192.168.1.200-216), net1 inside the
  pod, AddedInterface events, and the daemon's /metrics counting the ADD (and the macvlan delegate run in its
  process); delete: no link, no reservation, no cache entry, the DEL counted;
- removal (README: the config is taken off at SIGTERM with cleanupConfigOnExit, our default; with a pod's
  attachment cached it is retired in place, as thin removal does): a pod made before -> the config retired (type
  `multus`, served by the thin binary the daemon installed beside the shim; no kubeconfig; naming its own path on
  the host) -> a new pod gets the primary network alone -> the old pod, deleted, is undone from the cache (net1's
  address and the cache entry released) -> the retiring config steps aside, and new pods still start on the
  primary network alone.

The NADs' host-local store is the other scenarios' (under the cluster's state directory, which the daemon's
container does not mount): the built-in host-local runs in the daemon's process, chrooted into `chrootDir`
(/hostroot, the host's root) as a plugin binary would be, so its `dataDir` is the host's. Afterwards the thin install
is put back as the other scenarios expect."""
import os
import pathlib
import re
import subprocess
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import (CONF_DIR, GUIDE_RANGE, MULTUS_MANIFEST, REPO, STATE, apply, by_interface, cache_entries,
                      delete_pods, events, eventually, exec_ip, guide_nad, guide_pod, kubectl, macvlans_on_host,
                      multus_conf, multus_plugin, netns, network_status, reservations, retiring_until_the_last_pod,
                      wait_multus_installed, wait_running)

THICK_IMAGE_TAG = "e2e-thick"  # run.sh imports deploy/Dockerfile.thick's image under this tag
BIN_DIR = STATE / "cni" / "bin"
THICK_VALUES = yaml.safe_load((REPO / "deploy" / "values-thick.yaml").read_text())
METRICS_PORT = THICK_VALUES["metricsPort"]
SOCKET = pathlib.Path(THICK_VALUES["socketDir"]) / "multus.sock"


def daemon_http(path):
    """(status, body) of GET http://127.0.0.1:<metricsPort><path> (the daemon is on the host's network), or
    (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def metric(name, **labels):
    """The sum of the samples of `name` whose labels include `labels` (values compared case-blind: verbs), from
    the daemon's /metrics."""
    status, body = daemon_http("/metrics")
    assert status == 200, body
    total = 0.0
    for line in body.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m or m.group(1) != name:
            continue
        have = {k.removeprefix("r#"): v for k, v in re.findall(r'([\w#]+)="((?:[^"\\]|\\.)*)"', m.group(2) or "")}
        if all(have.get(k, "").lower() == str(v).lower() for k, v in labels.items()):
            total += float(m.group(3))
    return total


def delete_daemonset():
    kubectl("delete", "daemonset", "-n", "kube-system", "kube-multus-ds", "--ignore-not-found", "--wait=true",
            "--timeout=120s", timeout=300)
    kubectl("wait", "--for=delete", "pod", "-n", "kube-system", "-l", "name=multus", "--timeout=120s",
            check=False, timeout=300)


def render_thick(tmp_path):
    """run.sh's values with the thick image, rendered with --thick (deploy/values-thick.yaml's defaults)."""
    values = yaml.safe_load((STATE / "values.yaml").read_text())
    values["image"]["tag"] = THICK_IMAGE_TAG
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values))
    out = subprocess.run(["python3", str(REPO / "deploy" / "render.py"), "--values", str(f), "--thick"],
                         capture_output=True, text=True, check=True).stdout
    manifest = tmp_path / "multus-thick.yaml"
    manifest.write_text(out)
    return manifest


def shim_config():
    c = multus_conf()
    return c is not None and multus_plugin(c).get("type") == "multus-shim" and c


@pytest.fixture
def thick(tmp_path):
    """The node switched to thick mode; afterwards back to the thin install run.sh made."""
    assert multus_plugin(multus_conf())["type"] == "multus", "the thin install is not in place"
    delete_daemonset()
    # nothing cached: the thin DaemonSet's `multus uninstall` removed the config (not retired it)
    eventually("the thin config removed", lambda: multus_conf() is None, 30)
    try:
        kubectl("apply", "-f", str(render_thick(tmp_path)))
        kubectl("rollout", "status", "-n", "kube-system", "daemonset/kube-multus-ds", "--timeout=180s", timeout=300)
        image = kubectl("get", "pod", "-n", "kube-system", "-l", "name=multus",
                        "-o", "jsonpath={.items[0].spec.containers[0].image}").stdout
        assert image == f"e2e.local/multus-rs:{THICK_IMAGE_TAG}", image
        eventually("the daemon's /readyz", lambda: daemon_http("/readyz")[0] == 200, 90)
        eventually("00-multus.conf of type multus-shim", shim_config, 60)
        yield
    finally:
        delete_daemonset()
        kubectl("delete", "configmap", "-n", "kube-system", "multus-daemon-config", "--ignore-not-found",
                check=False)
        # back to thin: run.sh's manifests (a retiring config left by a failure is written over)
        kubectl("apply", "-f", str(MULTUS_MANIFEST))
        wait_multus_installed()


@pytest.fixture
def thick_store():
    """The NADs' IPAM store holds nothing before and after."""
    assert reservations() == {}
    yield
    eventually(f"no thick reservation left (left: {reservations()})",
               lambda: reservations() == {}, 30)


def test_the_user_guide_in_thick_mode(thick, clean_node, thick_store):
    conf = shim_config()
    plugin = multus_plugin(conf)
    assert plugin["daemonSocketDir"].rstrip("/") == str(SOCKET.parent)
    assert SOCKET.is_socket(), f"no daemon socket at {SOCKET}"
    # the daemon copied the shim (and the thin binary, for a retiring config) to the node's CNI bin dir
    assert (BIN_DIR / "multus-shim").is_file() and os.access(BIN_DIR / "multus-shim", os.X_OK)

    netns_before, cache_before = netns(), cache_entries()
    adds, dels = metric("multus_cni_requests_total", verb="ADD", code="0"), metric("multus_cni_requests_total",
                                                                                    verb="DEL", code="0")
    macvlan_adds = metric("multus_delegate_duration_seconds_count", type="macvlan", verb="ADD", outcome="ok")

    apply(guide_nad(), guide_pod())
    wait_running("sample-pod")

    status = by_interface(network_status("sample-pod"))
    assert set(status) == {"eth0", "net1"}, status
    assert status["eth0"]["default"] is True
    assert status["eth0"]["ips"][0].startswith("10.244.0."), status["eth0"]
    net1 = status["net1"]
    assert net1["name"] == "default/macvlan-conf" and not net1.get("default")
    assert net1["ips"][0] in GUIDE_RANGE, net1

    ip_a = exec_ip("sample-pod", "a", "show", "dev", "net1")
    assert f"inet {net1['ips'][0]}/24" in ip_a, ip_a
    assert net1["mac"] in ip_a and "UP" in ip_a

    added = [e["message"] for e in events("sample-pod") if e["reason"] == "AddedInterface"]
    assert any("net1" in m and net1["ips"][0] in m and "default/macvlan-conf" in m for m in added), added

    # the ADD went through the shim to the daemon, which ran the macvlan delegate in its own process
    assert metric("multus_cni_requests_total", verb="ADD", code="0") == adds + 1
    assert metric("multus_delegate_duration_seconds_count", type="macvlan", verb="ADD", outcome="ok") \
        == macvlan_adds + 1

    held = reservations()
    assert list(held) == net1["ips"], held
    assert len(set(cache_entries()) - set(cache_before)) == 1
    assert len(set(netns()) - set(netns_before)) == 1

    delete_pods("sample-pod")
    assert reservations() == {}
    assert cache_entries() == cache_before
    eventually("the pod's netns removed", lambda: netns() == netns_before, 30)
    assert macvlans_on_host() == []
    assert metric("multus_cni_requests_total", verb="DEL", code="0") >= dels + 1


def test_removing_the_thick_daemonset(thick, clean_node, thick_store):
    cache_before = cache_entries()
    apply(guide_nad(), guide_pod("made-before"))
    wait_running("made-before")
    old_ip = by_interface(network_status("made-before"))["net1"]["ips"][0]
    assert old_ip in GUIDE_RANGE

    delete_daemonset()
    assert daemon_http("/healthz")[0] is None, "the daemon still answers after its DaemonSet was deleted"
    conf = multus_conf()
    assert conf is not None, "the config was removed although a pod's attachment is cached"
    plugin = multus_plugin(conf)
    # retired in place: served by the thin binary beside the shim, without API access, naming its host path
    assert plugin["type"] == "multus", plugin
    assert "kubeconfig" not in plugin
    config_file = sorted(CONF_DIR.glob("00-multus.conf*"))[0]
    assert plugin["retiring"]["configFile"] == str(config_file), plugin["retiring"]

    # a new pod: the primary network alone; the pod made before undone; the config steps aside
    retiring_until_the_last_pod(old_ip, cache_before)

    # the node keeps working on the primary network alone
    apply(guide_pod("after-removal"))
    wait_running("after-removal")
    assert network_status("after-removal") == [], "Multus took part although its config is gone"
    links = exec_ip("after-removal", "-o", "link")
    assert "eth0" in links and "net1" not in links, links
    delete_pods("made-after", "after-removal")

"""Removing Multus without leaks on a real node (README, "Removing Multus without leaks"), then re-installing and
upgrading in place:

- `kubectl delete` of the DaemonSet: its pod's `multus uninstall` sees the cached attachment of a pod made
  before (the cache is mounted) and leaves a *retiring* config; a new pod gets the primary network alone; the old
  pod, deleted afterwards, is undone from the cache (net1 address and cache entry released), after which the
  retiring config removes itself and the runtime uses the primary config directly;
- re-install: the normal config is back and pods get net1 again;
- upgrade in place (the DaemonSet's image changed) with a pod running: it keeps net1, is undone on delete, and
  new pods get net1 from the upgraded DaemonSet."""
from conftest import (CONF_DIR, GUIDE_RANGE, apply, by_interface, cache_entries, delete_pods, eventually, exec_ip,
                      guide_nad, guide_pod, install_multus, kubectl, multus_conf, multus_plugin, network_status,
                      reservations, retiring_until_the_last_pod, wait_multus_installed, wait_running)


def delete_daemonset():
    kubectl("delete", "daemonset", "-n", "kube-system", "kube-multus-ds", "--wait=true", "--timeout=120s",
            timeout=300)
    kubectl("wait", "--for=delete", "pod", "-n", "kube-system", "-l", "name=multus", "--timeout=120s",
            check=False, timeout=300)


def test_removal_then_reinstall(clean_node):
    cache_before = cache_entries()
    apply(guide_nad(), guide_pod("made-before"))
    wait_running("made-before")
    old_ip = by_interface(network_status("made-before"))["net1"]["ips"][0]
    assert old_ip in GUIDE_RANGE

    delete_daemonset()
    conf = eventually("a retiring Multus config", lambda: multus_conf(), 30)
    plugin = multus_plugin(conf)
    assert "retiring" in plugin, plugin
    assert "kubeconfig" not in plugin
    assert not (CONF_DIR / "multus.d" / "multus.kubeconfig").exists()

    # a new pod: the primary network alone; the pod made before undone; the config steps aside
    retiring_until_the_last_pod(old_ip, cache_before)
    delete_pods("made-after")

    install_multus()
    apply(guide_pod("after-reinstall"))
    wait_running("after-reinstall")
    assert by_interface(network_status("after-reinstall"))["net1"]["ips"][0] in GUIDE_RANGE
    delete_pods("after-reinstall")


def test_upgrade_in_place_with_pods_running(clean_node):
    apply(guide_nad(), guide_pod("running-through"))
    wait_running("running-through")
    before = by_interface(network_status("running-through"))["net1"]
    old_pod = kubectl("get", "pod", "-n", "kube-system", "-l", "name=multus",
                      "-o", "jsonpath={.items[0].metadata.name}").stdout

    kubectl("set", "image", "-n", "kube-system", "daemonset/kube-multus-ds",
            "kube-multus=e2e.local/multus-rs:e2e-next")
    try:
        wait_multus_installed()
        new_pod = kubectl("get", "pod", "-n", "kube-system", "-l", "name=multus",
                          "-o", "jsonpath={.items[0].spec.containers[0].image} {.items[0].metadata.name}").stdout
        assert new_pod.split()[0] == "e2e.local/multus-rs:e2e-next" and new_pod.split()[1] != old_pod

        assert by_interface(network_status("running-through"))["net1"] == before
        assert f"inet {before['ips'][0]}/24" in exec_ip("running-through", "a", "show", "dev", "net1")
        apply(guide_pod("after-upgrade"))
        wait_running("after-upgrade")
        assert by_interface(network_status("after-upgrade"))["net1"]["ips"][0] in GUIDE_RANGE
        delete_pods("running-through", "after-upgrade")
        assert reservations() == {}
    finally:
        kubectl("set", "image", "-n", "kube-system", "daemonset/kube-multus-ds", "kube-multus=e2e.local/multus-rs:e2e")
        wait_multus_installed()

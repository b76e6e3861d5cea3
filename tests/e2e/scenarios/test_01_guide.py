"""The user guide end to end on a real node, through our DaemonSet's install: the guide's NAD (master: the
harness's veth) and sample-pod -> Running, network-status with eth0 (default) and net1 in 192.168.1.200-216, net1
inside the pod, AddedInterface events -> delete: no link, no reservation, no cache entry left."""
import ipaddress

from conftest import (GUIDE_RANGE, apply, by_interface, cache_entries, delete_pods, events, exec_ip,
                      guide_nad, guide_pod, macvlans_on_host, multus_conf, multus_plugin, netns, network_status,
                      reservations, wait_running)


def test_the_daemonset_installed_the_multus_config():
    conf = multus_plugin(multus_conf())
    assert conf["type"] == "multus"
    assert conf["kubeconfig"].endswith("multus.d/multus.kubeconfig")
    assert conf["delegates"][0]["name"] == "e2e-primary"


def test_the_user_guide(clean_node):
    netns_before, cache_before = netns(), cache_entries()
    apply(guide_nad(), guide_pod())
    wait_running("sample-pod")

    status = by_interface(network_status("sample-pod"))
    assert set(status) == {"eth0", "net1"}, status
    assert status["eth0"]["default"] is True
    assert ipaddress.ip_address(status["eth0"]["ips"][0]) in ipaddress.ip_network("10.244.0.0/24")
    net1 = status["net1"]
    assert net1["name"] == "default/macvlan-conf"
    assert not net1.get("default")
    assert net1["ips"][0] in GUIDE_RANGE, net1

    ip_a = exec_ip("sample-pod", "a", "show", "dev", "net1")
    assert f"inet {net1['ips'][0]}/24" in ip_a, ip_a
    assert net1["mac"] in ip_a and "UP" in ip_a
    # the NAD's default route through net1 (the primary network gives none)
    assert "default via 192.168.1.1 dev net1" in exec_ip("sample-pod", "route")

    added = [e["message"] for e in events("sample-pod") if e["reason"] == "AddedInterface"]
    assert any("net1" in m and net1["ips"][0] in m and "default/macvlan-conf" in m for m in added), added
    assert any("eth0" in m for m in added), added

    held = reservations()
    assert list(held) == net1["ips"], held
    new_cache = set(cache_entries()) - set(cache_before)
    assert len(new_cache) == 1, new_cache
    assert len(set(netns()) - set(netns_before)) == 1

    delete_pods("sample-pod")
    assert reservations() == {}
    assert cache_entries() == cache_before
    assert netns() == netns_before
    assert macvlans_on_host() == []

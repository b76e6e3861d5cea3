"""What users write in the networks annotation: the JSON form (interface name, ips, mac) on a NAD declaring the
ips and mac capabilities and on one not declaring them; two NADs; one NAD twice."""
import json

from conftest import (GUIDE_RANGE, apply, by_interface, delete_pods, exec_ip, guide_nad, guide_pod,
                      network_status, reservations, wait_running)


def with_caps(config):
    config["capabilities"] = {"ips": True, "mac": True}


def test_json_annotation_on_a_nad_declaring_ips_and_mac(clean_node):
    apply(guide_nad("macvlan-caps", with_caps))
    request = [{"name": "macvlan-caps", "interface": "mynet", "ips": ["192.168.1.210/24"],
                "mac": "c2:b0:57:49:47:f1"}]
    apply(guide_pod("json-caps", json.dumps(request)))
    wait_running("json-caps")
    status = by_interface(network_status("json-caps"))
    assert set(status) == {"eth0", "mynet"}, status
    assert status["mynet"]["ips"] == ["192.168.1.210"]
    assert status["mynet"]["mac"] == "c2:b0:57:49:47:f1"
    ip_a = exec_ip("json-caps", "a", "show", "dev", "mynet")
    assert "inet 192.168.1.210/24" in ip_a and "c2:b0:57:49:47:f1" in ip_a, ip_a
    assert list(reservations()) == ["192.168.1.210"]
    delete_pods("json-caps")
    assert reservations() == {}


def test_json_annotation_on_a_nad_not_declaring_them(clean_node):
    """The guide's NAD declares no capability: the request reaches host-local and macvlan as CNI_ARGS (IP=,
    MAC=), as Go Multus passes it, and the pod runs with what it asked for."""
    apply(guide_nad())
    request = [{"name": "macvlan-conf", "interface": "plain", "ips": ["192.168.1.211/24"],
                "mac": "c2:b0:57:49:47:f2"}]
    apply(guide_pod("json-plain", json.dumps(request)))
    wait_running("json-plain")
    status = by_interface(network_status("json-plain"))
    assert set(status) == {"eth0", "plain"}, status
    assert status["plain"]["ips"] == ["192.168.1.211"], status
    assert status["plain"]["mac"] == "c2:b0:57:49:47:f2", status
    assert "inet 192.168.1.211/24" in exec_ip("json-plain", "a", "show", "dev", "plain")
    delete_pods("json-plain")
    assert reservations() == {}


def test_two_nads_and_one_nad_twice(clean_node):
    def second(config):
        config["ipam"].update(rangeStart="192.168.1.220", rangeEnd="192.168.1.230")
        config["ipam"]["routes"] = []
    apply(guide_nad(), guide_nad("macvlan-two", second))
    # one NAD twice: the one without a default route (two default routes in one pod cannot both be added)
    apply(guide_pod("two-nads", "macvlan-conf,macvlan-two"), guide_pod("nad-twice", "macvlan-two,macvlan-two"))
    wait_running("two-nads", "nad-twice")

    two = by_interface(network_status("two-nads"))
    assert set(two) == {"eth0", "net1", "net2"}, two
    assert two["net1"]["name"] == "default/macvlan-conf" and two["net1"]["ips"][0] in GUIDE_RANGE
    assert two["net2"]["name"] == "default/macvlan-two" and two["net2"]["ips"][0].startswith("192.168.1.2")
    assert 220 <= int(two["net2"]["ips"][0].rsplit(".", 1)[1]) <= 230

    twice = by_interface(network_status("nad-twice"))
    assert set(twice) == {"eth0", "net1", "net2"}, twice
    assert twice["net1"]["name"] == twice["net2"]["name"] == "default/macvlan-two"
    assert twice["net1"]["ips"] != twice["net2"]["ips"]
    assert twice["net1"]["mac"] != twice["net2"]["mac"]
    for ifname in ("net1", "net2"):
        assert f"inet {twice[ifname]['ips'][0]}/24" in exec_ip("nad-twice", "a", "show", "dev", ifname)

    held = reservations()
    assert len(held) == 4, held  # two for each pod
    delete_pods("two-nads", "nad-twice")
    assert reservations() == {}

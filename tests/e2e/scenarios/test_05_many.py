"""20 pods at once with a NAD like the guide's but a wider range (the guide's holds 17 addresses): all Running,
distinct IPs, all released on delete."""
from conftest import (apply, by_interface, delete_pods, guide_nad, guide_pod, network_status, reservations,
                      wait_running)

N = 20


def test_twenty_pods_at_once(clean_node):
    def wide(config):
        config["ipam"].update(rangeStart="192.168.1.100", rangeEnd="192.168.1.160")
    apply(guide_nad("macvlan-wide", wide))
    names = [f"many-{i}" for i in range(N)]
    apply(*[guide_pod(n, "macvlan-wide") for n in names])
    wait_running(*names, timeout="300s")
    net1 = [by_interface(network_status(n))["net1"]["ips"][0] for n in names]
    eth0 = [by_interface(network_status(n))["eth0"]["ips"][0] for n in names]
    assert len(set(net1)) == N, net1
    assert len(set(eth0)) == N, eth0
    assert sorted(reservations()) == sorted(net1)
    delete_pods(*names)
    assert reservations() == {}

"""A pod naming a NAD that does not exist: a NoNetworkFound event names it, the pod does not run; once the NAD
is created the kubelet's next attempt attaches it and the pod runs."""
from conftest import (GUIDE_RANGE, apply, by_interface, delete_pods, eventually, events, guide_nad, guide_pod,
                      kubectl, network_status, reservations, wait_running)


def test_a_missing_nad_then_created(clean_node):
    apply(guide_pod("waits-for-nad", "macvlan-late"))
    eventually("a NoNetworkFound event naming the missing NAD", lambda: [
        e for e in events("waits-for-nad") if e["reason"] == "NoNetworkFound" and "macvlan-late" in e["message"]])
    assert kubectl("get", "pod", "waits-for-nad", "-o", "jsonpath={.status.phase}").stdout == "Pending"
    assert reservations() == {}
    apply(guide_nad("macvlan-late"))
    wait_running("waits-for-nad", timeout="180s")
    assert by_interface(network_status("waits-for-nad"))["net1"]["ips"][0] in GUIDE_RANGE
    delete_pods("waits-for-nad")

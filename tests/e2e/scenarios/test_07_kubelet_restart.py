"""The kubelet restarted mid-way: a pod running before keeps its attachments (no second ADD), a pod deleted
while the kubelet is down is undone once it is back, and a new pod gets net1 after the restart."""
import subprocess

from conftest import (GUIDE_RANGE, REPO, apply, by_interface, delete_pods, eventually, exec_ip, guide_nad,
                      guide_pod, kubectl, network_status, reservations, wait_running)

CLUSTER = str(REPO / "tests" / "e2e" / "cluster.sh")


def kubelet(action):
    subprocess.run(["bash", CLUSTER, f"kubelet-{action}"], check=True, timeout=300)


def test_the_kubelet_restarted_mid_way(clean_node):
    apply(guide_nad())
    apply(guide_pod("before"), guide_pod("deleted-while-down"))
    wait_running("before", "deleted-while-down")
    before = by_interface(network_status("before"))["net1"]
    gone_ip = by_interface(network_status("deleted-while-down"))["net1"]["ips"][0]

    kubelet("stop")
    try:
        kubectl("delete", "pod", "deleted-while-down", "--wait=false")
    finally:
        kubelet("start")

    eventually("the pod deleted while the kubelet was down is gone",
               lambda: kubectl("get", "pod", "deleted-while-down", check=False).returncode != 0, 120)
    eventually("its net1 address released", lambda: gone_ip not in reservations(), 60)
    wait_running("before")
    assert by_interface(network_status("before"))["net1"] == before
    assert f"inet {before['ips'][0]}/24" in exec_ip("before", "a", "show", "dev", "net1")
    assert list(reservations()) == before["ips"]

    apply(guide_pod("after"))
    wait_running("after")
    assert by_interface(network_status("after"))["net1"]["ips"][0] in GUIDE_RANGE
    delete_pods("before", "after")

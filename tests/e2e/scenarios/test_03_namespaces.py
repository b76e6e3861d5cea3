"""A NAD in another namespace (`other/macvlan-other`): allowed without namespaceIsolation; with it (our
DaemonSet re-rendered with multus.namespaceIsolation: true), refused for a pod of `default` with an event, and
still allowed for a pod in the NAD's own namespace."""
import pytest

from conftest import (apply, by_interface, delete_pods, events, install_multus, kubectl, multus_conf,
                      multus_plugin, nad, network_status, render, wait_running, eventually, guide_pod)

OTHER = "e2e-other"


@pytest.fixture
def other_namespace():
    kubectl("create", "namespace", OTHER)
    apply(nad("macvlan-other", OTHER))
    yield
    kubectl("delete", "namespace", OTHER, "--wait=true", "--timeout=120s", timeout=300)


def test_a_nad_of_another_namespace_without_isolation(clean_node, other_namespace):
    apply(guide_pod("cross-ns", f"{OTHER}/macvlan-other"))
    wait_running("cross-ns")
    status = by_interface(network_status("cross-ns"))
    assert status["net1"]["name"] == f"{OTHER}/macvlan-other", status
    delete_pods("cross-ns")


def test_namespace_isolation(clean_node, other_namespace, tmp_path):
    install_multus(render(tmp_path, namespaceIsolation=True))
    try:
        assert multus_plugin(multus_conf()).get("namespaceIsolation") is True
        apply(guide_pod("isolated", f"{OTHER}/macvlan-other"))
        # refused: an event says why and the pod does not run
        eventually("a FailedCreatePodSandBox event naming the namespace isolation",
                   lambda: [e for e in events("isolated") if e["reason"] == "FailedCreatePodSandBox"
                            and "namespace" in e["message"].lower()])
        assert kubectl("get", "pod", "isolated", "-o", "jsonpath={.status.phase}").stdout == "Pending"
        # the NAD's own namespace may use it
        own = guide_pod("own-ns", "macvlan-other")
        apply(own, namespace=OTHER)
        wait_running("own-ns", namespace=OTHER)
        assert by_interface(network_status("own-ns", OTHER))["net1"]["name"] == f"{OTHER}/macvlan-other"
        delete_pods("own-ns", namespace=OTHER)
        delete_pods("isolated")
    finally:
        install_multus()
    assert multus_plugin(multus_conf()).get("namespaceIsolation") in (None, False)

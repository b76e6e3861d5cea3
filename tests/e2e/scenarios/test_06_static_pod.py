"""A static pod (a manifest in the kubelet's staticPodPath) with the guide's annotation: Multus reads its mirror
pod from the API, attaches net1 and writes network-status there; removing the manifest releases everything."""
import os

import yaml

from conftest import (GUIDE_RANGE, NODE, STATE, apply, by_interface, eventually, exec_ip, guide_nad, guide_pod,
                      kubectl, network_status, reservations)

MANIFEST = STATE / "manifests" / "static-multus.yaml"
MIRROR = f"static-multus-{NODE}"


def test_a_static_pod(clean_node):
    apply(guide_nad())
    pod = guide_pod("static-multus")
    pod["metadata"]["namespace"] = "default"
    tmp = MANIFEST.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(pod))
    os.rename(tmp, MANIFEST)  # the kubelet sees a whole file
    try:
        eventually("the mirror pod", lambda: kubectl("get", "pod", MIRROR, check=False).returncode == 0, 120)
        kubectl("wait", "--for=condition=Ready", f"pod/{MIRROR}", "--timeout=120s", timeout=300)
        status = eventually("network-status on the mirror pod",
                            lambda: by_interface(network_status(MIRROR)) or None, 60)
        assert status["net1"]["ips"][0] in GUIDE_RANGE, status
        assert f"inet {status['net1']['ips'][0]}/24" in exec_ip(MIRROR, "a", "show", "dev", "net1")
    finally:
        MANIFEST.unlink()
    eventually("the static pod gone", lambda: kubectl("get", "pod", MIRROR, check=False).returncode != 0, 120)
    eventually("its reservation released", lambda: reservations() == {}, 60)

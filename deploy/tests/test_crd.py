"""The NetworkAttachmentDefinition CRD is upstream's: same names, so `kubectl get nad` works as with Go Multus."""
import pathlib

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent


def test_the_crd_has_upstreams_names_and_short_names():
    crd = yaml.safe_load((DEPLOY / "crd.yaml").read_text())
    names = crd["spec"]["names"]
    # k8snetworkplumbingwg/multus-cni deployments/multus-daemonset.yml (since 5dd752d, 2026-02-18).
    assert names["shortNames"] == ["nad", "net-attach-def"]
    assert names["plural"] == "network-attachment-definitions"
    assert names["singular"] == "network-attachment-definition"
    assert crd["metadata"]["name"] == "network-attachment-definitions.k8s.cni.cncf.io"

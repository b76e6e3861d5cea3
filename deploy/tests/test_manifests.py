"""The deployment manifests: rendered from the data values, validated against the Kubernetes schemas with
kubernetes-validate, and consistent with what `multus install` accepts."""
import os
import pathlib
import subprocess
import sys

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DEPLOY))
import render  # noqa: E402

K8S_VERSION = "1.33.0"
REPO = DEPLOY.parent


def rendered(values_file=None):
    return render.manifests(render.load_values(values_file))


@pytest.mark.parametrize("index", range(5))
def test_every_manifest_is_valid_kubernetes(index):
    doc = rendered()[index]
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_nad_of_the_user_guide_is_valid_against_the_crd_schema():
    crd = yaml.safe_load((DEPLOY / "crd.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    nad = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
           "metadata": {"name": "macvlan-conf"},
           "spec": {"config": '{"cniVersion":"0.3.0","type":"macvlan","master":"ens5","mode":"bridge"}'}}
    jsonschema.validate(nad, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"spec": {"config": {"not": "a string"}}}, schema)


def test_values_reach_the_install_arguments(tmp_path):
    over = tmp_path / "v.yaml"
    over.write_text("multus:\n  namespaceIsolation: true\n  globalNamespaces: default,kube-system\n"
                    "  logLevel: debug\ncni:\n  version: 1.0.0\n  primaryConfig: 10-antrea.conflist\n"
                    "  confDir: /var/lib/rancher/k3s/agent/etc/cni/net.d\n")
    ds = rendered(over)[4]
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    for want in ["--namespace-isolation", "--global-namespaces=default,kube-system", "--multus-log-level=debug",
                 "--cni-version=1.0.0", "--primary-config=10-antrea.conflist", "--cleanup-config-on-exit", "--watch",
                 # a retiring config names its path on the host, so the host's confDir must reach install
                 "--cni-conf-dir-host=/var/lib/rancher/k3s/agent/etc/cni/net.d"]:
        assert want in args, (want, args)


def test_the_install_arguments_are_ones_the_binary_accepts():
    """Every flag the DaemonSet passes must be a flag of `multus install` (read from its --help)."""
    if os.environ.get("MULTUS_BIN"):
        bin_path = pathlib.Path(os.environ["MULTUS_BIN"])
    else:
        subprocess.run(["cargo", "build", "-q", "-p", "multus-cni"], cwd=REPO, check=True)
        bin_path = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "multus"
    help_text = subprocess.run([str(bin_path), "install", "--help"], capture_output=True, text=True,
                               check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    over_args = render.install_args(render.merge(render.load_values(), {
        "multus": {"namespaceIsolation": True, "globalNamespaces": "a", "readinessIndicatorFile": "/r",
                   "additionalBinDir": "/b"}, "cni": {"version": "1.0.0", "primaryConfig": "p.conf"}}))
    for a in over_args[1:]:
        flag = a.split("=")[0]
        assert flag in help_text, f"{flag} is not a flag of multus install"


@pytest.mark.parametrize("bad, where", [
    ("image:\n  tag: ''\n", "image.tag"),
    ("multus:\n  logLevel: loud\n", "multus.logLevel"),
    ("cni:\n  confDir: relative/dir\n", "cni.confDir"),
    ("cni:\n  version: 0.2.0\n", "cni.version"),
    ("cni:\n  cacheDir: relative\n", "cni.cacheDir"),
    ("namespace: Kube_System\n", "namespace"),
    ("multus:\n  globalNamespaces: 'a,,b'\n", "multus.globalNamespaces"),
    ("unknown: 1\n", "(top)"),
])
def test_bad_values_are_refused_naming_the_key(tmp_path, bad, where, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(bad)
    assert render.main(["--values", str(f)]) == 1
    assert where in capsys.readouterr().err


def test_the_demo_examples_are_valid():
    """The user guide's pod validates against the Kubernetes schemas, its NAD against our CRD's schema."""
    pod = yaml.safe_load((DEPLOY / "examples" / "sample-pod.yaml").read_text())
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "macvlan-conf"
    nad = yaml.safe_load((DEPLOY / "examples" / "macvlan-conf.yaml").read_text())
    crd = yaml.safe_load((DEPLOY / "crd.yaml").read_text())
    jsonschema.validate(nad, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    assert nad["kind"] == crd["spec"]["names"]["kind"]
    assert nad["apiVersion"] == f"{crd['spec']['group']}/v1"


def test_the_attachment_cache_is_mounted_where_uninstall_looks(tmp_path):
    """`multus uninstall` looks for the cache at /host/<cniDir>: without the mount it cannot tell that nothing is
    cached and always leaves a retiring config (README, "Removing Multus without leaks")."""
    ds = rendered()[4]
    pod = ds["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    assert volumes["cache"] == "/var/lib/cni/multus"
    assert mounts["cache"] == "/host/var/lib/cni/multus"
    assert not any(a.startswith("--multus-cni-dir=") for a in pod["containers"][0]["args"])
    over = tmp_path / "v.yaml"
    over.write_text("cni:\n  cacheDir: /srv/multus-cache\n")
    pod = rendered(over)[4]["spec"]["template"]["spec"]
    assert {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}["cache"] == "/srv/multus-cache"
    assert {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}["cache"] == \
        "/host/srv/multus-cache"
    assert "--multus-cni-dir=/srv/multus-cache" in pod["containers"][0]["args"]

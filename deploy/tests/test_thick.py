"""The thick variant (render.py --thick): valid Kubernetes, a daemon config the daemon binary accepts, and
paths that meet: the socket the daemon makes is the one the shim on the host reaches, the chroot holds the
host's root, the probes ask the metrics port."""
import json
import os
import pathlib
import subprocess
import sys

import kubernetes_validate
import pytest

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DEPLOY))
import render  # noqa: E402
import thick  # noqa: E402

K8S_VERSION = "1.33.0"
REPO = DEPLOY.parent


def rendered(thick_values=None):
    return thick.manifests(render.load_values(), thick.load_thick_values(thick_values, render.merge))


def by_kind(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


@pytest.mark.parametrize("index", range(6))
def test_every_thick_manifest_is_valid_kubernetes(index):
    kubernetes_validate.validate(rendered()[index], K8S_VERSION, strict=True)


def daemon_bin():
    if os.environ.get("MULTUS_DAEMON_BIN"):
        return pathlib.Path(os.environ["MULTUS_DAEMON_BIN"])
    subprocess.run(["cargo", "build", "-q", "-p", "multus-daemon"], cwd=REPO, check=True)
    return pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "multus-daemon"


def test_the_daemon_accepts_its_config(tmp_path):
    over = tmp_path / "t.yaml"
    over.write_text("connectionLimit: 64\nmetricsPort: 9191\n")
    cm = by_kind(rendered(over), "ConfigMap")
    f = tmp_path / "daemon-config.json"
    f.write_text(cm["data"]["daemon-config.json"])
    run = subprocess.run([str(daemon_bin()), "-config", str(f), "-check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    f.write_text(json.dumps({**json.loads(f.read_text()), "connectionLimit": 0}))
    run = subprocess.run([str(daemon_bin()), "-config", str(f), "-check"], capture_output=True, text=True)
    assert run.returncode == 1 and "connection limit" in run.stderr


def test_paths_meet():
    docs = rendered()
    conf = json.loads(by_kind(docs, "ConfigMap")["data"]["daemon-config.json"])
    ds = by_kind(docs, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    host = {v["name"]: v.get("hostPath", {}).get("path") for v in pod["volumes"]}
    # The daemon's socket dir is the shim's, seen through the /run mount.
    assert conf["socketDir"] == "/host" + conf["daemonSocketDir"]
    assert host[mounts["/host/run"]] == "/run"
    # Plugins run chrooted into the host's root; the shim goes to the host's CNI bin dir.
    assert host[mounts[conf["chrootDir"]]] == "/"
    assert host[mounts[conf["shimBinDir"]]] == render.load_values()["cni"]["binDir"]
    assert host[mounts[conf["cniConfigDir"]]] == render.load_values()["cni"]["confDir"]
    assert conf["cniConfigDirHost"] == render.load_values()["cni"]["confDir"]
    # The config file the command names is the ConfigMap's.
    assert c["args"] == ["-config", "/etc/cni/net.d/multus.d/daemon-config.json"]
    assert mounts["/etc/cni/net.d/multus.d"] == "multus-daemon-config"
    for probe, path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
        assert c[probe]["httpGet"] == {"path": path, "port": conf["metricsPort"], "host": "127.0.0.1"}
    assert pod["hostNetwork"] and pod["hostPID"]
    assert pod["terminationGracePeriodSeconds"] > conf["drainTimeout"]


def test_rbac_lets_the_cache_watch_and_the_status_be_patched():
    rules = by_kind(rendered(), "ClusterRole")["rules"]
    pods = next(r for r in rules if r["resources"] == ["pods"])
    status = next(r for r in rules if r["resources"] == ["pods/status"])
    assert {"list", "watch", "get"} <= set(pods["verbs"])
    assert "patch" in status["verbs"]


def test_thin_values_reach_the_daemon_config(tmp_path):
    over = tmp_path / "v.yaml"
    over.write_text("multus:\n  namespaceIsolation: true\n  logLevel: debug\n  cleanupConfigOnExit: false\n"
                    "cni:\n  version: 1.0.0\n  primaryConfig: 10-antrea.conflist\n")
    docs = thick.manifests(render.load_values(over), thick.load_thick_values(None, render.merge))
    conf = json.loads(by_kind(docs, "ConfigMap")["data"]["daemon-config.json"])
    assert conf["namespaceIsolation"] is True and conf["logLevel"] == "debug"
    assert conf["cniVersion"] == "1.0.0" and conf["multusMasterCNI"] == "10-antrea.conflist"
    assert conf["cleanupConfigOnExit"] is False


def test_a_retiring_config_names_the_hosts_config_dir(tmp_path):
    """The daemon retires its config at SIGTERM when pods are cached; the retiring config names its path on
    the host, which is cni.confDir (not the container's /host/etc/cni/net.d, nor a default /etc/cni/net.d)."""
    over = tmp_path / "v.yaml"
    over.write_text("cni:\n  confDir: /var/tmp/e2e/cni/net.d\n")
    docs = thick.manifests(render.load_values(over), thick.load_thick_values(None, render.merge))
    conf = json.loads(by_kind(docs, "ConfigMap")["data"]["daemon-config.json"])
    assert conf["cniConfigDirHost"] == "/var/tmp/e2e/cni/net.d"
    ds = by_kind(docs, "DaemonSet")["spec"]["template"]["spec"]
    cni_vol = next(v for v in ds["volumes"] if v["name"] == "cni")
    assert cni_vol["hostPath"]["path"] == conf["cniConfigDirHost"]


@pytest.mark.parametrize("bad, where", [
    ("socketDir: /var/run/multus\n", "socketDir"),
    ("metricsPort: 0\n", "metricsPort"),
    ("unknown: 1\n", "(top)"),
])
def test_bad_thick_values_are_refused_naming_the_key(tmp_path, bad, where, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(bad)
    assert render.main(["--thick", "--thick-values", str(f)]) == 1
    assert where in capsys.readouterr().err


def test_the_command_line_renders_the_thick_variant(capsys):
    assert render.main(["--thick"]) == 0
    out = capsys.readouterr().out
    assert "multus-daemon-config" in out and "/usr/bin/multus-daemon" in out

#!/usr/bin/env python3
"""Renders the Multus (Rust) manifests from data values.

    python3 deploy/render.py [--values my-values.yaml] > multus.yaml
    python3 deploy/render.py --thick [--values ...] [--thick-values my-thick.yaml] > multus-thick.yaml

The defaults are deploy/values.yaml; a --values file overrides them key by key. The merged values are checked
against deploy/values.schema.json before anything is printed. Output: the NetworkAttachmentDefinition CRD, the
ServiceAccount, ClusterRole and ClusterRoleBinding, and the DaemonSet whose container runs `multus install
--watch` on every node. With --thick: the thick variant instead (deploy/thick.py: a multus-daemon per node, the
shim copied to the host, probes, a metrics port).
"""
import argparse
import copy
import json
import pathlib
import sys

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_CACHE_DIR = "/var/lib/cni/multus"  # Multus' cniDir when the config names none


def merge(base, over):
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_values(path=None):
    values = yaml.safe_load((HERE / "values.yaml").read_text())
    if path:
        values = merge(values, yaml.safe_load(pathlib.Path(path).read_text()))
    schema = json.loads((HERE / "values.schema.json").read_text())
    jsonschema.validate(values, schema)
    return values


def install_args(v):
    m, cni = v["multus"], v["cni"]
    # --cni-conf-dir-host: the config dir as the host sees it, which a retiring config names as its own path (the
    # meta-plugin removes that file once nothing is cached)
    args = ["install", "--watch", "--cni-conf-dir=/host/etc/cni/net.d", "--cni-bin-dir=/host/opt/cni/bin",
            f"--cni-conf-dir-host={cni['confDir']}",
            f"--multus-kubeconfig-file-host={cni['confDir']}/multus.d/multus.kubeconfig"]
    if m.get("cleanupConfigOnExit", True):
        args.append("--cleanup-config-on-exit")
    if m.get("namespaceIsolation"):
        args.append("--namespace-isolation")
    for key, flag in [("globalNamespaces", "--global-namespaces"), ("logLevel", "--multus-log-level"),
                      ("logFile", "--multus-log-file"), ("readinessIndicatorFile", "--readiness-indicator-file"),
                      ("additionalBinDir", "--additional-bin-dir")]:
        if m.get(key):
            args.append(f"{flag}={m[key]}")
    if "logToStderr" in m:
        args.append(f"--multus-log-to-stderr={'true' if m['logToStderr'] else 'false'}")
    if cni.get("version"):
        args.append(f"--cni-version={cni['version']}")
    if cni.get("primaryConfig"):
        args.append(f"--primary-config={cni['primaryConfig']}")
    if cni.get("cacheDir", DEFAULT_CACHE_DIR) != DEFAULT_CACHE_DIR:
        args.append(f"--multus-cni-dir={cni['cacheDir']}")
    return args


def cache_mount_path(v):
    """Where the host's attachment cache is seen in the container: /host/<cacheDir>, the first place `multus
    uninstall` looks, so it removes the config when nothing is cached and retires it otherwise."""
    return "/host" + v["cni"].get("cacheDir", DEFAULT_CACHE_DIR)


def access(ns, pod_verbs, status_verbs):
    """The CRD and the API access both variants need: ServiceAccount `multus`, its ClusterRole (NADs read;
    `pod_verbs` on pods, `status_verbs` on pods/status; events written) and ClusterRoleBinding."""
    crd = yaml.safe_load((HERE / "crd.yaml").read_text())
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "multus", "namespace": ns}}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "multus"},
        "rules": [
            {"apiGroups": ["k8s.cni.cncf.io"], "resources": ["*"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": pod_verbs},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": status_verbs},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch", "update"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "multus"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "multus"},
        "subjects": [{"kind": "ServiceAccount", "name": "multus", "namespace": ns}],
    }
    return [crd, sa, role, binding]


def manifests(v):
    ns = v["namespace"]
    image = v["image"]
    labels = {"app": "multus", "name": "multus"}
    ds = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-multus-ds", "namespace": ns, "labels": {"tier": "node", **labels}},
        "spec": {
            "selector": {"matchLabels": {"name": "multus"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"tier": "node", **labels}},
                "spec": {
                    "hostNetwork": True,
                    "serviceAccountName": "multus",
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"},
                                    {"operator": "Exists", "effect": "NoExecute"}],
                    "terminationGracePeriodSeconds": 10,
                    "containers": [{
                        "name": "kube-multus",
                        "image": f"{image['repository']}:{image['tag']}",
                        "imagePullPolicy": image.get("pullPolicy", "IfNotPresent"),
                        "command": ["/usr/bin/multus"],
                        "args": install_args(v),
                        "resources": v["resources"],
                        "securityContext": {"privileged": True},
                        "volumeMounts": [
                            {"name": "cni", "mountPath": "/host/etc/cni/net.d"},
                            {"name": "cnibin", "mountPath": "/host/opt/cni/bin"},
                            {"name": "cache", "mountPath": cache_mount_path(v)},
                        ],
                    }],
                    "volumes": [
                        {"name": "cni", "hostPath": {"path": v["cni"]["confDir"], "type": "DirectoryOrCreate"}},
                        {"name": "cnibin", "hostPath": {"path": v["cni"]["binDir"], "type": "DirectoryOrCreate"}},
                        {"name": "cache", "hostPath": {"path": v["cni"].get("cacheDir", DEFAULT_CACHE_DIR),
                                                       "type": "DirectoryOrCreate"}},
                    ],
                },
            },
        },
    }
    return access(ns, ["get"], ["get", "update"]) + [ds]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--values", help="a YAML file overriding deploy/values.yaml")
    p.add_argument("--thick", action="store_true", help="the thick variant (multus-daemon + multus-shim)")
    p.add_argument("--thick-values", help="a YAML file overriding deploy/values-thick.yaml (with --thick)")
    a = p.parse_args(argv)
    try:
        values = load_values(a.values)
        if a.thick:
            import thick
            docs = thick.manifests(values, thick.load_thick_values(a.thick_values, merge))
    except jsonschema.ValidationError as e:
        path = ".".join(str(x) for x in e.absolute_path) or "(top)"
        print(f"render.py: invalid value at {path}: {e.message}", file=sys.stderr)
        return 1
    if not a.thick:
        docs = manifests(values)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

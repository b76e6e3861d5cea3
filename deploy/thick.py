"""The thick variant of the manifests (`python3 deploy/render.py --thick`): upstream's thick layout with our
binaries. One DaemonSet pod per node runs `multus-daemon` (watch cache, the meta-plugin in-process, metrics),
configured by the `multus-daemon-config` ConfigMap (upstream's daemon-config.json keys and ours); at start the
daemon copies the `multus` binary of the image to the host's CNI bin dir as `multus-shim` and writes
`00-multus.conf` for it. The kubelet probes `/healthz` and `/readyz` on the metrics port, which Prometheus
scrapes at `/metrics`.

Thick values come from deploy/values-thick.yaml (checked against values-thick.schema.json), overridden with
--thick-values; the namespace, image, CNI directories, log settings and resources are the thin values'.
"""
import json
import pathlib

import jsonschema
import yaml

HERE = pathlib.Path(__file__).resolve().parent


def load_thick_values(path=None, merge=None):
    values = yaml.safe_load((HERE / "values-thick.yaml").read_text())
    if path:
        over = yaml.safe_load(pathlib.Path(path).read_text())
        values = merge(values, over) if merge else {**values, **(over or {})}
    schema = json.loads((HERE / "values-thick.schema.json").read_text())
    jsonschema.validate(values, schema)
    return values


def daemon_config(v, t):
    """daemon-config.json: paths as the daemon's container sees them (the host's / is /hostroot, its CNI
    config dir /host/etc/cni/net.d, its /run /host/run)."""
    m, cni = v["multus"], v["cni"]
    conf = {
        "chrootDir": "/hostroot",
        "logLevel": m.get("logLevel", "verbose"),
        "logToStderr": m.get("logToStderr", True),
        "cniConfigDir": "/host/etc/cni/net.d",
        # the config dir as the host sees it: a retiring config names its own path there (the thin meta-plugin
        # on the host removes that file once nothing is cached)
        "cniConfigDirHost": cni["confDir"],
        "multusAutoconfigDir": "/host/etc/cni/net.d",
        "multusConfigFile": "auto",
        "socketDir": "/host" + t["socketDir"],
        "daemonSocketDir": t["socketDir"],
        "metricsPort": t["metricsPort"],
        "shimBinDir": "/host/opt/cni/bin",
        "binDir": cni["binDir"],
        "cleanupConfigOnExit": m.get("cleanupConfigOnExit", True),
        "drainTimeout": t["drainTimeout"],
    }
    if cni.get("version"):
        conf["cniVersion"] = cni["version"]
    if cni.get("primaryConfig"):
        conf["multusMasterCNI"] = cni["primaryConfig"]
    if m.get("logFile"):
        conf["logFile"] = m["logFile"]
    if m.get("namespaceIsolation"):
        conf["namespaceIsolation"] = True
    if m.get("globalNamespaces"):
        conf["globalNamespaces"] = m["globalNamespaces"]
    if m.get("readinessIndicatorFile"):
        conf["readinessindicatorfile"] = m["readinessIndicatorFile"]
    if t.get("connectionLimit"):
        conf["connectionLimit"] = t["connectionLimit"]
    return conf


def host_path(name, path, mount, propagation=None, type_="DirectoryOrCreate"):
    vol = {"name": name, "hostPath": {"path": path, "type": type_}}
    m = {"name": name, "mountPath": mount}
    if propagation:
        m["mountPropagation"] = propagation
    return vol, m


def daemonset(v, t):
    ns, image, cni = v["namespace"], v["image"], v["cni"]
    labels = {"app": "multus", "name": "multus"}
    mounts = [
        host_path("cni", cni["confDir"], "/host/etc/cni/net.d"),
        host_path("cnibin", cni["binDir"], "/host/opt/cni/bin"),
        host_path("hostroot", "/", "/hostroot", "HostToContainer", "Directory"),
        host_path("host-run", "/run", "/host/run"),
        host_path("host-run-netns", "/run/netns", "/run/netns", "HostToContainer"),
        host_path("host-var-lib-cni", "/var/lib/cni", "/var/lib/cni"),
        host_path("host-var-lib-kubelet", "/var/lib/kubelet", "/var/lib/kubelet", "HostToContainer"),
        host_path("host-run-k8s-cni-cncf-io", "/run/k8s.cni.cncf.io", "/run/k8s.cni.cncf.io"),
        host_path("multus-conf-dir", "/etc/cni/multus/net.d", "/etc/cni/multus/net.d"),
    ]
    volumes = [vol for vol, _ in mounts]
    volume_mounts = [m for _, m in mounts]
    volumes.append({"name": "multus-daemon-config",
                    "configMap": {"name": "multus-daemon-config",
                                  "items": [{"key": "daemon-config.json", "path": "daemon-config.json"}]}})
    volume_mounts.append({"name": "multus-daemon-config", "mountPath": "/etc/cni/net.d/multus.d", "readOnly": True})
    probe = lambda path, period: {  # noqa: E731
        "httpGet": {"path": path, "port": t["metricsPort"], "host": "127.0.0.1"},
        "periodSeconds": period, "timeoutSeconds": 2, "failureThreshold": 3}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "kube-multus-ds", "namespace": ns, "labels": {"tier": "node", **labels}},
        "spec": {
            "selector": {"matchLabels": {"name": "multus"}},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"tier": "node", **labels},
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(t["metricsPort"])}},
                "spec": {
                    "hostNetwork": True,
                    "hostPID": True,
                    "serviceAccountName": "multus",
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists", "effect": "NoSchedule"},
                                    {"operator": "Exists", "effect": "NoExecute"}],
                    "terminationGracePeriodSeconds": t["drainTimeout"] + 10,
                    "containers": [{
                        "name": "kube-multus",
                        "image": f"{image['repository']}:{image['tag']}",
                        "imagePullPolicy": image.get("pullPolicy", "IfNotPresent"),
                        "command": ["/usr/bin/multus-daemon"],
                        "args": ["-config", "/etc/cni/net.d/multus.d/daemon-config.json"],
                        "env": [{"name": "MULTUS_NODE_NAME",
                                 "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "ports": [{"name": "metrics", "containerPort": t["metricsPort"], "protocol": "TCP"}],
                        "livenessProbe": probe("/healthz", 10),
                        "readinessProbe": probe("/readyz", 5),
                        "resources": t["resources"],
                        "securityContext": {"privileged": True},
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "volumeMounts": volume_mounts,
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def manifests(v, t):
    """CRD, ServiceAccount, ClusterRole (the watch cache lists and watches pods, the status is patched),
    ClusterRoleBinding, the daemon's ConfigMap and the DaemonSet."""
    ns = v["namespace"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": "multus-daemon-config", "namespace": ns, "labels": {"tier": "node", "app": "multus"}},
          "data": {"daemon-config.json": json.dumps(daemon_config(v, t), indent=4) + "\n"}}
    from render import access  # the thin variant's, with the watch cache's verbs
    return access(ns, ["get", "list", "watch"], ["get", "update", "patch"]) + [cm, daemonset(v, t)]


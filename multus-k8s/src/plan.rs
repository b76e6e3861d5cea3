//! Planning a pod's attachments: pure logic from the pod, its NADs and the Multus config to the ordered
//! [`Attachment`]s the pipeline runs.
//!
//! Two steps, so that the API calls stay outside: [`requests`] says which networks the pod gets (default
//! network first, then `defaultNetworks`, then the networks annotation) and which NADs must be fetched;
//! [`build`] turns them, with the fetched NADs, into attachments:
//!
//! - interface names: the default network gets `CNI_IFNAME`; a requested name wins; else `net<idx>` where
//!   idx is the position in the whole list (the default network is 0); a name used twice is an error;
//! - runtime config: the kubelet's only for the default network; `ips`, `mac`, `infiniband-guid`,
//!   `portMappings`, `bandwidth` of an element become its `runtimeConfig` (reaching the plugins that declare
//!   the capability), and `ips` / `mac` also `IP=` / `MAC=` in `CNI_ARGS`, as Go Multus does;
//! - devices: the element's `deviceID`, else the next device of the NAD's resource from the checkpoint
//!   (sorted, as Go Multus does; none left is no error);
//! - `cni-args` are merged into `args.cni` of every plugin;
//! - `default-route` on at most one element.

use crate::annotation::{self, NetworkSelection};
use crate::nad::{self, DevicePool};
use multus_core::cni::{CniError, NetworkConfig};
use multus_core::pipeline::{Attachment, Attachments};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// A pod, reduced to what Multus reads.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pod {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

impl Pod {
    /// Reads a pod API object.
    pub fn from_json(v: &Value) -> Result<Pod, CniError> {
        let meta = &v["metadata"];
        let s = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
        if s("name").is_empty() {
            return Err(CniError::decoding("pod object without metadata.name"));
        }
        let annotations = meta["annotations"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Pod {
            namespace: s("namespace"),
            name: s("name"),
            uid: s("uid"),
            resource_version: s("resourceVersion"),
            annotations,
        })
    }
}

/// The parts of the Multus config that decide a pod's networks.
#[derive(Debug, Clone, Default)]
pub struct PlanConfig {
    /// `clusterNetwork`: a NAD name (in `multusNamespace`), a network name in `confDir`, a directory (its
    /// first config file) or a file.
    pub cluster_network: Option<String>,
    /// `defaultNetworks`: networks every pod gets after the cluster network.
    pub default_networks: Vec<String>,
    /// `delegates` (with `kubeconfig`: the first is the default network unless `clusterNetwork` is set).
    pub delegates: Vec<NetworkConfig>,
    /// `multusNamespace` (upstream default `kube-system`).
    pub multus_namespace: String,
    /// `namespaceIsolation`.
    pub namespace_isolation: bool,
    /// `globalNamespaces`: namespaces whose NADs every pod may use under isolation.
    pub global_namespaces: Vec<String>,
    /// `systemNamespaces`: pods there get no `defaultNetworks`.
    pub system_namespaces: Vec<String>,
    /// `confDir`.
    pub conf_dir: PathBuf,
    /// The runtime config the kubelet gave Multus (default network only).
    pub runtime_config: Map<String, Value>,
    /// `auxiliaryCNIChainName`'s chain ([`nad::auxiliary_chain`]), run after the pod's networks.
    pub auxiliary_chain: Option<NetworkConfig>,
}

/// Where a network's config comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkSource {
    /// A local config (a `delegates` entry, a file).
    Local(NetworkConfig),
    /// A NAD to fetch.
    Nad {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// One network the pod gets, before the NADs are fetched.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The config's source.
    pub source: NetworkSource,
    /// The annotation element that asked for it (none for the default network and `defaultNetworks`).
    pub selection: Option<NetworkSelection>,
    /// Whether this is the pod's default network (always the first request).
    pub is_default: bool,
}

/// A fetched NAD, ready for [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedNad {
    /// Its network config.
    pub network: NetworkConfig,
    /// Its `k8s.v1.cni.cncf.io/resourceName`.
    pub resource_name: Option<String>,
}

impl Request {
    /// The NAD this request needs, if any.
    pub fn nad(&self) -> Option<(&str, &str)> {
        match &self.source {
            NetworkSource::Nad { namespace, name } => Some((namespace, name)),
            NetworkSource::Local(_) => None,
        }
    }

    /// The attachment's name: `namespace/name` for a NAD, else the network's name.
    pub fn name(&self) -> String {
        match &self.source {
            NetworkSource::Nad { namespace, name } => format!("{namespace}/{name}"),
            NetworkSource::Local(n) => n.name().to_string(),
        }
    }
}

/// Resolves `clusterNetwork` / a `defaultNetworks` entry: an absolute path (a file, or a directory's first
/// config file), else the network of that name in `confDir`, else the NAD of that name in `multusNamespace`.
/// (Upstream asks the API first; a local file first saves an API round trip on every ADD.)
pub fn resolve_named(
    name: &str,
    conf_dir: &Path,
    multus_namespace: &str,
) -> Result<NetworkSource, CniError> {
    let p = Path::new(name);
    if p.is_absolute() {
        if p.is_dir() {
            let first = nad::conf_files(p).into_iter().next().ok_or_else(|| {
                CniError::invalid_config(format!(
                    "network {name:?}: the directory holds no config file"
                ))
            })?;
            return Ok(NetworkSource::Local(nad::read_conf_file(&first)?));
        }
        return Ok(NetworkSource::Local(nad::read_conf_file(p)?));
    }
    if let Some(net) = nad::find_in_conf_dir(conf_dir, name)? {
        return Ok(NetworkSource::Local(net));
    }
    let (ns, n) = match name.split_once('/') {
        Some((ns, n)) => (ns, n),
        None => (multus_namespace, name),
    };
    for (what, v) in [("namespace", ns), ("name", n)] {
        annotation::validate_dns1123_label(v).map_err(|e| {
            CniError::invalid_config(format!(
                "network {name:?} is no file, no network in {} and no valid NAD {what}: {e}",
                conf_dir.display()
            ))
        })?;
    }
    Ok(NetworkSource::Nad {
        namespace: ns.to_string(),
        name: n.to_string(),
    })
}

fn isolation_allows(cfg: &PlanConfig, pod_ns: &str, nad_ns: &str) -> bool {
    !cfg.namespace_isolation
        || nad_ns == pod_ns
        || cfg.global_namespaces.iter().any(|g| g == nad_ns)
}

/// The networks of a pod, in attach order: the default network (the pod's `v1.multus-cni.io/default-network`,
/// else `clusterNetwork`, else `delegates[0]`), then `defaultNetworks` (or the other `delegates`) unless
/// the pod is in a system namespace, then the networks annotation.
pub fn requests(pod: &Pod, cfg: &PlanConfig) -> Result<Vec<Request>, CniError> {
    let mut out = vec![Request {
        source: default_network(pod, cfg)?,
        selection: None,
        is_default: true,
    }];
    if !cfg.system_namespaces.iter().any(|s| s == &pod.namespace) {
        if cfg.cluster_network.is_some() {
            for (i, n) in cfg.default_networks.iter().enumerate() {
                let source = resolve_named(n, &cfg.conf_dir, &cfg.multus_namespace)
                    .map_err(|e| e.context(format!("multus config: \"defaultNetworks\"[{i}]")))?;
                out.push(Request {
                    source,
                    selection: None,
                    is_default: false,
                });
            }
        } else {
            for d in cfg.delegates.iter().skip(1) {
                out.push(Request {
                    source: NetworkSource::Local(d.clone()),
                    selection: None,
                    is_default: false,
                });
            }
        }
    }
    if let Some(a) = pod.annotations.get(annotation::NETWORKS_ANNOTATION) {
        for (i, sel) in annotation::parse_networks(a, &pod.namespace)?
            .into_iter()
            .enumerate()
        {
            if !isolation_allows(cfg, &pod.namespace, &sel.namespace) {
                return Err(CniError::invalid_config(format!(
                    "pod annotation {}: element {i} ({}): the NAD is in another namespace than the pod ({}) and \
                     namespaceIsolation is on (allowed: the pod's namespace and globalNamespaces {:?})",
                    annotation::NETWORKS_ANNOTATION,
                    sel.qualified_name(),
                    pod.namespace,
                    cfg.global_namespaces
                )));
            }
            out.push(Request {
                source: NetworkSource::Nad {
                    namespace: sel.namespace.clone(),
                    name: sel.name.clone(),
                },
                selection: Some(sel),
                is_default: false,
            });
        }
    }
    if let Some(aux) = &cfg.auxiliary_chain {
        out.push(Request {
            source: NetworkSource::Local(aux.clone()),
            selection: None,
            is_default: false,
        });
    }
    Ok(out)
}

/// The pod's default network: its `v1.multus-cni.io/default-network` annotation, else `clusterNetwork`, else
/// `delegates[0]`.
fn default_network(pod: &Pod, cfg: &PlanConfig) -> Result<NetworkSource, CniError> {
    if let Some(a) = pod
        .annotations
        .get(annotation::DEFAULT_NETWORK_ANNOTATION)
        .filter(|a| !a.trim().is_empty())
    {
        let sel = annotation::parse_default_network(a, &cfg.multus_namespace)?;
        if sel.namespace != cfg.multus_namespace
            && !isolation_allows(cfg, &pod.namespace, &sel.namespace)
        {
            return Err(CniError::invalid_config(format!(
                "pod annotation {}: NAD {} is in another namespace than the pod ({}) and namespaceIsolation is on",
                annotation::DEFAULT_NETWORK_ANNOTATION,
                sel.qualified_name(),
                pod.namespace
            )));
        }
        Ok(NetworkSource::Nad {
            namespace: sel.namespace,
            name: sel.name,
        })
    } else if let Some(c) = &cfg.cluster_network {
        resolve_named(c, &cfg.conf_dir, &cfg.multus_namespace)
            .map_err(|e| e.context("multus config: \"clusterNetwork\""))
    } else if let Some(d) = cfg.delegates.first() {
        Ok(NetworkSource::Local(d.clone()))
    } else {
        Err(CniError::invalid_config(
            "multus config: no default network: give \"clusterNetwork\" or \"delegates\"",
        ))
    }
}

/// The outcome of [`build`].
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The attachments, default network first.
    pub attachments: Attachments,
    /// The attachment (index) that carries the pod's default route, and its gateways, when an element asked
    /// for `default-route`; every other attachment's default routes are to be removed.
    pub default_route: Option<(usize, Vec<IpAddr>)>,
    /// Per attachment, the device-plugin resource (the NAD's `k8s.v1.cni.cncf.io/resourceName`) whose device
    /// it was given from the kubelet checkpoint, for its device information file (`multus_core::devinfo`).
    pub device_resources: Vec<Option<String>>,
}

/// Capability keys: (annotation key, runtimeConfig key / capability).
const CAPS: [(&str, &str); 5] = [
    ("ips", "ips"),
    ("mac", "mac"),
    ("infiniband-guid", "infinibandGUID"),
    ("portMappings", "portMappings"),
    ("bandwidth", "bandwidth"),
];

/// What an annotation element requests, as Go Multus passes it on: each capability's value in the
/// attachment's runtime config (which, per the CNI spec, only plugins declaring the capability receive),
/// and `ips` / `mac` also as `IP=` / `MAC=` in `CNI_ARGS` (so that plugins reading those, such as static,
/// host-local and macvlan, get them without declaring the capability). A request that no plugin of the
/// network declares and that has no `CNI_ARGS` form is logged. Returns the `CNI_ARGS` extras.
fn requested(
    s: &NetworkSelection,
    network: &NetworkConfig,
    rc: &mut Map<String, Value>,
    what: &str,
) -> Vec<(String, String)> {
    let values: [Option<Value>; 5] = [
        (!s.ips.is_empty()).then(|| Value::from(s.ips.clone())),
        s.mac.clone().map(Value::String),
        s.infiniband_guid.clone().map(Value::String),
        (!s.port_mappings.is_empty()).then(|| Value::Array(s.port_mappings.clone())),
        s.bandwidth.clone(),
    ];
    for ((key, cap), v) in CAPS.iter().zip(values) {
        let Some(v) = v else { continue };
        let by_args = matches!(*key, "ips" | "mac");
        if !network.has_capability(cap) {
            let how = if by_args {
                "it reaches the plugins only as CNI_ARGS"
            } else {
                "it is ignored"
            };
            tracing::warn!(
                "{what}: \"{key}\" was requested but no plugin of the network declares the \"{cap}\" capability: {how}"
            );
        }
        rc.insert((*cap).to_string(), v);
    }
    let mut extra = Vec::new();
    if let Some(m) = &s.mac {
        extra.push(("MAC".to_string(), m.clone()));
    }
    if !s.ips.is_empty() {
        extra.push(("IP".to_string(), s.ips.join(",")));
    }
    extra
}

/// `cni-args` of an annotation element, merged into each plugin's `args.cni` (its own keys win over the
/// NAD's, the NAD's others stay), as Go Multus does.
fn set_cni_args(net: &mut NetworkConfig, args: &Map<String, Value>) -> Result<(), CniError> {
    net.edit_plugins(|o| {
        let a = o.entry("args").or_insert_with(|| Value::Object(Map::new()));
        if !a.is_object() {
            *a = Value::Object(Map::new());
        }
        if let Some(a) = a.as_object_mut() {
            let cni = a.entry("cni").or_insert_with(|| Value::Object(Map::new()));
            if !cni.is_object() {
                *cni = Value::Object(Map::new());
            }
            if let Some(cni) = cni.as_object_mut() {
                cni.extend(args.clone());
            }
        }
    })
}

/// The device of one network: the one the selection names, else the next of its NAD's resource (with that
/// resource's name, for device-info), else none.
fn device_for(
    requested: Option<String>,
    resource: Option<String>,
    devices: &mut DevicePool,
    what: &str,
) -> (Option<String>, Option<String>) {
    if requested.is_some() {
        return (requested, None);
    }
    let Some(r) = resource else {
        return (None, None);
    };
    match devices.take(&r) {
        Some(d) => (Some(d), Some(r)),
        None => {
            // As Go Multus: a resource with no device (left) for the pod is no reason to fail it.
            tracing::warn!(
                "{what}: no device of resource {r:?} is left for the pod (does it request the resource in its \
                 containers' limits?); going on without one"
            );
            (None, None)
        }
    }
}

/// Builds the attachments from the requests and the fetched NADs (keyed by (namespace, name)).
/// `ifname` is `CNI_IFNAME` (the default network's interface).
pub fn build(
    cfg: &PlanConfig,
    requests: &[Request],
    nads: &BTreeMap<(String, String), ResolvedNad>,
    devices: &mut DevicePool,
    ifname: &str,
) -> Result<Plan, CniError> {
    let mut attachments = Vec::new();
    let mut default_route = None;
    let mut device_resources = Vec::new();
    for (idx, req) in requests.iter().enumerate() {
        let name = req.name();
        let what = match &req.selection {
            Some(_) => format!("network {idx} ({name})"),
            None if req.is_default => format!("default network ({name})"),
            None => format!("network {idx} ({name}, from defaultNetworks)"),
        };
        let err = |why: String| CniError::invalid_config(format!("{what}: {why}"));
        let (mut network, resource) = match &req.source {
            NetworkSource::Local(n) => (n.clone(), None),
            NetworkSource::Nad { namespace, name: n } => {
                let r = nads
                    .get(&(namespace.clone(), n.clone()))
                    .ok_or_else(|| err("the NetworkAttachmentDefinition was not fetched".into()))?;
                (r.network.clone(), r.resource_name.clone())
            }
        };
        let sel = req.selection.as_ref();
        let mut extra_args = Vec::new();
        let ifn = if req.is_default {
            ifname.to_string()
        } else if let Some(i) = sel.and_then(|s| s.interface.clone()) {
            i
        } else {
            format!("net{idx}")
        };
        let mut rc = if req.is_default {
            cfg.runtime_config.clone()
        } else {
            Map::new()
        };
        let (device, device_resource) = device_for(
            sel.and_then(|s| s.device_id.clone()),
            resource,
            devices,
            &what,
        );
        if let Some(d) = &device {
            nad::inject_device_id(&mut network, d)?;
            rc.insert("deviceID".into(), Value::String(d.clone()));
        }
        if let Some(s) = sel {
            extra_args = requested(s, &network, &mut rc, &what);
            if let Some(a) = &s.cni_args {
                set_cni_args(&mut network, a)?;
            }
            if !s.default_route.is_empty() {
                if let Some((j, _)) = default_route {
                    return Err(err(format!(
                        "\"default-route\" is also set on network {j}: at most one network may carry the default route"
                    )));
                }
                default_route = Some((idx, s.default_route.clone()));
            }
        }
        let mut a = Attachment::new(network, &ifn);
        a.name = name;
        a.is_default = req.is_default;
        a.runtime_config = rc;
        a.extra_args = extra_args;
        attachments.push(a);
        device_resources.push(device_resource);
    }
    Ok(Plan {
        // The one check of the pod's interface names.
        attachments: Attachments::new(attachments)?,
        default_route,
        device_resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nad::Checkpoint;

    fn pod(ns: &str, annotations: &[(&str, &str)]) -> Pod {
        Pod {
            namespace: ns.into(),
            name: "sample-pod".into(),
            uid: "uid-1".into(),
            resource_version: "1".into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn net(s: &str) -> NetworkConfig {
        NetworkConfig::from_slice(s.as_bytes()).unwrap()
    }

    fn cfg() -> PlanConfig {
        PlanConfig {
            delegates: vec![net(
                r#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","capabilities":{"portMappings":true}}"#,
            )],
            multus_namespace: "kube-system".into(),
            global_namespaces: vec!["default".into()],
            system_namespaces: vec!["kube-system".into()],
            conf_dir: "/nonexistent".into(),
            runtime_config: serde_json::json!({"portMappings":[{"hostPort":1}]})
                .as_object()
                .unwrap()
                .clone(),
            ..Default::default()
        }
    }

    fn nads() -> BTreeMap<(String, String), ResolvedNad> {
        let mut m = BTreeMap::new();
        m.insert(
            ("default".into(), "macvlan-conf".into()),
            ResolvedNad {
                network: net(r#"{"cniVersion":"0.3.1","name":"macvlan-conf","type":"macvlan","master":"eth1"}"#),
                resource_name: None,
            },
        );
        m.insert(
            ("default".into(), "caps".into()),
            ResolvedNad {
                network: net(
                    r#"{"cniVersion":"1.0.0","name":"caps","plugins":[{"type":"macvlan","capabilities":{"ips":true,"mac":true}},
                        {"type":"tuning"}]}"#,
                ),
                resource_name: None,
            },
        );
        m.insert(
            ("default".into(), "sriov".into()),
            ResolvedNad {
                network: net(r#"{"cniVersion":"1.0.0","name":"sriov","type":"sriov","capabilities":{"deviceID":true}}"#),
                resource_name: Some("intel.com/sriov".into()),
            },
        );
        m
    }

    fn plan(p: &Pod, c: &PlanConfig) -> Result<Plan, CniError> {
        let reqs = requests(p, c)?;
        let cp = Checkpoint::parse(
            br#"{"Data":{"PodDeviceEntries":[{"PodUID":"uid-1","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:02.0","0000:03:02.1"]}}]}}"#,
        )
        .unwrap();
        build(c, &reqs, &nads(), &mut DevicePool::new(cp, &p.uid), "eth0")
    }

    #[test]
    fn user_example() {
        let p = plan(
            &pod(
                "default",
                &[(annotation::NETWORKS_ANNOTATION, "macvlan-conf")],
            ),
            &cfg(),
        )
        .unwrap();
        let a = &p.attachments;
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].name.as_str(), a[0].ifname.as_str(), a[0].is_default),
            ("cbr0", "eth0", true)
        );
        assert_eq!(a[0].runtime_config["portMappings"][0]["hostPort"], 1);
        assert_eq!(
            (a[1].name.as_str(), a[1].ifname.as_str(), a[1].is_default),
            ("default/macvlan-conf", "net1", false)
        );
        assert!(
            a[1].runtime_config.is_empty(),
            "the kubelet's runtime config never reaches a secondary"
        );
    }

    #[test]
    fn ifnames_and_same_nad_twice() {
        let p = plan(
            &pod(
                "default",
                &[(
                    annotation::NETWORKS_ANNOTATION,
                    "macvlan-conf@mv0,macvlan-conf,default/macvlan-conf",
                )],
            ),
            &cfg(),
        )
        .unwrap();
        let names: Vec<_> = p.attachments.iter().map(|a| a.ifname.as_str()).collect();
        assert_eq!(names, ["eth0", "mv0", "net2", "net3"]);
        assert!(p.attachments[1..]
            .iter()
            .all(|a| a.name == "default/macvlan-conf"));
        let e = plan(
            &pod(
                "default",
                &[(
                    annotation::NETWORKS_ANNOTATION,
                    "macvlan-conf@net2,macvlan-conf",
                )],
            ),
            &cfg(),
        )
        .unwrap_err();
        assert!(
            e.msg.contains("attachment 2") && e.msg.contains("\"net2\" is used twice"),
            "{e}"
        );
        let e = plan(
            &pod(
                "default",
                &[(annotation::NETWORKS_ANNOTATION, "macvlan-conf@eth0")],
            ),
            &cfg(),
        )
        .unwrap_err();
        assert!(e.msg.contains("\"eth0\""), "{e}");
    }

    #[test]
    fn requests_reach_plugins_as_go_multus_passes_them() {
        let ann = r#"[{"name":"caps","ips":["10.1.1.5/24"],"mac":"c2:b0:57:49:47:f1","interface":"x0","cni-args":{"k":"v"}}]"#;
        let p = plan(
            &pod("default", &[(annotation::NETWORKS_ANNOTATION, ann)]),
            &cfg(),
        )
        .unwrap();
        let a = &p.attachments[1];
        assert_eq!(a.ifname, "x0");
        assert_eq!(a.runtime_config["ips"][0], "10.1.1.5/24");
        assert_eq!(a.runtime_config["mac"], "c2:b0:57:49:47:f1");
        for pl in a.network.plugins() {
            assert_eq!(pl.get("args").unwrap()["cni"]["k"], "v");
        }
        // Requests that no plugin declares go on as Go Multus does: in runtimeConfig (which only declaring
        // plugins receive), and ips / mac also as IP= / MAC= in CNI_ARGS.
        let p = plan(
            &pod(
                "default",
                &[(
                    annotation::NETWORKS_ANNOTATION,
                    r#"[{"name":"macvlan-conf","ips":["10.1.1.5/24","fd00::5/64"],"mac":"02:00:00:00:00:05"}]"#,
                )],
            ),
            &cfg(),
        )
        .unwrap();
        let a = &p.attachments[1];
        assert_eq!(
            a.extra_args,
            [
                ("MAC".to_string(), "02:00:00:00:00:05".to_string()),
                ("IP".to_string(), "10.1.1.5/24,fd00::5/64".to_string())
            ]
        );
        assert_eq!(
            a.runtime_config["ips"],
            serde_json::json!(["10.1.1.5/24", "fd00::5/64"])
        );
        for ann in [
            r#"[{"name":"caps","bandwidth":{"ingressRate":1}}]"#,
            r#"[{"name":"caps","portMappings":[{"hostPort":1}]}]"#,
            r#"[{"name":"caps","infiniband-guid":"00:11:22:33:44:55:66:77"}]"#,
        ] {
            let p = plan(
                &pod("default", &[(annotation::NETWORKS_ANNOTATION, ann)]),
                &cfg(),
            )
            .unwrap();
            assert!(p.attachments[1].extra_args.is_empty(), "{ann}");
            assert_eq!(p.attachments[1].runtime_config.len(), 1, "{ann}");
        }
    }

    #[test]
    fn cni_args_are_merged_into_the_nads_own() {
        let mut net = net(
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","args":{"cni":{"keep":1,"over":"nad"}}},{"type":"b"}]}"#,
        );
        let args = serde_json::json!({"over": "pod", "new": true});
        set_cni_args(&mut net, args.as_object().unwrap()).unwrap();
        let p = net.plugins();
        assert_eq!(
            p[0].get("args").unwrap()["cni"],
            serde_json::json!({"keep":1,"over":"pod","new":true})
        );
        assert_eq!(p[1].get("args").unwrap()["cni"], args);
    }

    #[test]
    fn devices_from_checkpoint_or_selection() {
        let p = plan(
            &pod("default", &[(annotation::NETWORKS_ANNOTATION, r#"[{"name":"sriov"},{"name":"sriov"},{"name":"sriov","deviceID":"0000:09:00.0"}]"#)]),
            &cfg(),
        )
        .unwrap();
        let ids: Vec<_> = p.attachments[1..]
            .iter()
            .map(|a| a.runtime_config["deviceID"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, ["0000:03:02.0", "0000:03:02.1", "0000:09:00.0"]);
        let sriov = Some("intel.com/sriov".to_string());
        assert_eq!(
            p.device_resources,
            [None, sriov.clone(), sriov, None],
            "a checkpoint device has its resource (for the device plugin's file), a requested one none"
        );
        assert_eq!(
            p.attachments[1].network.plugins()[0]
                .get("pciBusID")
                .unwrap(),
            "0000:03:02.0"
        );
        // A third with no device left goes on without one, as Go Multus does.
        let p = plan(
            &pod(
                "default",
                &[(annotation::NETWORKS_ANNOTATION, "sriov,sriov,sriov")],
            ),
            &cfg(),
        )
        .unwrap();
        assert!(!p.attachments[3].runtime_config.contains_key("deviceID"));
        assert_eq!(p.device_resources[3], None);
    }

    #[test]
    fn isolation() {
        let mut c = cfg();
        c.namespace_isolation = true;
        let e = plan(
            &pod(
                "team-a",
                &[(annotation::NETWORKS_ANNOTATION, "team-b/macvlan-conf")],
            ),
            &c,
        )
        .unwrap_err();
        assert!(
            e.msg.contains("element 0") && e.msg.contains("namespaceIsolation"),
            "{e}"
        );
        // The global namespace "default" is allowed.
        let r = requests(
            &pod(
                "team-a",
                &[(annotation::NETWORKS_ANNOTATION, "default/macvlan-conf,x")],
            ),
            &c,
        )
        .unwrap();
        assert_eq!(r[1].nad(), Some(("default", "macvlan-conf")));
        assert_eq!(r[2].nad(), Some(("team-a", "x")));
        c.namespace_isolation = false;
        assert!(requests(
            &pod("team-a", &[(annotation::NETWORKS_ANNOTATION, "team-b/x")]),
            &c
        )
        .is_ok());
    }

    #[test]
    fn default_routes() {
        let mut n = nads();
        n.insert(
            ("default".into(), "b".into()),
            n[&("default".to_string(), "macvlan-conf".to_string())].clone(),
        );
        let cp = Checkpoint::default();
        let c = cfg();
        let p1 = pod(
            "default",
            &[(
                annotation::NETWORKS_ANNOTATION,
                r#"[{"name":"macvlan-conf"},{"name":"b","default-route":["192.168.1.1"]}]"#,
            )],
        );
        let r = requests(&p1, &c).unwrap();
        let p = build(&c, &r, &n, &mut DevicePool::new(cp.clone(), "u"), "eth0").unwrap();
        assert_eq!(
            p.default_route,
            Some((2, vec!["192.168.1.1".parse().unwrap()]))
        );
        let p2 = pod(
            "default",
            &[(
                annotation::NETWORKS_ANNOTATION,
                r#"[{"name":"macvlan-conf","default-route":["192.168.1.1"]},{"name":"b","default-route":["10.0.0.1"]}]"#,
            )],
        );
        let r = requests(&p2, &c).unwrap();
        let e = build(&c, &r, &n, &mut DevicePool::new(cp, "u"), "eth0").unwrap_err();
        assert!(e.msg.contains("at most one"), "{e}");
    }

    #[test]
    fn default_network_sources() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("10-x.conf"),
            br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"ptp"}"#,
        )
        .unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(
            sub.join("01-first.conflist"),
            br#"{"cniVersion":"1.0.0","name":"first","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(
            sub.join("02-second.conf"),
            br#"{"cniVersion":"1.0.0","name":"second","type":"bridge"}"#,
        )
        .unwrap();
        let mut c = cfg();
        c.conf_dir = d.path().to_path_buf();
        c.default_networks = vec!["extra".into()];
        for (cluster, want) in [
            (
                "k8s-pod-network".to_string(),
                NetworkSource::Local(net(
                    r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"ptp"}"#,
                )),
            ),
            (
                sub.display().to_string(),
                NetworkSource::Local(net(
                    r#"{"cniVersion":"1.0.0","name":"first","plugins":[{"type":"bridge"}]}"#,
                )),
            ),
            (
                sub.join("02-second.conf").display().to_string(),
                NetworkSource::Local(net(
                    r#"{"cniVersion":"1.0.0","name":"second","type":"bridge"}"#,
                )),
            ),
            (
                "calico".into(),
                NetworkSource::Nad {
                    namespace: "kube-system".into(),
                    name: "calico".into(),
                },
            ),
        ] {
            c.cluster_network = Some(cluster.clone());
            let r = requests(&pod("default", &[]), &c).unwrap();
            assert_eq!(r[0].source, want, "{cluster}");
            assert!(r[0].is_default);
            assert_eq!(r[1].nad(), Some(("kube-system", "extra")));
            // System namespaces get no defaultNetworks.
            assert_eq!(requests(&pod("kube-system", &[]), &c).unwrap().len(), 1);
        }
        // The pod's default-network annotation replaces the cluster network.
        let r = requests(
            &pod(
                "default",
                &[(annotation::DEFAULT_NETWORK_ANNOTATION, "other-net")],
            ),
            &c,
        )
        .unwrap();
        assert_eq!(r[0].nad(), Some(("kube-system", "other-net")));
        c.namespace_isolation = true;
        let e = requests(
            &pod(
                "team-a",
                &[(annotation::DEFAULT_NETWORK_ANNOTATION, "team-b/x")],
            ),
            &c,
        )
        .unwrap_err();
        assert!(e.msg.contains("namespaceIsolation"), "{e}");
        c.cluster_network = Some("Bad_Name".into());
        let e = requests(&pod("default", &[]), &c).unwrap_err();
        assert!(
            e.msg.contains("clusterNetwork") && e.msg.contains("Bad_Name"),
            "{e}"
        );
        c.cluster_network = None;
        c.delegates.clear();
        assert!(requests(&pod("default", &[]), &c)
            .unwrap_err()
            .msg
            .contains("no default network"));
    }

    #[test]
    fn pod_from_json() {
        let p = Pod::from_json(&serde_json::json!({"metadata":{"name":"p","namespace":"n","uid":"u","resourceVersion":"7",
            "annotations":{"a":"b","n":1}}}))
        .unwrap();
        assert_eq!(
            (p.name.as_str(), p.uid.as_str(), p.resource_version.as_str()),
            ("p", "u", "7")
        );
        assert_eq!(p.annotations.len(), 1);
        assert!(Pod::from_json(&serde_json::json!({})).is_err());
    }
}

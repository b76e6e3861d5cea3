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
mod tests;

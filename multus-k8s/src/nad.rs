//! NetworkAttachmentDefinitions: from the API object to the [`NetworkConfig`] a delegate runs, and device IDs
//! from the kubelet's device-plugin checkpoint.
//!
//! - `spec.config` holds a plugin config or a conflist; an empty (or absent) config means the file in
//!   `confDir` whose `name` is the NAD's name.
//! - A config without `name` gets the NAD's name.
//! - The annotation `k8s.v1.cni.cncf.io/resourceName` names a device-plugin resource: the device allocated to
//!   the pod for it (from the kubelet checkpoint) is given to every plugin of the network as `deviceID` and
//!   `pciBusID`, and as `runtimeConfig.deviceID` to plugins that declare that capability.

use multus_core::cni::{CniError, NetworkConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The NAD annotation naming a device-plugin resource.
pub const RESOURCE_NAME_ANNOTATION: &str = "k8s.v1.cni.cncf.io/resourceName";
/// Where the kubelet keeps its device-plugin allocations.
pub const DEFAULT_CHECKPOINT: &str = "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint";

/// The REST path of a NAD.
pub fn nad_path(namespace: &str, name: &str) -> String {
    format!("/apis/k8s.cni.cncf.io/v1/namespaces/{namespace}/network-attachment-definitions/{name}")
}

/// A NetworkAttachmentDefinition, reduced to what Multus reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Nad {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `spec.config` (may be empty).
    pub config: String,
    /// The `k8s.v1.cni.cncf.io/resourceName` annotation.
    pub resource_name: Option<String>,
}

impl Nad {
    /// Reads the API object. `namespace`/`name` are the requested ones (used when the object lacks them).
    pub fn from_json(v: &Value, namespace: &str, name: &str) -> Result<Nad, CniError> {
        let what = format!("NetworkAttachmentDefinition {namespace}/{name}");
        if !v.is_object() {
            return Err(CniError::decoding(format!("{what}: not a JSON object")));
        }
        let meta = &v["metadata"];
        let config = match &v["spec"]["config"] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => {
                return Err(CniError::invalid_config(format!(
                    "{what}: spec.config must be a string holding JSON, not {other}"
                )))
            }
        };
        Ok(Nad {
            namespace: meta["namespace"].as_str().unwrap_or(namespace).to_string(),
            name: meta["name"].as_str().unwrap_or(name).to_string(),
            config,
            resource_name: meta["annotations"][RESOURCE_NAME_ANNOTATION]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        })
    }

    /// `namespace/name`.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The network config: `spec.config`, or the file in `conf_dir` named like the NAD when it is empty;
    /// the NAD's name when the config has none.
    pub fn network_config(&self, conf_dir: &Path) -> Result<NetworkConfig, CniError> {
        let what = format!("NetworkAttachmentDefinition {}", self.qualified_name());
        let mut net = if self.config.trim().is_empty() {
            find_in_conf_dir(conf_dir, &self.name)?.ok_or_else(|| {
                CniError::invalid_config(format!(
                    "{what} has no spec.config and no file in {} has the name {:?}",
                    conf_dir.display(),
                    self.name
                ))
            })?
        } else {
            NetworkConfig::from_slice(self.config.as_bytes())
                .map_err(|e| e.context(format!("{what}: spec.config")))?
        };
        if net.name().is_empty() {
            net.set_name(&self.name);
        }
        Ok(net)
    }
}

/// The config files of a directory, in the order libcni reads them (`.conf`, `.conflist`, `.json`, sorted).
pub fn conf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|x| x.to_str()),
                            Some("conf" | "conflist" | "json")
                        )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Reads one config file (conf or conflist).
pub fn read_conf_file(path: &Path) -> Result<NetworkConfig, CniError> {
    let bytes = multus_core::fs::read_input(path)
        .map_err(|e| CniError::io(format!("reading network config {}: {e}", path.display())))?;
    NetworkConfig::from_slice(&bytes)
        .map_err(|e| e.context(format!("network config {}", path.display())))
}

/// The config in `dir` whose `name` is `name` (unreadable files are skipped).
pub fn find_in_conf_dir(dir: &Path, name: &str) -> Result<Option<NetworkConfig>, CniError> {
    for f in conf_files(dir) {
        match read_conf_file(&f) {
            Ok(net) if net.name() == name => return Ok(Some(net)),
            Ok(_) => {}
            Err(e) => tracing::debug!("skipping {}: {e}", f.display()),
        }
    }
    Ok(None)
}

/// Gives every plugin of `net` the device: `deviceID` and `pciBusID` (what the SR-IOV and host-device
/// plugins read).
pub fn inject_device_id(net: &mut NetworkConfig, device_id: &str) -> Result<(), CniError> {
    net.edit_plugins(|o| {
        o.insert("deviceID".into(), Value::String(device_id.to_string()));
        o.insert("pciBusID".into(), Value::String(device_id.to_string()));
    })
}

/// Go Multus' `auxiliaryCNIChainName`: a chain run for every pod after its networks, made of a `passthru`
/// plugin and every `*.conf` plugin config (sorted) of the subdirectory `<name>` beside the `clusterNetwork`
/// file (libcni's subdirectory loading). `None` when the subdirectory holds no plugin config; an error when
/// `clusterNetwork` is not a path, as upstream's.
pub fn auxiliary_chain(
    name: &str,
    cluster_network: Option<&str>,
    cni_version: &str,
) -> Result<Option<NetworkConfig>, CniError> {
    let base = cluster_network
        .filter(|c| c.contains('/'))
        .ok_or_else(|| {
            CniError::invalid_config(format!(
                "multus config: \"auxiliaryCNIChainName\" is set but \"clusterNetwork\" ({}) is not a path",
                cluster_network.unwrap_or_default()
            ))
        })?;
    multus_core::cni::names::network_name(name)
        .map_err(|e| CniError::invalid_config(format!("\"auxiliaryCNIChainName\": {e}")))?;
    let dir = Path::new(base)
        .parent()
        .unwrap_or(Path::new("/"))
        .join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "conf"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut plugins = vec![serde_json::json!({"type": "passthru", "name": "passthru-cni"})];
    for f in &files {
        let bytes = multus_core::fs::read_input(f)
            .map_err(|e| CniError::io(format!("auxiliary chain {}: {e}", f.display())))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            CniError::decoding(format!("auxiliary chain {}: not JSON: {e}", f.display()))
        })?;
        plugins.push(v);
    }
    if plugins.len() == 1 {
        return Ok(None);
    }
    NetworkConfig::from_value(serde_json::json!({
        "cniVersion": cni_version, "name": name, "plugins": plugins
    }))
    .map(Some)
}

/// The kubelet's device-plugin checkpoint: which devices of which resource each pod got.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// (pod UID, resource name) -> device IDs, sorted.
    entries: BTreeMap<(String, String), Vec<String>>,
}

impl Checkpoint {
    /// Reads the checkpoint file; a missing file is an empty checkpoint (no device plugins on the node).
    pub fn load(path: &Path) -> Result<Checkpoint, CniError> {
        let bytes = match multus_core::fs::read_input(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checkpoint::default()),
            Err(e) => {
                return Err(CniError::io(format!(
                    "reading the kubelet checkpoint {}: {e}",
                    path.display()
                )))
            }
        };
        Self::parse(&bytes).map_err(|e| e.context(format!("kubelet checkpoint {}", path.display())))
    }

    /// Parses the checkpoint JSON (`Data.PodDeviceEntries[]` with `PodUID`, `ResourceName` and `DeviceIDs`,
    /// the latter a list in old kubelets and a map NUMA node -> list in current ones).
    pub fn parse(bytes: &[u8]) -> Result<Checkpoint, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("not valid JSON: {e}")))?;
        let mut entries: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        let list = v["Data"]["PodDeviceEntries"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for e in list {
            let (Some(uid), Some(res)) = (e["PodUID"].as_str(), e["ResourceName"].as_str()) else {
                continue;
            };
            let ids: Vec<String> = match &e["DeviceIDs"] {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Value::Object(m) => m
                    .values()
                    .filter_map(Value::as_array)
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            };
            entries
                .entry((uid.to_string(), res.to_string()))
                .or_default()
                .extend(ids);
        }
        // Go Multus hands a resource's devices out in sorted order.
        for ids in entries.values_mut() {
            ids.sort();
        }
        Ok(Checkpoint { entries })
    }

    /// The devices of `resource` allocated to the pod.
    pub fn devices(&self, pod_uid: &str, resource: &str) -> &[String] {
        self.entries
            .get(&(pod_uid.to_string(), resource.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// Hands out a pod's devices, each once: two NADs of one resource get two devices.
#[derive(Debug, Clone, Default)]
pub struct DevicePool {
    checkpoint: Checkpoint,
    pod_uid: String,
    used: BTreeMap<String, usize>,
}

impl DevicePool {
    /// A pool over the devices allocated to pod `pod_uid`.
    pub fn new(checkpoint: Checkpoint, pod_uid: &str) -> Self {
        DevicePool {
            checkpoint,
            pod_uid: pod_uid.to_string(),
            used: BTreeMap::new(),
        }
    }

    /// The next unused device of `resource`; none when the kubelet allocated no (more) device of it.
    pub fn take(&mut self, resource: &str) -> Option<String> {
        let devs = self.checkpoint.devices(&self.pod_uid, resource);
        let n = self.used.entry(resource.to_string()).or_insert(0);
        let d = devs.get(*n).cloned()?;
        *n += 1;
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nad_conf_conflist_and_name_injection() {
        let v = json!({"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition",
            "metadata":{"name":"macvlan-conf","namespace":"default",
                        "annotations":{RESOURCE_NAME_ANNOTATION:"intel.com/sriov"}},
            "spec":{"config":"{\"cniVersion\":\"0.3.1\",\"type\":\"macvlan\",\"master\":\"eth1\",\"mode\":\"bridge\"}"}});
        let nad = Nad::from_json(&v, "default", "macvlan-conf").unwrap();
        assert_eq!(nad.resource_name.as_deref(), Some("intel.com/sriov"));
        let d = tempfile::tempdir().unwrap();
        let net = nad.network_config(d.path()).unwrap();
        assert_eq!(net.name(), "macvlan-conf");
        assert_eq!(net.plugins()[0].get("master").unwrap(), "eth1");

        let v = json!({"metadata":{"name":"l","namespace":"ns"},
            "spec":{"config":"{\"cniVersion\":\"1.0.0\",\"name\":\"own\",\"plugins\":[{\"type\":\"bridge\"},{\"type\":\"tuning\"}]}"}});
        let net = Nad::from_json(&v, "ns", "l")
            .unwrap()
            .network_config(d.path())
            .unwrap();
        assert_eq!(net.name(), "own");
        assert_eq!(net.plugins().len(), 2);
    }

    #[test]
    fn empty_config_reads_conf_dir() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("10-a.conf"),
            br#"{"cniVersion":"0.3.1","name":"other","type":"bridge"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("20-b.conflist"),
            br#"{"cniVersion":"1.0.0","name":"mynet","plugins":[{"type":"ptp"}]}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("30-bad.conf"), b"{").unwrap();
        let v = json!({"metadata":{"name":"mynet","namespace":"x"},"spec":{}});
        let net = Nad::from_json(&v, "x", "mynet")
            .unwrap()
            .network_config(d.path())
            .unwrap();
        assert_eq!(net.plugins()[0].plugin_type(), "ptp");
        let v = json!({"metadata":{"name":"nothere","namespace":"x"},"spec":{"config":""}});
        let e = Nad::from_json(&v, "x", "nothere")
            .unwrap()
            .network_config(d.path())
            .unwrap_err();
        assert!(
            e.msg.contains("x/nothere") && e.msg.contains("no file"),
            "{e}"
        );
    }

    #[test]
    fn bad_nads() {
        let d = tempfile::tempdir().unwrap();
        let e = Nad::from_json(&json!({"spec":{"config":5}}), "a", "b").unwrap_err();
        assert!(
            e.msg.contains("a/b") && e.msg.contains("spec.config"),
            "{e}"
        );
        let e = Nad::from_json(&json!({"spec":{"config":"{nope"}}), "a", "b")
            .unwrap()
            .network_config(d.path())
            .unwrap_err();
        assert_eq!(e.code.code(), 6);
        assert!(e.msg.contains("a/b"), "{e}");
        assert!(Nad::from_json(&json!([]), "a", "b").is_err());
    }

    #[test]
    fn auxiliary_chain_from_the_subdirectory() {
        let d = tempfile::tempdir().unwrap();
        let cluster = d.path().join("10-podnet.conflist");
        let cluster = cluster.to_str().unwrap();
        assert!(auxiliary_chain("aux", Some(cluster), "1.0.0")
            .unwrap()
            .is_none());
        std::fs::create_dir(d.path().join("aux")).unwrap();
        std::fs::write(
            d.path().join("aux/20-b.conf"),
            r#"{"type":"tuning","name":"b"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("aux/10-a.conf"),
            r#"{"type":"sbr","name":"a"}"#,
        )
        .unwrap();
        std::fs::write(d.path().join("aux/notes.txt"), "x").unwrap();
        let net = auxiliary_chain("aux", Some(cluster), "1.0.0")
            .unwrap()
            .unwrap();
        let types: Vec<&str> = net.plugins().iter().map(|p| p.plugin_type()).collect();
        assert_eq!(types, ["passthru", "sbr", "tuning"]);
        assert_eq!(net.name(), "aux");
        let e = auxiliary_chain("aux", Some("podnet"), "1.0.0").unwrap_err();
        assert!(e.msg.contains("not a path"), "{e}");
        assert!(auxiliary_chain("../x", Some(cluster), "1.0.0").is_err());
    }

    #[test]
    fn checkpoint_and_device_injection() {
        let cp = Checkpoint::parse(
            br#"{"Data":{"PodDeviceEntries":[
                {"PodUID":"u1","ContainerName":"c","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:02.1","0000:03:02.0"]}},
                {"PodUID":"u2","ContainerName":"c","ResourceName":"intel.com/sriov","DeviceIDs":["0000:03:02.3"]}],
                "RegisteredDevices":{}},"Checksum":1}"#,
        )
        .unwrap();
        // Handed out sorted, as Go Multus does (the kubelet's order is not the PCI order); none left is None.
        let mut pool = DevicePool::new(cp.clone(), "u1");
        assert_eq!(pool.take("intel.com/sriov").unwrap(), "0000:03:02.0");
        assert_eq!(pool.take("intel.com/sriov").unwrap(), "0000:03:02.1");
        assert!(pool.take("intel.com/sriov").is_none());
        assert_eq!(cp.devices("u2", "intel.com/sriov"), ["0000:03:02.3"]);
        let d = tempfile::tempdir().unwrap();
        assert!(Checkpoint::load(&d.path().join("none"))
            .unwrap()
            .devices("u1", "x")
            .is_empty());

        let mut net = NetworkConfig::from_slice(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"sriov"},{"type":"tuning"}]}"#,
        )
        .unwrap();
        inject_device_id(&mut net, "0000:03:02.0").unwrap();
        for p in net.plugins() {
            assert_eq!(p.get("deviceID").unwrap(), "0000:03:02.0");
            assert_eq!(p.get("pciBusID").unwrap(), "0000:03:02.0");
        }
    }
}

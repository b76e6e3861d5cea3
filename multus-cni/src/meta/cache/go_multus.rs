//! What Go Multus 3.x and 4.x leave in the same `cniDir` for each pod, read so that a node switched from Go
//! Multus deletes the pods Go Multus attached as completely as its own:
//!
//! - `<cniDir>/<containerID>`: a JSON array of upstream's `DelegateNetConf`, one per attachment in attach
//!   order, the cluster network first. `Bytes` is the base64 of the delegate's config as it was run;
//!   `Name` the network name (`<namespace>/<nad>` for a NAD; 4.x); `ifnameRequest`, `deviceID`,
//!   `macRequest`, `ipRequest` (a string in 3.x, a list in 4.x) what the pod asked for. There is no
//!   interface name: as upstream's `getIfname`, the first attachment has the DEL's `CNI_IFNAME`, the others
//!   the requested interface or `net<index>`.
//! - `<cniDir>/results/<network>-<containerID>-<ifname>` (4.x, libcni's result cache, `kind: cniCacheV1`):
//!   each attachment's ADD result, given back to its plugins as `prevResult`.
//!
//! Both are removed once the attachments are undone, as upstream's DEL does.

use super::Listed;
use base64::Engine;
use multus_core::cni::{names, AttachmentRef, CniError, CniResult, NetworkConfig};
use multus_core::pipeline::{Attached, Attachment};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Where to find what the Go entries do not say.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// The device-info base directory (for attachments with a `deviceID`).
    pub device_info_dir: Option<PathBuf>,
    /// Multus' own `cniVersion`, for delegate configs without one (as upstream's DEL fills it in).
    pub cni_version: String,
}

#[derive(Deserialize)]
struct GoDelegate {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "ifnameRequest", default)]
    ifname_request: String,
    #[serde(rename = "deviceID", default)]
    device_id: String,
    #[serde(rename = "macRequest", default)]
    mac_request: String,
    #[serde(rename = "ipRequest", default)]
    ip_request: Value,
    #[serde(rename = "Bytes")]
    bytes: String,
}

fn entry_path(dir: &Path, container_id: &str) -> PathBuf {
    dir.join(container_id)
}

fn result_path(dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    dir.join("results")
        .join(format!("{network}-{container_id}-{ifname}"))
}

fn read_entry(dir: &Path, container_id: &str) -> Result<Option<Vec<GoDelegate>>, CniError> {
    names::container_id(container_id)?;
    let path = entry_path(dir, container_id);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A directory of that name (never Go Multus'), or unreadable.
        Err(e) if path.is_dir() => {
            tracing::debug!("{}: {e}", path.display());
            return Ok(None);
        }
        Err(e) => return Err(CniError::io(format!("reading {}: {e}", path.display()))),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        CniError::decoding(format!(
            "Go Multus cache {} is corrupt: {e}",
            path.display()
        ))
    })
}

/// The network config of a delegate, with Multus' version where it has none.
fn network(d: &GoDelegate, i: usize, defaults: &Defaults) -> Result<NetworkConfig, CniError> {
    let what = || format!("Go Multus cache, delegate {i}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(d.bytes.trim())
        .map_err(|e| CniError::decoding(format!("{}: Bytes is not base64: {e}", what())))?;
    let mut v: Value = serde_json::from_slice(&raw)
        .map_err(|e| CniError::decoding(format!("{}: config is not JSON: {e}", what())))?;
    if let Value::Object(o) = &mut v {
        if !defaults.cni_version.is_empty() {
            o.entry("cniVersion")
                .or_insert_with(|| Value::String(defaults.cni_version.clone()));
        }
    }
    NetworkConfig::from_value(v).map_err(|e| e.context(what()))
}

/// The ADD result libcni cached for an attachment, if any.
fn cached_result(dir: &Path, network: &str, container_id: &str, ifname: &str) -> Option<CniResult> {
    let bytes = std::fs::read(result_path(dir, network, container_id, ifname)).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    CniResult::from_value(v.get("result")?).ok()
}

/// What one Go delegate asked for, as the runtime config Go Multus gave it.
fn runtime_config(
    d: &GoDelegate,
    name: &str,
    at: &AttachmentRef,
    ifname: &str,
    defaults: &Defaults,
) -> Map<String, Value> {
    let mut rc = Map::new();
    if !d.mac_request.is_empty() {
        rc.insert("mac".into(), Value::String(d.mac_request.clone()));
    }
    let ips: Vec<Value> = match &d.ip_request {
        Value::String(s) if !s.is_empty() => vec![Value::String(s.clone())],
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    };
    if !ips.is_empty() {
        rc.insert("ips".into(), Value::Array(ips));
    }
    if !d.device_id.is_empty() {
        rc.insert("deviceID".into(), Value::String(d.device_id.clone()));
        if let Some(base) = &defaults.device_info_dir {
            let f = multus_core::devinfo::cni_path(base, name, &at.container_id, ifname);
            rc.insert(
                multus_core::devinfo::RUNTIME_CONFIG_KEY.into(),
                Value::String(f.to_string_lossy().into_owned()),
            );
        }
    }
    rc
}

fn attached(
    dir: &Path,
    at: &AttachmentRef,
    delegates: &[GoDelegate],
    defaults: &Defaults,
) -> Result<Vec<Attached>, CniError> {
    let mut out = Vec::new();
    for (i, d) in delegates.iter().enumerate() {
        let net = network(d, i, defaults)?;
        let ifname = if i == 0 {
            at.ifname.clone()
        } else if !d.ifname_request.is_empty() {
            d.ifname_request.clone()
        } else {
            format!("net{i}")
        };
        let name = if d.name.is_empty() {
            net.name().to_string()
        } else {
            d.name.clone()
        };
        let result = cached_result(dir, net.name(), &at.container_id, &ifname);
        let mut a = Attachment::new(net, &ifname);
        a.runtime_config = runtime_config(d, &name, at, &ifname, defaults);
        a.name = name;
        a.is_default = i == 0;
        out.push(Attached {
            attachment: a,
            result,
        });
    }
    Ok(out)
}

/// Go Multus' entry of the attachment's container, as attachments (the first with `at.ifname`).
pub fn load(
    dir: &Path,
    at: &AttachmentRef,
    defaults: &Defaults,
) -> Result<Option<Vec<Attached>>, CniError> {
    match read_entry(dir, &at.container_id)? {
        Some(delegates) => attached(dir, at, &delegates, defaults).map(Some),
        None => Ok(None),
    }
}

/// Removes Go Multus' entry of the container and libcni's result cache files of it.
pub fn remove(dir: &Path, at: &AttachmentRef) -> Result<(), CniError> {
    if names::container_id(&at.container_id).is_err() {
        return Ok(());
    }
    let path = entry_path(dir, &at.container_id);
    if path.is_dir() {
        return Ok(());
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("results")) {
        let infix = format!("-{}-", at.container_id);
        for e in rd.flatten() {
            let of_this = e.file_name().to_string_lossy().contains(&infix)
                && std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .is_some_and(|v| v["containerId"] == at.container_id.as_str());
            if of_this {
                let _ = multus_core::fs::remove_if_exists(&e.path());
            }
        }
    }
    multus_core::fs::remove_if_exists(&path)
        .map(|_| ())
        .map_err(|e| CniError::io(format!("removing {}: {e}", path.display())))
}

/// The interface Go Multus gave the first attachment of a container (from libcni's result cache), else
/// `eth0`.
fn master_ifname(
    dir: &Path,
    container_id: &str,
    delegates: &[GoDelegate],
    defaults: &Defaults,
) -> String {
    let first = delegates.first().and_then(|d| network(d, 0, defaults).ok());
    let prefix = first.map(|n| format!("{}-{container_id}-", n.name()));
    prefix
        .and_then(|p| {
            std::fs::read_dir(dir.join("results"))
                .ok()?
                .flatten()
                .find_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix(&p).map(str::to_string)
                })
        })
        .filter(|i| names::ifname(i).is_ok())
        .unwrap_or_else(|| "eth0".to_string())
}

/// Every Go Multus entry of the directory.
pub fn list(dir: &Path, defaults: &Defaults) -> Vec<Listed> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| {
            let cid = e.file_name().into_string().ok()?;
            if names::container_id(&cid).is_err() || cid.ends_with(".json") || cid == "lock" {
                return None;
            }
            let delegates = match read_entry(dir, &cid) {
                Ok(Some(d)) => d,
                // Not Go Multus' (another file in the directory): not ours to judge.
                _ => return None,
            };
            let at = AttachmentRef {
                ifname: master_ifname(dir, &cid, &delegates, defaults),
                container_id: cid,
            };
            Some(Listed {
                attached: attached(dir, &at, &delegates, defaults),
                netns: String::new(),
                at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    /// Go Multus 3.x: no `Name`, `ipRequest` a string, a requested interface; and a config without
    /// `cniVersion`, which takes Multus' own.
    #[test]
    fn go_multus_3_entries_are_read() {
        let d = tempfile::tempdir().unwrap();
        let entry = serde_json::json!([
            {"Conf": {}, "Bytes": b64(serde_json::json!({"cniVersion": "0.3.1", "name": "podnet", "type": "bridge"}))},
            {"Conf": {}, "ifnameRequest": "data0", "ipRequest": "10.1.1.5/24", "macRequest": "02:00:00:00:00:01",
             "deviceID": "0000:03:10.1", "Bytes": b64(serde_json::json!({"name": "sriov-net", "type": "sriov"}))},
            {"Conf": {}, "Bytes": b64(serde_json::json!({"cniVersion": "0.3.1", "name": "third", "type": "macvlan"}))}
        ]);
        std::fs::write(d.path().join("c1"), entry.to_string()).unwrap();
        let at = AttachmentRef {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        };
        let defaults = Defaults {
            device_info_dir: Some("/run/devinfo".into()),
            cni_version: "0.4.0".into(),
        };
        let a = load(d.path(), &at, &defaults).unwrap().unwrap();
        let ifnames: Vec<&str> = a.iter().map(|a| a.attachment.ifname.as_str()).collect();
        assert_eq!(ifnames, ["eth0", "data0", "net2"]);
        assert!(a[0].attachment.is_default && !a[1].attachment.is_default);
        let sriov = &a[1].attachment;
        assert_eq!(sriov.name, "sriov-net");
        assert_eq!(sriov.network.cni_version(), "0.4.0");
        assert_eq!(
            sriov.runtime_config["ips"],
            serde_json::json!(["10.1.1.5/24"])
        );
        assert_eq!(sriov.runtime_config["mac"], "02:00:00:00:00:01");
        assert_eq!(
            sriov.runtime_config["CNIDeviceInfoFile"],
            "/run/devinfo/cni/sriov-net-c1_data0"
        );
        let listed = list(d.path(), &defaults);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].at, at);
        remove(d.path(), &at).unwrap();
        assert!(load(d.path(), &at, &defaults).unwrap().is_none());
    }

    /// Files that are not Go Multus' entries are never listed, loaded as one, or removed.
    #[test]
    fn other_files_are_left_alone() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("lock"), b"").unwrap();
        std::fs::write(d.path().join("notes"), b"hello").unwrap();
        std::fs::create_dir(d.path().join("c2")).unwrap();
        assert!(list(d.path(), &Defaults::default()).is_empty());
        let at = AttachmentRef {
            container_id: "c2".into(),
            ifname: "eth0".into(),
        };
        assert!(load(d.path(), &at, &Defaults::default()).unwrap().is_none());
        remove(d.path(), &at).unwrap();
        assert!(d.path().join("c2").is_dir());
        let notes = AttachmentRef {
            container_id: "notes".into(),
            ifname: "eth0".into(),
        };
        assert_eq!(
            load(d.path(), &notes, &Defaults::default())
                .unwrap_err()
                .code
                .code(),
            6
        );
    }
}

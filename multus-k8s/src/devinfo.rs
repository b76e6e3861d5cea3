//! Device information files of the Network Plumbing WG device-info spec (1.1): how a device plugin and a
//! CNI plugin tell Multus about the device behind an attachment, which Multus copies into the attachment's
//! `device-info` in network-status.
//!
//! - A device plugin writes `<base>/dp/<resourceName>-<deviceID>-device.json` (every `/` of the resource name
//!   and of the device ID replaced by `-`): the path is fixed by convention, nothing passes it around.
//! - Multus gives a delegate with a device (a `deviceID`) the runtime config key `CNIDeviceInfoFile` =
//!   `<base>/cni/<network name>-<containerID>_<ifname>` (every `/` replaced by `-`, so the network
//!   `ns/nad` becomes `ns-nad`), reaching the plugins that declare that capability. Before the delegate's ADD
//!   the device plugin's file, if any, is copied there; after it, whatever the file holds (the plugin may
//!   have rewritten it) is the attachment's `device-info`. DEL removes the file.
//!
//! Device information is informational: a missing or malformed file never fails an attachment.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The base directory of device information files.
pub const DEFAULT_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo";
/// The runtime config key (and capability) naming a delegate's device information file.
pub const RUNTIME_CONFIG_KEY: &str = "CNIDeviceInfoFile";
/// The members a device information object may carry (others are dropped, as upstream's typed decoding
/// does).
const MEMBERS: [&str; 6] = ["type", "version", "pci", "vdpa", "vhost-user", "memif"];

/// The device plugin's file for device `device_id` of resource `resource_name`, under `base`.
pub fn dp_path(base: &Path, resource_name: &str, device_id: &str) -> PathBuf {
    base.join("dp").join(format!(
        "{}-{}-device.json",
        resource_name.replace('/', "-"),
        device_id.replace('/', "-")
    ))
}

/// The CNI file of the attachment of network `network` (`ns/nad` for a NAD) as `ifname` in container
/// `container_id`, under `base`.
pub fn cni_path(base: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    base.join("cni")
        .join(format!("{network}-{container_id}_{ifname}").replace('/', "-"))
}

/// Parses a device information file: a JSON object with a non-empty string `type`, an optional string
/// `version` and object members `pci`, `vdpa`, `vhost-user`, `memif`; other members are dropped.
pub fn parse(bytes: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(o) = v else {
        return Err("not a JSON object".into());
    };
    match o.get("type") {
        Some(Value::String(t)) if !t.is_empty() => {}
        _ => return Err("\"type\" must be a non-empty string".into()),
    }
    if let Some(ver) = o.get("version") {
        if !ver.is_string() {
            return Err("\"version\" must be a string".into());
        }
    }
    let mut out = Map::new();
    for m in MEMBERS {
        let Some(x) = o.get(m) else { continue };
        if !matches!(m, "type" | "version") && !x.is_object() {
            return Err(format!("{m:?} must be an object"));
        }
        out.insert(m.to_string(), x.clone());
    }
    Ok(Value::Object(out))
}

/// Reads a device information file: `None` when it does not exist, or (logged) when it cannot be read or
/// is malformed.
pub fn load(path: &Path) -> Option<Value> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("device-info file {}: {e}; ignored", path.display());
            return None;
        }
    };
    match parse(&bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("device-info file {}: {e}; ignored", path.display());
            None
        }
    }
}

/// Copies the device plugin's file `dp` (when it exists and is well-formed) to the CNI file `cni`,
/// creating its directory; failures are logged.
pub fn copy_dp_to_cni(dp: &Path, cni: &Path) {
    let Some(info) = load(dp) else { return };
    let write = || -> std::io::Result<()> {
        if let Some(d) = cni.parent() {
            std::fs::create_dir_all(d)?;
        }
        let tmp = cni.with_extension("tmp");
        std::fs::write(&tmp, info.to_string())?;
        std::fs::rename(&tmp, cni)
    };
    if let Err(e) = write() {
        tracing::warn!(
            "copying device-info {} to {}: {e}",
            dp.display(),
            cni.display()
        );
    }
}

/// Removes a CNI device information file (a missing one is fine; other failures are logged).
pub fn remove(cni: &Path) {
    match std::fs::remove_file(cni) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!("removing device-info {}: {e}", cni.display())
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_naming() {
        let b = Path::new(DEFAULT_DIR);
        assert_eq!(
            dp_path(b, "intel.com/sriov_net", "0000:03:02.0"),
            PathBuf::from(
                "/var/run/k8s.cni.cncf.io/devinfo/dp/intel.com-sriov_net-0000:03:02.0-device.json"
            )
        );
        assert_eq!(
            dp_path(b, "example.com/vdpa", "vdpa/0"),
            PathBuf::from(
                "/var/run/k8s.cni.cncf.io/devinfo/dp/example.com-vdpa-vdpa-0-device.json"
            )
        );
        assert_eq!(
            cni_path(b, "default/sriov-net", "abc123", "net1"),
            PathBuf::from("/var/run/k8s.cni.cncf.io/devinfo/cni/default-sriov-net-abc123_net1")
        );
    }

    #[test]
    fn parsing() {
        let v = parse(
            br#"{"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","pf-pci-address":"0000:03:00.0"},"junk":1}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","pf-pci-address":"0000:03:00.0"}})
        );
        let v =
            parse(br#"{"type":"vhost-user","vhost-user":{"mode":"server","path":"/s"}}"#).unwrap();
        assert_eq!(v["vhost-user"]["mode"], "server");
        for bad in [
            &b"{"[..],
            b"[]",
            b"{}",
            br#"{"type":""}"#,
            br#"{"type":"pci","version":1}"#,
            br#"{"type":"pci","pci":"0000:03:02.0"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn load_copy_remove() {
        let d = tempfile::tempdir().unwrap();
        let dp = dp_path(d.path(), "r.io/x", "d1");
        let cni = cni_path(d.path(), "ns/n", "c", "net1");
        assert_eq!(load(&dp), None);
        copy_dp_to_cni(&dp, &cni);
        assert!(!cni.exists());
        std::fs::create_dir_all(dp.parent().unwrap()).unwrap();
        std::fs::write(&dp, b"{not json").unwrap();
        assert_eq!(load(&dp), None);
        copy_dp_to_cni(&dp, &cni);
        assert!(!cni.exists());
        let info = json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0"}});
        std::fs::write(&dp, info.to_string()).unwrap();
        copy_dp_to_cni(&dp, &cni);
        assert_eq!(load(&cni), Some(info));
        remove(&cni);
        assert!(!cni.exists());
        remove(&cni);
    }
}

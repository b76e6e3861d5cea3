//! Device information of the Network Plumbing WG device-info spec (1.1.0): how a device plugin and a CNI
//! plugin tell Multus about the device behind an attachment, which Multus copies into the attachment's
//! `device-info` in network-status. One module for every side: the paths, the typed object a delegate with a
//! device (an SR-IOV VF, a vfio-bound PCI device) reports ([`DeviceInfo`]), its one write ([`write()`], through
//! [`crate::fs::write_atomic`]), reading any writer's file ([`parse`], [`load`]), Multus' copy and removal.
//!
//! - A device plugin writes `<base>/dp/<resourceName>-<deviceID>-device.json` (every `/` of the resource name
//!   and of the device ID replaced by `-`): the path is fixed by convention, nothing passes it around.
//! - Multus gives a delegate with a device (a `deviceID`) the runtime config key `CNIDeviceInfoFile` =
//!   `<base>/cni/<network name>-<containerID>_<ifname>` (every `/` replaced by `-`, so the network
//!   `ns/nad` becomes `ns-nad`), reaching the plugins that declare that capability. Before the delegate's ADD
//!   the device plugin's file, if any, is copied there; after it, whatever the file holds (the plugin may
//!   have rewritten it) is the attachment's `device-info`. DEL removes the file.
//!
//! Device information is informational for Multus: a missing or malformed file never fails an attachment.
//!
//! ```
//! use multus_core::devinfo::DeviceInfo;
//!
//! let info = DeviceInfo::pci("0000:03:10.1", Some("0000:03:00.0"));
//! let json = serde_json::to_value(&info).unwrap();
//! assert_eq!(json["type"], "pci");
//! assert_eq!(json["pci"]["pf-pci-address"], "0000:03:00.0");
//! assert_eq!(json["version"], "1.1.0");
//! assert!(json["pci"].get("vfio-device").is_none());
//!
//! let bound = DeviceInfo::pci("0000:03:10.1", None).with_vfio_device("/dev/vfio/12");
//! assert_eq!(serde_json::to_value(&bound).unwrap()["pci"]["vfio-device"], "/dev/vfio/12");
//! ```

use crate::cni::keys::Keys;
use crate::cni::{CniError, PluginConf};
use crate::fs::{self, Durability};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The base directory of device information files.
pub const DEFAULT_DIR: &str = "/var/run/k8s.cni.cncf.io/devinfo";
/// The runtime config key (and capability) naming a delegate's device information file.
pub const RUNTIME_CONFIG_KEY: &str = "CNIDeviceInfoFile";
/// The members a device information object may carry (others are dropped, as upstream's typed decoding
/// does).
const MEMBERS: [&str; 6] = ["type", "version", "pci", "vdpa", "vhost-user", "memif"];
/// The mode of a device information file: read by the device's users in the pod's host-side tooling.
const FILE_MODE: u32 = 0o644;

/// The device-info object of the Network Plumbing WG device-info spec (1.1.0), as written into
/// network-status and the device-info file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `type`: `pci` for a PCI device.
    #[serde(rename = "type")]
    pub kind: String,
    /// `version` of the device-info spec.
    pub version: String,
    /// `pci`: the PCI details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci: Option<PciInfo>,
}

/// The `pci` member of [`DeviceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciInfo {
    /// `pci-address` of the device.
    #[serde(rename = "pci-address")]
    pub pci_address: String,
    /// `pf-pci-address` of its PF, for a VF.
    #[serde(
        rename = "pf-pci-address",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pf_pci_address: Option<String>,
    /// `vfio-device`: the VFIO group device (`/dev/vfio/<group>`) of a device bound to vfio-pci. This project's
    /// extension: spec 1.1.0's `pci` object has no member for it, and a DPDK application in the pod needs it
    /// (the group is otherwise only found through the host's sysfs). Readers that decode the spec's members
    /// only (Go Multus' typed `PciDevice`) ignore it.
    #[serde(
        rename = "vfio-device",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub vfio_device: Option<String>,
}

impl DeviceInfo {
    /// A `pci` device-info of spec 1.1.0.
    pub fn pci(address: &str, pf: Option<&str>) -> Self {
        DeviceInfo {
            kind: "pci".into(),
            version: "1.1.0".into(),
            pci: Some(PciInfo {
                pci_address: address.into(),
                pf_pci_address: pf.map(str::to_string),
                vfio_device: None,
            }),
        }
    }

    /// The same, with the VFIO group device of a `pci` device bound to vfio-pci (empty: none).
    pub fn with_vfio_device(mut self, dev: &str) -> Self {
        if let Some(p) = self.pci.as_mut() {
            p.vfio_device = Some(dev.to_string()).filter(|d| !d.is_empty());
        }
        self
    }
}

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
    let written = fs::write_atomic(
        cni,
        info.to_string().as_bytes(),
        FILE_MODE,
        Durability::AtomicOnly,
    );
    if let Err(e) = written {
        tracing::warn!(
            "copying device-info {} to {}: {e}",
            dp.display(),
            cni.display()
        );
    }
}

/// Removes a CNI device information file (a missing one is fine; other failures are logged).
pub fn remove(cni: &Path) {
    if let Err(e) = fs::remove_if_exists(cni) {
        tracing::warn!("removing device-info {}: {e}", cni.display());
    }
}

/// `runtimeConfig.CNIDeviceInfoFile` of a delegate's config: where Multus asks it to write its device-info.
/// Code 7 when it is not a string.
pub fn file_of(conf: &PluginConf) -> Result<Option<PathBuf>, CniError> {
    Ok(Keys::of(conf)
        .nested("runtimeConfig")?
        .string(RUNTIME_CONFIG_KEY)?
        .map(PathBuf::from))
}

/// Writes a delegate's device-info file whole ([`fs::write_atomic`]), creating its directory: the one writer
/// of every delegate that reports a device (`sriov` in both modes, `dpdk`). A `pci` device-info for the same
/// PCI address already there (the device plugin's, copied there by Multus) is kept with its extra members
/// (`rdma-device`, `representor-device`, ...), and only gets the `pci` members of `info` it lacks
/// (`pf-pci-address`, `vfio-device`); another device's or an unreadable file is replaced.
pub fn write(path: &Path, info: &DeviceInfo) -> std::io::Result<()> {
    let ours = serde_json::to_value(info).map_err(std::io::Error::other)?;
    let existing = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let merged = match existing {
        Some(mut v)
            if v["type"] == "pci"
                && ours["type"] == "pci"
                && v["pci"]["pci-address"] == ours["pci"]["pci-address"] =>
        {
            if let (Some(pci), Some(add)) = (v["pci"].as_object_mut(), ours["pci"].as_object()) {
                for (k, val) in add {
                    pci.entry(k.clone()).or_insert_with(|| val.clone());
                }
            }
            v
        }
        _ => ours,
    };
    let bytes = serde_json::to_vec(&merged).map_err(std::io::Error::other)?;
    fs::write_atomic(path, &bytes, FILE_MODE, Durability::AtomicOnly)
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

    #[test]
    fn write_is_whole_and_completes_the_device_plugins_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("cni/net-c1_net1");
        let ours = DeviceInfo::pci("0000:01:10.0", Some("0000:01:00.0"));
        write(&f, &ours).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"type": "pci", "version": "1.1.0",
                "pci": {"pci-address": "0000:01:10.0", "pf-pci-address": "0000:01:00.0"}})
        );
        assert_eq!(std::fs::read_dir(f.parent().unwrap()).unwrap().count(), 1);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // The device plugin's file for this device is kept (extra members too) and completed.
        let dp = json!({"type": "pci", "version": "1.1.0",
            "pci": {"pci-address": "0000:01:10.0", "rdma-device": "mlx5_3"}});
        std::fs::write(&f, dp.to_string()).unwrap();
        write(&f, &ours.clone().with_vfio_device("/dev/vfio/9")).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(
            v["pci"],
            json!({"pci-address": "0000:01:10.0", "rdma-device": "mlx5_3",
                "pf-pci-address": "0000:01:00.0", "vfio-device": "/dev/vfio/9"})
        );
        // Another device's (or a malformed) file is replaced.
        std::fs::write(&f, dp.to_string().replace("10.0", "10.2")).unwrap();
        write(&f, &ours).unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        assert_eq!(v["pci"]["pci-address"], "0000:01:10.0");
        assert!(v["pci"].get("rdma-device").is_none());
    }

    #[test]
    fn file_from_runtime_config() {
        let conf = |v: Value| PluginConf::from_value(v).unwrap();
        assert_eq!(file_of(&conf(json!({"type": "x"}))).unwrap(), None);
        assert_eq!(
            file_of(&conf(
                json!({"type": "x", "runtimeConfig": {"CNIDeviceInfoFile": "/run/x"}})
            ))
            .unwrap(),
            Some(PathBuf::from("/run/x"))
        );
        assert_eq!(
            file_of(&conf(
                json!({"type": "x", "runtimeConfig": {"CNIDeviceInfoFile": ""}})
            ))
            .unwrap(),
            None
        );
        let e = file_of(&conf(
            json!({"type": "x", "runtimeConfig": {"CNIDeviceInfoFile": 1}}),
        ));
        assert_eq!(e.unwrap_err().code.code(), 7);
    }
}

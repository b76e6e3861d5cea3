//! Device information of the Network Plumbing WG device-info spec (1.1.0): the typed object a delegate with a
//! device (an SR-IOV VF, a vfio-bound PCI device) reports, written into the attachment's device-info file and
//! the pod's network-status. (Reading the files of other writers, which may carry `vdpa`, `vhost-user` or
//! `memif` members, is `multus-k8s`'s `devinfo` module.)
//!
//! ```
//! use multus_core::devinfo::DeviceInfo;
//!
//! let info = DeviceInfo::pci("0000:03:10.1", Some("0000:03:00.0"));
//! let json = serde_json::to_value(&info).unwrap();
//! assert_eq!(json["type"], "pci");
//! assert_eq!(json["pci"]["pf-pci-address"], "0000:03:00.0");
//! assert_eq!(json["version"], "1.1.0");
//! ```

use serde::{Deserialize, Serialize};

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
            }),
        }
    }
}

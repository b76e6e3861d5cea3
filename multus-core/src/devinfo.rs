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
//! assert!(json["pci"].get("vfio-device").is_none());
//!
//! let bound = DeviceInfo::pci("0000:03:10.1", None).with_vfio_device("/dev/vfio/12");
//! assert_eq!(serde_json::to_value(&bound).unwrap()["pci"]["vfio-device"], "/dev/vfio/12");
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

//! # multus-dpdk
//!
//! DPDK attachments for a Rust Multus: binding a PCI device (an SR-IOV VF) to `vfio-pci` at attach time,
//! restoring its original driver on DEL, and reporting it as device-info (spec 1.1.0). This version holds the
//! public types; the delegate comes with its issue (see the repository's README status table). `DeviceInfo` lives
//! in `multus_core::devinfo` (the SR-IOV delegate reports it too) and is re-exported here.
//!
//! ```
//! use multus_dpdk::DeviceInfo;
//!
//! let info = DeviceInfo::pci("0000:03:10.1", Some("0000:03:00.0"));
//! let json = serde_json::to_value(&info).unwrap();
//! assert_eq!(json["type"], "pci");
//! assert_eq!(json["pci"]["pci-address"], "0000:03:10.1");
//! assert_eq!(json["version"], "1.1.0");
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

/// The driver a device is bound to for DPDK.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

pub use multus_core::devinfo::{DeviceInfo, PciInfo};

//! # multus-dpdk
//!
//! DPDK attachments for a Rust Multus: binding a PCI device (an SR-IOV VF) to `vfio-pci` at attach time,
//! restoring its original driver on DEL, and reporting it as device-info (spec 1.1.0).
//!
//! Modules:
//! - [`bind`]: the checks (IOMMU, vfio-pci, IOMMU group usable whole) and the driver-model steps (unbind,
//!   `driver_override`, `drivers_probe`, wait for `/dev/vfio/<group>`, verify, roll back on failure; restore),
//!   over a sysfs root and a small effects trait, so that they run in unit tests on fake sysfs trees.
//! - [`state`]: per-attachment records of the bound device and what it was before, under a state dir with a lock.
//! - [`delegate`]: the `dpdk` delegate (built into the `multus` binary as type `dpdk`).
//!
//! `DeviceInfo` lives in `multus_core::devinfo` (the SR-IOV delegate reports it too) and is re-exported here.
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
//!
//! Binding a VF on the host (needs root, an IOMMU and vfio-pci, so not run here):
//!
//! ```no_run
//! use multus_dpdk::bind::Binder;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let b = Binder::system();
//! let plan = b.plan("0000:01:10.0".parse()?, false)?; // checks only
//! let bound = b.bind(&plan)?; // rolled back to plan.original on failure
//! println!("{} on vfio-pci: {}", plan.pci, bound.dev.display());
//! let back = b.restore(plan.pci, &plan.original)?;
//! println!("netdev again: {:?} (was {:?})", back.netdev, plan.original.netdev);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod bind;
pub mod delegate;
#[cfg(test)]
mod sim;
pub mod state;

pub use delegate::{Dpdk, DpdkConf};

/// The driver a device is bound to for DPDK.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

pub use multus_core::devinfo::{DeviceInfo, PciInfo};

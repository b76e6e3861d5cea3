//! # multus-sriov
//!
//! SR-IOV for a Rust Multus: VF discovery and allocation through sysfs, VF settings through netlink, and a
//! full restore of every changed setting on DEL. [`Sriov`] is the `sriov` delegate (netdev mode: the VF's
//! kernel netdev moved into the pod, as sriov-cni does); [`vf`] is the part of it a userspace (DPDK) delegate
//! reuses (allocate, save the state, apply the settings on the PF; and give back).
//!
//! Modules:
//! - [`delegate`]: the [`Sriov`] delegate: ADD, DEL, CHECK, STATUS, GC.
//! - [`vf`]: [`vf::acquire`] and [`vf::release`], whatever becomes of the VF's netdev; [`vf::SriovEnv`] (the
//!   sysfs and state directory an SR-IOV delegate works with).
//! - [`userspace`]: the userspace (DPDK) mode: a VF already bound to vfio-pci (or another userspace driver) by
//!   someone else gets its VF settings on the PF, no netdev, and its VFIO group device in the device-info.
//! - [`netdev`]: the VF netdev: found in a pod by its PCI parent, moved between namespaces, renamed, MAC/MTU.
//! - [`cache`]: the per-attachment record of what ADD found and changed ([`cache::VfRecord`], a
//!   `multus_core::record` kind kept in the `sriov` delegate's store, `<dataDir>/<containerID>@<ifname>.json`, or
//!   inside another delegate's record: [`cache::VfKeeper`]).
//! - [`sysfs`]: read-only sysfs access with a configurable root (PFs, VFs, `physfn`, netdevs, driver, IDs, IOMMU
//!   group); VFs are enumerated through `virtfnN` links, never a netlink dump.
//! - [`config`]: the sriov-cni config keys parsed into a typed [`config::SriovConf`], the VF state
//!   [`config::VfState`] and [`config::plan_changes`] (exactly what ADD changes and DEL restores).
//! - [`vf_netlink`]: the thin netlink effect: read a VF's settings from its PF, apply a plan of
//!   [`config::VfChange`]s (one `RTM_SETLINK` each).
//! - [`alloc`]: VF allocation records under a state dir with a lock (by `deviceID` or a free VF of a PF).
//! - `fake` (feature `fake-sysfs`, and in this crate's tests): fake sysfs trees shaped like the kernel's.
//!
//! State lives under `dataDir` (a config key of this project; default `/var/lib/cni/sriov`, sriov-cni's):
//! `pci/` for the allocation records, `<containerID>@<ifname>.json` for each attachment's record.
//!
//! ```
//! use multus_sriov::PciAddress;
//!
//! let vf: PciAddress = "0000:03:10.1".parse().unwrap();
//! assert_eq!(vf.bus, 3);
//! assert_eq!(vf.to_string(), "0000:03:10.1");
//! assert!("03:10.1".parse::<PciAddress>().is_err());
//! ```
//!
//! Finding and allocating a VF on the host (needs a real SR-IOV PF, so not run here):
//!
//! ```no_run
//! use multus_sriov::alloc::{Holder, VfAllocator};
//! use multus_sriov::sysfs::Sysfs;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sysfs = Sysfs::system();
//! let pf = sysfs.netdev_pci("ens1f0")?;
//! println!("{pf}: {} of {} VFs enabled", sysfs.num_vfs(pf)?, sysfs.total_vfs(pf)?);
//! let alloc = VfAllocator::new("/var/lib/cni/multus/sriov", sysfs.clone());
//! let holder = Holder {
//!     container_id: "c1".into(),
//!     ifname: "net1".into(),
//!     netns: "/var/run/netns/pod1".into(),
//! };
//! let vf = alloc.allocate_from_pf("ens1f0", &holder)?;
//! println!("VF {vf} netdev {:?} driver {:?}", sysfs.netdevs(vf)?, sysfs.driver(vf)?);
//! alloc.release(vf)?;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod alloc;
pub mod cache;
pub mod config;
pub mod delegate;
#[cfg(any(test, feature = "fake-sysfs"))]
pub mod fake;
pub mod netdev;
pub mod sysfs;
pub mod userspace;
pub mod vf;
pub mod vf_netlink;

pub use alloc::{AllocError, Claim, Holder, VfAllocator};
pub use delegate::Sriov;
pub use sysfs::{Sysfs, SysfsError, VfRef};
pub use vf::SriovEnv;

use std::fmt;
use std::str::FromStr;

/// A PCI address in the `domain:bus:device.function` form sysfs uses (`0000:03:10.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    /// Domain (segment), 16 bits.
    pub domain: u16,
    /// Bus.
    pub bus: u8,
    /// Device, 0 to 31.
    pub device: u8,
    /// Function, 0 to 7.
    pub function: u8,
}

/// Why a PCI address did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid PCI address {0:?}: want dddd:bb:dd.f (hex), for example 0000:03:10.1")]
pub struct PciAddressError(pub String);

impl FromStr for PciAddress {
    type Err = PciAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PciAddressError(s.to_string());
        let (domain, rest) = s.split_once(':').ok_or_else(err)?;
        let (bus, rest) = rest.split_once(':').ok_or_else(err)?;
        let (device, function) = rest.split_once('.').ok_or_else(err)?;
        let hex = |p: &str, len: usize| {
            if p.len() == len && p.bytes().all(|b| b.is_ascii_hexdigit()) {
                u32::from_str_radix(p, 16).map_err(|_| err())
            } else {
                Err(err())
            }
        };
        let (domain, bus, device, function) = (
            hex(domain, 4)?,
            hex(bus, 2)?,
            hex(device, 2)?,
            hex(function, 1)?,
        );
        if device > 31 || function > 7 {
            return Err(err());
        }
        Ok(PciAddress {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

// Serialized as its `dddd:bb:dd.f` string.
multus_core::serde_as_text!(PciAddress);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_as_string() {
        let a: PciAddress = "0000:03:10.1".parse().unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"0000:03:10.1\"");
        assert_eq!(
            serde_json::from_str::<PciAddress>("\"0000:03:10.1\"").unwrap(),
            a
        );
        assert!(serde_json::from_str::<PciAddress>("\"03:10.1\"").is_err());
    }

    #[test]
    fn parses_and_refuses() {
        let a: PciAddress = "0000:af:1f.7".parse().unwrap();
        assert_eq!((a.bus, a.device, a.function), (0xaf, 0x1f, 7));
        for bad in [
            "",
            "0000:af:20.0",
            "0000:af:1f.8",
            "000:af:1f.0",
            "0000:af:1f",
            "0000:xx:00.0",
            "0000:00:00.0/x",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad}");
        }
    }
}

//! Why binding or restoring a device failed, and the CNI error each failure becomes.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use multus_core::cni::CniError;
use multus_sriov::{PciAddress, SysfsError};

/// Why binding or restoring failed. Converted to a [`CniError`] (code 7 for a device that does not exist, 103
/// otherwise) whose message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// No PCI function with this address.
    #[error("PCI device {0} does not exist (no /sys/bus/pci/devices/{0})")]
    NoSuchDevice(PciAddress),
    /// No IOMMU and no permission to go without one.
    #[error(
        "no IOMMU on this host ({0}/sys/class/iommu is empty): vfio-pci needs one (boot with intel_iommu=on or \
         amd_iommu=on); to bind without it, set \"allowNoIommu\": true and load vfio with \
         enable_unsafe_noiommu_mode=1 (unsafe: the device can DMA anywhere)"
    )]
    NoIommu(String),
    /// `allowNoIommu` is set but the kernel's unsafe no-IOMMU mode is off.
    #[error(
        "no IOMMU on this host and vfio's unsafe no-IOMMU mode is off ({path}: {found}); \"allowNoIommu\" needs \
         it on: modprobe vfio enable_unsafe_noiommu_mode=1"
    )]
    NoIommuModeOff {
        /// The parameter file.
        path: PathBuf,
        /// What it held (or why it could not be read).
        found: String,
    },
    /// The vfio-pci driver is not loaded.
    #[error("the vfio-pci driver is not available ({0} does not exist): modprobe vfio-pci")]
    NoVfioPci(PathBuf),
    /// The device has no IOMMU group although an IOMMU is present.
    #[error(
        "PCI device {0} has no IOMMU group (no iommu_group link): it cannot be given to vfio-pci"
    )]
    NoIommuGroup(PciAddress),
    /// Another device of the group is bound to a driver that keeps the group from user space.
    #[error(
        "IOMMU group {group} of {pci} is not usable whole: {other} in the same group is bound to {driver} \
         (every device of the group must be unbound or bound to vfio-pci)"
    )]
    GroupNotViable {
        /// The device to bind.
        pci: PciAddress,
        /// Its group.
        group: u32,
        /// The offending device.
        other: String,
        /// Its driver.
        driver: String,
    },
    /// Reading sysfs failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// Reading something else failed (the IOMMU group's device list, the IOMMU class).
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A driver-model operation failed.
    #[error("{what} {pci}: {source}")]
    Op {
        /// What was being done (`unbinding from igbvf`).
        what: String,
        /// The device.
        pci: PciAddress,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// After a probe the device is not on the expected driver.
    #[error("{pci} is not bound to {want} after the probe (driver: {})", found.as_deref().unwrap_or("none"))]
    NotBound {
        /// The device.
        pci: PciAddress,
        /// The driver wanted.
        want: String,
        /// The driver found.
        found: Option<String>,
    },
    /// The vfio group device did not appear in time.
    #[error("{pci} is bound to vfio-pci but {} did not appear within {timeout:?}", path.display())]
    NoGroupDevice {
        /// The device.
        pci: PciAddress,
        /// The path waited for.
        path: PathBuf,
        /// How long.
        timeout: Duration,
    },
    /// A bind step failed and the original driver was (or could not be) bound again.
    #[error("binding {pci} to vfio-pci failed: {error}; {rollback}")]
    RolledBack {
        /// The device.
        pci: PciAddress,
        /// What failed.
        error: Box<BindError>,
        /// The rollback's outcome, in words.
        rollback: String,
    },
}

impl From<BindError> for CniError {
    fn from(e: BindError) -> Self {
        match e {
            BindError::NoSuchDevice(_) => CniError::invalid_config(e.to_string()),
            _ => CniError::kernel(e.to_string()),
        }
    }
}

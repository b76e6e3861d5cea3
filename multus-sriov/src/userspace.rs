//! The userspace (DPDK) mode of the `sriov` delegate, as sriov-cni's: the VF named by `deviceID` is already
//! bound to a userspace driver ([`USERSPACE_DRIVERS`]: vfio-pci, uio_pci_generic, igb_uio), as the SR-IOV
//! device plugin hands out the VFs of a `drivers: [vfio-pci]` pool.
//!
//! - ADD: [`crate::vf::acquire`] (allocation, original PF-side settings cached, the config's VF settings
//!   applied on the PF), and nothing else on the host: no netdev moves, nothing is bound or unbound (someone
//!   else bound the VF, and it stays so). IPAM runs when configured and its addresses are reported for the
//!   interface (as sriov-cni does: the DPDK application configures them itself), never applied to a netdev.
//!   The result has one interface, named `CNI_IFNAME`, in the pod's sandbox, with the VF's `pciID` (CNI 1.1)
//!   and the configured MAC (else the VF's administrative MAC, when set). The device-info file
//!   (`runtimeConfig.CNIDeviceInfoFile`) gets a `pci` device-info with the PF and, on vfio-pci, the VFIO group
//!   device (`vfio-device`, [`vfio_device`]).
//! - DEL: IPAM released, the settings put back on the PF, the VF freed; the VF stays on its driver.
//! - CHECK: the VF is still allocated to the attachment and on a userspace driver, and the PF still carries
//!   the settings ADD applied.
//!
//! The `sriov` type never binds a VF itself: a config whose VF is on its kernel driver takes the netdev mode,
//! and a VF with no driver is refused. To have the plugin bind the VF to vfio-pci (and give it back on DEL),
//! use the `dpdk` type, which takes the same VF settings.

use crate::alloc::USERSPACE_DRIVERS;
use crate::sysfs::Sysfs;
use crate::PciAddress;
use multus_core::cni::CniError;
use multus_core::devinfo::DeviceInfo;

/// The vfio-pci driver's name.
pub const VFIO_PCI: &str = "vfio-pci";

/// The name vfio gives the IOMMU group it makes for a device in its unsafe no-IOMMU mode.
const NOIOMMU_GROUP_NAME: &str = "vfio-noiommu";

/// A VF found bound to a userspace driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserspaceVf {
    /// The driver (one of [`USERSPACE_DRIVERS`]).
    pub driver: String,
    /// On vfio-pci, its VFIO group device ([`vfio_device`]).
    pub vfio_device: Option<String>,
}

/// Whether `pci` is bound to a userspace driver, and which. `None` when it does not exist, is unbound or is on a
/// kernel driver (the netdev mode's checks then name the problem); an error when it is on vfio-pci without an
/// IOMMU group (no group device to hand to the pod).
pub fn probe(sysfs: &Sysfs, pci: PciAddress) -> Result<Option<UserspaceVf>, CniError> {
    if !sysfs.pci_exists(pci) {
        return Ok(None);
    }
    let driver = sysfs
        .driver(pci)
        .map_err(|e| CniError::kernel(format!("sriov: {e}")))?;
    let Some(driver) = driver.filter(|d| USERSPACE_DRIVERS.contains(&d.as_str())) else {
        return Ok(None);
    };
    let vfio_device = if driver == VFIO_PCI {
        Some(vfio_device(sysfs, pci)?)
    } else {
        None
    };
    Ok(Some(UserspaceVf {
        driver,
        vfio_device,
    }))
}

/// The VFIO group device of a device bound to vfio-pci: `/dev/vfio/<group>`, or `/dev/vfio/noiommu-<group>`
/// when its group is one vfio made in its unsafe no-IOMMU mode (named `vfio-noiommu`). Code 11 without an
/// IOMMU group.
pub fn vfio_device(sysfs: &Sysfs, pci: PciAddress) -> Result<String, CniError> {
    let group = sysfs
        .iommu_group(pci)
        .map_err(|e| CniError::kernel(format!("sriov: {e}")))?
        .ok_or_else(|| {
            CniError::try_again_later(format!(
                "sriov: VF {pci} is bound to vfio-pci but has no IOMMU group (no /dev/vfio device to give \
                 the pod)"
            ))
        })?;
    let name =
        std::fs::read_to_string(sysfs.pci_dir(pci).join("iommu_group/name")).unwrap_or_default();
    Ok(if name.trim() == NOIOMMU_GROUP_NAME {
        format!("/dev/vfio/noiommu-{group}")
    } else {
        format!("/dev/vfio/{group}")
    })
}

/// The device-info of a VF in userspace mode: `pci` with its PF and, on vfio-pci, its VFIO group device.
pub fn device_info(vf: PciAddress, pf: PciAddress, u: &UserspaceVf) -> DeviceInfo {
    let info = DeviceInfo::pci(&vf.to_string(), Some(&pf.to_string()));
    match &u.vfio_device {
        Some(d) => info.with_vfio_device(d),
        None => info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakePf, FakeSysfs};

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn host() -> (tempfile::TempDir, FakeSysfs) {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path().join("root")).unwrap();
        let mut pf = FakePf::igb("ens1", 1, 3);
        pf.vfs[1].driver = Some("vfio-pci".into());
        pf.vfs[1].netdev = None;
        pf.vfs[1].iommu_group = Some(21);
        pf.vfs[2].driver = None;
        pf.vfs[2].netdev = None;
        fake.add_pf(&pf).unwrap();
        (dir, fake)
    }

    #[test]
    fn kernel_driver_unbound_or_missing_is_not_userspace() {
        let (_d, fake) = host();
        let s = fake.sysfs();
        assert_eq!(probe(&s, pci("0000:01:10.0")).unwrap(), None);
        assert_eq!(probe(&s, pci("0000:01:10.4")).unwrap(), None);
        assert_eq!(probe(&s, pci("0000:09:00.0")).unwrap(), None);
    }

    #[test]
    fn vfio_pci_vf_with_its_group_device() {
        let (_d, fake) = host();
        let s = fake.sysfs();
        let u = probe(&s, pci("0000:01:10.2")).unwrap().unwrap();
        assert_eq!(
            u,
            UserspaceVf {
                driver: "vfio-pci".into(),
                vfio_device: Some("/dev/vfio/21".into())
            }
        );
        let v = serde_json::to_value(device_info(pci("0000:01:10.2"), pci("0000:01:00.0"), &u))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "pci", "version": "1.1.0", "pci": {
                "pci-address": "0000:01:10.2", "pf-pci-address": "0000:01:00.0",
                "vfio-device": "/dev/vfio/21"}})
        );
        // vfio's no-IOMMU group.
        std::fs::write(
            fake.root().join("sys/kernel/iommu_groups/21/name"),
            "vfio-noiommu\n",
        )
        .unwrap();
        assert_eq!(
            vfio_device(&s, pci("0000:01:10.2")).unwrap(),
            "/dev/vfio/noiommu-21"
        );
    }

    #[test]
    fn uio_has_no_group_device_and_vfio_without_group_is_refused() {
        let (_d, fake) = host();
        let s = fake.sysfs();
        let vf = pci("0000:01:10.4");
        std::fs::create_dir_all(fake.root().join("sys/bus/pci/drivers/uio_pci_generic")).unwrap();
        fake.relink(vf, "driver", "../../../../bus/pci/drivers/uio_pci_generic")
            .unwrap();
        let u = probe(&s, vf).unwrap().unwrap();
        assert_eq!(u.driver, "uio_pci_generic");
        assert_eq!(u.vfio_device, None);
        let v = serde_json::to_value(device_info(vf, pci("0000:01:00.0"), &u)).unwrap();
        assert!(v["pci"].get("vfio-device").is_none());
        fake.relink(vf, "driver", "../../../../bus/pci/drivers/vfio-pci")
            .unwrap();
        fake.unlink(vf, "iommu_group").unwrap();
        let e = probe(&s, vf).unwrap_err();
        assert_eq!(e.code.code(), 11);
        assert!(e.to_string().contains("no IOMMU group"), "{e}");
    }
}

//! CHECK (the attachment's device is still on vfio-pci and its group device exists) and STATUS (vfio-pci and
//! an IOMMU are there) of the `dpdk` delegate.

use super::{attachment, blocking, Dpdk, DpdkConf};
use crate::bind::VfioGroup;
use crate::state::{Phase, LOCK_TIMEOUT};
use multus_core::cni::{CniError, PluginConf};
use multus_core::delegate::Context;
use multus_sriov::PciAddress;

/// CHECK.
pub(super) async fn check(dpdk: &Dpdk, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    let c = DpdkConf::parse(conf)?;
    let (store, binder, at) = (dpdk.store(&c), dpdk.binder.clone(), attachment(ctx));
    blocking(move || {
        let r = {
            let _l = store.lock(LOCK_TIMEOUT)?;
            store.load(&at)?
        };
        let r = r.ok_or_else(|| {
            CniError::kernel(format!(
                "dpdk: no device is bound for container {} ifname {}",
                at.container_id, at.ifname
            ))
        })?;
        let (Phase::Bound, Some(number), Ok(pci)) = (r.phase, r.group, r.pci.parse::<PciAddress>())
        else {
            return Err(CniError::kernel(format!(
                "dpdk: {} was never fully bound",
                r.pci
            )));
        };
        let group = VfioGroup {
            number,
            noiommu: r.noiommu,
        };
        binder.verify(pci, &group)?;
        Ok(())
    })
    .await
}

/// STATUS.
pub(super) fn status(dpdk: &Dpdk, conf: &PluginConf) -> Result<(), CniError> {
    let c = DpdkConf::parse(conf)?;
    let vfio = dpdk
        .binder
        .sysfs()
        .root()
        .join("sys/bus/pci/drivers/vfio-pci");
    if !vfio.is_dir() {
        return Err(CniError::not_available(format!(
            "dpdk: the vfio-pci driver is not loaded ({} does not exist)",
            vfio.display()
        )));
    }
    if !c.allow_no_iommu && !dpdk.binder.iommu_present()? {
        return Err(CniError::not_available(
            "dpdk: no IOMMU on this host (/sys/class/iommu is empty)",
        ));
    }
    Ok(())
}

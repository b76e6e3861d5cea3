//! ADD of the `dpdk` delegate: the VF acquired (for an SR-IOV VF), the device bound under the store's lock
//! ([`bind_for`]: recorded before it is touched), the device-info file written, the result. A failed bind
//! that rolled back gives the VF back; a device-info file that cannot be written undoes this ADD's bind.

use super::{attachment, blocking, restore_netdev, Dpdk, DpdkConf};
use crate::bind::{Binder, Original, VfioGroup};
use crate::state::{Binding, Phase, Store, LOCK_TIMEOUT};
use multus_core::cni::{
    AttachmentRef, CniError, CniResult, Interface, PluginConf, CURRENT_VERSION,
};
use multus_core::delegate::Context;
use multus_core::devinfo::{self, DeviceInfo};
use multus_core::fs::Durability;
use multus_sriov::PciAddress;

/// ADD.
pub(super) async fn add(
    dpdk: &Dpdk,
    ctx: &Context,
    conf: &PluginConf,
) -> Result<CniResult, CniError> {
    let c = DpdkConf::parse(conf)?;
    let at = attachment(ctx);
    let (device, acquired) = dpdk.acquire_vf(ctx, conf, &c).await?;
    let netns = ctx
        .netns
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bound = {
        let (binder, store, at) = (dpdk.binder.clone(), dpdk.store(&c), at.clone());
        let req = BindRequest {
            netns: netns.clone(),
            device,
            allow_no_iommu: c.allow_no_iommu,
        };
        blocking(move || Ok(bind_for(&binder, &store, &at, &req))).await?
    };
    let (record, fresh) = match bound {
        Ok(x) => x,
        Err(f) => {
            if let (Some((original, Some(cur))), true) = (f.rolled_back.as_deref(), dpdk.netlink) {
                restore_netdev(cur, original).await;
            }
            if acquired.is_some() {
                if let Err(e) = dpdk.release_vf(&c, &at).await {
                    tracing::warn!("dpdk: putting the VF settings back after a failed ADD: {e}");
                }
            }
            return Err(f.err);
        }
    };
    if let Some(f) = &c.device_info_file {
        let info =
            DeviceInfo::pci(&record.pci, record.pf.as_deref()).with_vfio_device(&record.vfio_dev);
        if let Err(e) = devinfo::write(f, &info) {
            if fresh {
                // Undo this ADD's bind: the runtime may not call DEL.
                if let Err(u) = super::del::give_back(dpdk, &c, &at).await {
                    tracing::warn!("dpdk: undoing the bind after a failed ADD: {u}");
                }
            }
            return Err(CniError::io(format!(
                "dpdk: device-info file {}: {e}",
                f.display()
            )));
        }
    }
    let mut result = CniResult::new(conf.cni_version().unwrap_or(CURRENT_VERSION));
    result.interfaces.push(Interface {
        name: ctx.ifname.clone(),
        sandbox: netns,
        pci_id: record.pci.clone(),
        ..Default::default()
    });
    Ok(result)
}

/// What to bind, for whom.
struct BindRequest {
    netns: String,
    device: PciAddress,
    allow_no_iommu: bool,
}

/// ADD's blocking part, under the store's lock: returns the record and whether this call bound the device.
fn bind_for(
    binder: &Binder,
    store: &Store,
    at: &AttachmentRef,
    req: &BindRequest,
) -> Result<(Binding, bool), Failed> {
    let _l = store.lock(LOCK_TIMEOUT)?;
    let device = req.device;
    let pci = device.to_string();
    let existing = store.load(at)?;
    if let Some(r) = &existing {
        if let Some(done) = already_bound(binder, at, r, device)? {
            return Ok((done, false));
        }
    }
    let listing = store.list();
    if let Some((o, _)) = listing
        .records
        .iter()
        .find(|(o, b)| b.pci == pci && o != at)
    {
        return Err(CniError::kernel(format!(
            "dpdk: {pci} is already bound for container {} ifname {}",
            o.container_id, o.ifname
        ))
        .into());
    }
    let mut plan = binder.plan(device, req.allow_no_iommu)?;
    if let Some(r) = existing.as_ref().filter(|r| r.phase != Phase::Acquired) {
        // A retried ADD after an interrupted one: the device's true original is in the record.
        plan.original = r.original.clone();
    }
    let mut record = Binding {
        netns: req.netns.clone(),
        pci: pci.clone(),
        pf: plan.pf.map(|p| p.to_string()),
        original: plan.original.clone(),
        phase: Phase::Binding,
        vfio_dev: String::new(),
        group: None,
        noiommu: plan.noiommu,
        vf: existing.and_then(|r| r.vf),
    };
    store.save(at, &record, Durability::Durable)?;
    match binder.bind(&plan) {
        Ok(b) => {
            record.phase = Phase::Bound;
            record.group = Some(b.group.number);
            record.vfio_dev = b.dev.to_string_lossy().into_owned();
            store.save(at, &record, Durability::Durable)?;
            tracing::info!(
                "dpdk: {pci} bound to vfio-pci ({}), was on {}",
                record.vfio_dev,
                plan.original.driver.as_deref().unwrap_or("no driver")
            );
            Ok((record, true))
        }
        Err(e) => {
            // Rolled back to the original: nothing left to undo but the netdev's name (and the VF, whose record
            // stays). Otherwise the record stays for DEL.
            let mut f = Failed::from(CniError::from(e));
            if binder.sysfs().driver(device).ok() == Some(plan.original.driver.clone()) {
                match &record.vf {
                    Some(v) => store.save(at, &Binding::acquired(v), Durability::Durable)?,
                    None => {
                        store.remove(at)?;
                    }
                }
                let netdev = binder
                    .sysfs()
                    .netdevs(device)
                    .ok()
                    .and_then(|n| n.into_iter().next());
                f.rolled_back = Some(Box::new((plan.original, netdev)));
            }
            Err(f)
        }
    }
}

/// An existing record of this attachment: another device is an error; the same one bound and verified is
/// this ADD's answer (a retried ADD); `None` when the bind is still to be done.
fn already_bound(
    binder: &Binder,
    at: &AttachmentRef,
    r: &Binding,
    device: PciAddress,
) -> Result<Option<Binding>, CniError> {
    if r.pci != device.to_string() {
        return Err(CniError::invalid_config(format!(
            "dpdk: container {} ifname {} already holds {}; DEL it before adding {device}",
            at.container_id, at.ifname, r.pci
        )));
    }
    if let (Phase::Bound, Some(number)) = (r.phase, r.group) {
        let group = VfioGroup {
            number,
            noiommu: r.noiommu,
        };
        if binder.verify(device, &group).is_ok() {
            return Ok(Some(r.clone()));
        }
    }
    Ok(None)
}

/// A failed ADD: the error, and after a successful rollback the original and the netdev the kernel made.
struct Failed {
    err: CniError,
    rolled_back: Option<Box<(Original, Option<String>)>>,
}

impl<E: Into<CniError>> From<E> for Failed {
    fn from(e: E) -> Self {
        Failed {
            err: e.into(),
            rolled_back: None,
        }
    }
}

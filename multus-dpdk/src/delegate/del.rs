//! DEL and GC of the `dpdk` delegate: [`give_back`] an attachment's device (its original driver bound again,
//! its netdev's name, MAC and up flag put back, its VF's settings restored and the VF freed) and remove its
//! record; DEL also removes the device-info file. Both succeed when there is nothing to undo.

use super::{blocking, restore_netdev, Dpdk, DpdkConf};
use crate::state::{Binding, Phase, LOCK_TIMEOUT};
use multus_core::cni::{AttachmentRef, CniError, PluginConf};
use multus_core::delegate::Context;
use multus_core::devinfo;
use multus_core::fs::Durability;

/// DEL.
pub(super) async fn del(dpdk: &Dpdk, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    // DEL must work with a config that no longer parses for ADD (no device): only the state is needed.
    let c = DpdkConf::parse(conf).unwrap_or_default();
    give_back(dpdk, &c, &super::attachment(ctx)).await?;
    if let Some(f) = &c.device_info_file {
        devinfo::remove(f);
    }
    Ok(())
}

/// Gives an attachment's device back, whatever phase its record is in: the binding restored under the
/// store's lock (the record then keeps only its VF part, if any), the netdev put back, then the VF's
/// settings (with its kernel driver and netdev back, as in netdev mode), which forgets the record. A
/// failure leaves the record for a retry.
pub(super) async fn give_back(
    dpdk: &Dpdk,
    c: &DpdkConf,
    at: &AttachmentRef,
) -> Result<(), CniError> {
    let (store, binder, key) = (dpdk.store(c), dpdk.binder.clone(), at.clone());
    let done = blocking(move || {
        let _l = store.lock(LOCK_TIMEOUT)?;
        let Some(r) = store.load(&key)? else {
            return Ok(None);
        };
        let restored = if r.phase == Phase::Acquired {
            None
        } else {
            Some(Dpdk::restore_record(&binder, &r)?)
        };
        match &r.vf {
            Some(v) => store.save(&key, &Binding::acquired(v), Durability::Durable)?,
            None => {
                store.remove(&key)?;
            }
        }
        Ok(Some((r, restored)))
    })
    .await?;
    let Some((r, restored)) = done else {
        return Ok(());
    };
    if let (Some(cur), true) = (restored.and_then(|x| x.netdev), dpdk.netlink) {
        restore_netdev(&cur, &r.original).await;
    }
    if r.vf.is_some() {
        dpdk.release_vf(c, at).await?;
    }
    Ok(())
}

/// GC: gives back the devices of the attachments not in the valid list.
pub(super) async fn gc(dpdk: &Dpdk, conf: &PluginConf) -> Result<(), CniError> {
    let c = DpdkConf::parse(conf)?;
    let valid = conf.valid_attachments()?;
    let listing = dpdk.store(&c).list();
    for u in &listing.unreadable {
        tracing::warn!("dpdk GC: {}", u.error);
    }
    let mut first = None;
    for (at, r) in listing.records {
        if valid.contains(&at) {
            continue;
        }
        tracing::info!(
            "dpdk GC: restoring {} of {}/{}",
            r.pci,
            at.container_id,
            at.ifname
        );
        if let Err(e) = give_back(dpdk, &c, &at).await {
            tracing::warn!("dpdk GC of {}/{}: {e}", at.container_id, at.ifname);
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

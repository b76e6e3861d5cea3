//! GC of the `sriov` delegate: attachments of this network not in `cni.dev/valid-attachments` are given back
//! (as DEL), stale allocation records without a record of their attachment are freed, and the IPAM plugin
//! gets the GC.

use super::{teardown, Sriov};
use multus_core::cni::{AttachmentRef, CniError, Command, PluginConf};
use multus_core::delegate::Context;
use multus_core::netlink::Netlink;
use multus_core::plugins::ipam;

/// GC.
pub(super) async fn gc(sriov: &Sriov, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    let valid = conf.valid_attachments()?;
    let env = sriov.env_for(conf)?;
    let network = conf.name().unwrap_or_default();
    let cache = env.cache();
    let mut first = None;
    let host = Netlink::current()?;
    let listing = cache.list();
    for u in &listing.unreadable {
        tracing::warn!("GC: {}", u.error);
    }
    for (at, rec) in listing.records {
        if rec.network != network || valid.contains(&at) {
            continue;
        }
        tracing::info!(
            "GC: giving back VF {} of container {} ifname {}",
            rec.vf,
            at.container_id,
            at.ifname
        );
        if let Err(e) = teardown(&env, &host, &rec, None).await {
            tracing::warn!(
                "GC of container {} ifname {}: {e}",
                at.container_id,
                at.ifname
            );
            first.get_or_insert(e);
        }
    }
    // Allocation records of ADDs that died before recording anything, once their netns is gone.
    let alloc = env.allocator();
    for (vf, h) in alloc.list()? {
        let at = AttachmentRef {
            container_id: h.container_id.clone(),
            ifname: h.ifname.clone(),
        };
        let recorded = cache.path(&at).is_ok_and(|p| p.symlink_metadata().is_ok());
        if h.is_stale() && !recorded {
            tracing::info!(
                "GC: freeing VF {vf} of container {} (stale, no state)",
                h.container_id
            );
            alloc.release(vf)?;
        }
    }
    if let Err(e) = ipam::status_or_gc(ctx, Command::Gc, conf).await {
        first.get_or_insert(e);
    }
    first.map_or(Ok(()), Err)
}

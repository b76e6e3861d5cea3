//! DEL of the `sriov` delegate, and the teardown it shares with GC and a failed ADD: IPAM released, the
//! settings on the PF put back, the netdev's MAC and MTU put back in the pod, the netdev moved home (or,
//! with the pod's netns gone, waited for: the kernel brings it home under whatever name was free, and it is
//! found by its PCI address), the VF freed, record and device-info file removed. Idempotent.

use super::Sriov;
use crate::cache::{VfKeeper, VfRecord};
use crate::netdev;
use crate::vf::{self, SriovEnv, NETDEV_RETURN_TIMEOUT};
use multus_core::cni::{keys, names, AttachmentRef, CniError, PluginConf};
use multus_core::delegate::Context;
use multus_core::devinfo;
use multus_core::netlink::link::{self, LinkChange, LinkInfo};
use multus_core::netlink::netdev as saved;
use multus_core::netlink::Netlink;
use multus_core::netns::NetNs;
use multus_core::plugins::{ipam, sublink};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// DEL: the IPAM's first (its failure is reported after the rest is done), then the VF given back.
pub(super) async fn del(sriov: &Sriov, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    let env = sriov.env_for(conf)?;
    let mut first = None;
    if keys::ipam_type(conf).is_some() {
        if let Err(e) = ipam::del(ctx, conf).await {
            first = Some(e);
        }
    }
    if !ctx.container_id.is_empty() && !ctx.ifname.is_empty() {
        names::container_id(&ctx.container_id)?;
        names::ifname(&ctx.ifname)?;
        let at = AttachmentRef {
            container_id: ctx.container_id.clone(),
            ifname: ctx.ifname.clone(),
        };
        match env.cache().load_vf(&at)? {
            Some(rec) => {
                let host = Netlink::current()?;
                if let Err(e) = teardown(&env, &host, &rec, super::netns_path(ctx)).await {
                    first.get_or_insert(e);
                }
            }
            None => {
                // Nothing attached, or an ADD that died between taking the VF and recording its state (so
                // before it changed anything): only the allocation may be left.
                env.allocator()
                    .release_holder(&ctx.container_id, &ctx.ifname)?;
            }
        }
    }
    // A config that no longer parses names no file: nothing to remove.
    if let Some(f) = devinfo::file_of(conf).ok().flatten() {
        devinfo::remove(&f);
    }
    first.map_or(Ok(()), Err)
}

/// The namespace the process runs in (the host's: no runtime thread ever changes namespace).
fn host_netns() -> Result<NetNs, CniError> {
    NetNs::open(Path::new("/proc/thread-self/ns/net"))
}

/// Moves the VF netdev (index `index` in `cont`'s pod) back to the host, down, under a temporary name
/// ([`vf::release`] gives it its name back).
pub(super) async fn move_home(cont: &Netlink, index: u32, rec: &VfRecord) -> Result<(), CniError> {
    let host_ns = host_netns()?;
    let tmp = sublink::temp_name();
    let mv = LinkChange::new()
        .name(&tmp)
        .down()
        .netns_fd(host_ns.file().as_raw_fd());
    link::set(cont, index, &mv).await.map_err(|e| {
        CniError::kernel(format!(
            "sriov: moving VF {} netdev back to the host: {e}",
            rec.vf
        ))
    })
}

/// The VF's netdev in a pod: by its parent PCI device; on a kernel that does not report parent devices, the
/// interface called `ifname` if it is a physical one (no link kind).
pub(super) async fn find_in_pod(
    cont: &Netlink,
    rec: &VfRecord,
) -> Result<Option<LinkInfo>, CniError> {
    if let Some(l) = netdev::find_by_pci(cont, rec.vf).await? {
        return Ok(Some(l));
    }
    match link::by_name(cont, &rec.ifname).await? {
        Some(l) if l.kind.is_none() && netdev::parent_pci(cont, l.index).await?.is_none() => {
            Ok(Some(l))
        }
        _ => Ok(None),
    }
}

/// Gives an attachment's VF back (DEL after its IPAM, GC): PF settings first (a VF driver may refuse its own
/// MAC change while the PF's admin MAC is set), the netdev's MAC and MTU in the pod, the netdev home (or,
/// with the pod's netns gone, waiting for the kernel to bring it home), then [`vf::release`]. `netns` is
/// `CNI_NETNS` when the runtime gave one (else the one recorded at ADD).
pub(super) async fn teardown(
    env: &SriovEnv,
    host: &Netlink,
    rec: &VfRecord,
    netns: Option<&Path>,
) -> Result<(), CniError> {
    let cache = env.cache();
    if !vf::holds(env, rec) {
        return vf::release(env, host, rec, &cache).await;
    }
    vf::restore_settings(env, host, rec).await?;
    if let Some(orig) = &rec.netdev {
        let on_host = !env.sysfs().netdevs(rec.vf)?.is_empty();
        if !on_host && env.sysfs().pci_exists(rec.vf) {
            let path = netns
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(&rec.netns));
            let in_pod = match NetNs::open(&path) {
                Ok(ns) => {
                    let cont = Netlink::open_in(&ns)?;
                    match find_in_pod(&cont, rec).await? {
                        Some(l) => {
                            saved::restore_addresses(&cont, l.index, &l.name, orig)
                                .await
                                .map_err(|e| e.context("sriov"))?;
                            move_home(&cont, l.index, rec).await?;
                            true
                        }
                        None => false,
                    }
                }
                Err(_) => false,
            };
            if !in_pod {
                vf::wait_home(env, rec, NETDEV_RETURN_TIMEOUT).await?;
            }
        }
    }
    vf::release(env, host, rec, &cache).await
}

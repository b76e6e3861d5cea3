//! CHECK and STATUS of the `sriov` delegate. CHECK: the VF is still this attachment's and in the pod under
//! `CNI_IFNAME` with prevResult's MAC, addresses and routes (userspace mode: still on a userspace driver),
//! and the PF still carries the settings ADD applied. STATUS: the PF named by the config (`master`/`pfName`,
//! or the PF of its `deviceID`) exists and has VFs enabled (code 50 otherwise).

use super::Sriov;
use crate::alloc::USERSPACE_DRIVERS;
use crate::cache::{VfKeeper, VfRecord};
use crate::config::{self, SriovConf, VfSelector};
use crate::netdev;
use crate::sysfs::Sysfs;
use crate::userspace;
use crate::vf::{self, SriovEnv};
use crate::vf_netlink::read_vf_state;
use crate::PciAddress;
use multus_core::cni::{keys, AttachmentRef, CniError, CniResult, ErrorCode, PluginConf};
use multus_core::delegate::Context;
use multus_core::netlink::link;
use multus_core::netlink::Netlink;
use multus_core::netns::NetNs;
use multus_core::plugins::{ipam, sublink};
use std::path::Path;

/// CHECK.
pub(super) async fn check(sriov: &Sriov, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    SriovConf::parse(conf)?;
    if keys::ipam_type(conf).is_some() {
        ipam::check(ctx, conf).await?;
    }
    let path = super::netns_path(ctx)
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required for CHECK"))?;
    let (prev, idx, iface) = ipam::prev_interface(ctx, conf)?;
    let env = sriov.env_for(conf)?;
    let rec = attached(&env, ctx)?;
    if !iface.pci_id.is_empty() && iface.pci_id != rec.vf.to_string() {
        return Err(CniError::kernel(format!(
            "sriov: prevResult's pciID {} is not the VF {} attached",
            iface.pci_id, rec.vf
        )));
    }
    if !vf::holds(&env, &rec) {
        return Err(CniError::kernel(format!(
            "sriov: VF {} is no longer allocated to container {} ifname {}",
            rec.vf, rec.container_id, rec.ifname
        )));
    }
    match rec.netdev {
        // Userspace mode: no netdev to look at; the VF must still be on a userspace driver.
        None => check_userspace(env.sysfs(), &rec)?,
        Some(_) => check_netdev(ctx, path, &rec, &prev, idx, &iface.mac).await?,
    }
    check_settings(&env, &rec).await
}

/// The attachment's record (code 103 when it has none: not attached by this plugin).
fn attached(env: &SriovEnv, ctx: &Context) -> Result<VfRecord, CniError> {
    let at = AttachmentRef {
        container_id: ctx.container_id.clone(),
        ifname: ctx.ifname.clone(),
    };
    let cache = env.cache();
    cache.load_vf(&at)?.ok_or_else(|| {
        CniError::kernel(format!(
            "sriov: no state for container {} ifname {} ({} missing): not attached by this plugin",
            ctx.container_id,
            ctx.ifname,
            cache.describe(&at)
        ))
    })
}

/// The VF's netdev is in the pod under `CNI_IFNAME`, with prevResult's MAC (`mac`), addresses and routes.
async fn check_netdev(
    ctx: &Context,
    path: &Path,
    rec: &VfRecord,
    prev: &CniResult,
    idx: usize,
    mac: &str,
) -> Result<(), CniError> {
    let sandbox = path.display().to_string();
    let ns = NetNs::open(path)?;
    let cont = Netlink::open_in(&ns)?;
    let l = link::by_name(&cont, &ctx.ifname).await?.ok_or_else(|| {
        CniError::kernel(format!(
            "sriov: interface {:?} not found in {sandbox}",
            ctx.ifname
        ))
    })?;
    if let Some(p) = netdev::parent_pci(&cont, l.index).await? {
        if p != rec.vf.to_string() {
            return Err(CniError::kernel(format!(
                "sriov: interface {:?} is the netdev of {p}, not of VF {}",
                ctx.ifname, rec.vf
            )));
        }
    }
    if !mac.is_empty() && !mac.eq_ignore_ascii_case(&l.mac_text()) {
        return Err(CniError::kernel(format!(
            "sriov: interface {:?} has MAC {}, prevResult says {mac}",
            ctx.ifname,
            l.mac_text()
        )));
    }
    sublink::check_ipam_applied(&cont, &l, prev, idx, &sandbox)
        .await
        .map_err(|e| e.context("sriov"))
}

/// The PF still carries the settings ADD applied.
async fn check_settings(env: &SriovEnv, rec: &VfRecord) -> Result<(), CniError> {
    if rec.changes.is_empty() {
        return Ok(());
    }
    let host = Netlink::current()?;
    let pf_index = vf::pf_index(env, &host, rec).await?;
    let current = read_vf_state(&host, pf_index, rec.vf_index).await?;
    let drift = vf::drifted(&current, &rec.changes);
    if drift.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = drift
        .iter()
        .map(|(s, now, want)| format!("{s} is {now}, ADD set {want}"))
        .collect();
    Err(CniError::kernel(format!(
        "sriov: VF {} on PF {}: {}",
        rec.vf,
        rec.pf_name,
        what.join("; ")
    )))
}

/// CHECK of a userspace-mode attachment: its VF is still on a userspace driver.
fn check_userspace(sysfs: &Sysfs, rec: &VfRecord) -> Result<(), CniError> {
    if userspace::probe(sysfs, rec.vf)?.is_none() {
        let driver = sysfs.driver(rec.vf).ok().flatten();
        return Err(CniError::kernel(format!(
            "sriov: VF {} is on driver {} now, not on a userspace driver ({})",
            rec.vf,
            driver.as_deref().unwrap_or("none"),
            USERSPACE_DRIVERS.join(", ")
        )));
    }
    Ok(())
}

/// STATUS.
pub(super) async fn status(
    sriov: &Sriov,
    ctx: &Context,
    conf: &PluginConf,
) -> Result<(), CniError> {
    ipam::status_or_gc(ctx, multus_core::cni::Command::Status, conf).await?;
    let env = sriov.env_for(conf)?;
    let not_available = |e: CniError| CniError::new(ErrorCode::PluginNotAvailable, e.msg);
    match config::device_selector(conf)? {
        None => Ok(()),
        Some((VfSelector::Pf(pf), _)) => vf::check_pf(env.sysfs(), &pf)
            .map(|_| ())
            .map_err(not_available),
        Some((VfSelector::Vf(pci), _)) => check_vf(env.sysfs(), pci).map_err(not_available),
    }
}

/// STATUS of a config naming a VF: it exists, is a VF, and its PF has VFs enabled.
fn check_vf(sysfs: &Sysfs, pci: PciAddress) -> Result<(), CniError> {
    if !sysfs.pci_exists(pci) {
        return Err(CniError::invalid_config(format!(
            "sriov: deviceID {pci}: no such PCI device"
        )));
    }
    let pf = sysfs.physfn(pci).map_err(|e| {
        CniError::invalid_config(format!("sriov: deviceID {pci} is not an SR-IOV VF ({e})"))
    })?;
    match sysfs.num_vfs(pf) {
        Ok(n) if n > 0 => Ok(()),
        Ok(_) => Err(CniError::invalid_config(format!(
            "sriov: PF {pf} of {pci} has SR-IOV off (sriov_numvfs is 0)"
        ))),
        Err(e) => Err(e.into()),
    }
}

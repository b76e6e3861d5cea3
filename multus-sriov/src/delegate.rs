//! The `sriov` delegate: netdev mode (a VF's kernel netdev moved into the pod) and userspace mode (a VF already
//! bound to vfio-pci or another userspace driver: settings on the PF only, see [`crate::userspace`]), as
//! sriov-cni does. The mode follows the VF's driver at ADD (as sriov-cni's): a `deviceID` on a userspace
//! driver takes the userspace mode, one on its kernel driver the netdev mode; a VF with no driver is refused
//! (this type never binds a VF: the `dpdk` type does, with the same VF settings). Below, the netdev mode; the
//! userspace mode's ADD skips the netdev steps (no move, no rename, IPAM's addresses reported but not applied)
//! and writes `vfio-device` into the device-info, its DEL has no netdev to bring back, and its CHECK checks the
//! VF's driver instead of a netdev.
//!
//! - ADD: [`vf::acquire`] (VF allocated, its state cached, the config's settings applied on the PF), then the
//!   VF netdev moved into the pod under a temporary name, renamed to `CNI_IFNAME`, given the config's MAC,
//!   configured by IPAM (or just brought up), and reported with its `pciID` (CNI 1.1). The device-info file
//!   (`runtimeConfig.CNIDeviceInfoFile`) gets a `pci` device-info. Any failure undoes every step in reverse.
//! - DEL: IPAM released; settings on the PF put back; the netdev's MAC and MTU put back in the pod, then it
//!   moves back to the host and gets its name back (when the pod's netns is gone, the kernel has moved it
//!   back already, under whatever name was free: it is found by its PCI address); the VF freed; cache and
//!   device-info file removed. Idempotent.
//! - CHECK: the VF is in the pod under `CNI_IFNAME` with prevResult's MAC, addresses and routes, and the PF
//!   still carries the settings ADD applied.
//! - STATUS: the PF named by the config (`master`/`pfName`, or the PF of its `deviceID`) exists and has VFs
//!   enabled (code 50 otherwise).
//! - GC: attachments of this network not in `cni.dev/valid-attachments` are given back (as DEL), stale
//!   allocation records without a cache are freed, and the IPAM plugin gets the GC.

use crate::cache::VfRecord;
use crate::config::{self, SriovConf, VfSelector};
use crate::netdev;
use crate::sysfs::Sysfs;
use crate::userspace::{self, UserspaceVf};
use crate::vf::{self, AttachmentId, SriovEnv, NETDEV_RETURN_TIMEOUT};
use crate::PciAddress;
use async_trait::async_trait;
use multus_core::cni::keys::{dns as conf_dns, ipam_type};
use multus_core::cni::names;
use multus_core::cni::{CniError, CniResult, Command, ErrorCode, Interface, IpConfig, PluginConf};
use multus_core::delegate::{Context, Delegate};
use multus_core::devinfo::{self, DeviceInfo};
use multus_core::netlink::link::{self, LinkChange, LinkInfo};
use multus_core::netlink::netdev as saved;
use multus_core::netlink::Netlink;
use multus_core::netns::NetNs;
use multus_core::plugins::{ipam_apply, sublink};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The built-in `sriov` delegate (netdev and userspace modes).
#[derive(Debug, Clone)]
pub struct Sriov {
    env: SriovEnv,
}

impl Default for Sriov {
    fn default() -> Self {
        Sriov::new(SriovEnv::system())
    }
}

impl Sriov {
    /// A delegate reading `env`'s sysfs, keeping state in its data dir unless a config's `dataDir` says
    /// otherwise.
    pub fn new(env: SriovEnv) -> Self {
        Sriov { env }
    }

    /// The environment for one config (its `dataDir` over the default).
    pub fn env_for(&self, conf: &PluginConf) -> Result<SriovEnv, CniError> {
        Ok(match config::data_dir(conf)? {
            Some(d) => self.env.with_data_dir(d),
            None => self.env.clone(),
        })
    }
}

fn netns_path(ctx: &Context) -> Option<&Path> {
    ctx.netns.as_deref().filter(|p| !p.as_os_str().is_empty())
}

/// The namespace the process runs in (the host's: no runtime thread ever changes namespace).
fn host_netns() -> Result<NetNs, CniError> {
    NetNs::open(Path::new("/proc/thread-self/ns/net"))
}

async fn ipam_run(
    ctx: &Context,
    conf: &PluginConf,
    cmd: Command,
) -> Result<Option<CniResult>, CniError> {
    ctx.ipam(cmd, conf).await
}

/// What ADD has done past [`vf::acquire`], for the undo.
#[derive(Debug, Default)]
struct Plugged {
    /// The netdev was moved into the pod.
    moved: bool,
    /// The netdev's index in the pod, once moved there.
    pod_index: Option<u32>,
    /// The IPAM plugin's ADD was run (it may hold a reservation even when it failed).
    ipam: bool,
    /// The device-info file written.
    device_info: Option<PathBuf>,
}

#[async_trait]
impl Delegate for Sriov {
    fn describe(&self) -> String {
        "built-in sriov".into()
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let sconf = SriovConf::parse(conf)?;
        names::ifname(&ctx.ifname)?;
        names::container_id(&ctx.container_id)?;
        let path = netns_path(ctx)
            .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required for ADD"))?;
        let ns = NetNs::open(path)?;
        let env = self.env_for(conf)?;
        // A VF already on a userspace driver (vfio-pci, ...) takes the userspace mode; decided before anything
        // changes, so that its refusals leave nothing behind.
        let us = match &sconf.device {
            VfSelector::Vf(v) => userspace::probe(env.sysfs(), *v)?,
            VfSelector::Pf(_) => None,
        };
        let host = Netlink::current()?;
        let id = AttachmentId {
            network: conf.name().unwrap_or_default().to_string(),
            container_id: ctx.container_id.clone(),
            ifname: ctx.ifname.clone(),
            netns: path.display().to_string(),
        };
        let mut rec = vf::acquire(&env, &host, &sconf, &id).await?;
        let mut done = Plugged::default();
        let plugged = match &us {
            Some(u) => plug_userspace(ctx, conf, &sconf, &env, &ns, &mut rec, u, &mut done).await,
            None => plug(ctx, conf, &sconf, &env, &host, &ns, &mut rec, &mut done).await,
        };
        match plugged {
            Ok(r) => Ok(r),
            Err(e) => {
                if let Err(u) = unplug(ctx, conf, &env, &host, &ns, &rec, &done).await {
                    tracing::warn!("undoing the failed ADD of VF {}: {u}", rec.vf);
                    return Err(e.with_details(format!(
                        "undoing it failed too ({u}); its cache is kept for DEL"
                    )));
                }
                Err(e)
            }
        }
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        SriovConf::parse(conf)?;
        if ipam_type(conf).is_some() {
            ipam_run(ctx, conf, Command::Check).await?;
        }
        let prev = conf
            .prev_result()?
            .ok_or_else(|| CniError::invalid_config("required prevResult missing"))?;
        let path = netns_path(ctx)
            .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required for CHECK"))?;
        let sandbox = path.display().to_string();
        let (idx, iface) = prev
            .interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == ctx.ifname && i.sandbox == sandbox)
            .ok_or_else(|| {
                CniError::invalid_config(format!(
                    "prevResult has no interface {:?} in sandbox {sandbox:?}",
                    ctx.ifname
                ))
            })?;
        let env = self.env_for(conf)?;
        let cache = env.cache();
        let rec = cache.load(&ctx.container_id, &ctx.ifname)?.ok_or_else(|| {
            CniError::kernel(format!(
                "sriov: no state for container {} ifname {} ({} missing): not attached by this plugin",
                ctx.container_id,
                ctx.ifname,
                cache.path(&ctx.container_id, &ctx.ifname).display()
            ))
        })?;
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
        if rec.netdev.is_none() {
            // Userspace mode: no netdev to look at; the VF must still be on a userspace driver.
            check_userspace(env.sysfs(), &rec)?;
        } else {
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
            if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&l.mac_text()) {
                return Err(CniError::kernel(format!(
                    "sriov: interface {:?} has MAC {}, prevResult says {}",
                    ctx.ifname,
                    l.mac_text(),
                    iface.mac
                )));
            }
            sublink::check_ipam_applied(&cont, &l, &prev, idx, &sandbox)
                .await
                .map_err(|e| e.context("sriov"))?;
        }
        if rec.changes.is_empty() {
            return Ok(());
        }
        let host = Netlink::current()?;
        let pf_index = vf::pf_index(&env, &host, &rec).await?;
        let current = crate::vf_netlink::read_vf_state(&host, pf_index, rec.vf_index).await?;
        let drift = vf::drifted(&current, &rec.changes);
        if !drift.is_empty() {
            let what: Vec<String> = drift
                .iter()
                .map(|(s, now, want)| format!("{s} is {now}, ADD set {want}"))
                .collect();
            return Err(CniError::kernel(format!(
                "sriov: VF {} on PF {}: {}",
                rec.vf,
                rec.pf_name,
                what.join("; ")
            )));
        }
        Ok(())
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let env = self.env_for(conf)?;
        let mut first = None;
        if ipam_type(conf).is_some() {
            if let Err(e) = ipam_run(ctx, conf, Command::Del).await {
                first = Some(e);
            }
        }
        if !ctx.container_id.is_empty() && !ctx.ifname.is_empty() {
            names::container_id(&ctx.container_id)?;
            names::ifname(&ctx.ifname)?;
            let cache = env.cache();
            match cache.load(&ctx.container_id, &ctx.ifname)? {
                Some(rec) => {
                    let host = Netlink::current()?;
                    if let Err(e) = teardown(&env, &host, &rec, netns_path(ctx)).await {
                        first.get_or_insert(e);
                    }
                }
                None => {
                    // Nothing attached, or an ADD that died between taking the VF and caching its state (so
                    // before it changed anything): only the allocation may be left.
                    env.allocator()
                        .release_holder(&ctx.container_id, &ctx.ifname)
                        .map_err(vf::alloc_error)?;
                }
            }
        }
        // A config that no longer parses names no file: nothing to remove.
        if let Some(f) = devinfo::file_of(conf).ok().flatten() {
            devinfo::remove(&f);
        }
        first.map_or(Ok(()), Err)
    }

    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        if ipam_type(conf).is_some() {
            ipam_run(ctx, conf, Command::Status).await?;
        }
        let env = self.env_for(conf)?;
        let not_available = |e: CniError| CniError::new(ErrorCode::PluginNotAvailable, e.msg);
        match config::device_selector(conf)? {
            None => Ok(()),
            Some((VfSelector::Pf(pf), _)) => vf::check_pf(env.sysfs(), &pf)
                .map(|_| ())
                .map_err(not_available),
            Some((VfSelector::Vf(pci), _)) => check_vf(env.sysfs(), pci).map_err(not_available),
        }
    }

    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let valid = conf.valid_attachments()?;
        let env = self.env_for(conf)?;
        let network = conf.name().unwrap_or_default();
        let cache = env.cache();
        let mut first = None;
        let host = Netlink::current()?;
        for rec in cache.list()? {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("GC: {e}");
                    continue;
                }
            };
            let keep = rec.network != network
                || valid
                    .iter()
                    .any(|a| a.container_id == rec.container_id && a.ifname == rec.ifname);
            if keep {
                continue;
            }
            tracing::info!(
                "GC: giving back VF {} of container {} ifname {}",
                rec.vf,
                rec.container_id,
                rec.ifname
            );
            if let Err(e) = teardown(&env, &host, &rec, None).await {
                tracing::warn!(
                    "GC of container {} ifname {}: {e}",
                    rec.container_id,
                    rec.ifname
                );
                first.get_or_insert(e);
            }
        }
        // Allocation records of ADDs that died before caching anything, once their netns is gone.
        let alloc = env.allocator();
        for (vf, h) in alloc.list().map_err(vf::alloc_error)? {
            if h.is_stale() && !cache.exists(&h.container_id, &h.ifname) {
                tracing::info!(
                    "GC: freeing VF {vf} of container {} (stale, no state)",
                    h.container_id
                );
                alloc.release(vf).map_err(vf::alloc_error)?;
            }
        }
        if ipam_type(conf).is_some() {
            if let Err(e) = ipam_run(ctx, conf, Command::Gc).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
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
        Err(e) => Err(CniError::kernel(format!("sriov: {e}"))),
    }
}

/// ADD past [`vf::acquire`]: the netdev into the pod, named, MAC, IPAM, result, device-info.
#[allow(clippy::too_many_arguments)]
async fn plug(
    ctx: &Context,
    conf: &PluginConf,
    sconf: &SriovConf,
    env: &SriovEnv,
    host: &Netlink,
    ns: &NetNs,
    rec: &mut VfRecord,
    done: &mut Plugged,
) -> Result<CniResult, CniError> {
    let ifname = ctx.ifname.as_str();
    let Some(nd) = rec.netdev.clone() else {
        let driver = env.sysfs().driver(rec.vf).ok().flatten();
        return Err(CniError::invalid_config(format!(
            "sriov: VF {} has no network interface in the host (driver {}): the sriov plugin needs the VF \
             bound to its kernel network driver (netdev mode) or to a userspace driver ({}: userspace mode); \
             to have the plugin bind it to vfio-pci, use type \"dpdk\"",
            rec.vf,
            driver.as_deref().unwrap_or("none"),
            crate::alloc::USERSPACE_DRIVERS.join(", ")
        )));
    };
    let hl = link::by_name(host, &nd.name).await?.ok_or_else(|| {
        CniError::kernel(format!(
            "sriov: VF {} netdev {:?} vanished",
            rec.vf, nd.name
        ))
    })?;
    let tmp = sublink::temp_name();
    let mv = LinkChange::new().name(&tmp).netns_fd(ns.file().as_raw_fd());
    link::set(host, hl.index, &mv).await.map_err(|e| {
        CniError::kernel(format!(
            "sriov: moving VF {} netdev {:?} into {}: {e}",
            rec.vf,
            nd.name,
            ns.path().display()
        ))
    })?;
    done.moved = true;
    let cont = Netlink::open_in(ns)?;
    let pl = match link::by_name(&cont, &tmp).await? {
        Some(l) => l,
        None => {
            return Err(CniError::kernel(format!(
                "sriov: VF {} netdev moved as {tmp:?} is not in {}",
                rec.vf,
                ns.path().display()
            )))
        }
    };
    done.pod_index = Some(pl.index);
    let rename = LinkChange::new().name(ifname);
    link::set(&cont, pl.index, &rename).await.map_err(|e| {
        if e.is_exists() {
            CniError::kernel(format!(
                "sriov: an interface {ifname:?} already exists in {}",
                ns.path().display()
            ))
        } else {
            CniError::kernel(format!("sriov: renaming {tmp:?} to {ifname:?}: {e}"))
        }
    })?;
    if let Some(mac) = sconf.mac {
        saved::ensure_mac(&cont, pl.index, ifname, mac)
            .await
            .map_err(|e| e.context("sriov"))?;
    }
    let mut result = CniResult::new(
        conf.cni_version()
            .unwrap_or(multus_core::cni::CURRENT_VERSION),
    );
    result.interfaces = vec![Interface {
        name: ifname.to_string(),
        sandbox: ns.path().display().to_string(),
        pci_id: rec.vf.to_string(),
        ..Default::default()
    }];
    let mut dns = conf_dns(conf)?;
    if ipam_type(conf).is_some() {
        done.ipam = true;
        let ipam = ipam_run(ctx, conf, Command::Add).await?.ok_or_else(|| {
            CniError::new(ErrorCode::IpamFailure, "IPAM plugin returned no result")
        })?;
        if ipam.ips.is_empty() {
            return Err(CniError::new(
                ErrorCode::IpamFailure,
                "IPAM plugin returned missing IP config",
            ));
        }
        result.ips = ipam
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                interface: Some(0),
                ..ip
            })
            .collect();
        result.routes = ipam.routes;
        if dns.is_empty() {
            dns = ipam.dns;
        }
        let plan = ipam_apply::plan(&result, ifname)?;
        ipam_apply::apply(&cont, ns, pl.index, ifname, &plan).await?;
    } else {
        link::set(&cont, pl.index, &LinkChange::new().up())
            .await
            .map_err(|e| CniError::kernel(format!("sriov: setting {ifname:?} up: {e}")))?;
    }
    result.dns = dns;
    let l = link::by_index(&cont, pl.index)
        .await?
        .ok_or_else(|| CniError::kernel(format!("sriov: {ifname:?} vanished from the pod")))?;
    result.interfaces[0].mac = l.mac_text();
    if let Some(f) = devinfo::file_of(conf)? {
        // Recorded before it is written, so that whatever happens DEL knows to remove it.
        rec.device_info_file = Some(f.display().to_string());
        env.cache().save(rec)?;
        done.device_info = Some(f.clone());
        let info = DeviceInfo::pci(&rec.vf.to_string(), Some(&rec.pf.to_string()));
        if let Err(e) = devinfo::write(&f, &info) {
            tracing::warn!("writing device-info {}: {e}", f.display());
        }
    }
    Ok(result)
}

/// CHECK of a userspace-mode attachment: its VF is still on a userspace driver.
fn check_userspace(sysfs: &Sysfs, rec: &VfRecord) -> Result<(), CniError> {
    if userspace::probe(sysfs, rec.vf)?.is_none() {
        let driver = sysfs.driver(rec.vf).ok().flatten();
        return Err(CniError::kernel(format!(
            "sriov: VF {} is on driver {} now, not on a userspace driver ({})",
            rec.vf,
            driver.as_deref().unwrap_or("none"),
            crate::alloc::USERSPACE_DRIVERS.join(", ")
        )));
    }
    Ok(())
}

/// ADD past [`vf::acquire`] in userspace mode ([`crate::userspace`]): no netdev, nothing bound or unbound;
/// IPAM's addresses reported, not applied; the device-info file with the VFIO group device.
#[allow(clippy::too_many_arguments)]
async fn plug_userspace(
    ctx: &Context,
    conf: &PluginConf,
    sconf: &SriovConf,
    env: &SriovEnv,
    ns: &NetNs,
    rec: &mut VfRecord,
    u: &UserspaceVf,
    done: &mut Plugged,
) -> Result<CniResult, CniError> {
    // Read before the allocation: the VF must still be on that driver now that it is this attachment's.
    let now = env.sysfs().driver(rec.vf).ok().flatten();
    if now.as_deref() != Some(u.driver.as_str()) {
        return Err(CniError::try_again_later(format!(
            "sriov: VF {} moved from driver {} to {} during ADD",
            rec.vf,
            u.driver,
            now.as_deref().unwrap_or("none")
        )));
    }
    let mac = sconf
        .mac
        .or_else(|| (!rec.original.mac.is_zero()).then_some(rec.original.mac));
    let mut result = CniResult::new(
        conf.cni_version()
            .unwrap_or(multus_core::cni::CURRENT_VERSION),
    );
    result.interfaces = vec![Interface {
        name: ctx.ifname.clone(),
        sandbox: ns.path().display().to_string(),
        pci_id: rec.vf.to_string(),
        mac: mac.map(|m| m.to_string()).unwrap_or_default(),
        ..Default::default()
    }];
    let mut dns = conf_dns(conf)?;
    if ipam_type(conf).is_some() {
        done.ipam = true;
        let ipam = ipam_run(ctx, conf, Command::Add).await?.ok_or_else(|| {
            CniError::new(ErrorCode::IpamFailure, "IPAM plugin returned no result")
        })?;
        if ipam.ips.is_empty() {
            return Err(CniError::new(
                ErrorCode::IpamFailure,
                "IPAM plugin returned missing IP config",
            ));
        }
        result.ips = ipam
            .ips
            .into_iter()
            .map(|ip| IpConfig {
                interface: Some(0),
                ..ip
            })
            .collect();
        result.routes = ipam.routes;
        if dns.is_empty() {
            dns = ipam.dns;
        }
    }
    result.dns = dns;
    if let Some(f) = devinfo::file_of(conf)? {
        // Recorded before it is written, so that whatever happens DEL knows to remove it.
        rec.device_info_file = Some(f.display().to_string());
        env.cache().save(rec)?;
        done.device_info = Some(f.clone());
        // The DPDK application finds its device through this file: not writing it fails the ADD.
        devinfo::write(&f, &userspace::device_info(rec.vf, rec.pf, u)).map_err(|e| {
            CniError::io(format!("sriov: writing device-info {}: {e}", f.display()))
        })?;
    }
    tracing::info!(
        "sriov: VF {} on {} (userspace mode) for container {} ifname {}",
        rec.vf,
        u.driver,
        rec.container_id,
        rec.ifname
    );
    Ok(result)
}

/// Undoes [`plug`] and [`vf::acquire`] after a failed ADD, in reverse.
async fn unplug(
    ctx: &Context,
    conf: &PluginConf,
    env: &SriovEnv,
    host: &Netlink,
    ns: &NetNs,
    rec: &VfRecord,
    done: &Plugged,
) -> Result<(), CniError> {
    if let Some(f) = &done.device_info {
        devinfo::remove(f);
    }
    if done.ipam {
        if let Err(e) = ipam_run(ctx, conf, Command::Del).await {
            tracing::warn!("releasing the IPAM reservation after a failed ADD: {e}");
        }
    }
    vf::restore_settings(env, host, rec).await?;
    if let (true, Some(orig)) = (done.moved, &rec.netdev) {
        let cont = Netlink::open_in(ns)?;
        let index = match done.pod_index {
            Some(i) => Some(i),
            None => find_in_pod(&cont, rec).await?.map(|l| l.index),
        };
        if let Some(index) = index {
            saved::restore_addresses(&cont, index, &ctx.ifname, orig)
                .await
                .map_err(|e| e.context("sriov"))?;
            move_home(&cont, index, rec).await?;
        }
    }
    vf::release(env, host, rec).await
}

/// Moves the VF netdev (index `index` in `cont`'s pod) back to the host, down, under a temporary name
/// ([`vf::release`] gives it its name back).
async fn move_home(cont: &Netlink, index: u32, rec: &VfRecord) -> Result<(), CniError> {
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
async fn find_in_pod(cont: &Netlink, rec: &VfRecord) -> Result<Option<LinkInfo>, CniError> {
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

/// Gives an attachment's VF back (DEL after its IPAM, GC, a failed ADD's cache): PF settings first (a VF
/// driver may refuse its own MAC change while the PF's admin MAC is set), the netdev's MAC and MTU in the pod,
/// the netdev home (or, with the pod's netns gone, waiting for the kernel to bring it home), then
/// [`vf::release`]. `netns` is `CNI_NETNS` when the runtime gave one (else the one cached at ADD).
async fn teardown(
    env: &SriovEnv,
    host: &Netlink,
    rec: &VfRecord,
    netns: Option<&Path>,
) -> Result<(), CniError> {
    if !vf::holds(env, rec) {
        return vf::release(env, host, rec).await;
    }
    vf::restore_settings(env, host, rec).await?;
    if let Some(orig) = &rec.netdev {
        let on_host = !env
            .sysfs()
            .netdevs(rec.vf)
            .map_err(|e| CniError::kernel(format!("sriov: {e}")))?
            .is_empty();
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
    vf::release(env, host, rec).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakePf, FakeSysfs};
    use multus_core::delegate::Registry;
    use serde_json::{json, Value};
    use std::sync::Arc;

    struct Env {
        dir: tempfile::TempDir,
        fake: FakeSysfs,
        sriov: Sriov,
    }

    fn env(num_vfs: u32) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path().join("root")).unwrap();
        fake.add_pf(&FakePf::igb("ens1", 1, num_vfs)).unwrap();
        let sriov = Sriov::new(SriovEnv::new(fake.sysfs(), dir.path().join("state")));
        Env { dir, fake, sriov }
    }

    impl Env {
        fn ctx(&self, cmd: Command, cid: &str) -> Context {
            Context::new(
                cmd,
                cid,
                Some(PathBuf::from("/proc/self/ns/net")),
                "net1",
                Arc::new(Registry::new()),
            )
        }

        fn conf(&self, extra: Value) -> PluginConf {
            let mut v = json!({"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov"});
            if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
                o.extend(e);
            }
            PluginConf::from_value(v).unwrap()
        }

        fn state(&self) -> SriovEnv {
            self.sriov.env.clone()
        }

        /// Every file under the state dir and the fake sysfs tree, with its content or link target.
        fn snapshot(&self) -> Vec<(PathBuf, String)> {
            let mut out = Vec::new();
            let mut stack = vec![self.dir.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in rd {
                    let p = e.unwrap().path();
                    let md = std::fs::symlink_metadata(&p).unwrap();
                    if md.file_type().is_symlink() {
                        out.push((
                            p.clone(),
                            std::fs::read_link(&p).unwrap().display().to_string(),
                        ));
                    } else if md.is_dir() {
                        out.push((p.clone(), "dir".into()));
                        stack.push(p);
                    } else {
                        out.push((p.clone(), std::fs::read_to_string(&p).unwrap_or_default()));
                    }
                }
            }
            out.sort();
            out
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// ADD fails with `code`, naming `needle`, and changes nothing on the fake host or in the state dir
    /// (beyond the state dir's own skeleton).
    fn refused(e: &Env, cid: &str, extra: Value, code: u32, needle: &str) {
        let before = e.snapshot();
        let err = rt()
            .block_on(
                e.sriov
                    .add(&e.ctx(Command::Add, cid), &e.conf(extra.clone())),
            )
            .expect_err(&format!("ADD accepted {extra}"));
        assert_eq!(err.code.code(), code, "{err} for {extra}");
        assert!(
            err.to_string().contains(needle),
            "{err} does not name {needle:?}"
        );
        let skeleton = |p: &Path| {
            let n = p.file_name().unwrap().to_string_lossy();
            n == "state" || n == "pci" || n == "lock"
        };
        let after: Vec<_> = e
            .snapshot()
            .into_iter()
            .filter(|(p, _)| !skeleton(p) || before.iter().any(|(q, _)| q == p))
            .collect();
        assert_eq!(before, after, "ADD of {extra} left something");
    }

    #[test]
    fn bad_config_refused_before_any_effect() {
        let e = env(2);
        let vf = json!("0000:01:10.0");
        for (extra, needle) in [
            (json!({"deviceID": vf, "vlan": 4095}), "\"vlan\" value 4095"),
            (
                json!({"deviceID": vf, "vlan": 10, "vlanQoS": 8}),
                "\"vlanQoS\" value 8",
            ),
            (json!({"deviceID": vf, "vlanQoS": 3}), "\"vlanQoS\" value 3"),
            (
                json!({"deviceID": vf, "vlan": 0, "vlanProto": "802.1ad"}),
                "802.1ad",
            ),
            (
                json!({"deviceID": vf, "max_tx_rate": -1}),
                "\"max_tx_rate\"",
            ),
            (
                json!({"deviceID": vf, "min_tx_rate": 200, "max_tx_rate": 100}),
                "\"min_tx_rate\"",
            ),
            (
                json!({"deviceID": vf, "mac": "ff:ff:ff:ff:ff:ff"}),
                "\"mac\"",
            ),
            (json!({"deviceID": "03:00.1"}), "\"deviceID\""),
            (
                json!({"deviceID": vf, "dataDir": "relative"}),
                "\"dataDir\"",
            ),
            (json!({}), "no VF given"),
        ] {
            refused(&e, "c1", extra, 7, needle);
        }
    }

    #[test]
    fn unknown_or_non_vf_device_and_sriov_off() {
        let e = env(2);
        refused(
            &e,
            "c1",
            json!({"deviceID": "0000:07:00.0"}),
            7,
            "0000:07:00.0: no such PCI device",
        );
        refused(
            &e,
            "c1",
            json!({"deviceID": "0000:01:00.0"}),
            7,
            "0000:01:00.0 is not an SR-IOV VF",
        );
        refused(
            &e,
            "c1",
            json!({"master": "nosuch0"}),
            7,
            "PF \"nosuch0\" not found",
        );
        let off = env(0);
        refused(&off, "c1", json!({"master": "ens1"}), 7, "SR-IOV off");
        // A PCI netdev without SR-IOV at all.
        let pci: PciAddress = "0000:02:00.0".parse().unwrap();
        off.fake
            .add_function(pci, 0x8086, 0x10d3, Some("e1000e"), None)
            .unwrap();
        off.fake.add_netdev(pci, "eno1").unwrap();
        refused(
            &off,
            "c1",
            json!({"pfName": "eno1"}),
            7,
            "does not support SR-IOV",
        );
    }

    #[test]
    fn taken_vf_refused_and_left_to_its_holder() {
        let e = env(1);
        let vf: PciAddress = "0000:01:10.0".parse().unwrap();
        let holder = crate::Holder {
            container_id: "other".into(),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
        };
        e.state().allocator().allocate_device(vf, &holder).unwrap();
        refused(
            &e,
            "c1",
            json!({"deviceID": "0000:01:10.0"}),
            11,
            "already allocated to container other",
        );
        refused(&e, "c1", json!({"master": "ens1"}), 11, "no free VF");
        assert_eq!(e.state().allocator().holder(vf).unwrap(), Some(holder));
    }

    #[test]
    fn existing_attachment_refused() {
        let e = env(1);
        let st = e.state();
        std::fs::create_dir_all(st.data_dir()).unwrap();
        std::fs::write(st.cache().path("c1", "net1"), "{}").unwrap();
        refused(
            &e,
            "c1",
            json!({"deviceID": "0000:01:10.0"}),
            4,
            "already has an SR-IOV attachment",
        );
    }

    #[test]
    fn missing_netns_and_bad_env() {
        let e = env(1);
        let conf = e.conf(json!({"deviceID": "0000:01:10.0"}));
        let mut ctx = e.ctx(Command::Add, "c1");
        ctx.netns = Some(PathBuf::from("/nonexistent/netns"));
        assert_eq!(
            rt().block_on(e.sriov.add(&ctx, &conf))
                .unwrap_err()
                .code
                .code(),
            3
        );
        ctx.netns = None;
        assert_eq!(
            rt().block_on(e.sriov.add(&ctx, &conf))
                .unwrap_err()
                .code
                .code(),
            4
        );
        let mut ctx = e.ctx(Command::Add, "c/1");
        assert_eq!(
            rt().block_on(e.sriov.add(&ctx, &conf))
                .unwrap_err()
                .code
                .code(),
            4
        );
        ctx.container_id = "c1".into();
        ctx.ifname = "a/b".into();
        assert_eq!(
            rt().block_on(e.sriov.add(&ctx, &conf))
                .unwrap_err()
                .code
                .code(),
            4
        );
        assert!(e.state().allocator().list().unwrap_or_default().is_empty());
    }

    #[test]
    fn del_without_state_is_a_no_op_and_frees_a_dead_adds_allocation() {
        let e = env(2);
        let conf = e.conf(json!({"deviceID": "0000:01:10.0"}));
        let ctx = e.ctx(Command::Del, "c1");
        rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
        rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
        // An allocation whose ADD died before caching anything.
        let alloc = e.state().allocator();
        let h = crate::Holder {
            container_id: "c1".into(),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
        };
        alloc
            .allocate_device("0000:01:10.2".parse().unwrap(), &h)
            .unwrap();
        rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
        assert!(alloc.list().unwrap().is_empty());
        // The device-info file named by the runtime config goes too.
        let f = e.dir.path().join("devinfo/cni/x");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "{}").unwrap();
        let conf = e.conf(json!({"runtimeConfig": {"CNIDeviceInfoFile": f}}));
        rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
        assert!(!f.exists());
        // A DEL without any device key (as after a bad ADD) is fine too.
        rt().block_on(e.sriov.del(&ctx, &e.conf(json!({"vlan": 99999}))))
            .unwrap();
    }

    #[test]
    fn status_codes() {
        let e = env(2);
        let ctx = e.ctx(Command::Status, "");
        let st = |extra: Value| rt().block_on(e.sriov.status(&ctx, &e.conf(extra)));
        st(json!({})).unwrap();
        st(json!({"master": "ens1"})).unwrap();
        st(json!({"deviceID": "0000:01:10.2"})).unwrap();
        for (extra, needle) in [
            (json!({"master": "nosuch0"}), "not found"),
            (json!({"deviceID": "0000:01:00.0"}), "not an SR-IOV VF"),
            (json!({"deviceID": "0000:09:00.0"}), "no such PCI device"),
        ] {
            let err = st(extra.clone()).unwrap_err();
            assert_eq!(err.code.code(), 50, "{err} for {extra}");
            assert!(err.to_string().contains(needle), "{err}");
        }
        let off = env(0);
        let err = rt()
            .block_on(off.sriov.status(&ctx, &off.conf(json!({"pfName": "ens1"}))))
            .unwrap_err();
        assert_eq!(err.code.code(), 50);
        assert!(err.to_string().contains("sriov_numvfs is 0"), "{err}");
    }

    #[test]
    fn gc_frees_stale_records_without_state_only() {
        let e = env(3);
        let alloc = e.state().allocator();
        let gone = crate::Holder {
            container_id: "dead".into(),
            ifname: "net1".into(),
            netns: "/nonexistent/netns".into(),
        };
        let live = crate::Holder {
            container_id: "live".into(),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
        };
        alloc
            .allocate_device("0000:01:10.0".parse().unwrap(), &gone)
            .unwrap();
        alloc
            .allocate_device("0000:01:10.2".parse().unwrap(), &live)
            .unwrap();
        let conf = e.conf(json!({"cni.dev/valid-attachments": []}));
        rt().block_on(e.sriov.gc(&e.ctx(Command::Gc, ""), &conf))
            .unwrap();
        assert_eq!(
            alloc.list().unwrap(),
            [("0000:01:10.2".parse().unwrap(), live)]
        );
    }

    /// A host whose VF 1 (`0000:01:10.2`, IOMMU group 9) is bound to vfio-pci, as the device plugin leaves it.
    fn vfio_env() -> (Env, PciAddress) {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path().join("root")).unwrap();
        let mut pf = FakePf::igb("ens1", 1, 3);
        pf.vfs[1].driver = Some("vfio-pci".into());
        pf.vfs[1].netdev = None;
        fake.add_pf(&pf).unwrap();
        let sriov = Sriov::new(SriovEnv::new(fake.sysfs(), dir.path().join("state")));
        (Env { dir, fake, sriov }, "0000:01:10.2".parse().unwrap())
    }

    /// The cached record of a userspace-mode attachment of `vf` (no netdev; no settings changed).
    fn userspace_record(e: &Env, vf: PciAddress, devinfo: Option<&Path>) -> VfRecord {
        let rec = VfRecord {
            network: "sriov-net".into(),
            container_id: "c1".into(),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
            vf,
            vf_index: 1,
            pf: "0000:01:00.0".parse().unwrap(),
            pf_name: "ens1".into(),
            original: Default::default(),
            changes: vec![],
            netdev: None,
            device_info_file: devinfo.map(|p| p.display().to_string()),
        };
        let st = e.state();
        st.allocator()
            .allocate_device(
                vf,
                &crate::Holder {
                    container_id: "c1".into(),
                    ifname: "net1".into(),
                    netns: "/proc/self/ns/net".into(),
                },
            )
            .unwrap();
        std::fs::create_dir_all(st.data_dir()).unwrap();
        st.cache().save(&rec).unwrap();
        rec
    }

    #[test]
    fn userspace_vf_refusals_touch_nothing() {
        let (e, vf) = vfio_env();
        // On vfio-pci without an IOMMU group: refused before the allocation.
        e.fake.unlink(vf, "iommu_group").unwrap();
        refused(
            &e,
            "c1",
            json!({"deviceID": vf.to_string(), "vlan": 100}),
            11,
            "has no IOMMU group",
        );
        let (e, vf) = vfio_env();
        // Held by another attachment.
        let other = crate::Holder {
            container_id: "other".into(),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
        };
        e.state().allocator().allocate_device(vf, &other).unwrap();
        refused(
            &e,
            "c1",
            json!({"deviceID": vf.to_string(), "vlan": 100}),
            11,
            "already allocated to container other",
        );
        assert_eq!(e.state().allocator().holder(vf).unwrap(), Some(other));
        // A bad setting is refused before the userspace path is even looked at.
        let (e, vf) = vfio_env();
        refused(
            &e,
            "c1",
            json!({"deviceID": vf.to_string(), "vlan": 4095}),
            7,
            "\"vlan\" value 4095",
        );
        // An unbound VF is neither mode: refused, naming both and the dpdk type (its PF is not on this host, so
        // the ADD stops at reading the PF; either way nothing is left).
        let (e, _) = vfio_env();
        let unbound: PciAddress = "0000:01:10.4".parse().unwrap();
        e.fake.unlink(unbound, "driver").unwrap();
        e.fake.remove_netdev(unbound, "ens1v2").unwrap();
        let before = e.snapshot();
        let err = rt()
            .block_on(e.sriov.add(
                &e.ctx(Command::Add, "c1"),
                &e.conf(json!({"deviceID": unbound.to_string()})),
            ))
            .unwrap_err();
        assert_ne!(err.code.code(), 0, "{err}");
        assert!(e.state().allocator().list().unwrap().is_empty());
        assert!(!e.state().cache().exists("c1", "net1"));
        assert_eq!(
            e.fake.sysfs().driver(vf).unwrap().as_deref(),
            Some("vfio-pci")
        );
        assert!(before.iter().all(|b| e.snapshot().contains(b)));
    }

    #[test]
    fn userspace_del_frees_and_leaves_the_vf_on_vfio_pci() {
        let (e, vf) = vfio_env();
        let f = e.dir.path().join("devinfo/cni/x");
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(&f, "{}").unwrap();
        userspace_record(&e, vf, Some(&f));
        let conf = e.conf(json!({"deviceID": vf.to_string(), "vlan": 100}));
        let ctx = e.ctx(Command::Del, "c1");
        rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
        assert!(e.state().allocator().list().unwrap().is_empty());
        assert!(!e.state().cache().exists("c1", "net1"));
        assert!(!f.exists());
        assert_eq!(
            e.fake.sysfs().driver(vf).unwrap().as_deref(),
            Some("vfio-pci")
        );
        // Idempotent.
        rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
    }

    #[test]
    fn userspace_check() {
        let (e, vf) = vfio_env();
        userspace_record(&e, vf, None);
        let conf = |pci: &str| {
            e.conf(json!({"deviceID": vf.to_string(), "prevResult": {
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "net1", "sandbox": "/proc/self/ns/net", "pciID": pci}],
            }}))
        };
        let ctx = e.ctx(Command::Check, "c1");
        rt().block_on(e.sriov.check(&ctx, &conf(&vf.to_string())))
            .unwrap();
        let err = rt()
            .block_on(e.sriov.check(&ctx, &conf("0000:01:10.4")))
            .unwrap_err();
        assert!(err.to_string().contains("is not the VF"), "{err}");
        // Someone rebinds it to its kernel driver: CHECK says so.
        e.fake
            .relink(vf, "driver", "../../../../bus/pci/drivers/igbvf")
            .unwrap();
        let err = rt()
            .block_on(e.sriov.check(&ctx, &conf(&vf.to_string())))
            .unwrap_err();
        assert!(err.to_string().contains("is on driver igbvf now"), "{err}");
        // Freed behind its back: CHECK says so.
        e.fake
            .relink(vf, "driver", "../../../../bus/pci/drivers/vfio-pci")
            .unwrap();
        e.state().allocator().release(vf).unwrap();
        let other = crate::Holder {
            container_id: "other".into(),
            ifname: "net1".into(),
            netns: "/proc/self/ns/net".into(),
        };
        e.state().allocator().allocate_device(vf, &other).unwrap();
        let err = rt()
            .block_on(e.sriov.check(&ctx, &conf(&vf.to_string())))
            .unwrap_err();
        assert!(err.to_string().contains("no longer allocated"), "{err}");
    }
}

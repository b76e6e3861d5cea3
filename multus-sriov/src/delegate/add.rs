//! ADD of the `sriov` delegate, one [`Add`] per call: [`vf::acquire`], then the netdev mode's steps ([`Add::plug`]:
//! the VF netdev into the pod under `CNI_IFNAME`, its MAC, IPAM) or the userspace mode's
//! ([`Add::plug_userspace`]: IPAM's addresses only reported), the result and the device-info file. Any failure
//! undoes every step in reverse ([`Add::unplug`]).

use super::{find_in_pod, move_home, Sriov};
use crate::alloc::USERSPACE_DRIVERS;
use crate::cache::{VfKeeper, VfRecord};
use crate::config::{SriovConf, VfSelector};
use crate::userspace::{self, UserspaceVf};
use crate::vf::{self, AttachmentId, SriovEnv};
use multus_core::cni::keys;
use multus_core::cni::names;
use multus_core::cni::{CniError, CniResult, Interface, PluginConf, CURRENT_VERSION};
use multus_core::delegate::Context;
use multus_core::devinfo::{self, DeviceInfo};
use multus_core::netlink::link::{self, LinkChange, LinkInfo};
use multus_core::netlink::netdev as saved;
use multus_core::netlink::Netlink;
use multus_core::netns::NetNs;
use multus_core::plugins::{ipam, ipam_apply, sublink};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// One ADD: its inputs, and what it has done past [`vf::acquire`] (for the undo).
pub(super) struct Add<'a> {
    ctx: &'a Context,
    conf: &'a PluginConf,
    sconf: SriovConf,
    env: SriovEnv,
    host: Netlink,
    ns: NetNs,
    /// The netdev was moved into the pod.
    moved: bool,
    /// The netdev's index in the pod, once moved there.
    pod_index: Option<u32>,
    /// The IPAM plugin's ADD was run (it may hold a reservation even when it failed).
    ipam: bool,
    /// The device-info file written.
    device_info: Option<PathBuf>,
}

impl<'a> Add<'a> {
    /// Checks the config and the environment before anything changes.
    pub(super) fn new(
        sriov: &Sriov,
        ctx: &'a Context,
        conf: &'a PluginConf,
    ) -> Result<Self, CniError> {
        let sconf = SriovConf::parse(conf)?;
        names::ifname(&ctx.ifname)?;
        names::container_id(&ctx.container_id)?;
        let path = super::netns_path(ctx)
            .ok_or_else(|| CniError::invalid_env("CNI_NETNS is required for ADD"))?;
        Ok(Add {
            ns: NetNs::open(path)?,
            env: sriov.env_for(conf)?,
            host: Netlink::current()?,
            ctx,
            conf,
            sconf,
            moved: false,
            pod_index: None,
            ipam: false,
            device_info: None,
        })
    }

    /// The whole ADD.
    pub(super) async fn run(mut self) -> Result<CniResult, CniError> {
        // A VF already on a userspace driver (vfio-pci, ...) takes the userspace mode; decided before anything
        // changes, so that its refusals leave nothing behind.
        let us = match &self.sconf.device {
            VfSelector::Vf(v) => userspace::probe(self.env.sysfs(), *v)?,
            VfSelector::Pf(_) => None,
        };
        let id = AttachmentId {
            network: self.conf.name().unwrap_or_default().to_string(),
            container_id: self.ctx.container_id.clone(),
            ifname: self.ctx.ifname.clone(),
            netns: self.ns.path().display().to_string(),
        };
        let cache = self.env.cache();
        let mut rec = vf::acquire(&self.env, &self.host, &self.sconf, &id, &cache).await?;
        let plugged = match &us {
            Some(u) => self.plug_userspace(&mut rec, u).await,
            None => self.plug(&mut rec).await,
        };
        match plugged {
            Ok(r) => Ok(r),
            Err(e) => match self.unplug(&rec).await {
                Ok(()) => Err(e),
                Err(u) => {
                    tracing::warn!("undoing the failed ADD of VF {}: {u}", rec.vf);
                    Err(e.with_details(format!(
                        "undoing it failed too ({u}); its record is kept for DEL"
                    )))
                }
            },
        }
    }

    /// The result's one interface: `CNI_IFNAME` in the pod's sandbox, with the VF's `pciID`.
    fn result(&self, rec: &VfRecord) -> CniResult {
        let mut result = CniResult::new(self.conf.cni_version().unwrap_or(CURRENT_VERSION));
        result.interfaces = vec![Interface {
            name: self.ctx.ifname.clone(),
            sandbox: self.ns.path().display().to_string(),
            pci_id: rec.vf.to_string(),
            ..Default::default()
        }];
        result
    }

    /// The IPAM's ADD into `result` (its DNS when the config has none); `false` without an IPAM section.
    async fn run_ipam(&mut self, result: &mut CniResult) -> Result<bool, CniError> {
        let mut dns = keys::dns(self.conf)?;
        if keys::ipam_type(self.conf).is_none() {
            result.dns = dns;
            return Ok(false);
        }
        self.ipam = true;
        let from_ipam = ipam::into_result(result, ipam::add(self.ctx, self.conf).await?)?;
        if dns.is_empty() {
            dns = from_ipam;
        }
        result.dns = dns;
        Ok(true)
    }

    /// The device-info file Multus asked for, recorded before it is written (so that whatever happens DEL
    /// knows to remove it).
    fn device_info_file(&mut self, rec: &mut VfRecord) -> Result<Option<PathBuf>, CniError> {
        let Some(f) = devinfo::file_of(self.conf)? else {
            return Ok(None);
        };
        rec.device_info_file = Some(f.display().to_string());
        self.env.cache().save_vf(rec)?;
        self.device_info = Some(f.clone());
        Ok(Some(f))
    }

    /// ADD past [`vf::acquire`]: the netdev into the pod, named, MAC, IPAM, result, device-info.
    async fn plug(&mut self, rec: &mut VfRecord) -> Result<CniResult, CniError> {
        let Some(nd) = rec.netdev.clone() else {
            let driver = self.env.sysfs().driver(rec.vf).ok().flatten();
            return Err(CniError::invalid_config(format!(
                "sriov: VF {} has no network interface in the host (driver {}): the sriov plugin needs the VF \
                 bound to its kernel network driver (netdev mode) or to a userspace driver ({}: userspace \
                 mode); to have the plugin bind it to vfio-pci, use type \"dpdk\"",
                rec.vf,
                driver.as_deref().unwrap_or("none"),
                USERSPACE_DRIVERS.join(", ")
            )));
        };
        let (cont, pl) = self.move_in(rec, &nd.name).await?;
        let ifname = self.ctx.ifname.as_str();
        if let Some(mac) = self.sconf.mac {
            saved::ensure_mac(&cont, pl.index, ifname, mac)
                .await
                .map_err(|e| e.context("sriov"))?;
        }
        let mut result = self.result(rec);
        if self.run_ipam(&mut result).await? {
            let plan = ipam_apply::plan(&result, ifname)?;
            ipam_apply::apply(&cont, &self.ns, pl.index, ifname, &plan).await?;
        } else {
            link::set(&cont, pl.index, &LinkChange::new().up())
                .await
                .map_err(|e| CniError::kernel(format!("sriov: setting {ifname:?} up: {e}")))?;
        }
        let l = link::by_index(&cont, pl.index)
            .await?
            .ok_or_else(|| CniError::kernel(format!("sriov: {ifname:?} vanished from the pod")))?;
        result.interfaces[0].mac = l.mac_text();
        if let Some(f) = self.device_info_file(rec)? {
            let info = DeviceInfo::pci(&rec.vf.to_string(), Some(&rec.pf.to_string()));
            if let Err(e) = devinfo::write(&f, &info) {
                tracing::warn!("writing device-info {}: {e}", f.display());
            }
        }
        Ok(result)
    }

    /// Moves the VF netdev `name` into the pod under a temporary name, then renames it `CNI_IFNAME` there.
    /// Returns the pod's connection and the netdev.
    async fn move_in(
        &mut self,
        rec: &VfRecord,
        name: &str,
    ) -> Result<(Netlink, LinkInfo), CniError> {
        let (ns, ifname) = (self.ns.path().display(), self.ctx.ifname.as_str());
        let hl = link::by_name(&self.host, name).await?.ok_or_else(|| {
            CniError::kernel(format!("sriov: VF {} netdev {name:?} vanished", rec.vf))
        })?;
        let tmp = sublink::temp_name();
        let mv = LinkChange::new()
            .name(&tmp)
            .netns_fd(self.ns.file().as_raw_fd());
        link::set(&self.host, hl.index, &mv).await.map_err(|e| {
            CniError::kernel(format!(
                "sriov: moving VF {} netdev {name:?} into {ns}: {e}",
                rec.vf
            ))
        })?;
        self.moved = true;
        let cont = Netlink::open_in(&self.ns)?;
        let pl = link::by_name(&cont, &tmp).await?.ok_or_else(|| {
            CniError::kernel(format!(
                "sriov: VF {} netdev moved as {tmp:?} is not in {ns}",
                rec.vf
            ))
        })?;
        self.pod_index = Some(pl.index);
        let rename = LinkChange::new().name(ifname);
        link::set(&cont, pl.index, &rename).await.map_err(|e| {
            if e.is_exists() {
                CniError::kernel(format!(
                    "sriov: an interface {ifname:?} already exists in {ns}"
                ))
            } else {
                CniError::kernel(format!("sriov: renaming {tmp:?} to {ifname:?}: {e}"))
            }
        })?;
        Ok((cont, pl))
    }

    /// ADD past [`vf::acquire`] in userspace mode ([`crate::userspace`]): no netdev, nothing bound or unbound;
    /// IPAM's addresses reported, not applied; the device-info file with the VFIO group device.
    async fn plug_userspace(
        &mut self,
        rec: &mut VfRecord,
        u: &UserspaceVf,
    ) -> Result<CniResult, CniError> {
        // Read before the allocation: the VF must still be on that driver now that it is this attachment's.
        let now = self.env.sysfs().driver(rec.vf).ok().flatten();
        if now.as_deref() != Some(u.driver.as_str()) {
            return Err(CniError::try_again_later(format!(
                "sriov: VF {} moved from driver {} to {} during ADD",
                rec.vf,
                u.driver,
                now.as_deref().unwrap_or("none")
            )));
        }
        let mac = self
            .sconf
            .mac
            .or_else(|| (!rec.original.mac.is_zero()).then_some(rec.original.mac));
        let mut result = self.result(rec);
        result.interfaces[0].mac = mac.map(|m| m.to_string()).unwrap_or_default();
        self.run_ipam(&mut result).await?;
        if let Some(f) = self.device_info_file(rec)? {
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

    /// Undoes the plug and [`vf::acquire`] after a failed ADD, in reverse.
    async fn unplug(&self, rec: &VfRecord) -> Result<(), CniError> {
        if let Some(f) = &self.device_info {
            devinfo::remove(f);
        }
        if self.ipam {
            ipam::release(self.ctx, self.conf).await;
        }
        vf::restore_settings(&self.env, &self.host, rec).await?;
        if let (true, Some(orig)) = (self.moved, &rec.netdev) {
            let cont = Netlink::open_in(&self.ns)?;
            let index = match self.pod_index {
                Some(i) => Some(i),
                None => find_in_pod(&cont, rec).await?.map(|l| l.index),
            };
            if let Some(index) = index {
                saved::restore_addresses(&cont, index, &self.ctx.ifname, orig)
                    .await
                    .map_err(|e| e.context("sriov"))?;
                move_home(&cont, index, rec).await?;
            }
        }
        vf::release(&self.env, &self.host, rec, &self.env.cache()).await
    }
}

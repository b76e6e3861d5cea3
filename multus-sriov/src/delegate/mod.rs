//! The `sriov` delegate: netdev mode (a VF's kernel netdev moved into the pod) and userspace mode (a VF already
//! bound to vfio-pci or another userspace driver: settings on the PF only, see [`crate::userspace`]), as
//! sriov-cni does. The mode follows the VF's driver at ADD (as sriov-cni's): a `deviceID` on a userspace
//! driver takes the userspace mode, one on its kernel driver the netdev mode; a VF with no driver is refused
//! (this type never binds a VF: the `dpdk` type does, with the same VF settings). Below, the netdev mode; the
//! userspace mode's ADD skips the netdev steps (no move, no rename, IPAM's addresses reported but not applied)
//! and writes `vfio-device` into the device-info, its DEL has no netdev to bring back, and its CHECK checks the
//! VF's driver instead of a netdev.
//!
//! - ADD: [`crate::vf::acquire`] (VF allocated, its state recorded, the config's settings applied on the PF), then the
//!   VF netdev moved into the pod under a temporary name, renamed to `CNI_IFNAME`, given the config's MAC,
//!   configured by IPAM (or just brought up), and reported with its `pciID` (CNI 1.1). The device-info file
//!   (`runtimeConfig.CNIDeviceInfoFile`) gets a `pci` device-info. Any failure undoes every step in reverse.
//! - DEL: IPAM released; settings on the PF put back; the netdev's MAC and MTU put back in the pod, then it
//!   moves back to the host and gets its name back (when the pod's netns is gone, the kernel has moved it
//!   back already, under whatever name was free: it is found by its PCI address); the VF freed; record and
//!   device-info file removed. Idempotent.
//! - CHECK: the VF is in the pod under `CNI_IFNAME` with prevResult's MAC, addresses and routes, and the PF
//!   still carries the settings ADD applied.
//! - STATUS: the PF named by the config (`master`/`pfName`, or the PF of its `deviceID`) exists and has VFs
//!   enabled (code 50 otherwise).
//! - GC: attachments of this network not in `cni.dev/valid-attachments` are given back (as DEL), stale
//!   allocation records without a record of their attachment are freed, and the IPAM plugin gets the GC.
//!
//! One file per verb: `add` (a per-call `Add`), `del` (with the teardown GC shares), `check` (and
//! STATUS), `gc`.

mod add;
mod check;
mod del;
mod gc;
#[cfg(test)]
mod tests;

use crate::config;
use crate::vf::SriovEnv;
use async_trait::async_trait;
use del::{find_in_pod, move_home, teardown};
use multus_core::cni::{CniError, CniResult, PluginConf};
use multus_core::delegate::{Context, Delegate};
use std::path::Path;

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

/// `CNI_NETNS`, when given.
fn netns_path(ctx: &Context) -> Option<&Path> {
    ctx.netns.as_deref().filter(|p| !p.as_os_str().is_empty())
}

#[async_trait]
impl Delegate for Sriov {
    fn describe(&self) -> String {
        "built-in sriov".into()
    }

    fn known_keys(&self) -> Option<multus_core::delegate::KnownKeys> {
        Some(multus_core::delegate::KnownKeys::Plugin(&[
            crate::config::SRIOV_KEYS,
        ]))
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        add::Add::new(self, ctx, conf)?.run().await
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        check::check(self, ctx, conf).await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        del::del(self, ctx, conf).await
    }

    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        check::status(self, ctx, conf).await
    }

    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        gc::gc(self, ctx, conf).await
    }
}

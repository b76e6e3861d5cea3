//! The `dpdk` delegate: binds the attachment's PCI device to vfio-pci on ADD, gives it back on DEL.
//!
//! Config keys:
//!
//! | key | type | meaning |
//! |-----|------|---------|
//! | `deviceID` | string | the device's PCI address `dddd:bb:dd.f`; also `pciBusID` and `runtimeConfig.deviceID` (that order) |
//! | `master` / `pfName` | string | without a device ID: take a free VF of this PF (the SR-IOV allocator's choice) |
//! | `allowNoIommu` | bool | bind without an IOMMU when vfio's unsafe no-IOMMU mode is on (default false) |
//! | `dataDir` | string | the state directory (default `/var/lib/cni/multus/dpdk`) |
//! | `runtimeConfig.CNIDeviceInfoFile` | string | where to write the device-info (spec 1.1.0), as Multus asks |
//! | `mac`, `vlan`, `vlanQoS`, `vlanProto`, `spoofchk`, `trust`, `link_state`, `min_tx_rate`, `max_tx_rate` | | VF settings applied on the PF, as the `sriov` delegate does (see `multus_sriov::config`) |
//!
//! For an SR-IOV VF, ADD first allocates it and applies the VF settings on its PF with the SR-IOV delegate's
//! `multus_sriov::vf::acquire` (allocation records under `<dataDir>/sriov/pci`, or the SR-IOV delegate's default
//! directory, so that the two delegates never hand out one VF twice); the VF's record is kept in this delegate's
//! own record of the attachment ([`crate::state::VfInBinding`]: one record per attachment). DEL puts the settings
//! back with `vf::release` once the VF is on its kernel driver again. The DPDK application then sees the VF with
//! the configured MAC and VLAN.
//!
//! ADD: checks and binds ([`crate::bind`]), recording the device's original driver, netdev name, MAC and up flag
//! under `dataDir` (before touching it); returns one interface named after `CNI_IFNAME` with the device's `pciID`
//! (CNI 1.1) and the pod's netns as sandbox, and no netdev enters the pod; writes the device-info file. DEL: gives
//! the device back to its original driver, renames its netdev back to its original name, puts its MAC and up flag
//! back, removes the device-info file and the record; succeeds when there is nothing to undo. CHECK: the device is
//! still on vfio-pci and its group device exists. STATUS: vfio-pci and an IOMMU are there. GC: restores the
//! devices of attachments that are not in the valid list.
//!
//! One file per part: `add` (the bind under the store's lock), `del` (DEL and GC: giving a device back),
//! `check` (CHECK and STATUS).

mod add;
mod check;
mod del;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use async_trait::async_trait;
use multus_core::cni::keys::Keys;
use multus_core::cni::{AttachmentRef, CniError, CniResult, PluginConf};
use multus_core::delegate::{Context, Delegate};
use multus_core::devinfo;
use multus_core::netlink::netdev::{self, NetdevState};
use multus_core::netlink::{link, Netlink};
use multus_sriov::cache::{VfKeeper, VfRecord};
use multus_sriov::config::{SriovConf, VfSelector};
use multus_sriov::vf::{self, AttachmentId, SriovEnv};
use multus_sriov::PciAddress;

use crate::bind::{Binder, Original, RestoreOutcome};
use crate::state::{Binding, Store, VfInBinding, DEFAULT_STATE_DIR};

/// A parsed `dpdk` config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DpdkConf {
    /// The device (`deviceID`, `pciBusID`, `runtimeConfig.deviceID`); `None` when none is given (an error for ADD,
    /// fine for DEL, which uses its record).
    pub device: Option<PciAddress>,
    /// `allowNoIommu`.
    pub allow_no_iommu: bool,
    /// `dataDir`.
    pub state_dir: Option<PathBuf>,
    /// `runtimeConfig.CNIDeviceInfoFile`.
    pub device_info_file: Option<PathBuf>,
}

impl DpdkConf {
    /// Parses the keys above; each present device key must be a valid PCI address.
    pub fn parse(conf: &PluginConf) -> Result<Self, CniError> {
        let k = Keys::of(conf).plugin("dpdk");
        let device = match multus_sriov::config::select_device(&k)? {
            Some((VfSelector::Vf(pci), _)) => Some(pci),
            _ => None,
        };
        Ok(DpdkConf {
            device,
            allow_no_iommu: k.bool("allowNoIommu")?.unwrap_or(false),
            state_dir: k.string("dataDir")?.map(PathBuf::from),
            device_info_file: devinfo::file_of(conf)?,
        })
    }
}

/// The `dpdk` delegate.
#[derive(Debug, Clone)]
pub struct Dpdk {
    binder: Binder,
    state_dir: PathBuf,
    netlink: bool,
}

/// The attachment of an invocation.
fn attachment(ctx: &Context) -> AttachmentRef {
    AttachmentRef {
        container_id: ctx.container_id.clone(),
        ifname: ctx.ifname.clone(),
    }
}

impl Dpdk {
    /// On the host: [`Binder::system`], state under `/var/lib/cni/multus/dpdk` unless `dataDir` says otherwise.
    pub fn system() -> Self {
        Dpdk::new(Binder::system(), DEFAULT_STATE_DIR)
    }

    /// With a binder and a default state directory (tests use a fake sysfs tree).
    pub fn new(binder: Binder, state_dir: impl Into<PathBuf>) -> Self {
        Dpdk {
            binder,
            state_dir: state_dir.into(),
            netlink: true,
        }
    }

    /// Never touches netdevs through netlink (the rename / MAC / up after a restore): for tests on fake trees,
    /// whose netdev names are not the host's.
    pub fn without_netlink(mut self) -> Self {
        self.netlink = false;
        self
    }

    /// The SR-IOV allocation records for a VF: under `<dataDir>/sriov` when `dataDir` is set, else the SR-IOV
    /// delegate's default, so that both delegates see each other's allocations.
    fn sriov_env(&self, conf: &DpdkConf) -> SriovEnv {
        let dir = conf
            .state_dir
            .as_ref()
            .map(|d| d.join("sriov"))
            .unwrap_or_else(|| PathBuf::from(multus_sriov::cache::DEFAULT_DATA_DIR));
        SriovEnv::new(self.binder.sysfs().clone(), dir)
    }

    /// The attachment records.
    fn store(&self, conf: &DpdkConf) -> Store {
        Store::new(
            conf.state_dir
                .clone()
                .unwrap_or_else(|| self.state_dir.clone()),
        )
    }

    /// The device, and for an SR-IOV VF (with netlink) its allocation and VF settings on the PF (the SR-IOV
    /// delegate's `vf::acquire`, its record kept in this attachment's record; a new one only when the
    /// attachment did not already have one). Without a device ID, `master` / `pfName` names a PF and a free VF
    /// of it is allocated, as the `sriov` delegate does.
    async fn acquire_vf(
        &self,
        ctx: &Context,
        conf: &PluginConf,
        c: &DpdkConf,
    ) -> Result<(PciAddress, Option<VfRecord>), CniError> {
        if let Some(d) = c.device {
            if !self.netlink || !self.binder.sysfs().is_vf(d).unwrap_or(false) {
                return Ok((d, None));
            }
        } else if !self.netlink || !["master", "pfName"].iter().any(|k| conf.get(k).is_some()) {
            return Err(CniError::invalid_config(
                "dpdk: no device given: set \"deviceID\" (or \"pciBusID\", \"runtimeConfig.deviceID\") to its PCI \
                 address, or \"master\" / \"pfName\" to take a free VF of that PF",
            ));
        }
        let store = self.store(c);
        let keeper = VfInBinding(&store);
        if let Some(rec) = keeper.load_vf(&attachment(ctx))? {
            return Ok((c.device.unwrap_or(rec.vf), None));
        }
        let sconf = SriovConf::parse(conf)?;
        let nl = Netlink::current()?;
        let id = AttachmentId {
            network: conf.name().unwrap_or_default().to_string(),
            container_id: ctx.container_id.clone(),
            ifname: ctx.ifname.clone(),
            netns: ctx
                .netns
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let rec = vf::acquire(&self.sriov_env(c), &nl, &sconf, &id, &keeper).await?;
        Ok((rec.vf, Some(rec)))
    }

    /// Puts back the VF settings of an attachment and frees its VF (`vf::release`), when its record has a VF.
    async fn release_vf(&self, c: &DpdkConf, at: &AttachmentRef) -> Result<(), CniError> {
        if !self.netlink {
            return Ok(());
        }
        let store = self.store(c);
        let keeper = VfInBinding(&store);
        let Some(rec) = keeper.load_vf(at)? else {
            return Ok(());
        };
        let nl = Netlink::current()?;
        vf::release(&self.sriov_env(c), &nl, &rec, &keeper).await
    }

    /// Restores a record's device (blocking) and returns what happened.
    fn restore_record(binder: &Binder, r: &Binding) -> Result<crate::bind::Restored, CniError> {
        let pci: PciAddress = r
            .pci
            .parse()
            .map_err(|_| CniError::io(format!("dpdk: record has a bad PCI address {:?}", r.pci)))?;
        let restored = binder.restore(pci, &r.original)?;
        match &restored.outcome {
            RestoreOutcome::TakenOver(d) => tracing::warn!(
                "{pci} is bound to {d} now, not vfio-pci: left alone (its original driver was {})",
                r.original.driver.as_deref().unwrap_or("none")
            ),
            RestoreOutcome::Gone => tracing::info!("{pci} no longer exists; nothing to restore"),
            o => tracing::debug!("{pci}: {o:?}"),
        }
        Ok(restored)
    }
}

/// Runs blocking sysfs work (binds, restores, the store's lock) off the runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CniError::io(format!("dpdk: worker thread failed: {e}")))?
}

/// After a restore: the netdev the kernel made gets its original name, MAC and up flag back
/// (`multus_core::netlink::netdev::restore`). Failures are logged, not returned: the device is back on its
/// driver, which is what DEL must achieve.
async fn restore_netdev(current: &str, original: &Original) {
    if let Err(e) = try_restore_netdev(current, original).await {
        tracing::warn!(
            "dpdk: netdev {current} (originally {}): {e}",
            original.netdev.as_deref().unwrap_or("?")
        );
    }
}

async fn try_restore_netdev(current: &str, original: &Original) -> Result<(), CniError> {
    let Some(name) = &original.netdev else {
        return Ok(());
    };
    let nl = Netlink::current()?;
    let l = link::by_name(&nl, current)
        .await?
        .ok_or_else(|| CniError::kernel(format!("netdev {current} vanished")))?;
    // The MTU was never changed by the bind (a new netdev of the same driver): not restored.
    let saved = NetdevState {
        name: name.clone(),
        mac: original.mac.unwrap_or_default(),
        mtu: 0,
        up: original.up,
    };
    netdev::restore(&nl, l.index, &saved).await?;
    if name != current {
        tracing::info!("dpdk: netdev {current} renamed back to {name}");
    }
    Ok(())
}

#[async_trait]
impl Delegate for Dpdk {
    fn describe(&self) -> String {
        "built-in dpdk".into()
    }

    fn known_keys(&self) -> Option<multus_core::delegate::KnownKeys> {
        // sriov's VF settings apply to a VF bound for DPDK too.
        Some(multus_core::delegate::KnownKeys::Plugin(&[
            multus_sriov::config::SRIOV_KEYS,
            &["allowNoIommu"],
        ]))
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        add::add(self, ctx, conf).await
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        check::check(self, ctx, conf).await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        del::del(self, ctx, conf).await
    }

    async fn status(&self, _ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        check::status(self, conf)
    }

    async fn gc(&self, _ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        del::gc(self, conf).await
    }
}

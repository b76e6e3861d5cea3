//! Taking a VF for an attachment and giving it back, whatever becomes of its netdev: the part of ADD and DEL
//! that the netdev delegate ([`crate::Sriov`]) and a userspace (DPDK) delegate share.
//!
//! - [`acquire`]: allocate the VF (by device ID, or a free VF of a PF), save what it is now (PF-side settings,
//!   and its netdev's name, MAC, MTU and state when it has one) with the caller's [`VfKeeper`], apply the
//!   config's settings on the PF. Any failure puts everything back and frees the VF.
//! - [`release`]: put the settings back (only those ADD changed, and only where they differ now), restore the
//!   netdev when it is in this namespace, free the VF, forget the record. Idempotent.
//! - [`restore`] (module): the restore plans and CHECK's drift.
//!
//! What happens to the netdev in between (moved into a pod, or the VF rebound to vfio-pci) is the caller's.
//! The record is kept where the caller keeps its per-attachment state: the `sriov` delegate's [`Cache`], or
//! inside the caller's own record (one record per attachment). A userspace delegate, for example:
//!
//! ```no_run
//! use multus_core::cni::{CniError, PluginConf};
//! use multus_core::netlink::Netlink;
//! use multus_sriov::cache::VfKeeper;
//! use multus_sriov::config::SriovConf;
//! use multus_sriov::vf::{self, AttachmentId, SriovEnv};
//!
//! # async fn demo(conf: &PluginConf) -> Result<(), CniError> {
//! let sconf = SriovConf::parse(conf)?;
//! let env = SriovEnv::for_conf(conf)?;
//! let nl = Netlink::current()?;
//! let id = AttachmentId {
//!     network: "dpdk-net".into(),
//!     container_id: "c1".into(),
//!     ifname: "net1".into(),
//!     netns: "/var/run/netns/pod1".into(),
//! };
//! let keeper = env.cache();
//! let rec = vf::acquire(&env, &nl, &sconf, &id, &keeper).await?;
//! // ... bind rec.vf to vfio-pci; on failure rebind and vf::release(&env, &nl, &rec, &keeper) ...
//! // DEL: rebind to the kernel driver, then:
//! if let Some(rec) = keeper.load_vf(&id.attachment())? {
//!     vf::release(&env, &nl, &rec, &keeper).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod restore;

pub use restore::{
    drifted, restore, restore_host_netdev, restore_plan, restore_settings, wait_home,
};

use crate::alloc::{Claim, Holder, VfAllocator};
use crate::cache::{Cache, NetdevState, VfKeeper, VfRecord, DEFAULT_DATA_DIR};
use crate::config::{self, plan_changes, SriovConf, VfSelector};
use crate::sysfs::Sysfs;
use crate::vf_netlink::{apply_changes, read_vf_state};
use crate::PciAddress;
use multus_core::cni::{AttachmentRef, CniError, PluginConf};
use multus_core::devinfo;
use multus_core::netlink::link::{self, LinkChange};
use multus_core::netlink::Netlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for a VF's netdev to come back to the host after its pod's netns was destroyed (the
/// kernel does it asynchronously).
pub const NETDEV_RETURN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where an SR-IOV delegate keeps its state, and the sysfs it reads.
#[derive(Debug, Clone)]
pub struct SriovEnv {
    sysfs: Sysfs,
    data_dir: PathBuf,
}

impl SriovEnv {
    /// State under `data_dir`, devices read from `sysfs`.
    pub fn new(sysfs: Sysfs, data_dir: impl Into<PathBuf>) -> Self {
        SriovEnv {
            sysfs,
            data_dir: data_dir.into(),
        }
    }

    /// The host's sysfs and the default state directory.
    pub fn system() -> Self {
        SriovEnv::new(Sysfs::system(), DEFAULT_DATA_DIR)
    }

    /// The host's sysfs and the config's `dataDir` (default [`DEFAULT_DATA_DIR`]).
    pub fn for_conf(conf: &PluginConf) -> Result<Self, CniError> {
        Ok(SriovEnv::new(
            Sysfs::system(),
            config::data_dir(conf)?.unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        ))
    }

    /// The same sysfs with another state directory.
    pub fn with_data_dir(&self, data_dir: impl Into<PathBuf>) -> Self {
        SriovEnv::new(self.sysfs.clone(), data_dir)
    }

    /// The sysfs.
    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    /// The state directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The allocation records, under `<dataDir>/pci`.
    pub fn allocator(&self) -> VfAllocator {
        VfAllocator::new(self.data_dir.join("pci"), self.sysfs.clone())
    }

    /// The per-attachment records, `<dataDir>/<containerID>@<ifname>.json`.
    pub fn cache(&self) -> Cache {
        Cache::new(&self.data_dir)
    }
}

/// Which attachment a VF is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentId {
    /// The network name.
    pub network: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS`.
    pub netns: String,
}

impl AttachmentId {
    /// The attachment, as records name it.
    pub fn attachment(&self) -> AttachmentRef {
        AttachmentRef {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }

    fn holder(&self) -> Holder {
        Holder {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
            netns: self.netns.clone(),
        }
    }
}

/// Checks that the PF named by `master`/`pfName` exists and has SR-IOV on (code 7 naming the cause).
pub fn check_pf(sysfs: &Sysfs, pf: &str) -> Result<PciAddress, CniError> {
    let pci = sysfs.netdev_pci(pf).map_err(|e| {
        if e.is_not_found() {
            CniError::invalid_config(format!(
                "sriov: PF {pf:?} not found (no PCI network device of that name in this namespace)"
            ))
        } else {
            e.into()
        }
    })?;
    let total = sysfs.total_vfs(pci).map_err(|e| {
        if e.is_not_found() {
            CniError::invalid_config(format!(
                "sriov: PF {pf:?} ({pci}) does not support SR-IOV (no sriov_totalvfs)"
            ))
        } else {
            e.into()
        }
    })?;
    let num = sysfs.num_vfs(pci)?;
    if num == 0 {
        return Err(CniError::invalid_config(format!(
            "sriov: PF {pf:?} ({pci}) has SR-IOV off: sriov_numvfs is 0 (of {total})"
        )));
    }
    Ok(pci)
}

/// Takes the VF for an attachment, saves what it is now (with `keeper`) and applies the config's VF settings
/// on the PF. On failure nothing is left: settings put back, VF freed, no record. The returned record is
/// what was saved.
///
/// Fails (code 4) when the attachment already has a record: a second ADD would save the first one's
/// settings as the original ones.
pub async fn acquire(
    env: &SriovEnv,
    nl: &Netlink,
    conf: &SriovConf,
    id: &AttachmentId,
    keeper: &dyn VfKeeper,
) -> Result<VfRecord, CniError> {
    let at = id.attachment();
    let existing = match keeper.load_vf(&at) {
        Ok(r) => r.map(|_| String::new()),
        Err(e) => Some(format!(": {e}")),
    };
    if let Some(why) = existing {
        return Err(CniError::invalid_env(format!(
            "sriov: container {} already has an SR-IOV attachment {} (record {}{why}); DEL it first",
            id.container_id,
            id.ifname,
            keeper.describe(&at)
        )));
    }
    let alloc = env.allocator();
    let holder = id.holder();
    let claim = match &conf.device {
        VfSelector::Vf(vf) => alloc.claim_device(*vf, &holder),
        VfSelector::Pf(pf) => {
            check_pf(&env.sysfs, pf)?;
            alloc.claim_from_pf(pf, &holder)
        }
    }?;
    let vf = claim.vf;
    match prepare(env, nl, conf, id, &claim, keeper).await {
        Ok(rec) => Ok(rec),
        Err(Undo::Clean(e)) => {
            if let Err(f) = alloc.release(vf) {
                tracing::warn!("freeing VF {vf} after a failed ADD: {f}");
            }
            Err(e)
        }
        Err(Undo::TakeOverFailed(e, previous)) => {
            // Leave the VF to its previous (gone) attachment, whose record still says how to restore it.
            if let Err(f) = alloc.reassign(vf, &holder, &previous) {
                tracing::warn!("giving VF {vf} back to its previous holder: {f}");
            }
            Err(e)
        }
        Err(Undo::Kept(e)) => Err(e),
    }
}

enum Undo {
    /// Nothing to undo but the allocation.
    Clean(CniError),
    /// Restoring the VF of the stale attachment taken over failed.
    TakeOverFailed(CniError, Holder),
    /// Putting the settings back failed: record and allocation are kept for DEL to retry.
    Kept(CniError),
}

async fn prepare(
    env: &SriovEnv,
    nl: &Netlink,
    conf: &SriovConf,
    id: &AttachmentId,
    claim: &Claim,
    keeper: &dyn VfKeeper,
) -> Result<VfRecord, Undo> {
    let vf = claim.vf;
    if let Some(prev) = &claim.replaced {
        take_over(env, nl, vf, prev, keeper)
            .await
            .map_err(|e| Undo::TakeOverFailed(e, prev.clone()))?;
    }
    let rec = snapshot(env, nl, conf, id, vf).await.map_err(Undo::Clean)?;
    keeper.save_vf(&rec).map_err(Undo::Clean)?;
    if let Err(e) = apply(env, nl, conf, &rec).await {
        let at = id.attachment();
        return match restore(env, nl, &rec).await {
            Ok(()) => {
                if let Err(c) = keeper.forget_vf(&at) {
                    tracing::warn!("{c}");
                }
                Err(Undo::Clean(e))
            }
            Err(u) => Err(Undo::Kept(e.with_details(format!(
                "putting VF {vf} back failed too ({u}); its record {} is kept for DEL",
                keeper.describe(&at)
            )))),
        };
    }
    Ok(rec)
}

/// Applies the config's settings: the netdev's own MAC first, where the driver allows it (a driver that
/// takes an administrative MAC only at its next reset, igbvf, then carries the new MAC at once; best
/// effort: the pod side checks), then the VF settings on the PF.
async fn apply(
    env: &SriovEnv,
    nl: &Netlink,
    conf: &SriovConf,
    rec: &VfRecord,
) -> Result<(), CniError> {
    let pf_index = pf_index(env, nl, rec).await?;
    if let (Some(mac), Some(nd)) = (conf.mac, &rec.netdev) {
        if nd.mac != mac {
            if let Some(l) = link::by_name(nl, &nd.name).await? {
                if let Err(e) = link::set(nl, l.index, &LinkChange::new().mac(mac)).await {
                    tracing::debug!("VF netdev {} refuses MAC {mac} for now: {e}", nd.name);
                }
            }
        }
    }
    apply_changes(nl, pf_index, rec.vf_index, &rec.changes).await
}

/// Restores the VF of a stale attachment (its netns gone, never deleted) from its record before another
/// attachment takes it. A stale holder whose record `keeper` does not have (another delegate type's
/// attachment) has nothing this one can restore.
async fn take_over(
    env: &SriovEnv,
    nl: &Netlink,
    vf: PciAddress,
    prev: &Holder,
    keeper: &dyn VfKeeper,
) -> Result<(), CniError> {
    let at = AttachmentRef {
        container_id: prev.container_id.clone(),
        ifname: prev.ifname.clone(),
    };
    let Some(old) = keeper.load_vf(&at)? else {
        tracing::info!(
            "VF {vf}: taking over from container {} ifname {} (netns {} gone), no record of it here",
            prev.container_id,
            prev.ifname,
            prev.netns
        );
        return Ok(());
    };
    if old.vf != vf {
        return Ok(());
    }
    tracing::info!(
        "VF {vf}: taking over from container {} ifname {} (netns {} gone): restoring it first",
        prev.container_id,
        prev.ifname,
        prev.netns
    );
    wait_home(env, &old, NETDEV_RETURN_TIMEOUT).await?;
    restore(env, nl, &old).await?;
    if let Some(f) = &old.device_info_file {
        devinfo::remove(Path::new(f));
    }
    keeper.forget_vf(&at)
}

/// What the VF is now: its place on the PF, its PF-side settings, its netdev; and the changes `conf` needs.
async fn snapshot(
    env: &SriovEnv,
    nl: &Netlink,
    conf: &SriovConf,
    id: &AttachmentId,
    vf: PciAddress,
) -> Result<VfRecord, CniError> {
    let sysfs = &env.sysfs;
    let pf = sysfs.physfn(vf)?;
    let vf_index = sysfs.vf_index(vf)?.ok_or_else(|| {
        CniError::kernel(format!("sriov: VF {vf} is not among its PF {pf}'s VFs"))
    })?;
    let pf_name = sysfs.netdevs(pf)?.into_iter().next().ok_or_else(|| {
        CniError::kernel(format!(
            "sriov: the PF {pf} of VF {vf} has no network interface in this namespace"
        ))
    })?;
    let pf_link = link::by_name(nl, &pf_name)
        .await?
        .ok_or_else(|| CniError::kernel(format!("sriov: PF {pf_name:?} not found")))?;
    let original = read_vf_state(nl, pf_link.index, vf_index).await?;
    let netdev = match sysfs.netdevs(vf)?.as_slice() {
        [] => None,
        [name] => {
            let l = link::by_name(nl, name).await?.ok_or_else(|| {
                CniError::kernel(format!("sriov: VF {vf}'s netdev {name:?} vanished"))
            })?;
            Some(NetdevState::of(&l))
        }
        more => {
            return Err(CniError::kernel(format!(
                "sriov: VF {vf} has several netdevs {more:?}"
            )))
        }
    };
    let state = original.into_state(
        netdev.as_ref().map(|n| n.name.clone()).unwrap_or_default(),
        netdev.as_ref().map(|n| n.mtu).unwrap_or_default(),
    );
    Ok(VfRecord {
        network: id.network.clone(),
        container_id: id.container_id.clone(),
        ifname: id.ifname.clone(),
        netns: id.netns.clone(),
        vf,
        vf_index,
        pf,
        pf_name,
        original,
        changes: plan_changes(&state, conf),
        netdev,
        device_info_file: None,
    })
}

/// Whether the attachment of `rec` still holds its VF (or nobody does): a VF taken over by another attachment
/// since (this one's netns died first) is not this one's to restore. An unreadable record counts as this one's.
pub fn holds(env: &SriovEnv, rec: &VfRecord) -> bool {
    match env.allocator().holder(rec.vf) {
        Ok(Some(h)) => h.container_id == rec.container_id && h.ifname == rec.ifname,
        Ok(None) => true,
        Err(e) => {
            tracing::warn!("{e}; taking VF {} as still held by its attachment", rec.vf);
            true
        }
    }
}

/// Gives an attachment's VF back: settings put back, netdev restored when it is in the host, VF freed,
/// record forgotten and device-info file removed. When another attachment holds the VF now (this one's netns
/// died and the VF was taken over, and restored, then), only the record goes. On failure record and
/// allocation stay, so that a retry can finish.
pub async fn release(
    env: &SriovEnv,
    nl: &Netlink,
    rec: &VfRecord,
    keeper: &dyn VfKeeper,
) -> Result<(), CniError> {
    if holds(env, rec) {
        restore(env, nl, rec).await?;
        env.allocator().release(rec.vf)?;
    } else {
        tracing::info!(
            "VF {} is held by another attachment now: not touching it",
            rec.vf
        );
    }
    if let Some(f) = &rec.device_info_file {
        devinfo::remove(Path::new(f));
    }
    keeper.forget_vf(&rec.attachment())
}

/// The PF's interface index: its netdev found through sysfs by PCI address (it may have been renamed since
/// ADD), else by the name recorded at ADD.
pub async fn pf_index(env: &SriovEnv, nl: &Netlink, rec: &VfRecord) -> Result<u32, CniError> {
    let now = env
        .sysfs
        .netdevs(rec.pf)
        .ok()
        .and_then(|n| n.into_iter().next());
    for name in now.iter().chain(std::iter::once(&rec.pf_name)) {
        if let Some(l) = link::by_name(nl, name).await? {
            return Ok(l.index);
        }
    }
    Err(CniError::kernel(format!(
        "sriov: PF {} ({:?} at ADD) of VF {} not found",
        rec.pf, rec.pf_name, rec.vf
    )))
}

#[cfg(test)]
mod tests {
    use crate::alloc::AllocError;
    use crate::PciAddress;
    use multus_core::cni::CniError;

    #[test]
    fn alloc_errors_have_codes() {
        let pci: PciAddress = "0000:01:10.0".parse().unwrap();
        assert_eq!(CniError::from(AllocError::NotAVf(pci)).code.code(), 7);
        assert_eq!(CniError::from(AllocError::NoSuchDevice(pci)).code.code(), 7);
        let none = AllocError::NoFreeVf {
            pf: "p".into(),
            total: 2,
        };
        assert_eq!(CniError::from(none).code.code(), 11);
    }
}

//! Taking a VF for an attachment and giving it back, whatever becomes of its netdev: the part of ADD and DEL
//! that the netdev delegate ([`crate::Sriov`]) and a userspace (DPDK) delegate share.
//!
//! - [`acquire`]: allocate the VF (by device ID, or a free VF of a PF), save what it is now (PF-side settings,
//!   and its netdev's name, MAC, MTU and state when it has one) to the cache, apply the config's settings on
//!   the PF. Any failure puts everything back and frees the VF.
//! - [`release`]: put the settings back (only those ADD changed, and only where they differ now), restore the
//!   netdev when it is in this namespace, free the VF, remove the cache. Idempotent.
//!
//! What happens to the netdev in between (moved into a pod, or the VF rebound to vfio-pci) is the caller's.
//! A userspace delegate, for example:
//!
//! ```no_run
//! use multus_core::cni::{CniError, PluginConf};
//! use multus_core::netlink::Netlink;
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
//! let rec = vf::acquire(&env, &nl, &sconf, &id).await?;
//! // ... bind rec.vf to vfio-pci; on failure rebind and vf::release(&env, &nl, &rec) ...
//! // DEL: rebind to the kernel driver, then:
//! if let Some(rec) = env.cache().load("c1", "net1")? {
//!     vf::release(&env, &nl, &rec).await?;
//! }
//! # Ok(())
//! # }
//! ```

use crate::alloc::{AllocError, Claim, Holder, VfAllocator, USERSPACE_DRIVERS};
use crate::cache::{Cache, VfRecord, DEFAULT_DATA_DIR};
use crate::config::{self, plan_changes, SriovConf, VfChange, VfSelector};
use crate::netdev;
use crate::sysfs::{Sysfs, SysfsError};
use crate::vf_netlink::{apply_changes, read_vf_state, VfSettings};
use crate::PciAddress;
use multus_core::cni::{CniError, PluginConf};
use multus_core::devinfo;
use multus_core::netlink::link::{self, LinkChange};
use multus_core::netlink::netdev::{self as saved, NetdevState};
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

    /// The per-attachment cache, `<dataDir>/<containerID>-<ifname>.json`.
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
    fn holder(&self) -> Holder {
        Holder {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
            netns: self.netns.clone(),
        }
    }
}

/// A CNI error for an allocation failure: code 7 for what the config got wrong (no such device, not a VF,
/// SR-IOV off), 11 for a VF held by another attachment or none free (it may be freed), 5 otherwise.
pub fn alloc_error(e: AllocError) -> CniError {
    let msg = format!("sriov: {e}");
    match e {
        AllocError::NoSuchDevice(_) | AllocError::NotAVf(_) | AllocError::SriovDisabled { .. } => {
            CniError::invalid_config(msg)
        }
        AllocError::Taken { .. } | AllocError::NoFreeVf { .. } => CniError::try_again_later(msg),
        AllocError::InvalidHolder(_) => CniError::invalid_env(msg),
        AllocError::Sysfs(_) => CniError::kernel(msg),
        AllocError::Io { .. } | AllocError::CorruptRecord { .. } => CniError::io(msg),
    }
}

fn sysfs_error(e: SysfsError) -> CniError {
    CniError::kernel(format!("sriov: {e}"))
}

/// Checks that the PF named by `master`/`pfName` exists and has SR-IOV on (code 7 naming the cause).
pub fn check_pf(sysfs: &Sysfs, pf: &str) -> Result<PciAddress, CniError> {
    let pci = sysfs.netdev_pci(pf).map_err(|e| {
        if e.is_not_found() {
            CniError::invalid_config(format!(
                "sriov: PF {pf:?} not found (no PCI network device of that name in this namespace)"
            ))
        } else {
            sysfs_error(e)
        }
    })?;
    let total = sysfs.total_vfs(pci).map_err(|e| {
        if e.is_not_found() {
            CniError::invalid_config(format!(
                "sriov: PF {pf:?} ({pci}) does not support SR-IOV (no sriov_totalvfs)"
            ))
        } else {
            sysfs_error(e)
        }
    })?;
    let num = sysfs.num_vfs(pci).map_err(sysfs_error)?;
    if num == 0 {
        return Err(CniError::invalid_config(format!(
            "sriov: PF {pf:?} ({pci}) has SR-IOV off: sriov_numvfs is 0 (of {total})"
        )));
    }
    Ok(pci)
}

/// Takes the VF for an attachment, saves what it is now and applies the config's VF settings on the PF. On
/// failure nothing is left: settings put back, VF freed, no cache. The returned record is what is cached.
///
/// Fails (code 4) when the attachment already has a record: a second ADD would save the first one's
/// settings as the original ones.
pub async fn acquire(
    env: &SriovEnv,
    nl: &Netlink,
    conf: &SriovConf,
    id: &AttachmentId,
) -> Result<VfRecord, CniError> {
    let cache = env.cache();
    if cache.exists(&id.container_id, &id.ifname) {
        return Err(CniError::invalid_env(format!(
            "sriov: container {} already has an SR-IOV attachment {} (cache {}); DEL it first",
            id.container_id,
            id.ifname,
            cache.path(&id.container_id, &id.ifname).display()
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
    }
    .map_err(alloc_error)?;
    let vf = claim.vf;
    match prepare(env, nl, conf, id, &claim).await {
        Ok(rec) => Ok(rec),
        Err(Undo::Clean(e)) => {
            if let Err(f) = alloc.release(vf) {
                tracing::warn!("freeing VF {vf} after a failed ADD: {f}");
            }
            Err(e)
        }
        Err(Undo::TakeOverFailed(e, previous)) => {
            // Leave the VF to its previous (gone) attachment, whose cache still says how to restore it.
            match alloc.reassign(vf, &holder, &previous) {
                Ok(_) => {}
                Err(f) => tracing::warn!("giving VF {vf} back to its previous holder: {f}"),
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
    /// Putting the settings back failed: cache and allocation are kept for DEL to retry.
    Kept(CniError),
}

async fn prepare(
    env: &SriovEnv,
    nl: &Netlink,
    conf: &SriovConf,
    id: &AttachmentId,
    claim: &Claim,
) -> Result<VfRecord, Undo> {
    let vf = claim.vf;
    if let Some(prev) = &claim.replaced {
        take_over(env, nl, vf, prev)
            .await
            .map_err(|e| Undo::TakeOverFailed(e, prev.clone()))?;
    }
    let rec = snapshot(env, nl, conf, id, vf).await.map_err(Undo::Clean)?;
    let cache = env.cache();
    cache.save(&rec).map_err(|e| Undo::Clean(e.into()))?;
    let applied = async {
        let pf_index = pf_index(env, nl, &rec).await?;
        // The netdev's own MAC first, where the driver allows it: a driver that takes an administrative MAC
        // only at its next reset (igbvf) then carries the new MAC at once. Best effort: the pod side checks.
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
    .await;
    if let Err(e) = applied {
        return match restore(env, nl, &rec).await {
            Ok(()) => {
                if let Err(c) = cache.remove(&id.container_id, &id.ifname) {
                    tracing::warn!("{c}");
                }
                Err(Undo::Clean(e))
            }
            Err(u) => Err(Undo::Kept(e.with_details(format!(
                "putting VF {vf} back failed too ({u}); its cache {} is kept for DEL",
                cache.path(&id.container_id, &id.ifname).display()
            )))),
        };
    }
    Ok(rec)
}

/// Restores the VF of a stale attachment (its netns gone, never deleted) from its cache before another
/// attachment takes it.
async fn take_over(
    env: &SriovEnv,
    nl: &Netlink,
    vf: PciAddress,
    prev: &Holder,
) -> Result<(), CniError> {
    let cache = env.cache();
    let Some(old) = cache.load(&prev.container_id, &prev.ifname)? else {
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
    cache.remove(&prev.container_id, &prev.ifname)?;
    Ok(())
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
    let pf = sysfs.physfn(vf).map_err(sysfs_error)?;
    let vf_index = sysfs.vf_index(vf).map_err(sysfs_error)?.ok_or_else(|| {
        CniError::kernel(format!("sriov: VF {vf} is not among its PF {pf}'s VFs"))
    })?;
    let pf_name = sysfs
        .netdevs(pf)
        .map_err(sysfs_error)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            CniError::kernel(format!(
                "sriov: the PF {pf} of VF {vf} has no network interface in this namespace"
            ))
        })?;
    let pf_link = link::by_name(nl, &pf_name)
        .await?
        .ok_or_else(|| CniError::kernel(format!("sriov: PF {pf_name:?} not found")))?;
    let original = read_vf_state(nl, pf_link.index, vf_index).await?;
    let netdev = match sysfs.netdevs(vf).map_err(sysfs_error)?.as_slice() {
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

/// The PF's interface index: its netdev found through sysfs by PCI address (it may have been renamed since
/// ADD), else by the name cached at ADD.
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

/// The changes that put the settings `changes` touched back to `original`, given the `current` ones: one per
/// such setting that differs now, in the reverse order of `changes`. Empty when all are back.
pub fn restore_plan(
    current: &VfSettings,
    original: &VfSettings,
    changes: &[VfChange],
) -> Vec<VfChange> {
    let mut out: Vec<VfChange> = Vec::new();
    for c in changes.iter().rev() {
        let undo = match c {
            VfChange::Mac { .. } => (current.mac != original.mac).then_some(VfChange::Mac {
                from: current.mac,
                to: original.mac,
            }),
            VfChange::Vlan { .. } => (current.vlan != original.vlan).then_some(VfChange::Vlan {
                from: current.vlan,
                to: original.vlan,
            }),
            VfChange::SpoofChk { .. } => {
                (current.spoofchk != original.spoofchk).then_some(VfChange::SpoofChk {
                    from: current.spoofchk,
                    to: original.spoofchk,
                })
            }
            VfChange::Trust { .. } => {
                (current.trust != original.trust).then_some(VfChange::Trust {
                    from: current.trust,
                    to: original.trust,
                })
            }
            VfChange::LinkState { .. } => {
                (current.link_state != original.link_state).then_some(VfChange::LinkState {
                    from: current.link_state,
                    to: original.link_state,
                })
            }
            VfChange::TxRate { .. } => {
                let (from, to) = (
                    (current.min_tx_rate, current.max_tx_rate),
                    (original.min_tx_rate, original.max_tx_rate),
                );
                (from != to).then_some(VfChange::TxRate { from, to })
            }
        };
        if let Some(u) = undo {
            if !out
                .iter()
                .any(|o| std::mem::discriminant(o) == std::mem::discriminant(&u))
            {
                out.push(u);
            }
        }
    }
    out
}

/// The settings of `changes` whose value now is not the one ADD set: (setting, now, wanted), for CHECK.
pub fn drifted(current: &VfSettings, changes: &[VfChange]) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for c in changes {
        let (name, now, want) = match *c {
            VfChange::Mac { to, .. } => ("mac", current.mac.to_string(), to.to_string()),
            VfChange::Vlan { to, .. } => ("vlan", format!("{:?}", current.vlan), format!("{to:?}")),
            VfChange::SpoofChk { to, .. } => {
                ("spoofchk", current.spoofchk.to_string(), to.to_string())
            }
            VfChange::Trust { to, .. } => ("trust", current.trust.to_string(), to.to_string()),
            VfChange::LinkState { to, .. } => (
                "link_state",
                current.link_state.as_str().to_string(),
                to.as_str().to_string(),
            ),
            VfChange::TxRate { to, .. } => (
                "min_tx_rate/max_tx_rate",
                format!("{:?}", (current.min_tx_rate, current.max_tx_rate)),
                format!("{to:?}"),
            ),
        };
        if now != want {
            out.push((name, now, want));
        }
    }
    out
}

/// Puts a VF's PF-side settings back ([`restore_plan`]); a VF that no longer exists (SR-IOV turned off since)
/// has nothing to put back.
pub async fn restore_settings(
    env: &SriovEnv,
    nl: &Netlink,
    rec: &VfRecord,
) -> Result<(), CniError> {
    if rec.changes.is_empty() {
        return Ok(());
    }
    if !env.sysfs.pci_exists(rec.vf) || env.sysfs.physfn(rec.vf).ok() != Some(rec.pf) {
        tracing::info!("VF {} is gone: no settings to put back", rec.vf);
        return Ok(());
    }
    let pf_index = pf_index(env, nl, rec).await?;
    let current = read_vf_state(nl, pf_index, rec.vf_index).await?;
    let plan = restore_plan(&current, &rec.original, &rec.changes);
    apply_changes(nl, pf_index, rec.vf_index, &plan).await
}

/// Puts the VF's netdev in the host back as it was (name, MAC, MTU, up/down), when it is in the host.
/// Returns whether it was there.
pub async fn restore_host_netdev(
    env: &SriovEnv,
    nl: &Netlink,
    rec: &VfRecord,
) -> Result<bool, CniError> {
    let Some(orig) = &rec.netdev else {
        return Ok(false);
    };
    let names = env.sysfs.netdevs(rec.vf).map_err(sysfs_error)?;
    let [name] = names.as_slice() else {
        return Ok(false);
    };
    let Some(l) = link::by_name(nl, name).await? else {
        return Ok(false);
    };
    saved::restore(nl, l.index, orig)
        .await
        .map_err(|e| e.context(format_args!("sriov: VF {}", rec.vf)))?;
    Ok(true)
}

/// [`restore_settings`], then [`restore_host_netdev`].
pub async fn restore(env: &SriovEnv, nl: &Netlink, rec: &VfRecord) -> Result<(), CniError> {
    restore_settings(env, nl, rec).await?;
    restore_host_netdev(env, nl, rec).await.map(|_| ())
}

/// Waits (up to `timeout`) until the VF's netdev is in the host again, when it had one and its driver is a
/// kernel one. Fails with code 11 when it does not come back: its netns may still be alive somewhere.
pub async fn wait_home(env: &SriovEnv, rec: &VfRecord, timeout: Duration) -> Result<(), CniError> {
    if rec.netdev.is_none() || !env.sysfs.pci_exists(rec.vf) {
        return Ok(());
    }
    let kernel_driver = |s: &Sysfs| {
        s.driver(rec.vf)
            .ok()
            .flatten()
            .is_some_and(|d| !USERSPACE_DRIVERS.contains(&d.as_str()))
    };
    if !kernel_driver(&env.sysfs) {
        return Ok(());
    }
    let back = netdev::wait_for(timeout, || {
        (!env.sysfs.netdevs(rec.vf).unwrap_or_default().is_empty()).then_some(())
    })
    .await;
    match back {
        Some(()) => Ok(()),
        None => Err(CniError::try_again_later(format!(
            "sriov: VF {}'s netdev is not back in the host {timeout:?} after its netns {} went away",
            rec.vf, rec.netns
        ))),
    }
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
/// cache and device-info file removed. When another attachment holds the VF now (this one's netns died and
/// the VF was taken over, and restored, then), only the cache goes. On failure cache and allocation stay,
/// so that a retry can finish.
pub async fn release(env: &SriovEnv, nl: &Netlink, rec: &VfRecord) -> Result<(), CniError> {
    let alloc = env.allocator();
    let cache = env.cache();
    if holds(env, rec) {
        restore(env, nl, rec).await?;
        alloc.release(rec.vf).map_err(alloc_error)?;
    } else {
        tracing::info!(
            "VF {} is held by another attachment now: not touching it",
            rec.vf
        );
    }
    if let Some(f) = &rec.device_info_file {
        devinfo::remove(Path::new(f));
    }
    cache.remove(&rec.container_id, &rec.ifname)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LinkState, VlanConf};
    use multus_core::netlink::MacAddr;

    fn s() -> VfSettings {
        VfSettings {
            mac: MacAddr::default(),
            vlan: VlanConf::default(),
            spoofchk: true,
            trust: false,
            link_state: LinkState::Auto,
            min_tx_rate: 0,
            max_tx_rate: 0,
        }
    }

    #[test]
    fn restore_plan_only_what_differs_now() {
        let orig = s();
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let vlan = VlanConf {
            id: 10,
            ..Default::default()
        };
        let changes = vec![
            VfChange::Mac {
                from: orig.mac,
                to: mac,
            },
            VfChange::Vlan {
                from: orig.vlan,
                to: vlan,
            },
            VfChange::SpoofChk {
                from: true,
                to: false,
            },
            VfChange::TxRate {
                from: (0, 0),
                to: (0, 100),
            },
        ];
        // All applied: all undone, in reverse order, from the current values.
        let cur = VfSettings {
            mac,
            vlan,
            spoofchk: false,
            max_tx_rate: 100,
            ..orig
        };
        assert_eq!(
            restore_plan(&cur, &orig, &changes),
            vec![
                VfChange::TxRate {
                    from: (0, 100),
                    to: (0, 0)
                },
                VfChange::SpoofChk {
                    from: false,
                    to: true
                },
                VfChange::Vlan {
                    from: vlan,
                    to: orig.vlan
                },
                VfChange::Mac {
                    from: mac,
                    to: orig.mac
                },
            ]
        );
        // Half applied (the rate failed): only the applied ones; a setting ADD never touched (trust, changed by
        // someone else) is left alone.
        let cur = VfSettings {
            mac,
            vlan,
            trust: true,
            ..orig
        };
        assert_eq!(
            restore_plan(&cur, &orig, &changes),
            vec![
                VfChange::Vlan {
                    from: vlan,
                    to: orig.vlan
                },
                VfChange::Mac {
                    from: mac,
                    to: orig.mac
                },
            ]
        );
        assert!(restore_plan(&orig, &orig, &changes).is_empty());
        assert!(restore_plan(&cur, &orig, &[]).is_empty());
    }

    #[test]
    fn drift_names_the_setting() {
        let orig = s();
        let changes = vec![
            VfChange::SpoofChk {
                from: true,
                to: false,
            },
            VfChange::TxRate {
                from: (0, 0),
                to: (0, 100),
            },
        ];
        let applied = VfSettings {
            spoofchk: false,
            max_tx_rate: 100,
            ..orig
        };
        assert!(drifted(&applied, &changes).is_empty());
        let d = drifted(
            &VfSettings {
                max_tx_rate: 50,
                ..applied
            },
            &changes,
        );
        assert_eq!(
            d,
            vec![(
                "min_tx_rate/max_tx_rate",
                "(0, 50)".to_string(),
                "(0, 100)".to_string()
            )]
        );
    }

    #[test]
    fn alloc_errors_have_codes() {
        let pci: PciAddress = "0000:01:10.0".parse().unwrap();
        assert_eq!(alloc_error(AllocError::NotAVf(pci)).code.code(), 7);
        assert_eq!(alloc_error(AllocError::NoSuchDevice(pci)).code.code(), 7);
        assert_eq!(
            alloc_error(AllocError::NoFreeVf {
                pf: "p".into(),
                total: 2
            })
            .code
            .code(),
            11
        );
    }
}

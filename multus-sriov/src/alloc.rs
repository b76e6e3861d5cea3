//! VF allocation records: which attachment holds which VF, so two pods never get one VF.
//!
//! Layout of the state directory (created on first use, mode 0700):
//!
//! - `lock`: empty; every operation holds `flock(LOCK_EX)` on it from start to end (each operation opens it anew, so
//!   threads of one process exclude each other as well as processes do), taken as the record stores take theirs
//!   (`multus_core::record::lock_file`: waiting at most [`LOCK_TIMEOUT`], then code 11).
//! - `<vf pci address>` (e.g. `0000:01:10.0`), one per allocated VF: JSON
//!   `{"containerID": ..., "ifname": ..., "netns": ...}`. The name is a [`PciAddress`] rendering (hex digits, `:` and
//!   `.` only), so it is always a safe file name. Written with `multus_core::fs::write_atomic`, so it appears whole.
//!
//! These records are keyed by VF, not by attachment, so they are their own kind next to the per-attachment
//! records ([`crate::cache`]).
//!
//! A record whose `netns` path no longer exists is stale (its pod is gone without a DEL) and may be taken over, as
//! sriov-cni does. A record that does not parse is treated as held (never silently taken) until GC removes it.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use multus_core::cni::CniError;
use multus_core::fs::{remove_if_exists, write_atomic, Durability};
use multus_core::record::{lock_file, RecordError, StoreLock};
use serde::{Deserialize, Serialize};

use crate::sysfs::{Sysfs, SysfsError};
use crate::PciAddress;

const LOCK_FILE: &str = "lock";

/// How long an allocation waits for another one (another pod's ADD on the same host) to release the lock.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// Drivers that give a VF to user space (DPDK): a VF bound to one is never handed out by PF name.
pub const USERSPACE_DRIVERS: &[&str] = &["vfio-pci", "igb_uio", "uio_pci_generic"];

/// Who holds a VF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The CNI container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The interface name in the container.
    pub ifname: String,
    /// The container's netns path (the record is stale once it is gone).
    pub netns: String,
}

/// A VF allocated by [`VfAllocator::claim_device`] or [`VfAllocator::claim_from_pf`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The VF now held.
    pub vf: PciAddress,
    /// The holder of a stale record (its netns gone) that was taken over: its attachment was never deleted,
    /// so the VF may still carry its settings (the caller restores them from that attachment's cache).
    pub replaced: Option<Holder>,
}

/// Why an allocation operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// A state-dir file operation failed.
    #[error("VF allocation state: {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Reading sysfs failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// No PCI function with this address.
    #[error("deviceID {0}: no such PCI device")]
    NoSuchDevice(PciAddress),
    /// The function is not an SR-IOV VF.
    #[error("deviceID {0} is not an SR-IOV VF (no physfn link)")]
    NotAVf(PciAddress),
    /// The VF is held by a live attachment.
    #[error("VF {vf} is already allocated to container {} ifname {} (netns {})", holder.container_id, holder.ifname, holder.netns)]
    Taken {
        /// The VF.
        vf: PciAddress,
        /// Its holder.
        holder: Holder,
    },
    /// The VF's record does not parse; it is treated as held.
    #[error("VF allocation record {path} is unreadable ({reason}); VF treated as taken")]
    CorruptRecord {
        /// The record.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The PF has SR-IOV off (`sriov_numvfs` is 0).
    #[error("PF {pf} has no VFs enabled (sriov_numvfs is 0)")]
    SriovDisabled {
        /// The PF's netdev.
        pf: String,
    },
    /// Every VF of the PF is taken.
    #[error("PF {pf}: no free VF ({total} enabled, all allocated or bound to a userspace driver)")]
    NoFreeVf {
        /// The PF's netdev.
        pf: String,
        /// Enabled VFs.
        total: usize,
    },
    /// The holder has an empty field.
    #[error("invalid VF holder: {0}")]
    InvalidHolder(&'static str),
    /// The lock was not free within [`LOCK_TIMEOUT`] (or could not be taken).
    #[error("VF allocation state: {0}")]
    Lock(RecordError),
}

/// Code 7 for what the config got wrong (no such device, not a VF, SR-IOV off), 11 for a VF held by another
/// attachment, none free, or the lock busy (it may be freed), 4 for an invalid holder, 103 for sysfs, 5
/// otherwise.
impl From<AllocError> for CniError {
    fn from(e: AllocError) -> Self {
        let msg = format!("sriov: {e}");
        match e {
            AllocError::NoSuchDevice(_)
            | AllocError::NotAVf(_)
            | AllocError::SriovDisabled { .. } => CniError::invalid_config(msg),
            AllocError::Taken { .. } | AllocError::NoFreeVf { .. } => {
                CniError::try_again_later(msg)
            }
            AllocError::Lock(RecordError::LockTimeout { .. }) => CniError::try_again_later(msg),
            AllocError::InvalidHolder(_) => CniError::invalid_env(msg),
            AllocError::Sysfs(_) => CniError::kernel(msg),
            AllocError::Io { .. } | AllocError::CorruptRecord { .. } | AllocError::Lock(_) => {
                CniError::io(msg)
            }
        }
    }
}

/// Result of an allocation operation.
pub type Result<T> = std::result::Result<T, AllocError>;

/// VF allocations under a state directory, checked against sysfs.
#[derive(Debug, Clone)]
pub struct VfAllocator {
    dir: PathBuf,
    sysfs: Sysfs,
}

enum Record {
    Free,
    Held(Holder),
    Corrupt(String),
}

impl VfAllocator {
    /// Allocations recorded under `dir`, VFs looked up in `sysfs`.
    pub fn new(dir: impl Into<PathBuf>, sysfs: Sysfs) -> Self {
        VfAllocator {
            dir: dir.into(),
            sysfs,
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Allocates the VF named by `deviceID` to `holder`. Succeeds again for the same (containerID, ifname); fails
    /// with [`AllocError::Taken`] when a live attachment holds it; takes over a stale record.
    pub fn allocate_device(&self, vf: PciAddress, holder: &Holder) -> Result<PciAddress> {
        self.claim_device(vf, holder).map(|c| c.vf)
    }

    /// [`VfAllocator::allocate_device`], also saying whose stale record was taken over (see [`Claim`]).
    pub fn claim_device(&self, vf: PciAddress, holder: &Holder) -> Result<Claim> {
        check_holder(holder)?;
        if !self.sysfs.pci_exists(vf) {
            return Err(AllocError::NoSuchDevice(vf));
        }
        if !self.sysfs.is_vf(vf)? {
            return Err(AllocError::NotAVf(vf));
        }
        let _lock = self.lock()?;
        let replaced = match self.read(vf)? {
            Record::Held(h) if same_attachment(&h, holder) => None,
            Record::Held(h) if !stale(&h) => {
                return Err(AllocError::Taken { vf, holder: h });
            }
            Record::Held(h) => Some(h),
            Record::Corrupt(reason) => {
                return Err(AllocError::CorruptRecord {
                    path: self.record_path(vf),
                    reason,
                });
            }
            Record::Free => None,
        };
        self.write(vf, holder)?;
        Ok(Claim { vf, replaced })
    }

    /// Allocates a free VF of the PF with netdev `pf` (lowest VF index first), skipping VFs held by live attachments,
    /// with unreadable records, or bound to a [`USERSPACE_DRIVERS`] driver. The same (containerID, ifname) gets
    /// back the VF it already holds on this PF.
    pub fn allocate_from_pf(&self, pf: &str, holder: &Holder) -> Result<PciAddress> {
        self.claim_from_pf(pf, holder).map(|c| c.vf)
    }

    /// [`VfAllocator::allocate_from_pf`], also saying whose stale record was taken over (see [`Claim`]).
    pub fn claim_from_pf(&self, pf: &str, holder: &Holder) -> Result<Claim> {
        check_holder(holder)?;
        let pf_pci = self.sysfs.netdev_pci(pf)?;
        let vfs = self.sysfs.vfs(pf_pci)?;
        if vfs.is_empty() {
            return Err(AllocError::SriovDisabled { pf: pf.to_string() });
        }
        let _lock = self.lock()?;
        let mut free = None;
        for v in &vfs {
            let replaced = match self.read(v.pci)? {
                Record::Held(h) if same_attachment(&h, holder) => {
                    return Ok(Claim {
                        vf: v.pci,
                        replaced: None,
                    })
                }
                Record::Held(h) if !stale(&h) => continue,
                Record::Corrupt(_) => continue,
                Record::Held(h) => Some(h),
                Record::Free => None,
            };
            if free.is_none() {
                let driver = self.sysfs.driver(v.pci)?;
                if !driver.is_some_and(|d| USERSPACE_DRIVERS.contains(&d.as_str())) {
                    free = Some(Claim {
                        vf: v.pci,
                        replaced,
                    });
                }
            }
        }
        let Some(claim) = free else {
            return Err(AllocError::NoFreeVf {
                pf: pf.to_string(),
                total: vfs.len(),
            });
        };
        self.write(claim.vf, holder)?;
        Ok(claim)
    }

    /// The holder of a VF, `None` when free. Stale records are reported as they are.
    pub fn holder(&self, vf: PciAddress) -> Result<Option<Holder>> {
        let _lock = self.lock()?;
        match self.read(vf)? {
            Record::Free => Ok(None),
            Record::Held(h) => Ok(Some(h)),
            Record::Corrupt(reason) => Err(AllocError::CorruptRecord {
                path: self.record_path(vf),
                reason,
            }),
        }
    }

    /// Gives a VF held by `from` to `to` (same attachment compared by containerID and ifname); returns whether
    /// it did (false when `from` does not hold it). Used to hand a VF back to the stale holder it was taken
    /// from when restoring that holder's settings failed.
    pub fn reassign(&self, vf: PciAddress, from: &Holder, to: &Holder) -> Result<bool> {
        check_holder(to)?;
        let _lock = self.lock()?;
        match self.read(vf)? {
            Record::Held(h) if same_attachment(&h, from) => {
                self.write(vf, to)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Frees a VF. Idempotent: freeing a free VF succeeds.
    pub fn release(&self, vf: PciAddress) -> Result<()> {
        let _lock = self.lock()?;
        self.remove(vf)
    }

    /// Frees every VF held by (containerID, ifname) and returns them. Idempotent.
    pub fn release_holder(&self, container_id: &str, ifname: &str) -> Result<Vec<PciAddress>> {
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for (vf, rec) in self.records()? {
            if let Record::Held(h) = rec {
                if h.container_id == container_id && h.ifname == ifname {
                    self.remove(vf)?;
                    freed.push(vf);
                }
            }
        }
        Ok(freed)
    }

    /// CNI GC: removes every record whose (containerID, ifname) is not in `valid` (including unreadable ones) and
    /// returns the VFs freed.
    pub fn gc(&self, valid: &[(String, String)]) -> Result<Vec<PciAddress>> {
        let _lock = self.lock()?;
        multus_core::fs::remove_stale_temps(&self.dir, Duration::from_secs(600));
        let mut freed = Vec::new();
        for (vf, rec) in self.records()? {
            let keep = match rec {
                Record::Held(h) => valid
                    .iter()
                    .any(|(c, i)| *c == h.container_id && *i == h.ifname),
                Record::Free => true,
                Record::Corrupt(_) => false,
            };
            if !keep {
                self.remove(vf)?;
                freed.push(vf);
            }
        }
        Ok(freed)
    }

    /// Every allocation (VF, holder) with a readable record, by VF address.
    pub fn list(&self) -> Result<Vec<(PciAddress, Holder)>> {
        let _lock = self.lock()?;
        Ok(self
            .records()?
            .into_iter()
            .filter_map(|(vf, r)| match r {
                Record::Held(h) => Some((vf, h)),
                _ => None,
            })
            .collect())
    }

    fn record_path(&self, vf: PciAddress) -> PathBuf {
        self.dir.join(vf.to_string())
    }

    fn io(&self, op: &'static str, path: &Path, source: io::Error) -> AllocError {
        AllocError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn lock(&self) -> Result<StoreLock> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| self.io("create", &self.dir, e))?;
        lock_file(&self.dir.join(LOCK_FILE), LOCK_TIMEOUT).map_err(AllocError::Lock)
    }

    fn read(&self, vf: PciAddress) -> Result<Record> {
        let path = self.record_path(vf);
        match fs::read(&path) {
            Ok(bytes) => Ok(match serde_json::from_slice::<Holder>(&bytes) {
                Ok(h) => Record::Held(h),
                Err(e) => Record::Corrupt(e.to_string()),
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Record::Free),
            Err(e) => Err(self.io("read", &path, e)),
        }
    }

    fn write(&self, vf: PciAddress, holder: &Holder) -> Result<()> {
        let path = self.record_path(vf);
        let json = serde_json::to_vec(holder).map_err(|e| AllocError::CorruptRecord {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &json, 0o600, Durability::Durable)
            .map_err(|e| self.io("write", &path, e))
    }

    fn remove(&self, vf: PciAddress) -> Result<()> {
        let path = self.record_path(vf);
        remove_if_exists(&path)
            .map(|_| ())
            .map_err(|e| self.io("remove", &path, e))
    }

    fn records(&self) -> Result<Vec<(PciAddress, Record)>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| self.io("list", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.io("list", &self.dir, e))?;
            let Some(vf) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<PciAddress>().ok())
            else {
                continue;
            };
            out.push((vf, self.read(vf)?));
        }
        out.sort_by_key(|(vf, _)| *vf);
        Ok(out)
    }
}

fn check_holder(h: &Holder) -> Result<()> {
    if h.container_id.is_empty() {
        return Err(AllocError::InvalidHolder("empty containerID"));
    }
    if h.ifname.is_empty() {
        return Err(AllocError::InvalidHolder("empty ifname"));
    }
    if h.netns.is_empty() {
        return Err(AllocError::InvalidHolder("empty netns"));
    }
    Ok(())
}

fn same_attachment(a: &Holder, b: &Holder) -> bool {
    a.container_id == b.container_id && a.ifname == b.ifname
}

impl Holder {
    /// Whether the holder's netns path is gone (its record is then stale and may be taken over).
    pub fn is_stale(&self) -> bool {
        stale(self)
    }
}

/// A record is stale when its netns path is gone (checked without following into it).
fn stale(h: &Holder) -> bool {
    matches!(fs::symlink_metadata(&h.netns), Err(e) if e.kind() == ErrorKind::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakePf, FakeSysfs};
    use std::sync::{Arc, Barrier};

    struct Env {
        dir: tempfile::TempDir,
        fake: FakeSysfs,
        alloc: VfAllocator,
    }

    fn env(num_vfs: u32) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path().join("root")).unwrap();
        fake.add_pf(&FakePf::igb("ens1", 1, num_vfs)).unwrap();
        let alloc = VfAllocator::new(dir.path().join("state/sriov"), fake.sysfs());
        Env { dir, fake, alloc }
    }

    impl Env {
        /// A holder whose netns path exists (a plain file stands in for a bind-mounted netns).
        fn live(&self, c: &str) -> Holder {
            let netns = self.dir.path().join(format!("netns-{c}"));
            fs::write(&netns, "").unwrap();
            Holder {
                container_id: c.into(),
                ifname: "net1".into(),
                netns: netns.to_string_lossy().into_owned(),
            }
        }
    }

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn by_device_id_taken_refused_same_holder_ok() {
        let e = env(2);
        let vf = pci("0000:01:10.2");
        let a = e.live("a");
        assert_eq!(e.alloc.allocate_device(vf, &a).unwrap(), vf);
        assert_eq!(e.alloc.holder(vf).unwrap(), Some(a.clone()));
        // The record is JSON with the sriov-cni-style keys, in a file named by the PCI address.
        let rec: serde_json::Value =
            serde_json::from_slice(&fs::read(e.alloc.dir().join("0000:01:10.2")).unwrap()).unwrap();
        assert_eq!(rec["containerID"], "a");
        assert_eq!(rec["ifname"], "net1");
        assert_eq!(rec["netns"], a.netns.as_str());
        // Same attachment again: fine (a retried ADD).
        assert_eq!(e.alloc.allocate_device(vf, &a).unwrap(), vf);
        let b = e.live("b");
        let err = e.alloc.allocate_device(vf, &b).unwrap_err();
        assert!(
            matches!(&err, AllocError::Taken { holder, .. } if *holder == a),
            "{err}"
        );
        assert!(
            err.to_string().contains("0000:01:10.2") && err.to_string().contains("container a")
        );
        // Another ifname of the same container is another attachment.
        let a2 = Holder {
            ifname: "net2".into(),
            ..a.clone()
        };
        assert!(matches!(
            e.alloc.allocate_device(vf, &a2),
            Err(AllocError::Taken { .. })
        ));
        assert_eq!(e.alloc.holder(vf).unwrap(), Some(a));
    }

    #[test]
    fn bad_device_ids() {
        let e = env(1);
        let h = e.live("a");
        assert!(matches!(
            e.alloc.allocate_device(pci("0000:01:00.0"), &h),
            Err(AllocError::NotAVf(_))
        ));
        assert!(matches!(
            e.alloc.allocate_device(pci("0000:05:00.0"), &h),
            Err(AllocError::NoSuchDevice(_))
        ));
        let empty = Holder {
            netns: String::new(),
            ..h.clone()
        };
        assert!(matches!(
            e.alloc.allocate_device(pci("0000:01:10.0"), &empty),
            Err(AllocError::InvalidHolder(_))
        ));
        assert!(matches!(
            e.alloc.allocate_from_pf("nosuch", &h),
            Err(AllocError::Sysfs(_))
        ));
        assert!(e.alloc.list().unwrap().is_empty());
    }

    #[test]
    fn by_pf_takes_free_vfs_in_order_then_refuses() {
        let e = env(3);
        let (a, b, c, d) = (e.live("a"), e.live("b"), e.live("c"), e.live("d"));
        // VF 1 taken by deviceID first; VF 2 bound to vfio-pci (a DPDK VF) is never handed out by PF name.
        e.alloc.allocate_device(pci("0000:01:10.2"), &a).unwrap();
        e.fake
            .relink(
                pci("0000:01:10.4"),
                "driver",
                "../../../../bus/pci/drivers/vfio-pci",
            )
            .unwrap();
        fs::create_dir_all(e.fake.root().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
        assert_eq!(
            e.alloc.allocate_from_pf("ens1", &b).unwrap(),
            pci("0000:01:10.0")
        );
        assert_eq!(
            e.alloc.allocate_from_pf("ens1", &b).unwrap(),
            pci("0000:01:10.0"),
            "idempotent"
        );
        let err = e.alloc.allocate_from_pf("ens1", &c).unwrap_err();
        assert!(
            matches!(err, AllocError::NoFreeVf { total: 3, .. }),
            "{err}"
        );
        // Rebinding to igbvf makes it available; an unbound VF is available too.
        e.fake.unlink(pci("0000:01:10.4"), "driver").unwrap();
        assert_eq!(
            e.alloc.allocate_from_pf("ens1", &c).unwrap(),
            pci("0000:01:10.4")
        );
        assert!(matches!(
            e.alloc.allocate_from_pf("ens1", &d),
            Err(AllocError::NoFreeVf { .. })
        ));
        // A VF given back is handed out again.
        e.alloc.release(pci("0000:01:10.2")).unwrap();
        assert_eq!(
            e.alloc.allocate_from_pf("ens1", &d).unwrap(),
            pci("0000:01:10.2")
        );
    }

    #[test]
    fn sriov_off_is_its_own_error() {
        let e = env(0);
        let err = e.alloc.allocate_from_pf("ens1", &e.live("a")).unwrap_err();
        assert!(matches!(err, AllocError::SriovDisabled { .. }), "{err}");
        assert!(err.to_string().contains("ens1"));
    }

    #[test]
    fn stale_record_is_taken_over() {
        let e = env(1);
        let vf = pci("0000:01:10.0");
        let a = e.live("a");
        e.alloc.allocate_device(vf, &a).unwrap();
        let b = e.live("b");
        assert!(matches!(
            e.alloc.allocate_from_pf("ens1", &b),
            Err(AllocError::NoFreeVf { .. })
        ));
        fs::remove_file(&a.netns).unwrap();
        assert_eq!(e.alloc.allocate_from_pf("ens1", &b).unwrap(), vf);
        assert_eq!(e.alloc.holder(vf).unwrap(), Some(b.clone()));
        fs::remove_file(&b.netns).unwrap();
        let c = e.live("c");
        assert_eq!(e.alloc.allocate_device(vf, &c).unwrap(), vf);
        assert_eq!(e.alloc.holder(vf).unwrap(), Some(c));
    }

    #[test]
    fn claims_name_the_stale_holder_replaced() {
        let e = env(2);
        let vf = pci("0000:01:10.0");
        let a = e.live("a");
        let claim = e.alloc.claim_device(vf, &a).unwrap();
        assert_eq!((claim.vf, claim.replaced), (vf, None));
        // Again for the same attachment: nothing replaced.
        assert_eq!(e.alloc.claim_device(vf, &a).unwrap().replaced, None);
        assert!(!a.is_stale());
        fs::remove_file(&a.netns).unwrap();
        assert!(a.is_stale());
        let b = e.live("b");
        let claim = e.alloc.claim_from_pf("ens1", &b).unwrap();
        assert_eq!(claim.vf, vf, "the stale VF 0 comes first");
        assert_eq!(claim.replaced, Some(a.clone()));
        assert_eq!(e.alloc.claim_from_pf("ens1", &b).unwrap().replaced, None);
        fs::remove_file(&b.netns).unwrap();
        let c = e.live("c");
        assert_eq!(
            e.alloc.claim_device(vf, &c).unwrap().replaced,
            Some(b.clone())
        );
        // Handing it back to b (say, restoring b's VF failed).
        assert!(e.alloc.reassign(vf, &c, &b).unwrap());
        assert_eq!(e.alloc.holder(vf).unwrap(), Some(b.clone()));
        assert!(
            !e.alloc.reassign(vf, &c, &b).unwrap(),
            "c no longer holds it"
        );
        assert!(e.alloc.reassign(vf, &b, &c).unwrap());
        // A free VF replaces nobody.
        let d = e.live("d");
        let claim = e.alloc.claim_from_pf("ens1", &d).unwrap();
        assert_eq!((claim.vf, claim.replaced), (pci("0000:01:10.2"), None));
    }

    #[test]
    fn corrupt_record_is_held_until_gc() {
        let e = env(1);
        let vf = pci("0000:01:10.0");
        fs::create_dir_all(e.alloc.dir()).unwrap();
        fs::write(e.alloc.dir().join("0000:01:10.0"), "{\"containerID\":").unwrap();
        let a = e.live("a");
        let err = e.alloc.allocate_device(vf, &a).unwrap_err();
        assert!(matches!(err, AllocError::CorruptRecord { .. }), "{err}");
        assert!(err.to_string().contains("0000:01:10.0"));
        assert!(matches!(
            e.alloc.allocate_from_pf("ens1", &a),
            Err(AllocError::NoFreeVf { .. })
        ));
        assert_eq!(e.alloc.gc(&[]).unwrap(), [vf]);
        assert_eq!(e.alloc.allocate_from_pf("ens1", &a).unwrap(), vf);
    }

    #[test]
    fn release_is_idempotent_and_by_holder() {
        let e = env(3);
        let vf = pci("0000:01:10.0");
        e.alloc.release(vf).unwrap();
        let a = e.live("a");
        e.alloc.allocate_device(vf, &a).unwrap();
        e.alloc.release(vf).unwrap();
        e.alloc.release(vf).unwrap();
        assert_eq!(e.alloc.holder(vf).unwrap(), None);
        e.alloc.allocate_from_pf("ens1", &a).unwrap();
        let b = e.live("b");
        e.alloc.allocate_from_pf("ens1", &b).unwrap();
        assert_eq!(e.alloc.release_holder("a", "net1").unwrap(), [vf]);
        assert!(e.alloc.release_holder("a", "net1").unwrap().is_empty());
        assert_eq!(e.alloc.list().unwrap(), [(pci("0000:01:10.2"), b)]);
    }

    #[test]
    fn gc_keeps_only_valid_attachments() {
        let e = env(3);
        let (a, b, c) = (e.live("a"), e.live("b"), e.live("c"));
        for h in [&a, &b, &c] {
            e.alloc.allocate_from_pf("ens1", h).unwrap();
        }
        // Files that are not records are left alone.
        fs::write(e.alloc.dir().join("README"), "x").unwrap();
        let valid = [
            ("b".to_string(), "net1".to_string()),
            ("a".to_string(), "eth0".to_string()),
        ];
        let freed = e.alloc.gc(&valid).unwrap();
        assert_eq!(freed, [pci("0000:01:10.0"), pci("0000:01:10.4")]);
        assert_eq!(e.alloc.list().unwrap(), [(pci("0000:01:10.2"), b)]);
        assert!(e.alloc.dir().join("README").exists());
        assert!(e.alloc.dir().join("lock").exists());
        assert!(e.alloc.gc(&valid).unwrap().is_empty());
    }

    #[test]
    fn concurrent_allocations_never_share_a_vf() {
        const VFS: u32 = 4;
        const THREADS: usize = 8;
        for round in 0..5 {
            let e = env(VFS);
            let holders: Vec<Holder> = (0..THREADS)
                .map(|i| e.live(&format!("r{round}c{i}")))
                .collect();
            let barrier = Arc::new(Barrier::new(THREADS));
            let results: Vec<Result<PciAddress>> = std::thread::scope(|s| {
                let handles: Vec<_> = holders
                    .iter()
                    .map(|h| {
                        let barrier = barrier.clone();
                        // Each thread its own allocator, as separate CNI processes would have.
                        let alloc = VfAllocator::new(e.alloc.dir(), e.fake.sysfs());
                        s.spawn(move || {
                            barrier.wait();
                            alloc.allocate_from_pf("ens1", h)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let mut got: Vec<PciAddress> = results
                .iter()
                .filter_map(|r| r.as_ref().ok().copied())
                .collect();
            assert_eq!(got.len(), VFS as usize, "{results:?}");
            got.sort();
            got.dedup();
            assert_eq!(
                got.len(),
                VFS as usize,
                "a VF was handed out twice: {results:?}"
            );
            assert!(results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|err| matches!(err, AllocError::NoFreeVf { .. })));
            // Every winner's record names it.
            for (h, r) in holders.iter().zip(&results) {
                if let Ok(vf) = r {
                    assert_eq!(e.alloc.holder(*vf).unwrap().as_ref(), Some(h));
                }
            }
        }
    }

    #[test]
    fn concurrent_allocations_of_one_device_id() {
        let e = env(1);
        let vf = pci("0000:01:10.0");
        let holders: Vec<Holder> = (0..6).map(|i| e.live(&format!("c{i}"))).collect();
        let barrier = Arc::new(Barrier::new(holders.len()));
        let ok = std::thread::scope(|s| {
            let hs: Vec<_> = holders
                .iter()
                .map(|h| {
                    let barrier = barrier.clone();
                    let alloc = e.alloc.clone();
                    s.spawn(move || {
                        barrier.wait();
                        alloc.allocate_device(vf, h).is_ok()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .filter(|ok| *ok)
                .count()
        });
        assert_eq!(ok, 1);
    }
}

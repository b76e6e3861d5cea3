//! What the DPDK delegate remembers between ADD and DEL: one record per attachment, a [`Binding`] (a
//! `multus_core::record` kind, `dpdk-binding`) in a [`Store`] under the state directory (default
//! `/var/lib/cni/multus/dpdk`, `<containerID>@<ifname>.json`): the device it bound and what that device was
//! before ([`crate::bind::Original`]), and for an SR-IOV VF the VF's own record (what `multus_sriov::vf`
//! needs to give the VF back), so that a DPDK attachment on a VF has one record, not two.
//!
//! The record goes through [`Phase`]s, each written whole before the next step: `acquired` (a VF allocated
//! and its settings applied on the PF; the device not touched yet), `binding` (written before the device is
//! unbound: a plugin killed half-way leaves what DEL needs to restore it), `bound`. The store's lock
//! (bounded by [`LOCK_TIMEOUT`]) serializes the binds of one host.
//!
//! ```
//! use multus_core::cni::AttachmentRef;
//! use multus_core::fs::Durability;
//! use multus_dpdk::state::{Binding, Phase, Store};
//! # let dir = tempfile::tempdir().unwrap();
//! let store = Store::new(dir.path());
//! let at = AttachmentRef { container_id: "c1".into(), ifname: "net1".into() };
//! let b = Binding {
//!     netns: "/var/run/netns/p1".into(),
//!     pci: "0000:01:10.0".into(),
//!     pf: None,
//!     original: Default::default(),
//!     phase: Phase::Binding,
//!     vfio_dev: String::new(),
//!     group: None,
//!     noiommu: false,
//!     vf: None,
//! };
//! store.save(&at, &b, Durability::Durable).unwrap();
//! assert_eq!(store.load(&at).unwrap(), Some(b));
//! ```

use std::time::Duration;

use multus_core::cni::{AttachmentRef, CniError};
use multus_core::fs::Durability;
use multus_core::record::{Record, RecordStore};
use multus_sriov::cache::{VfKeeper, VfRecord};
use serde::{Deserialize, Serialize};

use crate::bind::Original;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/multus/dpdk";

/// How long a DPDK ADD, DEL or GC waits for another one to release the store's lock (a bind may wait seconds
/// for its group device).
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an attachment's binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A VF is allocated and its settings applied on the PF; the device is not touched yet.
    Acquired,
    /// The device is being bound (or a bind was interrupted).
    Binding,
    /// The device is on vfio-pci.
    Bound,
}

/// One attachment's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The container's netns path (may be empty).
    #[serde(default)]
    pub netns: String,
    /// The device's PCI address.
    pub pci: String,
    /// Its PF, for a VF.
    #[serde(rename = "pf", default, skip_serializing_if = "Option::is_none")]
    pub pf: Option<String>,
    /// What it was before.
    pub original: Original,
    /// Acquired, binding or bound.
    pub phase: Phase,
    /// Its vfio group device (`/dev/vfio/<n>`), once bound.
    #[serde(
        rename = "vfioDevice",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub vfio_dev: String,
    /// Its IOMMU group number, once bound.
    #[serde(
        rename = "iommuGroup",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub group: Option<u32>,
    /// Bound in unsafe no-IOMMU mode.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub noiommu: bool,
    /// For an SR-IOV VF: its allocation, original PF-side settings and netdev (`multus_sriov::vf`'s record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf: Option<VfRecord>,
}

impl Record for Binding {
    const KIND: &'static str = "dpdk-binding";
    const VERSION: u32 = 1;
}

impl Binding {
    /// The record of a VF just acquired, before its device is touched.
    pub fn acquired(vf: &VfRecord) -> Self {
        Binding {
            netns: vf.netns.clone(),
            pci: vf.vf.to_string(),
            pf: Some(vf.pf.to_string()),
            original: Original::default(),
            phase: Phase::Acquired,
            vfio_dev: String::new(),
            group: None,
            noiommu: false,
            vf: Some(vf.clone()),
        }
    }
}

/// The DPDK delegate's records.
pub type Store = RecordStore<Binding>;

/// The [`Binding`] record as the keeper of its VF's record ([`VfKeeper`]): saving the VF's record creates the
/// binding (phase `acquired`) or updates it; forgetting it removes a binding that never touched the device,
/// and only drops the VF part of one that did (its device is the binding's to restore).
#[derive(Debug, Clone, Copy)]
pub struct VfInBinding<'a>(pub &'a Store);

impl VfKeeper for VfInBinding<'_> {
    fn load_vf(&self, at: &AttachmentRef) -> Result<Option<VfRecord>, CniError> {
        Ok(self.0.load(at)?.and_then(|b| b.vf))
    }

    fn save_vf(&self, rec: &VfRecord) -> Result<(), CniError> {
        let at = rec.attachment();
        let mut b = self.0.load(&at)?.unwrap_or_else(|| Binding::acquired(rec));
        b.vf = Some(rec.clone());
        Ok(self.0.save(&at, &b, Durability::Durable)?)
    }

    fn forget_vf(&self, at: &AttachmentRef) -> Result<(), CniError> {
        match self.0.load(at)? {
            None => Ok(()),
            Some(b) if b.phase == Phase::Acquired => {
                self.0.remove(at).map(|_| ()).map_err(Into::into)
            }
            Some(mut b) => {
                b.vf = None;
                Ok(self.0.save(at, &b, Durability::Durable)?)
            }
        }
    }

    fn describe(&self, at: &AttachmentRef) -> String {
        match self.0.path(at) {
            Ok(p) => p.display().to_string(),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vf_rec() -> VfRecord {
        VfRecord {
            network: "n".into(),
            container_id: "c1".into(),
            ifname: "net1".into(),
            netns: "/var/run/netns/x".into(),
            vf: "0000:01:10.0".parse().unwrap(),
            vf_index: 0,
            pf: "0000:01:00.0".parse().unwrap(),
            pf_name: "ens1".into(),
            original: Default::default(),
            changes: vec![],
            netdev: None,
            device_info_file: None,
        }
    }

    #[test]
    fn one_record_carries_the_vf_and_the_binding() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().join("dpdk"));
        let keeper = VfInBinding(&s);
        let rec = vf_rec();
        let at = rec.attachment();
        assert_eq!(keeper.load_vf(&at).unwrap(), None);
        keeper.save_vf(&rec).unwrap();
        let b = s.load(&at).unwrap().unwrap();
        assert_eq!((b.phase, b.pci.as_str()), (Phase::Acquired, "0000:01:10.0"));
        assert_eq!(keeper.load_vf(&at).unwrap(), Some(rec.clone()));
        // Forgetting the VF of a record that never touched the device removes it.
        keeper.forget_vf(&at).unwrap();
        assert_eq!(s.load(&at).unwrap(), None);
        // Of a bound one: only the VF part goes.
        keeper.save_vf(&rec).unwrap();
        let mut b = s.load(&at).unwrap().unwrap();
        b.phase = Phase::Bound;
        b.original.driver = Some("igbvf".into());
        s.save(&at, &b, Durability::AtomicOnly).unwrap();
        keeper.forget_vf(&at).unwrap();
        let left = s.load(&at).unwrap().unwrap();
        assert_eq!((left.phase, left.vf.is_none()), (Phase::Bound, true));
        assert_eq!(left.original.driver.as_deref(), Some("igbvf"));
        keeper
            .forget_vf(&AttachmentRef {
                container_id: "none".into(),
                ifname: "net1".into(),
            })
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(s.path(&at).unwrap()).unwrap()).unwrap();
        assert_eq!(v["kind"], "dpdk-binding");
        assert_eq!(v["record"]["phase"], "bound");
        assert_eq!(v["record"]["original"]["driver"], "igbvf");
        assert!(keeper.describe(&at).ends_with("c1@net1.json"));
    }
}

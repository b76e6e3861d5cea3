//! The per-attachment record of an SR-IOV VF: what ADD found before it changed anything, so that DEL (and GC,
//! and an ADD taking over a VF whose pod vanished) can put it back exactly.
//!
//! A [`VfRecord`] is a `multus_core::record::Record` (kind `sriov-vf`): the `sriov` delegate keeps it in its
//! own [`Cache`], a `RecordStore` under `dataDir` (`<dataDir>/<containerID>@<ifname>.json`); a delegate that
//! keeps more per attachment (the `dpdk` delegate's binding) carries it inside its own record instead, so that
//! one attachment has one record. [`VfKeeper`] is where [`crate::vf`] finds, saves and forgets it. The
//! allocation records ([`crate::alloc`]) live next to it, under `<dataDir>/pci/`.
//!
//! ```
//! use multus_core::cni::AttachmentRef;
//! use multus_sriov::cache::{Cache, VfKeeper, VfRecord};
//! # let dir = tempfile::tempdir().unwrap();
//! let cache = Cache::new(dir.path());
//! let rec = VfRecord {
//!     network: "sriov-net".into(),
//!     container_id: "c1".into(),
//!     ifname: "net1".into(),
//!     netns: "/var/run/netns/pod1".into(),
//!     vf: "0000:01:10.0".parse().unwrap(),
//!     vf_index: 0,
//!     pf: "0000:01:00.0".parse().unwrap(),
//!     pf_name: "ens1".into(),
//!     original: Default::default(),
//!     changes: vec![],
//!     netdev: None,
//!     device_info_file: None,
//! };
//! cache.save_vf(&rec).unwrap();
//! let at = rec.attachment();
//! assert_eq!(cache.load_vf(&at).unwrap(), Some(rec));
//! cache.forget_vf(&at).unwrap();
//! assert_eq!(cache.load_vf(&at).unwrap(), None);
//! ```

use serde::{Deserialize, Serialize};

use crate::config::VfChange;
use crate::vf_netlink::VfSettings;
use crate::PciAddress;
use multus_core::cni::{AttachmentRef, CniError};
use multus_core::fs::Durability;
pub use multus_core::netlink::netdev::NetdevState;
use multus_core::record::{Record, RecordStore};

/// The default state directory (sriov-cni's).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/sriov";

/// What one attachment holds and changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VfRecord {
    /// The network name (GC only touches its own network's attachments).
    pub network: String,
    /// `CNI_CONTAINERID`.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_NETNS` at ADD.
    pub netns: String,
    /// The VF.
    pub vf: PciAddress,
    /// Its index on the PF (`virtfnN`).
    pub vf_index: u32,
    /// Its PF.
    pub pf: PciAddress,
    /// The PF's netdev.
    pub pf_name: String,
    /// The VF's settings on the PF before ADD.
    pub original: VfSettings,
    /// The settings ADD changes (in the order applied); DEL restores these.
    pub changes: Vec<VfChange>,
    /// The VF's netdev before ADD.
    pub netdev: Option<NetdevState>,
    /// The device-info file ADD wrote, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info_file: Option<String>,
}

impl VfRecord {
    /// The attachment the record is of.
    pub fn attachment(&self) -> AttachmentRef {
        AttachmentRef {
            container_id: self.container_id.clone(),
            ifname: self.ifname.clone(),
        }
    }
}

impl Record for VfRecord {
    const KIND: &'static str = "sriov-vf";
    const VERSION: u32 = 1;
}

/// The `sriov` delegate's records, one per attachment, under its state directory.
pub type Cache = RecordStore<VfRecord>;

/// Where an attachment's [`VfRecord`] is kept between ADD and DEL: the `sriov` delegate's [`Cache`], or
/// another delegate's own per-attachment record that carries it (the `dpdk` binding's).
pub trait VfKeeper: Send + Sync {
    /// The attachment's record; `None` when it has none. An unreadable record is an error.
    fn load_vf(&self, at: &AttachmentRef) -> Result<Option<VfRecord>, CniError>;
    /// Saves the record (of `rec.attachment()`), whole, before the VF is changed.
    fn save_vf(&self, rec: &VfRecord) -> Result<(), CniError>;
    /// Forgets the attachment's record once its VF is given back (or was never changed). Idempotent.
    fn forget_vf(&self, at: &AttachmentRef) -> Result<(), CniError>;
    /// Where the record is, for messages.
    fn describe(&self, at: &AttachmentRef) -> String;
}

impl VfKeeper for Cache {
    fn load_vf(&self, at: &AttachmentRef) -> Result<Option<VfRecord>, CniError> {
        Ok(self.load(at)?)
    }

    fn save_vf(&self, rec: &VfRecord) -> Result<(), CniError> {
        Ok(self.save(&rec.attachment(), rec, Durability::Durable)?)
    }

    fn forget_vf(&self, at: &AttachmentRef) -> Result<(), CniError> {
        self.remove(at).map(|_| ()).map_err(CniError::from)
    }

    fn describe(&self, at: &AttachmentRef) -> String {
        match self.path(at) {
            Ok(p) => p.display().to_string(),
            Err(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LinkState, VlanConf, VlanProto};
    use multus_core::netlink::MacAddr;

    fn rec(c: &str, i: &str) -> VfRecord {
        VfRecord {
            network: "net".into(),
            container_id: c.into(),
            ifname: i.into(),
            netns: "/var/run/netns/x".into(),
            vf: "0000:01:10.2".parse().unwrap(),
            vf_index: 1,
            pf: "0000:01:00.0".parse().unwrap(),
            pf_name: "ens1".into(),
            original: VfSettings {
                mac: MacAddr::default(),
                vlan: VlanConf::default(),
                spoofchk: true,
                trust: false,
                link_state: LinkState::Auto,
                min_tx_rate: 0,
                max_tx_rate: 0,
            },
            changes: vec![
                VfChange::Vlan {
                    from: VlanConf::default(),
                    to: VlanConf {
                        id: 100,
                        qos: 3,
                        proto: VlanProto::Dot1Ad,
                    },
                },
                VfChange::LinkState {
                    from: LinkState::Auto,
                    to: LinkState::Disable,
                },
                VfChange::TxRate {
                    from: (0, 0),
                    to: (0, 100),
                },
                VfChange::Mac {
                    from: MacAddr::default(),
                    to: "02:00:00:00:00:01".parse().unwrap(),
                },
            ],
            netdev: Some(NetdevState {
                name: "ens1v1".into(),
                mac: "02:aa:00:00:00:01".parse().unwrap(),
                mtu: 1500,
                up: false,
            }),
            device_info_file: Some("/run/devinfo/x".into()),
        }
    }

    #[test]
    fn round_trip_and_format() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path().join("sriov"));
        let r = rec("c1", "net1");
        let at = r.attachment();
        assert_eq!(c.load_vf(&at).unwrap(), None);
        c.save_vf(&r).unwrap();
        assert_eq!(c.load_vf(&at).unwrap(), Some(r.clone()));
        let path = c.path(&at).unwrap();
        assert!(path.ends_with("c1@net1.json"), "{}", path.display());
        assert_eq!(c.describe(&at), path.display().to_string());
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(
            (v["kind"].as_str(), v["version"].as_u64()),
            (Some("sriov-vf"), Some(1))
        );
        let v = &v["record"];
        assert_eq!(v["containerID"], "c1");
        assert_eq!(v["vf"], "0000:01:10.2");
        assert_eq!(v["vfIndex"], 1);
        assert_eq!(v["original"]["mac"], "00:00:00:00:00:00");
        assert_eq!(v["original"]["linkState"], "auto");
        assert_eq!(v["changes"][0]["vlan"]["to"]["proto"], "802.1ad");
        assert_eq!(v["changes"][1]["linkState"]["to"], "disable");
        assert_eq!(v["changes"][2]["txRate"]["to"], serde_json::json!([0, 100]));
        assert_eq!(v["netdev"]["name"], "ens1v1");
        assert_eq!(c.list().records.len(), 1);
        c.forget_vf(&at).unwrap();
        c.forget_vf(&at).unwrap();
        assert_eq!(c.load_vf(&at).unwrap(), None);
    }
}

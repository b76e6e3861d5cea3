//! The per-attachment cache: what ADD found before it changed anything, so that DEL (and GC, and an ADD
//! taking over a VF whose pod vanished) can put it back exactly.
//!
//! One JSON file per attachment, `<dataDir>/<containerID>-<ifname>.json` (as sriov-cni's
//! `/var/lib/cni/sriov/<containerID>-<ifname>`, with its own content), written to a temp file and renamed, so
//! it appears whole. The file also names the attachment, so two attachments whose names join to the same file
//! name (`a-b` + `c`, `a` + `b-c`) are told apart: a record that names another attachment is not returned.
//! The allocation records ([`crate::alloc`]) live next to it, under `<dataDir>/pci/`.
//!
//! ```
//! use multus_sriov::cache::{Cache, VfRecord};
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
//! cache.save(&rec).unwrap();
//! assert_eq!(cache.load("c1", "net1").unwrap(), Some(rec));
//! cache.remove("c1", "net1").unwrap();
//! assert_eq!(cache.load("c1", "net1").unwrap(), None);
//! ```

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::VfChange;
use crate::vf_netlink::VfSettings;
use crate::PciAddress;
pub use multus_core::netlink::netdev::NetdevState;

/// The default state directory (sriov-cni's).
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/sriov";

/// The version of the record format this crate writes.
pub const RECORD_VERSION: u32 = 1;

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

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    #[serde(flatten)]
    record: VfRecord,
}

/// Why a cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file operation failed.
    #[error("SR-IOV cache: {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A record that does not parse, or of an unknown version.
    #[error("SR-IOV cache: {path} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<CacheError> for multus_core::cni::CniError {
    fn from(e: CacheError) -> Self {
        multus_core::cni::CniError::io(e.to_string())
    }
}

/// The cache under a state directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache under `dir` (created on first save, mode 0700).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of an attachment.
    pub fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{ifname}.json"))
    }

    fn io(op: &'static str, path: &Path, source: io::Error) -> CacheError {
        CacheError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Writes an attachment's record (replacing any).
    pub fn save(&self, rec: &VfRecord) -> Result<(), CacheError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Self::io("create", &self.dir, e))?;
        let path = self.path(&rec.container_id, &rec.ifname);
        let tmp = self
            .dir
            .join(format!(".{}-{}.tmp", rec.container_id, rec.ifname));
        let json = serde_json::to_vec_pretty(&OnDisk {
            version: RECORD_VERSION,
            record: rec.clone(),
        })
        .map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Self::io("create", &tmp, e))?;
        f.write_all(&json)
            .and_then(|()| f.sync_all())
            .map_err(|e| Self::io("write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Self::io("rename", &path, e))
    }

    /// The record of an attachment; `None` when there is none (or the file is another attachment's).
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<VfRecord>, CacheError> {
        let path = self.path(container_id, ifname);
        match Self::read(&path)? {
            Some(r) if r.container_id == container_id && r.ifname == ifname => Ok(Some(r)),
            _ => Ok(None),
        }
    }

    /// Whether a file exists under an attachment's name (its record, or another attachment's whose names
    /// join the same way).
    pub fn exists(&self, container_id: &str, ifname: &str) -> bool {
        fs::symlink_metadata(self.path(container_id, ifname)).is_ok()
    }

    fn read(path: &Path) -> Result<Option<VfRecord>, CacheError> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io("read", path, e)),
        };
        let corrupt = |reason: String| CacheError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let d: OnDisk = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if d.version != RECORD_VERSION {
            return Err(corrupt(format!(
                "record version {} (this plugin reads {RECORD_VERSION})",
                d.version
            )));
        }
        Ok(Some(d.record))
    }

    /// Removes an attachment's record. Idempotent.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), CacheError> {
        let path = self.path(container_id, ifname);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Self::io("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// Every record (by file name); unreadable ones as errors, so GC can report them. Empty when the
    /// directory does not exist.
    pub fn list(&self) -> Result<Vec<Result<VfRecord, CacheError>>, CacheError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("list", &self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Self::io("list", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".json") && !name.starts_with('.') {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|n| Self::read(&self.dir.join(n)).transpose())
            .collect())
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
        assert_eq!(c.load("c1", "net1").unwrap(), None);
        assert!(c.list().unwrap().is_empty());
        let r = rec("c1", "net1");
        c.save(&r).unwrap();
        assert_eq!(c.load("c1", "net1").unwrap(), Some(r.clone()));
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(c.path("c1", "net1")).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["containerID"], "c1");
        assert_eq!(v["vf"], "0000:01:10.2");
        assert_eq!(v["vfIndex"], 1);
        assert_eq!(v["original"]["mac"], "00:00:00:00:00:00");
        assert_eq!(v["original"]["linkState"], "auto");
        assert_eq!(v["changes"][0]["vlan"]["to"]["proto"], "802.1ad");
        assert_eq!(v["changes"][1]["linkState"]["to"], "disable");
        assert_eq!(v["changes"][2]["txRate"]["to"], serde_json::json!([0, 100]));
        assert_eq!(v["netdev"]["name"], "ens1v1");
        assert!(c.path("c1", "net1").ends_with("c1-net1.json"));
        // Only the record and no temp file.
        let names: Vec<_> = fs::read_dir(c.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["c1-net1.json"]);
        c.remove("c1", "net1").unwrap();
        c.remove("c1", "net1").unwrap();
        assert_eq!(c.load("c1", "net1").unwrap(), None);
    }

    #[test]
    fn names_that_join_alike_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path());
        c.save(&rec("a-b", "c")).unwrap();
        assert!(c.exists("a", "b-c"));
        assert_eq!(c.load("a", "b-c").unwrap(), None);
        assert!(c.load("a-b", "c").unwrap().is_some());
    }

    #[test]
    fn corrupt_and_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        let c = Cache::new(d.path());
        c.save(&rec("c1", "net1")).unwrap();
        fs::write(c.path("c2", "net1"), "{").unwrap();
        fs::write(d.path().join("README"), "x").unwrap();
        fs::create_dir(d.path().join("pci")).unwrap();
        let e = c.load("c2", "net1").unwrap_err();
        assert!(e.to_string().contains("c2-net1.json"), "{e}");
        let mut v: serde_json::Value =
            serde_json::from_slice(&fs::read(c.path("c1", "net1")).unwrap()).unwrap();
        v["version"] = 9.into();
        fs::write(c.path("c3", "net1"), v.to_string()).unwrap();
        let e = c.load("c3", "net1").unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");
        let all = c.list().unwrap();
        assert_eq!(all.len(), 3);
        assert!(all[0].is_ok() && all[1].is_err() && all[2].is_err());
    }
}

//! What the DPDK delegate remembers between ADD and DEL: per attachment (container ID + ifname), the device it
//! bound and what that device was before ([`crate::bind::Original`]), so that DEL can give it back.
//!
//! Layout of the state directory (default `/var/lib/cni/multus/dpdk`, created mode 0700 on first use):
//!
//! - `lock`: empty; every operation holds `flock(LOCK_EX)` on it.
//! - `<containerID>@<ifname>.json`: one [`Record`]. Written (temp file + rename, so it appears whole) *before* the
//!   device is touched, with phase `binding`, and again with phase `bound` once it is on vfio-pci: a plugin
//!   killed half-way leaves a record that DEL uses to restore the device.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use multus_core::cni::CniError;
use serde::{Deserialize, Serialize};

use crate::bind::Original;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/multus/dpdk";

/// Where an attachment's binding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The device is being bound (or a bind was interrupted).
    Binding,
    /// The device is on vfio-pci.
    Bound,
}

/// One attachment's device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The CNI container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The attachment's interface name.
    pub ifname: String,
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
    /// Binding or bound.
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
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file operation failed.
    #[error("DPDK state: {op} {path}: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A record does not parse.
    #[error("DPDK state: record {path} is unreadable: {reason}")]
    Corrupt {
        /// The record.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The container ID or ifname cannot name a record.
    #[error("DPDK state: invalid {what} {value:?}")]
    InvalidKey {
        /// `containerID` or `ifname`.
        what: &'static str,
        /// The value.
        value: String,
    },
}

impl From<StateError> for CniError {
    fn from(e: StateError) -> Self {
        match e {
            StateError::InvalidKey { .. } => CniError::invalid_env(e.to_string()),
            _ => CniError::io(e.to_string()),
        }
    }
}

/// Result of a state operation.
pub type Result<T> = std::result::Result<T, StateError>;

/// The state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The held lock; released on drop.
#[derive(Debug)]
pub struct Lock(#[allow(dead_code)] File);

impl Store {
    /// Records under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io(op: &'static str, path: &Path, source: io::Error) -> StateError {
        StateError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// Takes the store's lock (creating the directory).
    pub fn lock(&self) -> Result<Lock> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Self::io("create", &self.dir, e))?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Self::io("open", &path, e))?;
        loop {
            match file.lock() {
                Ok(()) => return Ok(Lock(file)),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(Self::io("flock", &path, e)),
            }
        }
    }

    /// The record file of an attachment.
    pub fn path(&self, container_id: &str, ifname: &str) -> Result<PathBuf> {
        let bad = |what, value: &str| StateError::InvalidKey {
            what,
            value: value.to_string(),
        };
        if container_id.is_empty()
            || container_id.starts_with('.')
            || container_id.contains(['/', '@', '\0'])
        {
            return Err(bad("containerID", container_id));
        }
        if ifname.is_empty() || ifname.contains(['/', '\0']) {
            return Err(bad("ifname", ifname));
        }
        Ok(self.dir.join(format!("{container_id}@{ifname}.json")))
    }

    /// An attachment's record, `None` when there is none. Hold the lock.
    pub fn get(&self, container_id: &str, ifname: &str) -> Result<Option<Record>> {
        let path = self.path(container_id, ifname)?;
        read_record(&path)
    }

    /// Writes a record whole (temp file + rename). Hold the lock.
    pub fn put(&self, r: &Record) -> Result<()> {
        let path = self.path(&r.container_id, &r.ifname)?;
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec_pretty(r).map_err(|e| StateError::Corrupt {
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

    /// Removes an attachment's record; idempotent. Hold the lock.
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(container_id, ifname)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Self::io("remove", &path, e)),
            _ => Ok(()),
        }
    }

    /// Every readable record, by file name; unreadable ones are logged and skipped. An absent directory has
    /// none. Hold the lock (or accept a racy view, as a listing does).
    pub fn list(&self) -> Result<Vec<Record>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io("read", &self.dir, e)),
        };
        let mut paths = Vec::new();
        for e in rd {
            let e = e.map_err(|e| Self::io("read", &self.dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".json") && name.contains('@') {
                paths.push(e.path());
            }
        }
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            match read_record(&p) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e}; skipped"),
            }
        }
        Ok(out)
    }
}

fn read_record(path: &Path) -> Result<Option<Record>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Store::io("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cid: &str, ifname: &str, pci: &str) -> Record {
        Record {
            container_id: cid.into(),
            ifname: ifname.into(),
            netns: "/var/run/netns/x".into(),
            pci: pci.into(),
            pf: Some("0000:01:00.0".into()),
            original: Original {
                driver: Some("igbvf".into()),
                netdev: Some("ens1v0".into()),
                mac: Some("02:00:00:00:01:00".parse().unwrap()),
                up: true,
            },
            phase: Phase::Binding,
            vfio_dev: String::new(),
            group: None,
            noiommu: false,
        }
    }

    #[test]
    fn put_get_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path().join("dpdk"));
        assert!(s.list().unwrap().is_empty(), "no directory yet");
        let _l = s.lock().unwrap();
        assert_eq!(s.get("c1", "net1").unwrap(), None);
        let mut r = rec("c1", "net1", "0000:01:10.0");
        s.put(&r).unwrap();
        assert_eq!(s.get("c1", "net1").unwrap(), Some(r.clone()));
        r.phase = Phase::Bound;
        r.vfio_dev = "/dev/vfio/8".into();
        r.group = Some(8);
        s.put(&r).unwrap();
        s.put(&rec("c2", "net1", "0000:01:10.2")).unwrap();
        let l = s.list().unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0], r);
        let text = fs::read_to_string(dir.path().join("dpdk/c1@net1.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["phase"], "bound");
        assert_eq!(v["original"]["driver"], "igbvf");
        assert_eq!(v["vfioDevice"], "/dev/vfio/8");
        s.remove("c1", "net1").unwrap();
        s.remove("c1", "net1").unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
        // A corrupt record is an error on get, skipped by list.
        fs::write(dir.path().join("dpdk/c3@net1.json"), "{").unwrap();
        assert!(matches!(
            s.get("c3", "net1"),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn keys_cannot_escape_or_collide() {
        let s = Store::new("/x");
        for (c, i) in [
            ("", "net1"),
            ("../c", "net1"),
            ("a/b", "net1"),
            ("a@b", "c"),
            (".c", "n"),
            ("c", ""),
            ("c", "a/b"),
        ] {
            let e = s.path(c, i).unwrap_err();
            assert_eq!(CniError::from(e).code.code(), 4, "{c:?} {i:?}");
        }
        assert_eq!(
            s.path("c1", "net@1").unwrap(),
            Path::new("/x/c1@net@1.json")
        );
    }
}

//! The one per-attachment record store: what a plugin must remember between an attachment's ADD and its DEL
//! (the meta-plugin's attachment cache, an SR-IOV VF's saved state, a DPDK device's original driver).
//!
//! - One file per attachment: `<dir>/<containerID>@<ifname>.json`. A container ID cannot hold `@` (CNI spec:
//!   letters, digits, `_`, `.`, `-`), so no two attachments share a file (`<a-b>-<c>` and `<a>-<b-c>` did).
//! - One envelope: `{"kind": .., "version": .., "containerID": .., "ifname": .., "record": {..}}`. A file of
//!   another kind, of a newer version, or naming another attachment is never taken for the one asked for.
//! - One write: [`crate::fs::write_atomic`], so a record appears whole or not at all; a killed writer's temp
//!   file is removed by the next [`RecordStore::list`].
//! - One lock: `<dir>/lock` (flock), taken with a bound, for callers whose change spans several records.
//! - One listing: every readable record, and every unreadable one with the reason; one bad file never hides
//!   the others (a GC must go on past it).
//!
//! ```
//! use multus_core::cni::AttachmentRef;
//! use multus_core::fs::Durability;
//! use multus_core::record::{Record, RecordStore};
//!
//! #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct Binding { pci: String }
//! impl Record for Binding {
//!     const KIND: &'static str = "example-binding";
//!     const VERSION: u32 = 1;
//! }
//!
//! # let dir = tempfile::tempdir().unwrap();
//! let store = RecordStore::<Binding>::new(dir.path());
//! let at = AttachmentRef { container_id: "c1".into(), ifname: "net1".into() };
//! store.save(&at, &Binding { pci: "0000:03:10.1".into() }, Durability::Durable).unwrap();
//! assert_eq!(store.load(&at).unwrap(), Some(Binding { pci: "0000:03:10.1".into() }));
//! assert_eq!(store.list().records.len(), 1);
//! assert!(store.remove(&at).unwrap());
//! assert_eq!(store.load(&at).unwrap(), None);
//! ```

use crate::cni::{names, AttachmentRef, CniError};
use crate::fs::{self, Durability};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A kind of per-attachment record.
pub trait Record: Serialize + DeserializeOwned {
    /// What the records are (`"multus-attachment"`, `"sriov-vf"`, ...), written in every file.
    const KIND: &'static str;
    /// The format version this code writes; files of a higher version are refused, never misread.
    const VERSION: u32;
}

/// Why a record operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a record of this kind for this attachment.
    #[error("record {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The container ID or interface name cannot name a record.
    #[error("{0}")]
    InvalidKey(names::InvalidName),
    /// The store's lock was held by someone else for longer than the bound.
    #[error("the lock {} was not free within {waited:?}", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

impl From<RecordError> for CniError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::InvalidKey(n) => n.into(),
            RecordError::Corrupt { .. } => CniError::decoding(e.to_string()),
            RecordError::LockTimeout { .. } => CniError::try_again_later(e.to_string()),
            RecordError::Io { .. } => CniError::io(e.to_string()),
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    kind: &'a str,
    version: u32,
    #[serde(rename = "containerID")]
    container_id: &'a str,
    ifname: &'a str,
    record: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    kind: String,
    version: u32,
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    record: serde_json::Value,
}

/// A directory of records of kind `T`, one per attachment.
#[derive(Debug, Clone)]
pub struct RecordStore<T> {
    dir: PathBuf,
    _kind: PhantomData<fn() -> T>,
}

/// What [`RecordStore::list`] found.
#[derive(Debug)]
pub struct Listing<T> {
    /// Every record that could be read, with its attachment.
    pub records: Vec<(AttachmentRef, T)>,
    /// Every record file that could not be read (reported, never hiding the others).
    pub unreadable: Vec<Unreadable>,
}

/// A record file [`RecordStore::list`] could not read.
#[derive(Debug)]
pub struct Unreadable {
    /// The attachment its file name stands for (none when the directory itself could not be read).
    pub at: Option<AttachmentRef>,
    /// Why it could not be read.
    pub error: RecordError,
}

/// The store's lock, released on drop.
#[derive(Debug)]
pub struct StoreLock {
    _file: std::fs::File,
}

/// The file name rule: `<containerID>@<ifname>.json`.
fn file_name(at: &AttachmentRef) -> String {
    format!("{}@{}.json", at.container_id, at.ifname)
}

/// The attachment a file name stands for, if it is a record's name.
fn parse_file_name(name: &str) -> Option<AttachmentRef> {
    let stem = name.strip_suffix(".json")?;
    let (cid, ifname) = stem.split_once('@')?;
    let at = AttachmentRef {
        container_id: cid.to_string(),
        ifname: ifname.to_string(),
    };
    validate(&at).ok().map(|()| at)
}

fn validate(at: &AttachmentRef) -> Result<(), RecordError> {
    names::container_id(&at.container_id).map_err(RecordError::InvalidKey)?;
    names::ifname(&at.ifname).map_err(RecordError::InvalidKey)
}

impl<T: Record> RecordStore<T> {
    /// A store in `dir` (created, mode 0700, on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecordStore {
            dir: dir.into(),
            _kind: PhantomData,
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of an attachment's record (the IDs are checked first: nothing from input reaches a path
    /// unchecked).
    pub fn path(&self, at: &AttachmentRef) -> Result<PathBuf, RecordError> {
        validate(at)?;
        Ok(self.dir.join(file_name(at)))
    }

    fn ensure_dir(&self) -> Result<(), RecordError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| RecordError::Io {
                op: "creating",
                path: self.dir.clone(),
                source,
            })
    }

    /// Writes an attachment's record whole, replacing any previous one.
    pub fn save(&self, at: &AttachmentRef, rec: &T, sync: Durability) -> Result<(), RecordError> {
        let path = self.path(at)?;
        self.ensure_dir()?;
        let env = EnvelopeOut {
            kind: T::KIND,
            version: T::VERSION,
            container_id: &at.container_id,
            ifname: &at.ifname,
            record: rec,
        };
        let bytes = serde_json::to_vec_pretty(&env).map_err(|e| RecordError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        fs::write_atomic(&path, &bytes, 0o600, sync).map_err(|source| RecordError::Io {
            op: "writing",
            path,
            source,
        })
    }

    /// An attachment's record; `Ok(None)` when it has none.
    pub fn load(&self, at: &AttachmentRef) -> Result<Option<T>, RecordError> {
        let path = self.path(at)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // Something else in the record's place is no record (and not ours to remove): a DEL must
            // converge whatever is in the directory.
            Err(_) if path.is_dir() => {
                tracing::warn!("{} is a directory, not a record; ignored", path.display());
                return Ok(None);
            }
            Err(source) => {
                return Err(RecordError::Io {
                    op: "reading",
                    path,
                    source,
                })
            }
        };
        decode(&path, &bytes, Some(at)).map(|(_, r)| Some(r))
    }

    /// Removes an attachment's record; `Ok(false)` when there was none (also on a read-only file system, or
    /// when a directory is in its place, which is left alone).
    pub fn remove(&self, at: &AttachmentRef) -> Result<bool, RecordError> {
        let path = self.path(at)?;
        if path.is_dir() {
            return Ok(false);
        }
        fs::remove_if_exists(&path).map_err(|source| RecordError::Io {
            op: "removing",
            path,
            source,
        })
    }

    /// Every record of the store. Temp files that killed writers left are removed on the way.
    pub fn list(&self) -> Listing<T> {
        let mut out = Listing {
            records: Vec::new(),
            unreadable: Vec::new(),
        };
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(source) => {
                out.unreadable.push(Unreadable {
                    at: None,
                    error: RecordError::Io {
                        op: "listing",
                        path: self.dir.clone(),
                        source,
                    },
                });
                return out;
            }
        };
        fs::remove_stale_temps(&self.dir, Duration::from_secs(600));
        let mut names: Vec<(PathBuf, AttachmentRef)> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| {
                let at = parse_file_name(e.file_name().to_str()?)?;
                Some((e.path(), at))
            })
            .collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, at) in names {
            let read = std::fs::read(&path).map_err(|source| RecordError::Io {
                op: "reading",
                path: path.clone(),
                source,
            });
            match read.and_then(|b| decode::<T>(&path, &b, Some(&at))) {
                Ok((at, r)) => out.records.push((at, r)),
                // Removed between the listing and the read: not a record any more.
                Err(RecordError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => out.unreadable.push(Unreadable {
                    at: Some(at),
                    error,
                }),
            }
        }
        out
    }

    /// Takes the store's lock, waiting at most `timeout` for another process to release it.
    pub fn lock(&self, timeout: Duration) -> Result<StoreLock, RecordError> {
        self.ensure_dir()?;
        lock_file(&self.dir.join("lock"), timeout)
    }
}

/// Takes an exclusive `flock` on `path` (created if missing), waiting at most `timeout` for another process
/// (or another open of the file in this one) to release it: the store's lock, also for the stores of other
/// shapes that follow the same locking (the SR-IOV allocation records).
pub fn lock_file(path: &Path, timeout: Duration) -> Result<StoreLock, RecordError> {
    let path = path.to_path_buf();
    let io = |op, source| RecordError::Io {
        op,
        path: path.clone(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("opening", e))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(StoreLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RecordError::LockTimeout {
                    path,
                    waited: start.elapsed(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", e)),
        }
    }
}

/// Decodes a record file, refusing another kind, a newer version and another attachment's record.
fn decode<T: Record>(
    path: &Path,
    bytes: &[u8],
    expect: Option<&AttachmentRef>,
) -> Result<(AttachmentRef, T), RecordError> {
    let corrupt = |reason: String| RecordError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let env: EnvelopeIn =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a record: {e}")))?;
    if env.kind != T::KIND {
        return Err(corrupt(format!(
            "a {:?} record, not {:?}",
            env.kind,
            T::KIND
        )));
    }
    if env.version > T::VERSION {
        return Err(corrupt(format!(
            "format version {} is newer than this code's {}",
            env.version,
            T::VERSION
        )));
    }
    let at = AttachmentRef {
        container_id: env.container_id,
        ifname: env.ifname,
    };
    if let Some(want) = expect {
        if *want != at {
            return Err(corrupt(format!(
                "it names container {:?} / {:?}, not {:?} / {:?}",
                at.container_id, at.ifname, want.container_id, want.ifname
            )));
        }
    }
    let rec = serde_json::from_value(env.record).map_err(|e| corrupt(e.to_string()))?;
    Ok((at, rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Rec {
        n: u32,
    }
    impl Record for Rec {
        const KIND: &'static str = "test-rec";
        const VERSION: u32 = 2;
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Other {
        n: u32,
    }
    impl Record for Other {
        const KIND: &'static str = "other";
        const VERSION: u32 = 1;
    }

    fn at(c: &str, i: &str) -> AttachmentRef {
        AttachmentRef {
            container_id: c.into(),
            ifname: i.into(),
        }
    }

    #[test]
    fn names_that_joined_alike_are_two_records() {
        let d = tempfile::tempdir().unwrap();
        let s = RecordStore::<Rec>::new(d.path());
        s.save(&at("a-b", "c"), &Rec { n: 1 }, Durability::AtomicOnly)
            .unwrap();
        s.save(&at("a", "b-c"), &Rec { n: 2 }, Durability::AtomicOnly)
            .unwrap();
        assert_eq!(s.load(&at("a-b", "c")).unwrap(), Some(Rec { n: 1 }));
        assert_eq!(s.load(&at("a", "b-c")).unwrap(), Some(Rec { n: 2 }));
        let l = s.list();
        assert_eq!(l.records.len(), 2);
        assert!(l.unreadable.is_empty());
    }

    #[test]
    fn bad_keys_never_reach_a_path() {
        let d = tempfile::tempdir().unwrap();
        let s = RecordStore::<Rec>::new(d.path());
        for (c, i) in [("../x", "net1"), ("c1", "../../x"), ("c@1", "n"), ("", "n")] {
            let e = s
                .save(&at(c, i), &Rec { n: 1 }, Durability::AtomicOnly)
                .unwrap_err();
            assert!(matches!(e, RecordError::InvalidKey(_)), "{c} {i}: {e}");
            assert_eq!(CniError::from(e).code.code(), 4);
        }
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn foreign_newer_and_misnamed_records_are_refused_and_listed_apart() {
        let d = tempfile::tempdir().unwrap();
        let s = RecordStore::<Rec>::new(d.path());
        let o = RecordStore::<Other>::new(d.path());
        o.save(&at("c1", "net1"), &Other { n: 1 }, Durability::AtomicOnly)
            .unwrap();
        assert!(matches!(
            s.load(&at("c1", "net1")),
            Err(RecordError::Corrupt { .. })
        ));
        // A record copied under another attachment's name.
        s.save(&at("c2", "net1"), &Rec { n: 2 }, Durability::AtomicOnly)
            .unwrap();
        std::fs::copy(
            s.path(&at("c2", "net1")).unwrap(),
            s.path(&at("c3", "net1")).unwrap(),
        )
        .unwrap();
        let e = s.load(&at("c3", "net1")).unwrap_err();
        assert!(e.to_string().contains("\"c2\""), "{e}");
        // A newer version.
        let newer = r#"{"kind":"test-rec","version":3,"containerID":"c4","ifname":"eth0","record":{"n":4}}"#;
        std::fs::write(s.path(&at("c4", "eth0")).unwrap(), newer).unwrap();
        assert!(s.load(&at("c4", "eth0")).is_err());
        // Garbage, and files that are no record at all (ignored by the listing).
        std::fs::write(s.path(&at("c5", "eth0")).unwrap(), b"{garb").unwrap();
        std::fs::write(d.path().join("README"), b"x").unwrap();
        let l = s.list();
        assert_eq!(l.records, vec![(at("c2", "net1"), Rec { n: 2 })]);
        assert_eq!(l.unreadable.len(), 4, "{:?}", l.unreadable);
        let named: Vec<_> = l.unreadable.iter().filter_map(|u| u.at.clone()).collect();
        assert!(named.contains(&at("c5", "eth0")), "{named:?}");
        assert_eq!(CniError::from(e).code.code(), 6);
    }

    #[test]
    fn remove_converges_and_listing_cleans_dead_writers_temps() {
        let d = tempfile::tempdir().unwrap();
        let s = RecordStore::<Rec>::new(d.path().join("store"));
        assert!(!s.remove(&at("c1", "eth0")).unwrap());
        assert!(s.list().records.is_empty());
        s.save(&at("c1", "eth0"), &Rec { n: 1 }, Durability::Durable)
            .unwrap();
        let tmp = s.dir().join(format!("{}4194305-3", crate::fs::TEMP_PREFIX));
        std::fs::write(&tmp, b"{\"kind\":").unwrap();
        assert_eq!(s.list().records.len(), 1);
        assert!(!tmp.exists());
        assert!(s.remove(&at("c1", "eth0")).unwrap());
        assert!(!s.remove(&at("c1", "eth0")).unwrap());
        // A directory in a record's place: no record, nothing removed, nothing listed.
        std::fs::create_dir(s.path(&at("c2", "eth0")).unwrap()).unwrap();
        assert!(s.load(&at("c2", "eth0")).unwrap().is_none());
        assert!(!s.remove(&at("c2", "eth0")).unwrap());
        let l = s.list();
        assert!(l.records.is_empty() && l.unreadable.is_empty(), "{l:?}");
        assert!(s.path(&at("c2", "eth0")).unwrap().is_dir());
    }

    #[test]
    fn the_lock_is_exclusive_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let s = RecordStore::<Rec>::new(d.path());
        let held = s.lock(Duration::from_secs(1)).unwrap();
        let e = s.lock(Duration::from_millis(30)).unwrap_err();
        assert!(matches!(e, RecordError::LockTimeout { .. }), "{e}");
        assert_eq!(CniError::from(e).code.code(), 11);
        drop(held);
        s.lock(Duration::from_millis(30)).unwrap();
    }
}

//! The persisted index of a network directory, so that a fresh process (one per CNI ADD) does not
//! read every reservation file to learn which addresses are taken and by whom.
//!
//! The parts: `stamp` (what tells that something changed), `codec` (the bytes), `layout`
//! and `snapshot` (the sorted, paged, checksummed image of the directory), `columns` (building
//! and merging snapshots), `journal` (the changes appended after the snapshot; loading and
//! saving), `scan` (reading the directory itself). This file: the index in memory (`Index`:
//! a snapshot with the changes since on top) and the rules below.
//!
//! # Where it lives, and why there
//!
//! `<dataDir>/.multus-index/<network>.idx` (and `<network>.tmp` while a new one is written). The
//! reference plugin only ever touches `<dataDir>/<network>/` for the network names it is given, and
//! inside that only `<ip>`, `last_reserved_ip.<n>` and `lock`: keeping the index out of the network
//! directory keeps that directory byte for byte the reference's, and writing the index does not
//! change the directory's stamp. `.multus-index` cannot be a network name for the reference: the
//! CNI rule for network names (an alphanumeric first character, then alphanumerics, `_`, `.`,
//! `-`), which libcni applies for runtimes and the reference binary applies itself (1.1.1 answers
//! "invalid characters found in network name", code 7; tested), so the reference never uses that
//! directory as a network directory. This crate accepts more names; for a network named
//! `.multus-index` it keeps no index (it would index itself) and just scans. Inside, the
//! suffixes keep names apart: `<a>.idx` is never `<b>.tmp`, and `<a>.idx == <b>.idx` only if
//! `a == b`; neither is ever an address, `lock` or `last_reserved_ip.<n>`.
//!
//! # When it is trusted
//!
//! Only while the network directory's stamp (device, inode, mtime and ctime with nanoseconds,
//! size) equals the one saved with the index; stamps are read and the index is read and written
//! with the store's `flock` held, the lock the reference takes too. Every entry created or removed
//! in the directory (by anyone) sets its mtime and ctime to the current time. Because that time
//! can be coarse (a clock tick on kernels without multigrain timestamps), after each change the
//! store moves the directory's mtime 1 ns back (`stamp::mark`) before saving the stamp: any
//! later change sets an mtime at or after the tick of the change that was marked, so it can never
//! produce the saved value again, whatever the timestamp granularity. A saved stamp whose mtime is
//! not before its ctime (not marked) is never trusted.
//!
//! Otherwise (the reference or anything else touched the directory, or the index is missing,
//! torn, corrupt, of another version or unreadable) the store lists the directory
//! (`Index::scan`): a name that is in the old index with the same inode is only `lstat`ed,
//! and reused if its file stamp (inode, ctime, mtime, size) is unchanged; any other file is read;
//! entries whose file is gone are dropped. A bad index is never an error to the runtime, only a
//! rescan.
//!
//! # What it holds
//!
//! For each reservation file: the address, the file's stamp and a 32-bit hash of its holder key
//! (`<containerID>\r\n<ifname>`, or the container ID of a legacy file). Holders themselves are not
//! kept: the store reads a file before it reports or releases it as held by an attachment, so a
//! hash collision, or a same-name file re-created for another container, is never released or
//! reported on the index's word.
//!
//! # Files rewritten in place
//!
//! Rewriting a reservation file's content (same inode, no entry of the directory created or
//! removed) leaves the directory's stamp alone, so the index keeps the old holder's hash. Reading
//! the files the index points at cannot see it: the file that now names attachment `b` is filed
//! under `a`'s hash, so `b`'s DEL never looks at it, while the reference's DEL (which reads every
//! file) releases it. Nothing cheaper than a `stat` per file tells such a file apart: no stamp of
//! the directory changes, and the index cannot say which file to look at (checking the stamps of
//! the files a DEL reads anyway, its own candidates, finds only files that left the attachment,
//! which reading them already catches).
//!
//! So the store verifies (`IndexStats::verifications`): it `lstat`s the file of every entry of the
//! index (`fstatat` through the directory's descriptor), compares inode, ctime, mtime and size with
//! the entry (any rewrite changes ctime and mtime), and reads only the files that differ, which
//! updates their entries (journal records, as any change). No listing is needed: with the
//! directory's stamp unchanged no name came or went. It does so exactly when the index's answer may
//! be short and the answer is acted on: a DEL or CHECK that finds, by the index, fewer addresses
//! held by the attachment than the network has range sets (after a successful ADD an attachment
//! holds one per range set), unless the directory was already scanned under the same lock. A DEL
//! or CHECK of an attachment that holds its addresses, and every ADD, cost what they did; a
//! repeated DEL, or the DEL of an attachment whose ADD failed, costs one `fstatat` per
//! reservation: at 99 % of a /16, 50 M instructions in user space plus 64,852 `fstatat`, 90 to
//! 360 ms on this project's 2-core VM under a load of 5 to 8 (2 to 7 ms without the verification;
//! the reference's DEL, which reads every file every time, 500 to 650 ms); a fraction of a
//! millisecond in a /24.
//!
//! What stays different from the reference: an ADD's duplicate check does not verify (that would
//! cost every ADD a `stat` per reservation), so an attachment named by a file rewritten in place
//! can get a second address where the reference refuses with "duplicate allocation"; and an
//! attachment that holds one address per range set and is named by yet another rewritten file
//! keeps that one after its DEL (until a GC, or a DEL that verifies). The reference never
//! rewrites a reservation file.
//!
//! # Limits
//!
//! None of these can hand out an address twice (every reservation is an exclusive create) or
//! release another attachment's file (a file is read before it is released):
//! - a file deleted and re-created under the same name with the same inode number, the same size
//!   and the same ctime and mtime (same clock tick) as when it was indexed, on a kernel without
//!   multigrain timestamps: the same effects as a rewrite in place, and not caught by a
//!   verification either. Two CNI invocations (a DEL then an ADD) take longer than a tick;
//! - a change that does not take the lock, made while one of this crate's operations holds it;
//!   or a wall clock stepped back to exactly the marked mtime.
//!
//! The index is a cache and is never `fsync`ed, whatever the store's durability: after a power
//! loss it is either consistent with the directory it describes (stamp included) or not trusted.

pub(crate) mod codec;
mod columns;
mod journal;
mod layout;
mod scan;
mod snapshot;
pub(crate) mod stamp;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub(crate) use codec::{holder_hash, key_hash};
pub(crate) use journal::{Op, SaveHow};
pub(crate) use scan::read_entry;
pub(crate) use stamp::{mark, Entry, Stamp};

use snapshot::Snapshot;

/// Directory (under the data directory) holding the persisted indexes.
pub const INDEX_DIR: &str = ".multus-index";
/// Longest journal: past it, the next change writes a new snapshot instead of appending.
pub const JOURNAL_MAX: u64 = 256 * 1024;
/// Shortest journal limit.
pub const JOURNAL_MIN: u64 = 4 * 1024;

/// The journal limit for a snapshot of `snapshot_len` bytes: `sqrt(800 * snapshot + 8e6)`, about
/// 48 KiB for 65k entries (a 2.9 MB snapshot), 4 KiB when empty.
///
/// Two costs meet here (measured on this project's VM, BENCHMARKS.md): every fresh process reads
/// the whole journal (~1.7 µs per KiB), and every compaction writes the whole snapshot (~3 ms for
/// 65k entries, ~1 ns per byte). Records are ~90 bytes. A fresh process's cost per operation,
/// journal / 2 * read + compaction * 90 / limit, is lowest near `sqrt(200 * snapshot)` (~18 KiB
/// at 65k entries); but a long-lived handle (the library API) pays only the compactions, which at
/// that limit double its cost at 99 % full. Four times that product (twice the limit) keeps a
/// long-lived handle under 2x its cost when empty for ~20 µs more per fresh process, next to the
/// ~1.5 ms of starting one.
pub fn journal_limit(snapshot_len: u64) -> u64 {
    let x = 800u64
        .saturating_mul(snapshot_len)
        .saturating_add(8_000_000);
    (x as f64)
        .sqrt()
        .clamp(JOURNAL_MIN as f64, JOURNAL_MAX as f64) as u64
}

/// How a [`crate::DiskStore`] keeps its index across processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexMode {
    /// Persisted: a snapshot plus an appended journal (the default).
    #[default]
    Journal,
    /// Persisted, but a whole new snapshot is written after every change (for measurements).
    Rewrite,
    /// Not persisted: each new store handle reads the whole directory once (the behaviour before
    /// the persisted index; for measurements).
    Off,
}

/// What the index of a store handle has done so far (cumulative), for diagnostics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Locked operations that used this handle's in-memory index as is.
    pub cached: u64,
    /// Locked operations that loaded the persisted index and found it valid.
    pub loaded: u64,
    /// Directory scans (index missing, stale, torn or corrupt).
    pub scans: u64,
    /// Of those, scans that had a usable old index to compare with.
    pub incremental_scans: u64,
    /// Reservation files read by scans and verifications.
    pub files_read: u64,
    /// Reservation files only `lstat`ed by scans and verifications (unchanged since the index).
    pub files_statted: u64,
    /// Verifications: every file's stamp checked against a valid index, because a DEL or CHECK
    /// found fewer addresses than expected (see "Files rewritten in place" in [`crate::index`]).
    pub verifications: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Journal records appended.
    pub records_appended: u64,
}

/// The index (or a part of it) could not be trusted: it gets rebuilt from the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// The persisted file an index was loaded from or last written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexFile {
    /// Inode and length of the file: if either changed, someone else wrote it.
    pub ino: u64,
    pub len: u64,
    nonce: u64,
    /// Bytes of journal after the snapshot.
    journal: u64,
}

/// Paths of one network's index file and its temporary file.
#[derive(Clone, Debug)]
pub(crate) struct IndexPaths {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub tmp: PathBuf,
}

impl IndexPaths {
    /// `None` for the network named like the index directory (it would index itself).
    pub fn new(data_dir: &Path, network: &str) -> Option<IndexPaths> {
        if network == INDEX_DIR {
            return None;
        }
        let dir = data_dir.join(INDEX_DIR);
        Some(IndexPaths {
            file: dir.join(format!("{network}.idx")),
            tmp: dir.join(format!("{network}.tmp")),
            dir,
        })
    }

    /// Inode and length of the index file now, if it exists.
    pub fn id(&self) -> Option<(u64, u64)> {
        fs::symlink_metadata(&self.file)
            .ok()
            .map(|m| (m.ino(), m.len()))
    }
}

/// An address as an ordered pair of integers: IPv4 before IPv6, then by value (the order of
/// `IpAddr`), compared without `IpAddr`'s enum dispatch (the journal's maps compare a lot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub v6: bool,
    pub value: u128,
}

impl Key {
    const MIN: Key = Key {
        v6: false,
        value: 0,
    };

    fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.value))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.value as u32))
        }
    }
}

impl From<IpAddr> for Key {
    fn from(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(a) => Key {
                v6: false,
                value: u128::from(u32::from(a)),
            },
            IpAddr::V6(a) => Key {
                v6: true,
                value: u128::from(a),
            },
        }
    }
}

/// A network directory's reservations: a snapshot (read lazily from disk, or built by a scan)
/// with the changes since on top, kept in memory.
#[derive(Debug)]
pub(crate) struct Index {
    base: Snapshot,
    /// Changes over `base`: `None` marks an address removed from it.
    overlay: BTreeMap<Key, Option<Entry>>,
    /// (holder hash, address) of the overlay's entries.
    by_key: BTreeSet<(u32, Key)>,
    /// Changes not yet persisted.
    pending: Vec<Op>,
    /// The directory stamp this index describes (plus `pending`).
    pub stamp: Stamp,
}

impl Index {
    /// An index of `base` alone, describing `stamp`.
    fn new(base: Snapshot, stamp: Stamp) -> Index {
        Index {
            base,
            overlay: BTreeMap::new(),
            by_key: BTreeSet::new(),
            pending: Vec::new(),
            stamp,
        }
    }

    fn apply(&mut self, op: Op) {
        let (ip, new) = match op {
            Op::Put(ip, e) => (Key::from(ip), Some(e)),
            Op::Del(ip) => (Key::from(ip), None),
        };
        if let Some(Some(old)) = self.overlay.insert(ip, new) {
            if old.key != 0 {
                self.by_key.remove(&(old.key, ip));
            }
        }
        if let Some(e) = new.filter(|e| e.key != 0) {
            self.by_key.insert((e.key, ip));
        }
    }

    /// Records that `ip` is reserved by the file described by `e`.
    pub fn put(&mut self, ip: IpAddr, e: Entry) {
        self.apply(Op::Put(ip, e));
        self.pending.push(Op::Put(ip, e));
    }

    /// Records that `ip` is not reserved.
    pub fn remove(&mut self, ip: IpAddr) {
        self.apply(Op::Del(ip));
        self.pending.push(Op::Del(ip));
    }

    /// Forgets the pending changes, now described by `stamp` (when the index is not persisted).
    pub fn settle(&mut self, stamp: Stamp) {
        self.pending.clear();
        self.stamp = stamp;
    }

    /// Whether something must be written: pending changes, or a snapshot built by a scan.
    pub fn has_unsaved(&self) -> bool {
        !self.pending.is_empty() || !self.base.written
    }

    /// Whether `ip` is reserved (reads only the snapshot's address page).
    pub fn contains(&mut self, ip: IpAddr) -> Result<bool, Corrupt> {
        match self.overlay.get(&Key::from(ip)) {
            Some(e) => Ok(e.is_some()),
            None => self.base.contains(ip),
        }
    }

    /// The entry of `ip`, if reserved.
    pub fn get(&mut self, ip: IpAddr) -> Result<Option<Entry>, Corrupt> {
        match self.overlay.get(&Key::from(ip)) {
            Some(e) => Ok(*e),
            None => self.base.get(ip),
        }
    }

    /// The addresses whose holder hash is `key` (to be confirmed by reading their files).
    pub fn with_key(&mut self, key: u32) -> Result<Vec<IpAddr>, Corrupt> {
        let mut out: BTreeSet<IpAddr> = self
            .by_key
            .range((key, Key::MIN)..)
            .take_while(|(k, _)| *k == key)
            .map(|(_, ip)| ip.ip())
            .collect();
        for ip in self.base.with_key(key)? {
            if !self.overlay.contains_key(&Key::from(ip)) {
                out.insert(ip);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Every entry, sorted by address (reads the whole snapshot).
    pub fn all(&mut self) -> Result<Vec<(IpAddr, Entry)>, Corrupt> {
        let base = self.base.all()?;
        if self.overlay.is_empty() {
            return Ok(base);
        }
        let mut out = Vec::with_capacity(base.len() + self.overlay.len());
        let mut over = self.overlay.iter().peekable();
        for (ip, e) in base {
            let k = Key::from(ip);
            while let Some((oip, oe)) = over.next_if(|(oip, _)| **oip < k) {
                if let Some(oe) = oe {
                    out.push((oip.ip(), *oe));
                }
            }
            match over.next_if(|(oip, _)| **oip == k) {
                Some((_, Some(oe))) => out.push((ip, *oe)),
                Some((_, None)) => {}
                None => out.push((ip, e)),
            }
        }
        out.extend(over.filter_map(|(ip, e)| e.map(|e| (ip.ip(), e))));
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;

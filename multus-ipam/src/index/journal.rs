//! The journal after the snapshot, and how an [`Index`] is loaded from and saved to its file.
//!
//! The journal is a list of records, one per locked operation that changed something, appended
//! in place: `len` (u32), a checksum (u64, seeded with the snapshot's nonce and the record's
//! offset in the file), then the payload: the directory stamp after the change, the number of
//! changes, and each change (an address put with its [`Entry`], or deleted). When the journal
//! would pass [`journal_limit`] (or after a scan) a new snapshot is written instead
//! ([`Snapshot::write`]). A process killed at any point leaves the old index (stale stamp: rescan),
//! a torn record (bad checksum: the records before it are used, the stamp does not match:
//! rescan) or a half-written temporary file (never read); none of them is ever trusted.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{FileExt, MetadataExt};

use super::codec::{mix, sum64, Le, Reader};
use super::snapshot::Snapshot;
use super::stamp::{Entry, Stamp, STAMP_LEN};
use super::{journal_limit, Corrupt, Index, IndexFile, IndexPaths, IndexStats};

/// Bytes before a record's payload: its length and checksum.
const RECORD_PREFIX: usize = 12;

/// One change recorded in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// `ip` is reserved by the file described by the entry.
    Put(IpAddr, Entry),
    /// `ip` is not reserved.
    Del(IpAddr),
}

impl Op {
    fn encode(&self, out: &mut Vec<u8>) {
        let (kind, ip, entry) = match self {
            Op::Put(ip, e) => (0u8, ip, Some(e)),
            Op::Del(ip) => (0x80u8, ip, None),
        };
        match ip {
            IpAddr::V4(v4) => {
                out.push(kind | 4);
                out.extend_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.push(kind | 6);
                out.extend_from_slice(&v6.octets());
            }
        }
        if let Some(e) = entry {
            e.encode(out);
        }
    }

    fn decode(r: &mut Reader<'_>) -> Option<Op> {
        let kind: u8 = r.get()?;
        let ip = match kind & 0x7f {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.bytes(4)?).ok()?)),
            6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(r.bytes(16)?).ok()?)),
            _ => return None,
        };
        match kind & 0x80 {
            0 => Some(Op::Put(ip, Entry::decode(r)?)),
            _ => Some(Op::Del(ip)),
        }
    }
}

/// Parses the journal record at `at` of `j` (the bytes after the snapshot, which ends at
/// `body_end`): (offset after it, stamp), its changes in `ops`; `None` if it is torn or does not
/// verify.
fn parse_record(
    j: &[u8],
    at: usize,
    nonce: u64,
    body_end: u64,
    ops: &mut Vec<Op>,
) -> Option<(usize, Stamp)> {
    let mut r = Reader::new(j.get(at..)?);
    let len = usize::try_from(r.get::<u32>()?).ok()?;
    let sum: u64 = r.get()?;
    let payload = r.bytes(len)?;
    if sum64(nonce ^ mix(body_end + at as u64), payload) != sum {
        return None;
    }
    let mut p = Reader::new(payload);
    let stamp = Stamp::decode(&mut p)?;
    let n: u32 = p.get()?;
    ops.clear();
    for _ in 0..n {
        ops.push(Op::decode(&mut p)?);
    }
    p.is_done().then_some((at + r.pos(), stamp))
}

/// Appends `record` (its [`RECORD_PREFIX`] still to fill) to the index file, if it is still `f`.
fn append(paths: &IndexPaths, f: IndexFile, record: &mut [u8]) -> io::Result<IndexFile> {
    let file = OpenOptions::new().write(true).open(&paths.file)?;
    let md = file.metadata()?;
    if (md.ino(), md.len()) != (f.ino, f.len) {
        return Err(io::Error::other("the index file changed"));
    }
    let payload_len = u32::try_from(record.len() - RECORD_PREFIX).map_err(io::Error::other)?;
    let sum = sum64(f.nonce ^ mix(f.len), &record[RECORD_PREFIX..]);
    record[0..4].copy_from_slice(&payload_len.to_le_bytes());
    record[4..RECORD_PREFIX].copy_from_slice(&sum.to_le_bytes());
    file.write_all_at(record, f.len)?;
    Ok(IndexFile {
        len: f.len + record.len() as u64,
        journal: f.journal + record.len() as u64,
        ..f
    })
}

/// How [`Index::save`] saves.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SaveHow {
    /// A whole snapshot, never a journal record.
    pub rewrite: bool,
    /// Journal limit instead of [`journal_limit`].
    pub limit: Option<u64>,
}

/// Why an index could not be saved.
#[derive(Debug)]
pub(crate) enum SaveError {
    /// The old snapshot turned out corrupt while being merged.
    Corrupt,
    /// Writing failed.
    Io(io::Error),
}

impl std::fmt::Display for SaveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SaveError::Corrupt => write!(f, "the old index is corrupt"),
            SaveError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl Index {
    /// Loads a persisted index. `None` if there is none or its snapshot is not valid; otherwise
    /// the index (snapshot plus the journal records that verify, in order), the file, and
    /// whether the journal verified to its end.
    pub fn load(paths: &IndexPaths, network: &str) -> Option<(Index, IndexFile, bool)> {
        let file = File::open(&paths.file).ok()?;
        let md = file.metadata().ok()?;
        if !md.is_file() {
            return None;
        }
        let len = md.len();
        let (base, stamp) = Snapshot::open(file, len, network)?;
        let body_end = base.layout.body_end();
        let journal = base.read_after(len)?;
        let nonce = base.nonce;
        let mut index = Index::new(base, stamp);
        let complete = index.replay(&journal, nonce, body_end);
        let f = IndexFile {
            ino: md.ino(),
            len,
            nonce,
            journal: len - body_end,
        };
        Some((index, f, complete))
    }

    /// Applies the journal's records in order, up to the first that does not verify; whether
    /// every record did.
    fn replay(&mut self, journal: &[u8], nonce: u64, body_end: u64) -> bool {
        let mut at = 0usize;
        let mut ops = Vec::new();
        while at < journal.len() {
            let Some((next, stamp)) = parse_record(journal, at, nonce, body_end, &mut ops) else {
                return false;
            };
            for op in ops.drain(..) {
                self.apply(op);
            }
            self.stamp = stamp;
            at = next;
        }
        true
    }

    /// Persists the index: writes the snapshot if it was built by a scan, then appends one
    /// journal record (the pending changes and `stamp`, the directory's marked stamp now); or
    /// (with `rewrite`, without a file, or when the journal would pass [`journal_limit`]) writes a
    /// new snapshot of everything. On success the index describes `stamp`.
    pub fn save(
        &mut self,
        paths: &IndexPaths,
        network: &str,
        file: Option<IndexFile>,
        stamp: Stamp,
        how: SaveHow,
        stats: &mut IndexStats,
    ) -> Result<IndexFile, SaveError> {
        let mut record = self.record(stamp);
        let rec_len = record.len() as u64;
        let limit = how
            .limit
            .unwrap_or_else(|| journal_limit(self.base.layout.body_end()));
        let target = if how.rewrite || rec_len > limit {
            None
        } else if !self.base.written {
            let f = self.base.write(paths).map_err(SaveError::Io)?;
            stats.snapshots_written += 1;
            Some(f)
        } else {
            file.filter(|f| f.journal + rec_len <= limit)
        };
        let f = match target.map(|f| append(paths, f, &mut record)) {
            Some(Ok(f)) => {
                stats.records_appended += 1;
                f
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::debug!(error = %e, "appending to the host-local index; writing a snapshot");
                }
                self.compact(paths, network, stamp, stats)?
            }
        };
        self.pending.clear();
        self.stamp = stamp;
        Ok(f)
    }

    /// The journal record of the pending changes, ending at `stamp` (prefix not filled in).
    fn record(&self, stamp: Stamp) -> Vec<u8> {
        let mut record =
            Vec::with_capacity(RECORD_PREFIX + STAMP_LEN + 4 + self.pending.len() * 60);
        record.extend_from_slice(&[0u8; RECORD_PREFIX]);
        stamp.encode(&mut record);
        (self.pending.len() as u32).put(&mut record);
        for op in &self.pending {
            op.encode(&mut record);
        }
        record
    }

    /// Writes a new snapshot of everything (the old one merged with the changes since) as the
    /// index file, and makes it the base.
    fn compact(
        &mut self,
        paths: &IndexPaths,
        network: &str,
        stamp: Stamp,
        stats: &mut IndexStats,
    ) -> Result<IndexFile, SaveError> {
        let cols = self
            .base
            .merged(&self.overlay)
            .map_err(|Corrupt| SaveError::Corrupt)?;
        let mut snap = Snapshot::assemble(network, stamp, cols).map_err(SaveError::Io)?;
        let f = snap.write(paths).map_err(SaveError::Io)?;
        stats.snapshots_written += 1;
        self.base = snap;
        self.overlay = BTreeMap::new();
        self.by_key = BTreeSet::new();
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{entry, paths, sample, stamp, write_snapshot};
    use super::*;
    use std::fs;

    #[test]
    fn journal_round_trip_and_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let mut stats = IndexStats::default();
        let entries = sample(300);
        let f = write_snapshot(&p, "net", stamp(), &entries).unwrap();
        let (mut ix, _, _) = Index::load(&p, "net").unwrap();
        let a: IpAddr = "10.9.9.9".parse().unwrap();
        ix.put(a, entry(1, super::super::key_hash("x\r\neth0")));
        ix.remove(entries[0].0);
        let mut s2 = stamp();
        s2.ctime.1 += 10;
        let f = ix
            .save(&p, "net", Some(f), s2, SaveHow::default(), &mut stats)
            .unwrap();
        assert_eq!(stats.records_appended, 1);
        let (mut re, f3, complete) = Index::load(&p, "net").unwrap();
        assert!(complete);
        assert_eq!(f3, f);
        assert_eq!(re.stamp, s2);
        assert!(re.contains(a).unwrap());
        assert!(!re.contains(entries[0].0).unwrap());
        assert_eq!(
            re.with_key(super::super::key_hash("x\r\neth0")).unwrap(),
            vec![a]
        );
        // A torn record: the snapshot and earlier records still load, flagged incomplete.
        let len = fs::metadata(&p.file).unwrap().len();
        let file = OpenOptions::new().write(true).open(&p.file).unwrap();
        file.write_all_at(&[9, 0, 0, 0, 1, 2], len).unwrap();
        let (mut re, _, complete) = Index::load(&p, "net").unwrap();
        assert!(!complete);
        assert_eq!(re.stamp, s2);
        assert!(re.contains(a).unwrap());
    }

    #[test]
    fn ops_round_trip_and_refuse_garbage() {
        let e = entry(3, 5);
        let ops = [
            Op::Put("10.1.2.3".parse().unwrap(), e),
            Op::Del("2001:db8::1".parse().unwrap()),
            Op::Put("::".parse().unwrap(), e),
        ];
        let mut b = Vec::new();
        ops.iter().for_each(|o| o.encode(&mut b));
        let mut r = Reader::new(&b);
        for o in ops {
            assert_eq!(Op::decode(&mut r), Some(o));
        }
        assert!(r.is_done());
        assert_eq!(Op::decode(&mut Reader::new(&[5, 1, 2, 3, 4])), None);
        assert_eq!(Op::decode(&mut Reader::new(&b[..10])), None);
    }
}

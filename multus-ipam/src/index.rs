//! The persisted index of a network directory, so that a fresh process (one per CNI ADD) does not
//! read every reservation file to learn which addresses are taken and by whom.
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
//! store moves the directory's mtime 1 ns back (`mark`) before saving the stamp: any later
//! change sets an mtime at or after the tick of the change that was marked, so it can never
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
//! # Format
//!
//! A snapshot, then a journal, in one file. The snapshot is 4 KiB pages: a header (magic,
//! version, a random nonce, counts, the directory stamp, the network name, a checksum), then
//! sections of fixed-size little-endian records, each starting on a page: the IPv4 addresses
//! (sorted `u32`), the IPv6 addresses (sorted `u128`), the holder hashes (sorted `(hash, entry)`
//! pairs) and the file stamps (by entry), then one 64-bit checksum per data page and the fences
//! (the first element of every page of the three sorted sections), both checksummed in the
//! header. A fresh process reads the header, the checksums, the fences and the journal, then one
//! page per lookup (verified when first read): an ADD in a /16 reads a handful of pages whatever
//! the fill. Successive lookups of consecutive addresses (the allocator's walk) start from where
//! the last one ended. The journal is a list of records
//! (`len`, checksum seeded with the nonce and the record's offset, then the directory stamp after
//! the change and the entries put or deleted), one per locked operation that changed something,
//! appended in place. When it passes [`journal_limit`] (or after a scan) a new snapshot is
//! written over `<network>.tmp` (in place: creating a file costs a new inode, which on ext4
//! without a journal means a scan past every recently deleted one) and exchanged with the index
//! in one `renameat2(RENAME_EXCHANGE)` (no unlink, and none of the data flush ext4 does on a
//! rename over an existing file), so `<network>.tmp` keeps the previous index until the next
//! write. A process killed at any point leaves the old index (stale stamp: rescan), a torn record
//! (bad checksum: rescan) or a half-written temporary file (never read); none of them is ever
//! trusted. Pages of two snapshots mixed by a power loss do not verify (checksums are seeded
//! with each snapshot's nonce and the page number).
//!
//! The index is a cache and is never `fsync`ed, whatever the store's durability: after a power
//! loss it is either consistent with the directory it describes (stamp included) or not trusted.
//!
//! # Limits
//!
//! None of these can hand out an address twice (every reservation is an exclusive create) or
//! release another attachment's file (a file is read before it is released):
//! - a reservation file rewritten in place (same inode) for another holder, with no entry of the
//!   directory created or removed, leaves the stamp alone: until the file is next read (a DEL or
//!   CHECK of its old holder, a list, a GC) or the directory changes, the new holder's CHECK and
//!   duplicate check miss it. The reference never does this (it creates with `O_EXCL` and
//!   deletes);
//! - a file deleted and re-created under the same name with the same inode number, the same size
//!   and the same ctime and mtime (same clock tick) as when it was indexed, on a kernel without
//!   multigrain timestamps: the same holder-side effect. Two CNI invocations (a DEL then an ADD)
//!   take longer than a tick;
//! - a change that does not take the lock, made while one of this crate's operations holds it;
//!   or a wall clock stepped back to exactly the marked mtime.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ip::parse_ip;
use crate::store::Holder;

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

const MAGIC: &[u8; 8] = b"MLTSHLIX";
const VERSION: u32 = 1;
const PAGE: usize = 4096;
const PAGE_U: u64 = PAGE as u64;
const HEADER_SEED: u64 = 0x6865_6164_6572_2d31;
const SUMS_SEED: u64 = 0x7375_6d73_2d74_6162;
const FENCES_SEED: u64 = 0x6665_6e63_6573_2d31;
const KEY_SEED: u64 = 0x686f_6c64_6572_2d6b;
const STAMP_LEN: usize = 56;
const ENTRY_LEN: usize = 32;
const KEY_LEN: usize = 8;

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
    /// Reservation files read by scans.
    pub files_read: u64,
    /// Reservation files only `lstat`ed by scans (unchanged since the old index).
    pub files_statted: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
    /// Journal records appended.
    pub records_appended: u64,
}

/// The index (or a part of it) could not be trusted: it gets rebuilt from the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupt;

/// Identity and change stamp of a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub size: u64,
}

impl Stamp {
    pub fn of(dir: &Path) -> io::Result<Stamp> {
        let m = fs::metadata(dir)?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: m.size(),
        })
    }

    /// Whether the mtime was moved back by [`mark`] after the last entry change (every entry
    /// change sets mtime and ctime to one same value).
    pub fn is_marked(&self) -> bool {
        self.mtime < self.ctime
    }

    fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.dev,
            self.ino,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
            self.size,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn decode(b: &[u8]) -> Option<Stamp> {
        let v = |i: usize| u64_at(b, i * 8);
        Some(Stamp {
            dev: v(0)?,
            ino: v(1)?,
            mtime: (v(2)? as i64, v(3)? as i64),
            ctime: (v(4)? as i64, v(5)? as i64),
            size: v(6)?,
        })
    }
}

/// Moves the directory's mtime 1 ns before its current value, so that the next entry change
/// (which sets mtime to the current time, at or after the current value) always changes the
/// stamp, even within one clock tick. The file system rounds to its granularity, which keeps the
/// marked value before any later one.
pub(crate) fn mark(dir: &Path, cur: &Stamp) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let (s, ns) = cur.mtime;
    let (s, ns) = if ns > 0 {
        (s, ns - 1)
    } else {
        (s - 1, 999_999_999)
    };
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: s as libc::time_t,
            tv_nsec: ns as libc::c_long,
        },
    ];
    // SAFETY: `path` is a valid NUL-terminated string and `times` two valid timespecs, both alive
    // for the duration of the call.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the index knows of one reservation file: its stamp and its holder's hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub ino: u64,
    pub ctime: i64,
    pub mtime: i64,
    pub size: u32,
    /// [`key_hash`] of the holder key, 0 for a holder without one ([`Holder::Unknown`]).
    pub key: u32,
}

fn ns(sec: i64, nsec: i64) -> i64 {
    sec.wrapping_mul(1_000_000_000).wrapping_add(nsec)
}

impl Entry {
    pub fn new(md: &Metadata, key: u32) -> Entry {
        Entry {
            ino: md.ino(),
            ctime: ns(md.ctime(), md.ctime_nsec()),
            mtime: ns(md.mtime(), md.mtime_nsec()),
            size: u32::try_from(md.size()).unwrap_or(u32::MAX),
            key,
        }
    }

    /// Whether `md` (an `lstat` of the name) is still the file this entry was made from.
    fn same_file(&self, md: &Metadata) -> bool {
        let now = Entry::new(md, self.key);
        now == *self
    }

    fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[0..8].copy_from_slice(&self.ino.to_le_bytes());
        b[8..16].copy_from_slice(&self.ctime.to_le_bytes());
        b[16..24].copy_from_slice(&self.mtime.to_le_bytes());
        b[24..28].copy_from_slice(&self.size.to_le_bytes());
        b[28..32].copy_from_slice(&self.key.to_le_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<Entry> {
        Some(Entry {
            ino: u64_at(b, 0)?,
            ctime: u64_at(b, 8)? as i64,
            mtime: u64_at(b, 16)? as i64,
            size: u32_at(b, 24)?,
            key: u32_at(b, 28)?,
        })
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

fn u128_at(b: &[u8], at: usize) -> Option<u128> {
    b.get(at..at + 16)
        .and_then(|s| s.try_into().ok())
        .map(u128::from_le_bytes)
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-bit checksum: each 8-byte word goes through a bijection of the state, so any change
/// confined to one word always changes the result; other changes do with probability 1 - 2^-64.
pub(crate) fn sum64(seed: u64, data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = mix(seed ^ (data.len() as u64).wrapping_mul(K));
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(31);
    }
    mix(h)
}

/// The hash of a holder key kept in the index: never 0 (0 means "no key").
pub(crate) fn key_hash(key: &str) -> u32 {
    ((sum64(KEY_SEED, key.as_bytes()) >> 32) as u32) | 1
}

/// The index hash of a holder.
pub(crate) fn holder_hash(h: &Holder) -> u32 {
    h.key().map(|k| key_hash(&k)).unwrap_or(0)
}

fn page_seed(nonce: u64, page: u64) -> u64 {
    nonce ^ mix(page.wrapping_add(1))
}

/// Page layout of a snapshot, derived from its counts.
#[derive(Clone, Copy, Debug)]
struct Layout {
    n4: u64,
    n6: u64,
    nkeys: u64,
}

impl Layout {
    fn pages(bytes: u64) -> u64 {
        bytes.div_ceil(PAGE_U)
    }
    fn v4_start(&self) -> u64 {
        1
    }
    fn v6_start(&self) -> u64 {
        self.v4_start() + Layout::pages(self.n4 * 4)
    }
    fn keys_start(&self) -> u64 {
        self.v6_start() + Layout::pages(self.n6 * 16)
    }
    fn cold_start(&self) -> u64 {
        self.keys_start() + Layout::pages(self.nkeys * KEY_LEN as u64)
    }
    fn sums_start(&self) -> u64 {
        self.cold_start() + Layout::pages((self.n4 + self.n6) * ENTRY_LEN as u64)
    }
    /// Data pages: 1 .. sums_start.
    fn data_pages(&self) -> u64 {
        self.sums_start() - 1
    }
    fn fences_start(&self) -> u64 {
        self.sums_start() + Layout::pages(self.data_pages() * 8)
    }
    fn v4_pages(&self) -> u64 {
        Layout::pages(self.n4 * 4)
    }
    fn v6_pages(&self) -> u64 {
        Layout::pages(self.n6 * 16)
    }
    fn keys_pages(&self) -> u64 {
        Layout::pages(self.nkeys * KEY_LEN as u64)
    }
    /// Bytes of fences: the first element of each page of the three sorted sections.
    fn fences_len(&self) -> u64 {
        self.v4_pages() * 4 + self.v6_pages() * 16 + self.keys_pages() * 4
    }
    fn body_end(&self) -> u64 {
        (self.fences_start() + Layout::pages(self.fences_len())) * PAGE_U
    }
}

/// A snapshot: read from disk page by page (each page verified when first read), or built in
/// memory by a scan or a compaction (then written whole).
#[derive(Debug)]
struct Snapshot {
    /// Whether it is on disk (as the start of the index file).
    written: bool,
    layout: Layout,
    nonce: u64,
    sums: Vec<u64>,
    data: Data,
    fences: Fences,
    /// Where the last in-memory lookup of each family ended: the allocator asks for consecutive
    /// addresses, so the next answer is usually one step further.
    hint: (Option<u64>, Option<u64>),
}

/// The bytes of a snapshot.
#[derive(Debug)]
enum Data {
    /// All of it, from the header to the fences (built, or read whole).
    Image(Vec<u8>),
    /// Read from `file` page by page: data page `p` at `pages[p - 1]` once read and verified.
    Paged {
        file: File,
        pages: Vec<Option<Box<[u8]>>>,
    },
}

/// The first element of each page of the sorted sections, in memory: a lookup reads one page.
#[derive(Debug, Default)]
struct Fences {
    v4: Vec<u32>,
    v6: Vec<u128>,
    keys: Vec<u32>,
}

impl Fences {
    fn encode(&self, out: &mut Vec<u8>) {
        self.v4
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        self.v6
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        self.keys
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    }

    fn decode(b: &[u8], layout: &Layout) -> Option<Fences> {
        let (n4, n6, nk) = (
            usize::try_from(layout.v4_pages()).ok()?,
            usize::try_from(layout.v6_pages()).ok()?,
            usize::try_from(layout.keys_pages()).ok()?,
        );
        let v6_at = n4 * 4;
        let keys_at = v6_at + n6 * 16;
        Some(Fences {
            v4: (0..n4).map(|i| u32_at(b, i * 4)).collect::<Option<_>>()?,
            v6: (0..n6)
                .map(|i| u128_at(b, v6_at + i * 16))
                .collect::<Option<_>>()?,
            keys: (0..nk)
                .map(|i| u32_at(b, keys_at + i * 4))
                .collect::<Option<_>>()?,
        })
    }
}

/// [`Snapshot::find`] on a snapshot whose bytes are all in memory: no page bookkeeping.
fn find_in_image(
    image: &[u8],
    layout: &Layout,
    fences: &Fences,
    hint: &mut (Option<u64>, Option<u64>),
    ip: IpAddr,
) -> Result<Option<u64>, Corrupt> {
    /// The position of `t` in `[lo, hi)`, trying `hint` (where the last search ended) first.
    fn search<T: Ord>(
        (mut lo, mut hi): (u64, u64),
        t: &T,
        hint: &mut Option<u64>,
        get: impl Fn(u64) -> Option<T>,
    ) -> Result<Option<u64>, Corrupt> {
        let end = hi;
        // Sequential probes: the element at the hint is below `t`, the next one decides.
        if let Some(h) = *hint {
            if h + 1 < end && get(h).ok_or(Corrupt)? < *t {
                let next = get(h + 1).ok_or(Corrupt)?;
                if next >= *t {
                    *hint = Some(if next == *t { h + 1 } else { h });
                    return Ok((next == *t).then_some(h + 1));
                }
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if get(mid).ok_or(Corrupt)? < *t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let found = lo < end && get(lo).ok_or(Corrupt)? == *t;
        *hint = Some(if found { lo } else { lo.saturating_sub(1) });
        Ok(found.then_some(lo))
    }
    match ip {
        IpAddr::V4(v4) => {
            let t = u32::from(v4);
            let at = layout.v4_start() as usize * PAGE;
            let n = layout.n4;
            // The window can end at the next page's first element: search up to it.
            let (lo, hi) = window(&fences.v4, PAGE_U / 4, n, &t);
            search((lo, (hi + 1).min(n)), &t, &mut hint.0, |i| {
                u32_at(image, at + i as usize * 4)
            })
        }
        IpAddr::V6(v6) => {
            let t = u128::from(v6);
            let at = layout.v6_start() as usize * PAGE;
            let n = layout.n6;
            let (lo, hi) = window(&fences.v6, PAGE_U / 16, n, &t);
            Ok(search((lo, (hi + 1).min(n)), &t, &mut hint.1, |i| {
                u128_at(image, at + i as usize * 16)
            })?
            .map(|i| layout.n4 + i))
        }
    }
}

/// The indices `[lo, hi)` of a sorted section within which the first element not less than `t`
/// lies (or is `hi`), from the section's fences (`per_page` elements per page, `n` in all).
fn window<T: Ord>(fences: &[T], per_page: u64, n: u64, t: &T) -> (u64, u64) {
    let below = fences.partition_point(|f| f < t) as u64;
    let upto = fences.partition_point(|f| f <= t) as u64;
    let lo = (below.saturating_sub(1) * per_page).min(n);
    let hi = (upto * per_page).clamp(lo, n);
    (lo, hi)
}

/// The sections of a snapshot, little-endian, before layout: what a scan or a compaction
/// produces.
#[derive(Debug, Default)]
struct Columns {
    /// Sorted IPv4 addresses, 4 bytes each.
    v4: Vec<u8>,
    /// Sorted IPv6 addresses, 16 bytes each.
    v6: Vec<u8>,
    /// File stamps by entry (IPv4 then IPv6), [`ENTRY_LEN`] bytes each.
    cold: Vec<u8>,
    /// (holder hash, entry) sorted.
    keys: Vec<(u32, u32)>,
}

impl Columns {
    /// From entries sorted by address (V4 before V6).
    fn from_entries(entries: &[(IpAddr, Entry)]) -> io::Result<Columns> {
        let mut c = Columns::default();
        let mut seen_v6 = false;
        for (idx, (ip, e)) in entries.iter().enumerate() {
            match ip {
                IpAddr::V4(v4) if !seen_v6 => c.v4.extend_from_slice(&u32::from(*v4).to_le_bytes()),
                IpAddr::V6(v6) => {
                    seen_v6 = true;
                    c.v6.extend_from_slice(&u128::from(*v6).to_le_bytes());
                }
                IpAddr::V4(_) => return Err(io::Error::other("index entries not sorted")),
            }
            c.cold.extend_from_slice(&e.encode());
            if e.key != 0 {
                c.keys
                    .push((e.key, u32::try_from(idx).map_err(io::Error::other)?));
            }
        }
        c.keys.sort_unstable();
        Ok(c)
    }

    /// The base snapshot (whole, in memory) with `overlay` applied, in one linear pass: entries
    /// keep their order, so the base's (hash, entry) pairs stay sorted once renumbered, and only
    /// the overlay's few new pairs need sorting.
    fn merge(
        base: &[u8],
        layout: &Layout,
        overlay: &BTreeMap<Key, Option<Entry>>,
    ) -> Result<Columns, Corrupt> {
        let sec = |start: u64, len: u64| -> Result<&[u8], Corrupt> {
            let at = usize::try_from(start * PAGE_U).map_err(|_| Corrupt)?;
            let len = usize::try_from(len).map_err(|_| Corrupt)?;
            base.get(at..at + len).ok_or(Corrupt)
        };
        let (n4, n6) = (layout.n4, layout.n6);
        let v4 = sec(layout.v4_start(), n4 * 4)?;
        let v6 = sec(layout.v6_start(), n6 * 16)?;
        let cold = sec(layout.cold_start(), (n4 + n6) * ENTRY_LEN as u64)?;
        let keys = sec(layout.keys_start(), layout.nkeys * KEY_LEN as u64)?;
        let total = usize::try_from(n4 + n6).map_err(|_| Corrupt)?;
        let mut c = Columns {
            v4: Vec::with_capacity(v4.len() + overlay.len() * 4),
            v6: Vec::with_capacity(v6.len()),
            cold: Vec::with_capacity(cold.len() + overlay.len() * ENTRY_LEN),
            keys: Vec::with_capacity(keys.len() / KEY_LEN + overlay.len()),
        };
        // Old entry -> new entry, u32::MAX if dropped or replaced.
        let mut renumber = vec![u32::MAX; total];
        let mut added: Vec<(u32, u32)> = Vec::new();
        let mut next = 0u32;
        let mut out = |c: &mut Columns, ip_bytes: &[u8], e: &[u8], is_v4: bool| {
            if is_v4 {
                c.v4.extend_from_slice(ip_bytes);
            } else {
                c.v6.extend_from_slice(ip_bytes);
            }
            c.cold.extend_from_slice(e);
            next += 1;
            next - 1
        };
        for (is_v4, width, sec, first) in [(true, 4usize, v4, 0usize), (false, 16, v6, n4 as usize)]
        {
            let n = sec.len() / width;
            let mut over = overlay
                .iter()
                .filter(|(k, _)| k.v6 != is_v4)
                .map(|(k, e)| (k.value, e))
                .peekable();
            let value = |i: usize| -> u128 {
                let b = &sec[i * width..(i + 1) * width];
                if is_v4 {
                    u128::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                } else {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(b);
                    u128::from_le_bytes(a)
                }
            };
            let to_bytes = |v: u128| -> Vec<u8> {
                if is_v4 {
                    (v as u32).to_le_bytes().to_vec()
                } else {
                    v.to_le_bytes().to_vec()
                }
            };
            let mut i = 0usize;
            loop {
                let b = (i < n).then(|| value(i));
                let o = over.peek().map(|(v, _)| *v);
                let take_base = match (b, o) {
                    (None, None) => break,
                    (Some(bv), Some(ov)) => bv < ov,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                };
                if take_base {
                    let old = first + i;
                    let e = &cold[old * ENTRY_LEN..(old + 1) * ENTRY_LEN];
                    renumber[old] = out(&mut c, &sec[i * width..(i + 1) * width], e, is_v4);
                    i += 1;
                    continue;
                }
                if b.is_some() && b == o {
                    i += 1; // replaced or removed by the overlay
                }
                if let Some((ov, Some(e))) = over.next() {
                    let idx = out(&mut c, &to_bytes(ov), &e.encode(), is_v4);
                    if e.key != 0 {
                        added.push((e.key, idx));
                    }
                }
            }
        }
        added.sort_unstable();
        let mut added = added.into_iter().peekable();
        for k in keys.chunks_exact(KEY_LEN) {
            let (key, old) = (u32_at(k, 0).ok_or(Corrupt)?, u32_at(k, 4).ok_or(Corrupt)?);
            let new = *renumber.get(old as usize).ok_or(Corrupt)?;
            if new == u32::MAX {
                continue;
            }
            while let Some(a) = added.next_if(|a| *a < (key, new)) {
                c.keys.push(a);
            }
            c.keys.push((key, new));
        }
        c.keys.extend(added);
        Ok(c)
    }
}

impl Snapshot {
    /// Builds a snapshot of `entries` (sorted by address, V4 before V6) in memory.
    fn build(network: &str, stamp: Stamp, entries: &[(IpAddr, Entry)]) -> io::Result<Snapshot> {
        Snapshot::assemble(network, stamp, Columns::from_entries(entries)?)
    }

    /// Lays out the sections, computes the checksums and fences, and writes the header.
    fn assemble(network: &str, stamp: Stamp, c: Columns) -> io::Result<Snapshot> {
        let layout = Layout {
            n4: (c.v4.len() / 4) as u64,
            n6: (c.v6.len() / 16) as u64,
            nkeys: c.keys.len() as u64,
        };
        let nonce = nonce();
        let end = usize::try_from(layout.body_end()).map_err(io::Error::other)?;
        let mut buf = vec![0u8; end];
        let at = |page: u64| page as usize * PAGE;
        let v4_at = at(layout.v4_start());
        buf[v4_at..v4_at + c.v4.len()].copy_from_slice(&c.v4);
        let v6_at = at(layout.v6_start());
        buf[v6_at..v6_at + c.v6.len()].copy_from_slice(&c.v6);
        let cold_at = at(layout.cold_start());
        buf[cold_at..cold_at + c.cold.len()].copy_from_slice(&c.cold);
        let keys_at = at(layout.keys_start());
        for (i, (k, idx)) in c.keys.iter().enumerate() {
            let o = keys_at + i * KEY_LEN;
            buf[o..o + 4].copy_from_slice(&k.to_le_bytes());
            buf[o + 4..o + 8].copy_from_slice(&idx.to_le_bytes());
        }
        let data_pages = layout.data_pages() as usize;
        let sums_at = at(layout.sums_start());
        let mut sums = Vec::with_capacity(data_pages);
        for i in 0..data_pages {
            let p = i as u64 + 1;
            let sum = sum64(page_seed(nonce, p), &buf[at(p)..at(p) + PAGE]);
            buf[sums_at + i * 8..sums_at + i * 8 + 8].copy_from_slice(&sum.to_le_bytes());
            sums.push(sum);
        }
        let sums_sum = sum64(nonce ^ SUMS_SEED, &buf[sums_at..sums_at + data_pages * 8]);
        let fences = Fences {
            v4: c
                .v4
                .chunks_exact(4)
                .step_by(PAGE / 4)
                .filter_map(|b| u32_at(b, 0))
                .collect(),
            v6: c
                .v6
                .chunks_exact(16)
                .step_by(PAGE / 16)
                .filter_map(|b| u128_at(b, 0))
                .collect(),
            keys: c
                .keys
                .iter()
                .step_by(PAGE / KEY_LEN)
                .map(|(k, _)| *k)
                .collect(),
        };
        let mut fence_bytes = Vec::with_capacity(layout.fences_len() as usize);
        fences.encode(&mut fence_bytes);
        let fences_at = at(layout.fences_start());
        buf[fences_at..fences_at + fence_bytes.len()].copy_from_slice(&fence_bytes);
        let fences_sum = sum64(nonce ^ FENCES_SEED, &fence_bytes);
        let mut hdr = Vec::with_capacity(PAGE);
        hdr.extend_from_slice(MAGIC);
        hdr.extend_from_slice(&VERSION.to_le_bytes());
        hdr.extend_from_slice(&(PAGE as u32).to_le_bytes());
        hdr.extend_from_slice(&nonce.to_le_bytes());
        hdr.extend_from_slice(&layout.n4.to_le_bytes());
        hdr.extend_from_slice(&layout.n6.to_le_bytes());
        hdr.extend_from_slice(&layout.nkeys.to_le_bytes());
        stamp.encode(&mut hdr);
        hdr.extend_from_slice(&sums_sum.to_le_bytes());
        hdr.extend_from_slice(&fences_sum.to_le_bytes());
        let name = network.as_bytes();
        let name_len = u16::try_from(name.len()).map_err(io::Error::other)?;
        hdr.extend_from_slice(&name_len.to_le_bytes());
        hdr.extend_from_slice(name);
        if hdr.len() > PAGE - 8 {
            return Err(io::Error::other(
                "network name too long for the index header",
            ));
        }
        buf[..hdr.len()].copy_from_slice(&hdr);
        let hs = sum64(HEADER_SEED, &buf[..PAGE - 8]);
        buf[PAGE - 8..PAGE].copy_from_slice(&hs.to_le_bytes());
        Ok(Snapshot {
            written: false,
            layout,
            nonce,
            sums,
            data: Data::Image(buf),
            fences,
            hint: (None, None),
        })
    }

    /// Writes the (built) snapshot as the index file: into `<network>.tmp` (rewritten in place:
    /// no new inode), then exchanged with `<network>.idx` in one `renameat2(RENAME_EXCHANGE)`,
    /// which leaves the old index under the temporary name for the next write. Where exchange is
    /// not supported: the old index is unlinked, then the temporary file renamed.
    fn write(&mut self, paths: &IndexPaths) -> io::Result<IndexFile> {
        let Data::Image(image) = &self.data else {
            return Err(io::Error::other("only a built snapshot is written"));
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&paths.dir)?;
        // Anything but a regular file under the index's name is left alone (and no index kept).
        match fs::symlink_metadata(&paths.file) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(io::Error::other("the index path is not a regular file"));
            }
            _ => {}
        }
        let tmp = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&paths.tmp)?;
        tmp.write_all_at(image, 0)?;
        tmp.set_len(image.len() as u64)?;
        let ino = tmp.metadata()?.ino();
        drop(tmp);
        match exchange(&paths.tmp, &paths.file) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => fs::rename(&paths.tmp, &paths.file)?,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                match fs::remove_file(&paths.file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                fs::rename(&paths.tmp, &paths.file)?;
            }
            Err(e) => return Err(e),
        }
        self.written = true;
        Ok(IndexFile {
            ino,
            len: image.len() as u64,
            nonce: self.nonce,
            journal: 0,
        })
    }

    fn page(&mut self, p: u64) -> Result<&[u8], Corrupt> {
        let i = usize::try_from(p.checked_sub(1).ok_or(Corrupt)?).map_err(|_| Corrupt)?;
        match &mut self.data {
            Data::Image(image) => {
                let at = usize::try_from(p).map_err(|_| Corrupt)? * PAGE;
                image.get(at..at + PAGE).ok_or(Corrupt)
            }
            Data::Paged { file, pages } => {
                let slot = pages.get_mut(i).ok_or(Corrupt)?;
                if slot.is_none() {
                    let mut buf = vec![0u8; PAGE].into_boxed_slice();
                    file.read_exact_at(&mut buf, p * PAGE_U)
                        .map_err(|_| Corrupt)?;
                    if sum64(page_seed(self.nonce, p), &buf) != *self.sums.get(i).ok_or(Corrupt)? {
                        return Err(Corrupt);
                    }
                    *slot = Some(buf);
                }
                slot.as_deref().ok_or(Corrupt)
            }
        }
    }

    /// Reads the whole snapshot (one `pread`), verifying every data page.
    fn load_all(&mut self) -> Result<(), Corrupt> {
        let Data::Paged { file, .. } = &self.data else {
            return Ok(());
        };
        let len = usize::try_from(self.layout.body_end()).map_err(|_| Corrupt)?;
        let mut image = vec![0u8; len];
        file.read_exact_at(&mut image, 0).map_err(|_| Corrupt)?;
        let n = self.sums.len();
        for (i, chunk) in image[PAGE..(n + 1) * PAGE].chunks_exact(PAGE).enumerate() {
            if sum64(page_seed(self.nonce, i as u64 + 1), chunk) != self.sums[i] {
                return Err(Corrupt);
            }
        }
        self.data = Data::Image(image);
        Ok(())
    }

    fn elem(&mut self, start: u64, size: usize, i: u64) -> Result<&[u8], Corrupt> {
        let off = i * size as u64;
        let p = start + off / PAGE_U;
        let at = (off % PAGE_U) as usize;
        self.page(p)?.get(at..at + size).ok_or(Corrupt)
    }

    /// Element `i` of a sorted section if its page is already in memory (`None` otherwise, or
    /// past the end): a hint never costs a page read.
    fn cached(&self, start: u64, size: usize, i: u64) -> Option<&[u8]> {
        let off = i * size as u64;
        let p = start + off / PAGE_U;
        let at = (off % PAGE_U) as usize;
        let page = match &self.data {
            Data::Image(image) => image.get(usize::try_from(p).ok()? * PAGE..)?,
            Data::Paged { pages, .. } => pages
                .get(usize::try_from(p.checked_sub(1)?).ok()?)?
                .as_deref()?,
        };
        page.get(at..at + size)
    }

    fn v4_cached(&self, i: u64) -> Option<u32> {
        u32_at(self.cached(self.layout.v4_start(), 4, i)?, 0)
    }

    fn v6_cached(&self, i: u64) -> Option<u128> {
        u128_at(self.cached(self.layout.v6_start(), 16, i)?, 0)
    }

    fn v4(&mut self, i: u64) -> Result<u32, Corrupt> {
        let s = self.layout.v4_start();
        u32_at(self.elem(s, 4, i)?, 0).ok_or(Corrupt)
    }

    fn v6(&mut self, i: u64) -> Result<u128, Corrupt> {
        let s = self.layout.v6_start();
        u128_at(self.elem(s, 16, i)?, 0).ok_or(Corrupt)
    }

    fn key(&mut self, i: u64) -> Result<(u32, u32), Corrupt> {
        let s = self.layout.keys_start();
        let b = self.elem(s, KEY_LEN, i)?;
        Ok((u32_at(b, 0).ok_or(Corrupt)?, u32_at(b, 4).ok_or(Corrupt)?))
    }

    fn cold(&mut self, idx: u64) -> Result<Entry, Corrupt> {
        let s = self.layout.cold_start();
        Entry::decode(self.elem(s, ENTRY_LEN, idx)?).ok_or(Corrupt)
    }

    fn ip(&mut self, idx: u64) -> Result<IpAddr, Corrupt> {
        if idx < self.layout.n4 {
            Ok(IpAddr::V4(Ipv4Addr::from(self.v4(idx)?)))
        } else if idx < self.layout.n4 + self.layout.n6 {
            Ok(IpAddr::V6(Ipv6Addr::from(self.v6(idx - self.layout.n4)?)))
        } else {
            Err(Corrupt)
        }
    }

    /// First index in `lo..hi` whose value is not less than the target, by `less(i)` (`hi` if
    /// none).
    fn lower_bound(
        &mut self,
        (mut lo, mut hi): (u64, u64),
        mut less: impl FnMut(&mut Self, u64) -> Result<bool, Corrupt>,
    ) -> Result<u64, Corrupt> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if less(self, mid)? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// The entry index of `ip`, if present.
    fn find(&mut self, ip: IpAddr) -> Result<Option<u64>, Corrupt> {
        if let Data::Image(image) = &self.data {
            return find_in_image(image, &self.layout, &self.fences, &mut self.hint, ip);
        }
        match ip {
            IpAddr::V4(v4) => {
                let t = u32::from(v4);
                let n = self.layout.n4;
                if let Some(h) = self
                    .hint
                    .0
                    .filter(|h| h + 1 < n && self.v4_cached(*h) < Some(t))
                {
                    let next = self.v4(h + 1)?;
                    if next >= t {
                        self.hint.0 = Some(if next == t { h + 1 } else { h });
                        return Ok((next == t).then_some(h + 1));
                    }
                }
                let w = window(&self.fences.v4, PAGE_U / 4, n, &t);
                let i = self.lower_bound(w, |s, i| Ok(s.v4(i)? < t))?;
                let found = i < n && self.v4(i)? == t;
                self.hint.0 = Some(if found { i } else { i.saturating_sub(1) });
                Ok(found.then_some(i))
            }
            IpAddr::V6(v6) => {
                let t = u128::from(v6);
                let n = self.layout.n6;
                if let Some(h) = self
                    .hint
                    .1
                    .filter(|h| h + 1 < n && self.v6_cached(*h) < Some(t))
                {
                    let next = self.v6(h + 1)?;
                    if next >= t {
                        self.hint.1 = Some(if next == t { h + 1 } else { h });
                        return Ok((next == t).then_some(self.layout.n4 + h + 1));
                    }
                }
                let w = window(&self.fences.v6, PAGE_U / 16, n, &t);
                let i = self.lower_bound(w, |s, i| Ok(s.v6(i)? < t))?;
                let found = i < n && self.v6(i)? == t;
                self.hint.1 = Some(if found { i } else { i.saturating_sub(1) });
                Ok(found.then_some(self.layout.n4 + i))
            }
        }
    }

    fn contains(&mut self, ip: IpAddr) -> Result<bool, Corrupt> {
        Ok(self.find(ip)?.is_some())
    }

    fn get(&mut self, ip: IpAddr) -> Result<Option<Entry>, Corrupt> {
        self.find(ip)?.map(|i| self.cold(i)).transpose()
    }

    fn with_key(&mut self, key: u32) -> Result<Vec<IpAddr>, Corrupt> {
        let n = self.layout.nkeys;
        let w = window(&self.fences.keys, PAGE_U / KEY_LEN as u64, n, &key);
        let mut i = self.lower_bound(w, |s, i| Ok(s.key(i)?.0 < key))?;
        let mut out = Vec::new();
        while i < n {
            let (k, idx) = self.key(i)?;
            if k != key {
                break;
            }
            out.push(self.ip(u64::from(idx))?);
            i += 1;
        }
        Ok(out)
    }

    fn all(&mut self) -> Result<Vec<(IpAddr, Entry)>, Corrupt> {
        self.load_all()?;
        let total = self.layout.n4 + self.layout.n6;
        let mut out = Vec::with_capacity(usize::try_from(total).map_err(|_| Corrupt)?);
        let mut prev: Option<IpAddr> = None;
        for idx in 0..total {
            let ip = self.ip(idx)?;
            if prev.is_some_and(|p| p >= ip) {
                return Err(Corrupt); // not sorted: not something this crate wrote
            }
            prev = Some(ip);
            out.push((ip, self.cold(idx)?));
        }
        Ok(out)
    }
}

/// One change recorded in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put(IpAddr, Entry),
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
            out.extend_from_slice(&e.encode());
        }
    }

    /// Decodes one op at `b[*at..]`, advancing `at`.
    fn decode(b: &[u8], at: &mut usize) -> Option<Op> {
        let kind = *b.get(*at)?;
        *at += 1;
        let ip = match kind & 0x7f {
            4 => {
                let o: [u8; 4] = b.get(*at..*at + 4)?.try_into().ok()?;
                *at += 4;
                IpAddr::V4(Ipv4Addr::from(o))
            }
            6 => {
                let o: [u8; 16] = b.get(*at..*at + 16)?.try_into().ok()?;
                *at += 16;
                IpAddr::V6(Ipv6Addr::from(o))
            }
            _ => return None,
        };
        match kind & 0x80 {
            0 => {
                let e = Entry::decode(b.get(*at..*at + ENTRY_LEN)?)?;
                *at += ENTRY_LEN;
                Some(Op::Put(ip, e))
            }
            _ => Some(Op::Del(ip)),
        }
    }
}

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

/// Counts of one scan.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanCounts {
    pub read: u64,
    pub statted: u64,
    pub incremental: bool,
}

/// An address as an ordered pair of integers: IPv4 before IPv6, then by value (the order of
/// `IpAddr`), compared without `IpAddr`'s enum dispatch (the journal's maps compare a lot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    v6: bool,
    value: u128,
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

    /// The snapshot's sections with the overlay applied (reads the whole snapshot).
    fn merged(&mut self) -> Result<Columns, Corrupt> {
        self.base.load_all()?;
        let Data::Image(image) = &self.base.data else {
            return Err(Corrupt);
        };
        Columns::merge(image, &self.base.layout, &self.overlay)
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
        let mut hdr = vec![0u8; PAGE];
        file.read_exact_at(&mut hdr, 0).ok()?;
        if &hdr[0..8] != MAGIC
            || u32_at(&hdr, 8)? != VERSION
            || u32_at(&hdr, 12)? != PAGE as u32
            || u64_at(&hdr, PAGE - 8)? != sum64(HEADER_SEED, &hdr[..PAGE - 8])
        {
            return None;
        }
        let nonce = u64_at(&hdr, 16)?;
        let layout = Layout {
            n4: u64_at(&hdr, 24)?,
            n6: u64_at(&hdr, 32)?,
            nkeys: u64_at(&hdr, 40)?,
        };
        // Bounded by the file's length before anything is allocated from the counts.
        if layout.n4 > len || layout.n6 > len || layout.nkeys > len {
            return None;
        }
        let stamp = Stamp::decode(&hdr[48..48 + STAMP_LEN])?;
        let sums_sum = u64_at(&hdr, 104)?;
        let fences_sum = u64_at(&hdr, 112)?;
        let name_len = usize::from(u16::from_le_bytes(hdr.get(120..122)?.try_into().ok()?));
        if hdr.get(122..122 + name_len)? != network.as_bytes() {
            return None;
        }
        let body_end = layout.body_end();
        if len < body_end {
            return None;
        }
        let data_pages = usize::try_from(layout.data_pages()).ok()?;
        let mut sums_raw = vec![0u8; data_pages * 8];
        file.read_exact_at(&mut sums_raw, layout.sums_start() * PAGE_U)
            .ok()?;
        if sum64(nonce ^ SUMS_SEED, &sums_raw) != sums_sum {
            return None;
        }
        let sums = sums_raw
            .chunks_exact(8)
            .filter_map(|c| u64_at(c, 0))
            .collect();
        let mut fences_raw = vec![0u8; usize::try_from(layout.fences_len()).ok()?];
        file.read_exact_at(&mut fences_raw, layout.fences_start() * PAGE_U)
            .ok()?;
        if sum64(nonce ^ FENCES_SEED, &fences_raw) != fences_sum {
            return None;
        }
        let fences = Fences::decode(&fences_raw, &layout)?;
        let mut journal = vec![0u8; usize::try_from(len - body_end).ok()?];
        file.read_exact_at(&mut journal, body_end).ok()?;
        let mut index = Index {
            base: Snapshot {
                written: true,
                layout,
                nonce,
                sums,
                data: Data::Paged {
                    file,
                    pages: vec![None; data_pages],
                },
                fences,
                hint: (None, None),
            },
            overlay: BTreeMap::new(),
            by_key: BTreeSet::new(),
            pending: Vec::new(),
            stamp,
        };
        let mut at = 0usize;
        let mut ops = Vec::new();
        let complete = loop {
            if at == journal.len() {
                break true;
            }
            match parse_record(&journal, at, nonce, body_end, &mut ops) {
                Some((next, stamp)) => {
                    for op in ops.drain(..) {
                        index.apply(op);
                    }
                    index.stamp = stamp;
                    at = next;
                }
                None => break false,
            }
        };
        let f = IndexFile {
            ino: md.ino(),
            len,
            nonce,
            journal: len - body_end,
        };
        Some((index, f, complete))
    }

    /// Rebuilds the index from the directory. With an old index (`base`, even a stale one), a
    /// file whose name and inode it knows is only `lstat`ed and reused if its stamp is the same;
    /// any other file is read. `stamp` is the directory's stamp taken before listing it. The
    /// result is a snapshot in memory, written at the next save.
    pub fn scan(
        dir: &Path,
        network: &str,
        base: Option<Index>,
        stamp: Stamp,
    ) -> io::Result<(Index, ScanCounts)> {
        let mut counts = ScanCounts::default();
        let old: Vec<(IpAddr, Entry)> = match base {
            Some(mut b) => match b.all() {
                Ok(v) => {
                    counts.incremental = true;
                    v
                }
                Err(Corrupt) => Vec::new(),
            },
            None => Vec::new(),
        };
        let mut names: Vec<(IpAddr, fs::DirEntry)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(ip) = parse_ip(name) else { continue };
            if is_canonical_name(ip, name) {
                names.push((ip, entry));
            }
        }
        names.sort_unstable_by_key(|(ip, _)| *ip);
        let mut entries: Vec<(IpAddr, Entry)> = Vec::with_capacity(names.len());
        let mut old = old.into_iter().peekable();
        for (ip, entry) in names {
            while old.next_if(|(oip, _)| *oip < ip).is_some() {}
            let known = old
                .next_if(|(oip, _)| *oip == ip)
                .map(|(_, e)| e)
                .filter(|e| e.ino == entry.ino());
            if let Some(e) = known {
                match entry.metadata() {
                    Ok(md) if e.same_file(&md) => {
                        counts.statted += 1;
                        entries.push((ip, e));
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) if err.kind() == ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                }
            }
            counts.read += 1;
            if let Some((e, _)) = read_entry(&entry.path())? {
                entries.push((ip, e));
            }
        }
        let index = Index {
            base: Snapshot::build(network, stamp, &entries)?,
            overlay: BTreeMap::new(),
            by_key: BTreeSet::new(),
            pending: Vec::new(),
            stamp,
        };
        Ok((index, counts))
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
        let SaveHow { rewrite, limit } = how;
        let mut record = Vec::with_capacity(72 + self.pending.len() * 60);
        record.extend_from_slice(&[0u8; 12]);
        stamp.encode(&mut record);
        record.extend_from_slice(&(self.pending.len() as u32).to_le_bytes());
        for op in &self.pending {
            op.encode(&mut record);
        }
        let rec_len = record.len() as u64;
        let limit = limit.unwrap_or_else(|| journal_limit(self.base.layout.body_end()));
        let target = if rewrite || rec_len > limit {
            None
        } else if !self.base.written {
            match self.base.write(paths) {
                Ok(f) => {
                    stats.snapshots_written += 1;
                    Some(f)
                }
                Err(e) => return Err(SaveError::Io(e)),
            }
        } else {
            file.filter(|f| f.journal + rec_len <= limit)
        };
        let appended = target.map(|f| append(paths, f, &mut record));
        let f = match appended {
            Some(Ok(f)) => {
                stats.records_appended += 1;
                f
            }
            other => {
                if let Some(Err(e)) = other {
                    tracing::debug!(error = %e, "appending to the host-local index; writing a snapshot");
                }
                let cols = self.merged().map_err(|Corrupt| SaveError::Corrupt)?;
                let mut snap = Snapshot::assemble(network, stamp, cols).map_err(SaveError::Io)?;
                let f = snap.write(paths).map_err(SaveError::Io)?;
                stats.snapshots_written += 1;
                self.base = snap;
                self.overlay.clear();
                self.by_key.clear();
                f
            }
        };
        self.pending.clear();
        self.stamp = stamp;
        Ok(f)
    }
}

/// Whether `name` is exactly how the reference names `ip` (Go's `net.IP.String()`), without
/// allocating.
fn is_canonical_name(ip: IpAddr, name: &str) -> bool {
    use std::io::Write;
    let mut buf = [0u8; 48];
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    if write!(cur, "{ip}").is_err() {
        return false;
    }
    let n = cur.position() as usize;
    &buf[..n] == name.as_bytes()
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

/// Parses the journal record at `at`: (offset after it, stamp, ops), or `None` if it is torn or
/// does not verify.
fn parse_record(
    j: &[u8],
    at: usize,
    nonce: u64,
    body_end: u64,
    ops: &mut Vec<Op>,
) -> Option<(usize, Stamp)> {
    let len = usize::try_from(u32_at(j, at)?).ok()?;
    let sum = u64_at(j, at + 4)?;
    let payload = j.get(at + 12..(at + 12).checked_add(len)?)?;
    if sum64(nonce ^ mix(body_end + at as u64), payload) != sum {
        return None;
    }
    let stamp = Stamp::decode(payload.get(..STAMP_LEN)?)?;
    let n = u32_at(payload, STAMP_LEN)?;
    let mut p = STAMP_LEN + 4;
    ops.clear();
    for _ in 0..n {
        ops.push(Op::decode(payload, &mut p)?);
    }
    (p == payload.len()).then_some((at + 12 + len, stamp))
}

/// Appends `record` (its 12-byte prefix still to fill) to the index file, if it is still `f`.
fn append(paths: &IndexPaths, f: IndexFile, record: &mut [u8]) -> io::Result<IndexFile> {
    let file = OpenOptions::new().write(true).open(&paths.file)?;
    let md = file.metadata()?;
    if (md.ino(), md.len()) != (f.ino, f.len) {
        return Err(io::Error::other("the index file changed"));
    }
    let payload_len = u32::try_from(record.len() - 12).map_err(io::Error::other)?;
    let sum = sum64(f.nonce ^ mix(f.len), &record[12..]);
    record[0..4].copy_from_slice(&payload_len.to_le_bytes());
    record[4..12].copy_from_slice(&sum.to_le_bytes());
    file.write_all_at(record, f.len)?;
    Ok(IndexFile {
        len: f.len + record.len() as u64,
        journal: f.journal + record.len() as u64,
        ..f
    })
}

/// Exchanges two names atomically (`renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A value that differs between snapshots (time, process, counter): it seeds every checksum, so
/// a page or record copied from another snapshot does not verify.
fn nonce() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    mix(t ^ (u64::from(std::process::id()) << 40) ^ mix(c))
}

/// Reads a reservation file: its entry (stamp from `lstat` of the name) and holder. `None` if it
/// is gone. A directory, FIFO, socket or device named like an address is reserved with an
/// unknown holder (never opened for reading: a FIFO would block); a symlink is followed for its
/// content, as the reference's `os.ReadFile` does.
pub(crate) fn read_entry(path: &Path) -> io::Result<Option<(Entry, Holder)>> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let (md, holder) = match opened {
        Ok(mut f) => {
            let md = f.metadata()?;
            let holder = if md.is_file() {
                let mut c = Vec::with_capacity(96);
                f.read_to_end(&mut c)?;
                Holder::parse(&c)
            } else {
                Holder::Unknown
            };
            (md, holder)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            let md = match fs::symlink_metadata(path) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            let holder = match fs::read(path) {
                Ok(c) => Holder::parse(&c),
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory) => {
                    Holder::Unknown
                }
                Err(e) => return Err(e),
            };
            (md, holder)
        }
        Err(e) => return Err(e),
    };
    let key = holder_hash(&holder);
    Ok(Some((Entry::new(&md, key), holder)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            dev: 1,
            ino: 2,
            mtime: (3, 4),
            ctime: (3, 5),
            size: 4096,
        }
    }

    fn entry(i: u64, key: u32) -> Entry {
        Entry {
            ino: 1000 + i,
            ctime: i as i64 * 7,
            mtime: i as i64 * 5,
            size: 15,
            key,
        }
    }

    fn pages_read(ix: &Index) -> usize {
        match &ix.base.data {
            Data::Paged { pages, .. } => pages.iter().flatten().count(),
            Data::Image(_) => usize::MAX,
        }
    }

    fn paths(d: &Path) -> IndexPaths {
        IndexPaths::new(d, "net").unwrap()
    }

    fn write_snapshot(
        p: &IndexPaths,
        net: &str,
        stamp: Stamp,
        entries: &[(IpAddr, Entry)],
    ) -> io::Result<IndexFile> {
        Snapshot::build(net, stamp, entries)?.write(p)
    }

    fn sample(n: u32) -> Vec<(IpAddr, Entry)> {
        let mut v: Vec<(IpAddr, Entry)> = (0..n)
            .map(|i| {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 3));
                (
                    ip,
                    entry(u64::from(i), key_hash(&format!("c{}\r\neth0", i % 97))),
                )
            })
            .collect();
        for i in 0..(n / 10) {
            let ip = IpAddr::V6(Ipv6Addr::from(
                (0x2001_0db8_u128 << 96) | (u128::from(i) * 5),
            ));
            v.push((
                ip,
                entry(
                    u64::from(i) + 1_000_000,
                    if i % 3 == 0 { 0 } else { 77 | 1 },
                ),
            ));
        }
        v
    }

    #[test]
    fn checksum_detects_single_word_changes() {
        let data = vec![7u8; 4096];
        let s = sum64(1, &data);
        for i in (0..4096).step_by(97) {
            let mut d = data.clone();
            d[i] ^= 0x10;
            assert_ne!(sum64(1, &d), s, "{i}");
        }
        assert_ne!(sum64(2, &data), s);
        assert_ne!(sum64(1, &vec![0u8; 4096]), sum64(1, &vec![0u8; 4095]));
    }

    #[test]
    fn snapshot_round_trip_and_lookups() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let entries = sample(5000);
        let f = write_snapshot(&p, "net", stamp(), &entries).unwrap();
        let (mut ix, f2, complete) = Index::load(&p, "net").unwrap();
        assert!(complete);
        assert_eq!(f, f2);
        assert_eq!(ix.stamp, stamp());
        // One lookup reads one page of addresses (the fences say which).
        assert!(ix.contains(entries[2500].0).unwrap());
        assert_eq!(pages_read(&ix), 1);
        let k = key_hash("c5\r\neth0");
        let want: Vec<IpAddr> = entries
            .iter()
            .filter(|(_, e)| e.key == k)
            .map(|(ip, _)| *ip)
            .collect();
        assert_eq!(ix.with_key(k).unwrap(), want);
        let read = pages_read(&ix);
        assert!(read < 12, "{read} pages read");
        // Every address and its absent neighbours, every key and absent ones.
        let present: BTreeSet<IpAddr> = entries.iter().map(|(ip, _)| *ip).collect();
        for (ip, e) in &entries {
            assert!(ix.contains(*ip).unwrap());
            assert_eq!(ix.get(*ip).unwrap(), Some(*e));
            let next = match ip {
                IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(*v) + 1)),
                IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(*v) + 1)),
            };
            assert_eq!(
                ix.contains(next).unwrap(),
                present.contains(&next),
                "{next}"
            );
        }
        assert!(!ix.contains("10.0.0.1".parse().unwrap()).unwrap());
        assert!(!ix.contains("255.0.0.1".parse().unwrap()).unwrap());
        assert!(!ix.contains("2001:db8::1".parse().unwrap()).unwrap());
        assert!(!ix.contains("::1".parse().unwrap()).unwrap());
        let mut keys: Vec<u32> = entries.iter().map(|(_, e)| e.key).collect();
        keys.extend([1, 3, u32::MAX, key_hash("absent")]);
        for k in keys {
            let want: Vec<IpAddr> = entries
                .iter()
                .filter(|(_, e)| e.key == k && k != 0)
                .map(|(ip, _)| *ip)
                .collect();
            assert_eq!(ix.with_key(k).unwrap(), want, "{k}");
        }
        assert_eq!(ix.all().unwrap(), entries);
        // Now whole in memory: the same answers without pages.
        assert!(matches!(ix.base.data, Data::Image(_)));
        for (ip, e) in &entries {
            assert_eq!(ix.get(*ip).unwrap(), Some(*e));
            let next = match ip {
                IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(*v) + 1)),
                IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(*v) + 1)),
            };
            assert_eq!(
                ix.contains(next).unwrap(),
                present.contains(&next),
                "{next}"
            );
        }
        assert!(!ix.contains("255.0.0.1".parse().unwrap()).unwrap());
        assert!(!ix.contains("::1".parse().unwrap()).unwrap());
        // Wrong network name: not this index.
        assert!(Index::load(&p, "other").is_none());
    }

    #[test]
    fn merge_equals_a_rebuild() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut r = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for round in 0..40 {
            let n = (r() % 3000) as u32;
            let mut base: Vec<(IpAddr, Entry)> = Vec::new();
            for i in 0..n {
                if r() % 3 != 0 {
                    let e = entry(u64::from(i), (r() % 7) as u32 * 2 + 1);
                    base.push((IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), e));
                }
            }
            for i in 0..n / 5 {
                if r() % 2 == 0 {
                    let ip = IpAddr::V6(Ipv6Addr::from((0xfd00_u128 << 112) | u128::from(i)));
                    base.push((ip, entry(u64::from(i) + 9, (r() % 3) as u32)));
                }
            }
            let snap = Snapshot::build("net", stamp(), &base).unwrap();
            let mut ix = Index {
                base: snap,
                overlay: BTreeMap::new(),
                by_key: BTreeSet::new(),
                pending: Vec::new(),
                stamp: stamp(),
            };
            for _ in 0..(r() % 200) {
                let v6 = r() % 4 == 0;
                let ip = if v6 {
                    IpAddr::V6(Ipv6Addr::from(
                        0xfd00_u128 << 112 | u128::from(r() % u64::from(n + 10)),
                    ))
                } else {
                    IpAddr::V4(Ipv4Addr::from(
                        0x0a00_0000 + (r() % u64::from(n + 10)) as u32,
                    ))
                };
                if r() % 3 == 0 {
                    ix.remove(ip);
                } else {
                    ix.put(ip, entry(r() % 1000, (r() % 9) as u32));
                }
            }
            let want = Columns::from_entries(&ix.all().unwrap()).unwrap();
            let got = ix.merged().unwrap();
            assert_eq!(
                (got.v4, got.v6, got.cold, got.keys),
                (want.v4, want.v6, want.cold, want.keys),
                "round {round}"
            );
        }
    }

    #[test]
    fn one_key_over_many_pages() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let entries: Vec<(IpAddr, Entry)> = (0..3000u32)
            .map(|i| {
                (
                    IpAddr::V4(Ipv4Addr::from(i * 2)),
                    entry(u64::from(i), if i % 3 == 0 { 5 } else { 7 }),
                )
            })
            .collect();
        write_snapshot(&p, "net", stamp(), &entries).unwrap();
        let (mut ix, _, _) = Index::load(&p, "net").unwrap();
        for k in [5u32, 7] {
            let want: Vec<IpAddr> = entries
                .iter()
                .filter(|(_, e)| e.key == k)
                .map(|(ip, _)| *ip)
                .collect();
            assert_eq!(ix.with_key(k).unwrap(), want);
        }
        assert!(ix.with_key(6).unwrap().is_empty());
        assert!(ix.with_key(9).unwrap().is_empty());
    }

    #[test]
    fn journal_round_trip_and_torn_tail() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let mut stats = IndexStats::default();
        let entries = sample(300);
        let f = write_snapshot(&p, "net", stamp(), &entries).unwrap();
        let (mut ix, _, _) = Index::load(&p, "net").unwrap();
        let a: IpAddr = "10.9.9.9".parse().unwrap();
        ix.put(a, entry(1, key_hash("x\r\neth0")));
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
        assert_eq!(re.with_key(key_hash("x\r\neth0")).unwrap(), vec![a]);
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
    fn corrupt_or_foreign_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        let entries = sample(3000);
        write_snapshot(&p, "net", stamp(), &entries).unwrap();
        let good = fs::read(&p.file).unwrap();
        // Header, checksum table, truncation, other version: refused at load.
        for (at, what) in [
            (3usize, "magic"),
            (8, "version"),
            (30, "count"),
            (PAGE + 5, "data"),
        ] {
            let mut b = good.clone();
            b[at] ^= 1;
            fs::write(&p.file, &b).unwrap();
            match Index::load(&p, "net") {
                None => assert_ne!(what, "data"),
                Some((mut ix, _, _)) => {
                    assert_eq!(what, "data");
                    // A corrupt data page is found when read.
                    assert_eq!(ix.all(), Err(Corrupt));
                }
            }
        }
        fs::write(&p.file, &good[..good.len() - 1]).unwrap();
        assert!(Index::load(&p, "net").is_none());
        fs::write(&p.file, b"").unwrap();
        assert!(Index::load(&p, "net").is_none());
        fs::write(&p.file, vec![0u8; good.len()]).unwrap();
        assert!(Index::load(&p, "net").is_none());
    }
}

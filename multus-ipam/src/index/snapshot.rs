//! A snapshot of a network directory's reservations: built in memory (by a scan or a compaction)
//! and written whole, or read from the index file page by page, each page verified against its
//! checksum when first read. The page format is in [`super::layout`].
//!
//! A fresh process reads the header, the page checksums and the fences, then one page per lookup:
//! an ADD in a /16 reads a handful of pages whatever the fill. Successive lookups of consecutive
//! addresses (the allocator's walk) start from where the last one ended.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::codec::{le, nonce, page_seed, sum64, Le, Reader};
use super::columns::Columns;
use super::layout::{
    window, Fences, Header, Layout, FENCES_SEED, KEY_LEN, PAGE, PAGE_U, SUMS_SEED,
};
use super::stamp::{Entry, Stamp, ENTRY_LEN};
use super::{Corrupt, IndexFile, IndexPaths};

/// A snapshot, with what a lookup needs in memory.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Whether it is on disk (as the start of the index file).
    pub written: bool,
    pub layout: Layout,
    pub nonce: u64,
    sums: Vec<u64>,
    pub data: Data,
    fences: Fences,
    /// Where the last lookup of each family (IPv4, IPv6) ended: the allocator asks for
    /// consecutive addresses, so the next answer is usually one step further.
    hint: [Option<u64>; 2],
}

/// The bytes of a snapshot.
#[derive(Debug)]
pub(crate) enum Data {
    /// All of it, from the header to the fences (built, or read whole).
    Image(Vec<u8>),
    /// Read from `file` page by page: data page `p` at `pages[p - 1]` once read and verified.
    Paged {
        file: File,
        pages: Vec<Option<Box<[u8]>>>,
    },
}

impl Snapshot {
    /// Builds a snapshot of `entries` (sorted by address, V4 before V6) in memory.
    pub fn build(network: &str, stamp: Stamp, entries: &[(IpAddr, Entry)]) -> io::Result<Snapshot> {
        Snapshot::assemble(network, stamp, Columns::from_entries(entries)?)
    }

    /// Lays out the sections, computes the checksums and fences, and writes the header.
    pub fn assemble(network: &str, stamp: Stamp, c: Columns) -> io::Result<Snapshot> {
        let layout = Layout {
            n4: (c.v4.len() / 4) as u64,
            n6: (c.v6.len() / 16) as u64,
            nkeys: c.keys.len() as u64,
        };
        let nonce = nonce();
        let end = usize::try_from(layout.body_end()).map_err(io::Error::other)?;
        let mut buf = vec![0u8; end];
        let at = |page: u64| page as usize * PAGE;
        let mut keys = Vec::with_capacity(c.keys.len() * KEY_LEN);
        c.keys
            .iter()
            .for_each(|(k, i)| ((u64::from(*i) << 32) | u64::from(*k)).put(&mut keys));
        for (start, bytes) in [
            (layout.v4_start(), &c.v4),
            (layout.v6_start(), &c.v6),
            (layout.cold_start(), &c.cold),
            (layout.keys_start(), &keys),
        ] {
            buf[at(start)..at(start) + bytes.len()].copy_from_slice(bytes);
        }
        let data_pages = layout.data_pages() as usize;
        let mut sums = Vec::with_capacity(data_pages);
        let mut table = Vec::with_capacity(data_pages * 8);
        for (i, page) in buf[PAGE..at(layout.sums_start())]
            .chunks_exact(PAGE)
            .enumerate()
        {
            let sum = sum64(page_seed(nonce, i as u64 + 1), page);
            sum.put(&mut table);
            sums.push(sum);
        }
        let fences = Fences::of(&c.v4, &c.v6, &c.keys);
        let mut fence_bytes = Vec::with_capacity(layout.fences_len() as usize);
        fences.encode(&mut fence_bytes);
        for (start, bytes) in [
            (layout.sums_start(), &table),
            (layout.fences_start(), &fence_bytes),
        ] {
            buf[at(start)..at(start) + bytes.len()].copy_from_slice(bytes);
        }
        let header = Header {
            nonce,
            layout,
            stamp,
            sums_sum: sum64(nonce ^ SUMS_SEED, &table),
            fences_sum: sum64(nonce ^ FENCES_SEED, &fence_bytes),
        };
        let page = header
            .encode(network)
            .ok_or_else(|| io::Error::other("network name too long for the index header"))?;
        buf[..PAGE].copy_from_slice(&page);
        Ok(Snapshot {
            written: false,
            layout,
            nonce,
            sums,
            data: Data::Image(buf),
            fences,
            hint: [None; 2],
        })
    }

    /// Opens the snapshot at the start of `file` (`len` bytes) for `network`: reads and verifies
    /// the header, the page checksums and the fences; the data pages are read when needed. `None`
    /// if any of that does not verify.
    pub fn open(file: File, len: u64, network: &str) -> Option<(Snapshot, Stamp)> {
        let mut hdr = vec![0u8; PAGE];
        file.read_exact_at(&mut hdr, 0).ok()?;
        let h = Header::decode(&hdr, network)?;
        let layout = h.layout;
        // Bounded by the file's length before anything is allocated from the counts.
        if layout.n4 > len || layout.n6 > len || layout.nkeys > len || len < layout.body_end() {
            return None;
        }
        let data_pages = usize::try_from(layout.data_pages()).ok()?;
        let mut table = vec![0u8; data_pages * 8];
        file.read_exact_at(&mut table, layout.sums_start() * PAGE_U)
            .ok()?;
        if sum64(h.nonce ^ SUMS_SEED, &table) != h.sums_sum {
            return None;
        }
        let mut r = Reader::new(&table);
        let sums = (0..data_pages).map(|_| r.get()).collect::<Option<_>>()?;
        let mut fences = vec![0u8; usize::try_from(layout.fences_len()).ok()?];
        file.read_exact_at(&mut fences, layout.fences_start() * PAGE_U)
            .ok()?;
        if sum64(h.nonce ^ FENCES_SEED, &fences) != h.fences_sum {
            return None;
        }
        let snapshot = Snapshot {
            written: true,
            layout,
            nonce: h.nonce,
            sums,
            data: Data::Paged {
                file,
                pages: vec![None; data_pages],
            },
            fences: Fences::decode(&fences, &layout)?,
            hint: [None; 2],
        };
        Some((snapshot, h.stamp))
    }

    /// The bytes of its file after the snapshot, up to `len` (the journal); `None` if they cannot
    /// be read, or the snapshot is not read from a file.
    pub fn read_after(&self, len: u64) -> Option<Vec<u8>> {
        let Data::Paged { file, .. } = &self.data else {
            return None;
        };
        let end = self.layout.body_end();
        let mut tail = vec![0u8; usize::try_from(len.checked_sub(end)?).ok()?];
        file.read_exact_at(&mut tail, end).ok()?;
        Some(tail)
    }

    /// Writes the (built) snapshot as the index file: into `<network>.tmp` (rewritten in place:
    /// no new inode), then exchanged with `<network>.idx` in one `renameat2(RENAME_EXCHANGE)`,
    /// which leaves the old index under the temporary name for the next write. Where exchange is
    /// not supported: the old index is unlinked, then the temporary file renamed.
    ///
    /// Not `multus_core::fs::write_atomic` (a new temporary file renamed over the target): on ext4
    /// a new inode per snapshot and a rename over an existing file (which flushes the new file's
    /// data) cost more than the whole ADD (measured, BENCHMARKS.md); and this file is a cache that
    /// only this crate reads, with every torn state detected by its checksums.
    pub fn write(&mut self, paths: &IndexPaths) -> io::Result<IndexFile> {
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

    /// Data page `p` (from 1), read and verified if not in memory yet.
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
    pub fn load_all(&mut self) -> Result<(), Corrupt> {
        let Data::Paged { file, .. } = &self.data else {
            return Ok(());
        };
        let len = usize::try_from(self.layout.body_end()).map_err(|_| Corrupt)?;
        let mut image = vec![0u8; len];
        file.read_exact_at(&mut image, 0).map_err(|_| Corrupt)?;
        let n = self.sums.len();
        let data = image.get(PAGE..(n + 1) * PAGE).ok_or(Corrupt)?;
        for (i, (chunk, sum)) in data.chunks_exact(PAGE).zip(&self.sums).enumerate() {
            if sum64(page_seed(self.nonce, i as u64 + 1), chunk) != *sum {
                return Err(Corrupt);
            }
        }
        self.data = Data::Image(image);
        Ok(())
    }

    /// Where element `i` of `size` bytes of the section at page `start` is: (page, offset).
    fn locate(start: u64, size: usize, i: u64) -> (u64, usize) {
        let off = i.saturating_mul(size as u64);
        (start.saturating_add(off / PAGE_U), (off % PAGE_U) as usize)
    }

    /// Element `i` of the section at page `start` (elements never straddle pages).
    fn elem<T: Le>(&mut self, start: u64, i: u64) -> Result<T, Corrupt> {
        let (p, at) = Snapshot::locate(start, T::LEN, i);
        le(self.page(p)?, at).ok_or(Corrupt)
    }

    /// Element `i` of a section if its page is already in memory (`None` otherwise, or past the
    /// end): a hint never costs a page read.
    fn cached<T: Le>(&self, start: u64, i: u64) -> Option<T> {
        let (p, at) = Snapshot::locate(start, T::LEN, i);
        let page = match &self.data {
            Data::Image(image) => image.get(usize::try_from(p).ok()? * PAGE..)?,
            Data::Paged { pages, .. } => pages
                .get(usize::try_from(p.checked_sub(1)?).ok()?)?
                .as_deref()?,
        };
        le(page, at)
    }

    /// The (holder hash, entry) pair `i`.
    fn key(&mut self, i: u64) -> Result<(u32, u32), Corrupt> {
        let v: u64 = self.elem(self.layout.keys_start(), i)?;
        Ok((v as u32, (v >> 32) as u32))
    }

    /// The stamp of entry `idx`.
    fn cold(&mut self, idx: u64) -> Result<Entry, Corrupt> {
        let (p, at) = Snapshot::locate(self.layout.cold_start(), ENTRY_LEN, idx);
        let page = self.page(p)?;
        Entry::decode(&mut Reader::new(page.get(at..).ok_or(Corrupt)?)).ok_or(Corrupt)
    }

    /// The address of entry `idx`.
    fn ip(&mut self, idx: u64) -> Result<IpAddr, Corrupt> {
        let n4 = self.layout.n4;
        if idx < n4 {
            let v: u32 = self.elem(self.layout.v4_start(), idx)?;
            Ok(IpAddr::V4(Ipv4Addr::from(v)))
        } else if idx < n4 + self.layout.n6 {
            let v: u128 = self.elem(self.layout.v6_start(), idx - n4)?;
            Ok(IpAddr::V6(Ipv6Addr::from(v)))
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

    /// The entry number of `ip`, if present.
    pub fn find(&mut self, ip: IpAddr) -> Result<Option<u64>, Corrupt> {
        match ip {
            IpAddr::V4(a) => {
                let (t, n) = (u32::from(a), self.layout.n4);
                let w = window(&self.fences.v4, PAGE_U / 4, n, &t);
                self.search(self.layout.v4_start(), n, w, 0, t)
            }
            IpAddr::V6(a) => {
                let (t, n) = (u128::from(a), self.layout.n6);
                let w = window(&self.fences.v6, PAGE_U / 16, n, &t);
                let i = self.search(self.layout.v6_start(), n, w, 1, t)?;
                Ok(i.map(|i| self.layout.n4 + i))
            }
        }
    }

    /// The position of `t` in the sorted section of `n` elements at page `start`: first the
    /// element after where the last search of this family ended (`hint`), if that one's page is in
    /// memory and it is below `t`; else a binary search of the window `(lo, hi)` from the fences
    /// (the first element not below `t` is at most `hi`).
    fn search<T: Le>(
        &mut self,
        start: u64,
        n: u64,
        (lo, hi): (u64, u64),
        hint: usize,
        t: T,
    ) -> Result<Option<u64>, Corrupt> {
        let probe = self.hint[hint]
            .filter(|h| h + 1 < n && self.cached::<T>(start, *h).is_some_and(|v| v < t));
        if let Some(h) = probe {
            let next: T = self.elem(start, h + 1)?;
            if next >= t {
                self.hint[hint] = Some(if next == t { h + 1 } else { h });
                return Ok((next == t).then_some(h + 1));
            }
        }
        let end = hi.saturating_add(1).min(n);
        let i = self.lower_bound((lo, end), |s, i| Ok(s.elem::<T>(start, i)? < t))?;
        let found = i < end && self.elem::<T>(start, i)? == t;
        self.hint[hint] = Some(if found { i } else { i.saturating_sub(1) });
        Ok(found.then_some(i))
    }

    /// Whether `ip` is in the snapshot (its address page only).
    pub fn contains(&mut self, ip: IpAddr) -> Result<bool, Corrupt> {
        Ok(self.find(ip)?.is_some())
    }

    /// The entry of `ip`, if present.
    pub fn get(&mut self, ip: IpAddr) -> Result<Option<Entry>, Corrupt> {
        self.find(ip)?.map(|i| self.cold(i)).transpose()
    }

    /// The addresses whose holder hash is `key`, in address order.
    pub fn with_key(&mut self, key: u32) -> Result<Vec<IpAddr>, Corrupt> {
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

    /// Every entry, sorted by address (reads the whole snapshot).
    pub fn all(&mut self) -> Result<Vec<(IpAddr, Entry)>, Corrupt> {
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

    /// The snapshot's sections with `overlay` applied (reads the whole snapshot).
    pub fn merged(
        &mut self,
        overlay: &std::collections::BTreeMap<super::Key, Option<Entry>>,
    ) -> Result<Columns, Corrupt> {
        self.load_all()?;
        let Data::Image(image) = &self.data else {
            return Err(Corrupt);
        };
        Columns::merge(image, &self.layout, overlay)
    }
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

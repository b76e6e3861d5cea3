//! [`DiskStore`]: one network's directory with its lock and its index; [`LockedDisk`]: the store
//! while its lock is held, which keeps the index in step with every change it makes and every file
//! it reads.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use multus_core::cni::names;

use super::files::{create_whole, write_in_place};
use super::{
    attachment_key, Durability, Held, Holder, Reservation, Store, LAST_IP_PREFIX, LOCK_FILE,
};
use crate::index::{
    holder_hash, key_hash, mark, read_entry, Corrupt, Entry, Index, IndexFile, IndexMode,
    IndexPaths, IndexStats, SaveHow, Stamp,
};
use crate::{IpamError, Result};

/// One network's reservations, as the store knows them between operations.
#[derive(Debug)]
struct Cache {
    index: Index,
    /// The persisted index file `index` was loaded from or saved to (`None`: not persisted).
    file: Option<IndexFile>,
}

/// The on-disk store of one network, compatible with the reference plugin.
///
/// It keeps an index of the directory (which addresses are reserved, each file's stamp and a hash
/// of its holder), in memory between the operations of one handle and on disk between processes
/// (`<dataDir>/.multus-index/<network>.idx`, see [`crate::index`]), so that an operation costs
/// the same whatever the fill, even in a fresh process. The index is used only while the
/// directory's stamp equals the one saved with it; otherwise the directory is listed and only the
/// files that changed are read. The index only avoids work: every reservation is still made with
/// an exclusive create, and a file is read before it is reported or released as an attachment's,
/// so a stale index can never hand out an address twice nor release another container's.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    network: String,
    index_paths: Option<IndexPaths>,
    lock: File,
    durability: Durability,
    mode: IndexMode,
    journal_limit: Option<u64>,
    cache: Option<Cache>,
    stats: IndexStats,
}

impl DiskStore {
    /// Opens (creating if needed, mode 0755) `<data_dir>/<network>` and its lock file.
    pub fn open(data_dir: &Path, network: &str) -> Result<DiskStore> {
        names::network_name(network).map_err(IpamError::InvalidNetworkName)?;
        let dir = data_dir.join(network);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&dir)
            .map_err(|e| IpamError::io("create directory", &dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o750)
            .open(&lock_path)
            .map_err(|e| IpamError::io("open lock", &lock_path, e))?;
        Ok(DiskStore {
            dir,
            network: network.to_string(),
            index_paths: IndexPaths::new(data_dir, network),
            lock,
            durability: Durability::default(),
            mode: IndexMode::default(),
            journal_limit: None,
            cache: None,
            stats: IndexStats::default(),
        })
    }

    /// Sets the durability of later writes.
    pub fn set_durability(&mut self, d: Durability) {
        self.durability = d;
    }

    /// Sets how the index is kept across processes (default [`IndexMode::Journal`]).
    pub fn set_index_mode(&mut self, mode: IndexMode) {
        self.mode = mode;
        self.cache = None;
    }

    /// Overrides the journal length after which a new snapshot is written (default
    /// [`crate::index::journal_limit`] of the snapshot's size). For measurements.
    #[doc(hidden)]
    pub fn set_journal_limit(&mut self, bytes: Option<u64>) {
        self.journal_limit = bytes;
    }

    /// What the index has done so far (cumulative over this handle's operations).
    pub fn index_stats(&self) -> IndexStats {
        self.stats
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the persisted index file still is the one `file` describes.
    fn file_matches(&self, file: Option<IndexFile>) -> bool {
        match (self.mode, &self.index_paths, file) {
            (IndexMode::Off, _, _) | (_, None, _) => true,
            (_, Some(p), Some(f)) => p.id() == Some((f.ino, f.len)),
            (_, Some(_), None) => false,
        }
    }

    /// Takes the exclusive lock (blocking) and returns the store view valid while it is held.
    pub fn lock(&mut self) -> Result<LockedDisk<'_>> {
        loop {
            match self.lock.lock() {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(IpamError::io("flock", self.dir.join(LOCK_FILE), e)),
            }
        }
        // From here on the guard unlocks (and saves the index) on every path.
        let locked = LockedDisk {
            store: self,
            full_scan: false,
            scanned: false,
        };
        let now = Stamp::of(&locked.store.dir)
            .map_err(|e| IpamError::io("stat", &locked.store.dir, e))?;
        let keep = match &locked.store.cache {
            Some(c) => c.index.stamp == now && locked.store.file_matches(c.file),
            None => false,
        };
        if keep {
            locked.store.stats.cached += 1;
        } else {
            locked.store.cache = None;
        }
        Ok(locked)
    }
}

/// The disk store with its lock held; saves the index and unlocks when dropped.
#[derive(Debug)]
pub struct LockedDisk<'a> {
    store: &'a mut DiskStore,
    /// The persisted index turned out corrupt: rebuild from the directory alone.
    full_scan: bool,
    /// Every file was looked at under this lock (a scan or a verification): the index is as
    /// up to date as a verification could make it.
    scanned: bool,
}

impl Drop for LockedDisk<'_> {
    fn drop(&mut self) {
        self.save_index();
        if let Err(e) = self.store.lock.unlock() {
            tracing::warn!(error = %e, "unlocking the host-local store");
        }
    }
}

impl LockedDisk<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    /// The index, loaded from memory, from the persisted index if its stamp is the directory's,
    /// or rebuilt by a scan of the directory.
    fn index(&mut self) -> Result<&mut Index> {
        if self.store.cache.is_none() {
            let s = &mut *self.store;
            let loaded = match (&s.index_paths, s.mode, self.full_scan) {
                (Some(p), IndexMode::Journal | IndexMode::Rewrite, false) => {
                    Index::load(p, &s.network)
                }
                _ => None,
            };
            let now = Stamp::of(&s.dir).map_err(|e| IpamError::io("stat", &s.dir, e))?;
            let cache = match loaded {
                Some((index, file, true)) if index.stamp == now && now.is_marked() => {
                    s.stats.loaded += 1;
                    Cache {
                        index,
                        file: Some(file),
                    }
                }
                other => {
                    let mut base = other.map(|(index, _, _)| index);
                    let (index, counts) = Index::scan(&s.dir, &s.network, base.as_mut(), now)
                        .map_err(|e| IpamError::io("read directory", &s.dir, e))?;
                    s.stats.scans += 1;
                    s.stats.incremental_scans += u64::from(counts.incremental);
                    s.stats.files_read += counts.read;
                    s.stats.files_statted += counts.statted;
                    self.scanned = true;
                    Cache { index, file: None }
                }
            };
            s.cache = Some(cache);
        }
        match self.store.cache.as_mut() {
            Some(c) => Ok(&mut c.index),
            None => Err(IpamError::Unavailable("index vanished".into())),
        }
    }

    /// Runs a query on the index; if the persisted index turns out corrupt, rebuilds the index
    /// from the directory alone (entirely in memory, so the query cannot fail again) and reruns it.
    fn ix<T>(
        &mut self,
        mut f: impl FnMut(&mut Index) -> std::result::Result<T, Corrupt>,
    ) -> Result<T> {
        loop {
            let rebuilt = self.full_scan;
            match f(self.index()?) {
                Ok(v) => return Ok(v),
                Err(Corrupt) if !rebuilt => {
                    tracing::warn!(dir = %self.store.dir.display(),
                        "the host-local index is corrupt; rebuilding it from the directory");
                    self.store.cache = None;
                    self.full_scan = true;
                }
                Err(Corrupt) => {
                    return Err(IpamError::Unavailable("host-local index corrupt".into()))
                }
            }
        }
    }

    /// Records a change of the directory in the index, if one is loaded (without one, nothing is
    /// saved, and the next operation rescans: the directory's stamp changed).
    fn note_put(&mut self, ip: IpAddr, e: Entry) {
        if let Some(c) = self.store.cache.as_mut() {
            c.index.put(ip, e);
        }
    }

    fn note_remove(&mut self, ip: IpAddr) {
        if let Some(c) = self.store.cache.as_mut() {
            c.index.remove(ip);
        }
    }

    /// Reads the reservation file of `ip` and brings its index entry up to date (it can only
    /// differ if something changed the directory without its lock, or within one clock tick).
    fn read_reservation(&mut self, ip: IpAddr) -> Result<Option<Holder>> {
        let path = self.path(&ip.to_string());
        let now = read_entry(&path).map_err(|e| IpamError::io("read", &path, e))?;
        let known = self.ix(|ix| ix.get(ip))?;
        match now {
            Some((e, holder)) => {
                if known != Some(e) {
                    tracing::debug!(%ip, "host-local index entry out of date; updated");
                    self.note_put(ip, e);
                }
                Ok(Some(holder))
            }
            None => {
                if known.is_some() {
                    self.note_remove(ip);
                }
                Ok(None)
            }
        }
    }

    /// For an address the index holds as possibly an orphan: whether its file is one (an empty
    /// regular file, looked at now, under the lock); otherwise the index learns what the file is.
    fn orphan_on_disk(&mut self, ip: IpAddr) -> Result<bool> {
        let path = self.path(&ip.to_string());
        match fs::symlink_metadata(&path) {
            Ok(md) if md.is_file() && md.len() == 0 => Ok(true),
            Ok(_) => self.read_reservation(ip).map(|_| false),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.note_remove(ip);
                Ok(false)
            }
            Err(e) => Err(IpamError::io("stat", &path, e)),
        }
    }

    /// After the operation, with the lock still held: marks the directory's stamp and saves the
    /// index if anything changed. Never fails: a failure only leaves an index that the next
    /// operation will not trust.
    fn save_index(&mut self) {
        let s = &mut *self.store;
        let Some(cache) = s.cache.as_mut() else {
            return;
        };
        let Ok(mut cur) = Stamp::of(&s.dir) else {
            s.cache = None;
            return;
        };
        if cur == cache.index.stamp && !cache.index.has_unsaved() {
            return;
        }
        if !cur.is_marked() {
            let marked = mark(&s.dir, &cur).and_then(|()| Stamp::of(&s.dir));
            match marked {
                Ok(m) if m.is_marked() => cur = m,
                Ok(_) | Err(_) => {
                    tracing::warn!(dir = %s.dir.display(),
                        "cannot mark the host-local directory's stamp; its index is not kept");
                    s.cache = None;
                    return;
                }
            }
        }
        match (s.mode, &s.index_paths) {
            (IndexMode::Off, _) | (_, None) => cache.index.settle(cur),
            (mode, Some(paths)) => {
                let how = SaveHow {
                    rewrite: mode == IndexMode::Rewrite,
                    limit: s.journal_limit,
                };
                match cache
                    .index
                    .save(paths, &s.network, cache.file, cur, how, &mut s.stats)
                {
                    Ok(f) => cache.file = Some(f),
                    Err(e) => {
                        tracing::warn!(index = %paths.file.display(), error = %e,
                            "cannot save the host-local index; the next operation rescans");
                        let _ = fs::remove_file(&paths.file);
                        s.cache = None;
                    }
                }
            }
        }
    }

    fn sync_dir(&self) -> Result<()> {
        if self.store.durability == Durability::Fsync {
            File::open(&self.store.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| IpamError::io("fsync", &self.store.dir, e))?;
        }
        Ok(())
    }

    /// Checks that a file can be created and removed in the directory (for STATUS).
    pub fn check_writable(&mut self) -> Result<()> {
        let p = self.path(".host-local-status-probe");
        let _ = fs::remove_file(&p);
        File::create(&p).map_err(|e| IpamError::io("create", &p, e))?;
        fs::remove_file(&p).map_err(|e| IpamError::io("remove", &p, e))?;
        Ok(())
    }
}

impl Store for LockedDisk<'_> {
    fn reserve(&mut self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool> {
        if self.ix(|ix| ix.contains(ip))? {
            return Ok(false);
        }
        let path = self.path(&ip.to_string());
        let content = attachment_key(container_id, ifname);
        let fsync = self.store.durability == Durability::Fsync;
        match create_whole(&path, content.as_bytes(), fsync) {
            Ok(Some(md)) => {
                // Into the index before anything else can fail.
                let key = holder_hash(&Holder::parse(content.as_bytes()));
                self.note_put(ip, Entry::new(&md, key));
            }
            Ok(None) => {
                // Someone wrote it behind the index's back: learn it, never overwrite it.
                self.read_reservation(ip)?;
                return Ok(false);
            }
            Err((what, e)) => return Err(IpamError::io(what, &path, e)),
        }
        self.sync_dir()?;
        Ok(true)
    }

    fn release(&mut self, ip: IpAddr) -> Result<bool> {
        let path = self.path(&ip.to_string());
        let removed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(IpamError::io("remove", &path, e)),
        };
        self.note_remove(ip);
        if removed {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    fn held_by(&mut self, container_id: &str, ifname: &str) -> Result<Held> {
        let mut held = Held::default();
        for (key, legacy) in [
            (attachment_key(container_id, ifname), false),
            (container_id.trim().to_string(), true),
        ] {
            let hash = key_hash(&key);
            // Candidates by hash; each file is read, so only what it holds now counts.
            for ip in self.ix(|ix| ix.with_key(hash))? {
                let holder = self.read_reservation(ip)?;
                if holder.and_then(|h| h.key()).as_deref() == Some(key.as_str()) {
                    if legacy {
                        held.legacy.push(ip);
                    } else {
                        held.exact.push(ip);
                    }
                }
            }
        }
        Ok(held)
    }

    fn reservations(&mut self) -> Result<Vec<Reservation>> {
        let all = self.ix(|ix| ix.all())?;
        let mut v = Vec::with_capacity(all.len());
        for (ip, _) in all {
            if let Some(holder) = self.read_reservation(ip)? {
                v.push(Reservation { ip, holder });
            }
        }
        Ok(v)
    }

    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool> {
        self.ix(|ix| ix.contains(ip))
    }

    fn is_orphan(&mut self, ip: IpAddr) -> Result<bool> {
        match self.ix(|ix| ix.get(ip))? {
            Some(e) if e.maybe_orphan() => self.orphan_on_disk(ip),
            _ => Ok(false),
        }
    }

    fn reclaim(&mut self, ip: IpAddr) -> Result<bool> {
        if !self.is_orphan(ip)? {
            return Ok(false);
        }
        let path = self.path(&ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => tracing::info!(%ip, dir = %self.store.dir.display(),
                "reclaimed an empty reservation file (its writer died between creating and writing it)"),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(IpamError::io("remove", &path, e)),
        }
        self.note_remove(ip);
        Ok(true)
    }

    fn verify(&mut self) -> Result<bool> {
        self.index()?;
        if self.scanned {
            return Ok(false);
        }
        self.scanned = true;
        // No name can be missing from the index or extra in it (the directory's stamp is the
        // index's): only the files' own stamps can differ.
        let all = self.ix(|ix| ix.all())?;
        let total = all.len();
        let dir = &self.store.dir;
        let dir = File::open(dir).map_err(|e| IpamError::io("open", dir, e))?;
        let mut changed = Vec::new();
        for (ip, e) in all {
            match Entry::of_name(&dir, ip, e.key) {
                Ok(Some(now)) if now == e => {}
                _ => changed.push(ip),
            }
        }
        let s = &mut self.store.stats;
        s.verifications += 1;
        s.files_statted += (total - changed.len()) as u64;
        s.files_read += changed.len() as u64;
        for ip in &changed {
            self.read_reservation(*ip)?;
        }
        if changed.is_empty() {
            return Ok(false);
        }
        tracing::info!(dir = %self.store.dir.display(), changed = changed.len(),
            "host-local reservation files changed without a change of their directory; re-read");
        Ok(true)
    }

    fn last_reserved(&mut self, set: usize) -> Result<Option<Vec<u8>>> {
        let path = self.path(&format!("{LAST_IP_PREFIX}{set}"));
        match fs::read(&path) {
            Ok(c) => Ok(Some(c)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IpamError::io("read", &path, e)),
        }
    }

    fn set_last_reserved(&mut self, set: usize, content: Option<&[u8]>) -> Result<()> {
        let path = self.path(&format!("{LAST_IP_PREFIX}{set}"));
        match content {
            None => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(IpamError::io("remove", &path, e)),
            },
            Some(c) => {
                let fsync = self.store.durability == Durability::Fsync;
                write_in_place(&path, c, fsync).map_err(|e| IpamError::io("write", &path, e))?;
            }
        }
        self.sync_dir()
    }
}

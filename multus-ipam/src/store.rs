//! The reservation store: the [`Store`] trait and the on-disk store of the reference plugin.
//!
//! Layout under `<dataDir>/<network name>/`, byte for byte as the reference writes it:
//! - `<ip>` (Go's `net.IP.String()`, e.g. `10.1.2.3`, `2001:db8::2`) holding
//!   `<containerID>\r\n<ifname>`, no trailing newline, mode 0644, created whole (`O_TMPFILE` + `linkat`, which
//!   refuses an existing name like `O_CREAT|O_EXCL`)
//!   so an existing reservation is never overwritten;
//! - `last_reserved_ip.<range set index>` holding the address text, no newline; only a hint
//!   of where the next walk starts (a torn one is ignored, as the reference ignores it);
//! - `lock`, empty, mode 0750, locked with `flock(LOCK_EX)` around every operation (the reference
//!   uses the same lock, so both plugins can run on one directory at once). A killed process's
//!   `flock` goes away with it.
//!
//! Durability: like the reference (which calls no `fsync`), files are not synced by default;
//! [`Durability::Fsync`] syncs each written file and the directory.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::ip::parse_ip;
use crate::{IpamError, Result};

/// Prefix of the files holding the last reserved address of each range set.
pub const LAST_IP_PREFIX: &str = "last_reserved_ip.";
/// Name of the lock file.
pub const LOCK_FILE: &str = "lock";

/// Who holds a reservation, as read from its file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Holder {
    /// `<containerID>\r\n<ifname>`: the current format.
    Attachment {
        /// Container ID.
        container_id: String,
        /// Interface name.
        ifname: String,
    },
    /// Only a container ID: the format of plugins before 0.7 (matched on container ID alone).
    Legacy(String),
    /// Empty, not UTF-8 or not a regular file: reserved, owned by no attachment, reclaimed by GC.
    Unknown,
}

impl Holder {
    /// Parses a reservation file's content. Surrounding whitespace is ignored, as the reference
    /// trims it before comparing.
    pub fn parse(content: &[u8]) -> Holder {
        let Ok(s) = std::str::from_utf8(content) else {
            return Holder::Unknown;
        };
        let s = s.trim();
        if s.is_empty() {
            return Holder::Unknown;
        }
        match s.split_once("\r\n") {
            Some((id, ifname)) => Holder::Attachment {
                container_id: id.to_string(),
                ifname: ifname.to_string(),
            },
            None => Holder::Legacy(s.to_string()),
        }
    }

    /// The key the reference compares a trimmed file content against, if any.
    fn key(&self) -> Option<String> {
        match self {
            Holder::Attachment {
                container_id,
                ifname,
            } => Some(attachment_key(container_id, ifname)),
            Holder::Legacy(id) => Some(id.clone()),
            Holder::Unknown => None,
        }
    }
}

/// The reservation file content (and match key) for an attachment.
pub fn attachment_key(container_id: &str, ifname: &str) -> String {
    format!("{}\r\n{}", container_id.trim(), ifname)
}

/// One reserved address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The address.
    pub ip: IpAddr,
    /// Its holder.
    pub holder: Holder,
}

/// Addresses held by one attachment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// Files holding `<containerID>\r\n<ifname>`.
    pub exact: Vec<IpAddr>,
    /// Files holding only `<containerID>` (legacy format).
    pub legacy: Vec<IpAddr>,
}

/// A reservation store for one network, while its lock is held. Every method is called with
/// the lock held; implementations need no locking of their own.
pub trait Store {
    /// Reserves `ip` for the attachment; `false` if it is already reserved (never overwrites).
    fn reserve(&mut self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool>;
    /// Releases `ip`; `false` if it was not reserved.
    fn release(&mut self, ip: IpAddr) -> Result<bool>;
    /// The addresses held by an attachment.
    fn held_by(&mut self, container_id: &str, ifname: &str) -> Result<Held>;
    /// Every reservation, ordered by address.
    fn reservations(&mut self) -> Result<Vec<Reservation>>;
    /// Whether `ip` is reserved.
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool>;
    /// The raw content of the last-reserved record of range set `set`, if any.
    fn last_reserved(&mut self, set: usize) -> Result<Option<Vec<u8>>>;
    /// Replaces (`Some`) or removes (`None`) the last-reserved record of range set `set`.
    fn set_last_reserved(&mut self, set: usize, content: Option<&[u8]>) -> Result<()>;
}

/// Refuses a network name that is empty or would escape the data directory.
pub fn validate_network_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(IpamError::InvalidNetworkName(name.to_string()));
    }
    Ok(())
}

/// Checks a container ID against the CNI spec: an alphanumeric first character, then
/// alphanumerics, `_`, `.` or `-`. (This also keeps it out of paths and the file format.)
pub fn validate_container_id(id: &str) -> Result<()> {
    let mut bytes = id.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(IpamError::InvalidContainerId(id.to_string()))
    }
}

/// Checks an interface name against the CNI spec: 1 to 15 bytes, not `.` or `..`, no `/`, `:`,
/// NUL or whitespace.
pub fn validate_ifname(ifname: &str) -> Result<()> {
    let ok = !ifname.is_empty()
        && ifname.len() <= 15
        && ifname != "."
        && ifname != ".."
        && !ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(IpamError::InvalidIfName(ifname.to_string()))
    }
}

/// How hard the disk store pushes writes to stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Like the reference plugin: no `fsync`. A power loss can lose recent writes (a crash of the
    /// process cannot).
    #[default]
    Reference,
    /// `fsync` every written file and the directory after every change.
    Fsync,
}

/// Identity and change stamp of the network directory: if it is unchanged since this process
/// last wrote, nobody else added or removed an entry, and the cached index is still right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: u64,
}

impl Stamp {
    fn of(dir: &Path) -> Result<Stamp> {
        let m = fs::metadata(dir).map_err(|e| IpamError::io("stat", dir, e))?;
        Ok(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: m.size(),
        })
    }
}

#[derive(Default, Debug)]
struct Index {
    by_ip: HashMap<IpAddr, Holder>,
    by_key: HashMap<String, BTreeSet<IpAddr>>,
}

impl Index {
    fn insert(&mut self, ip: IpAddr, holder: Holder) {
        if let Some(k) = holder.key() {
            self.by_key.entry(k).or_default().insert(ip);
        }
        if let Some(old) = self.by_ip.insert(ip, holder) {
            self.unkey(ip, &old);
        }
    }

    fn remove(&mut self, ip: IpAddr) {
        if let Some(old) = self.by_ip.remove(&ip) {
            self.unkey(ip, &old);
        }
    }

    fn unkey(&mut self, ip: IpAddr, holder: &Holder) {
        if let Some(k) = holder.key() {
            if let Some(set) = self.by_key.get_mut(&k) {
                set.remove(&ip);
                if set.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }

    fn get(&self, key: &str) -> Vec<IpAddr> {
        self.by_key
            .get(key)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// The on-disk store of one network, compatible with the reference plugin.
///
/// It keeps an index of the directory (address → holder) between operations, rebuilt from the
/// directory whenever the directory's change stamp (inode, mtime, ctime, size) differs from the
/// one recorded after this process's last change. The index only avoids work: every reservation
/// is still made with `O_CREAT|O_EXCL`, so a stale index can never hand out an address twice.
/// Kernels from 6.13 give a directory a fresh fine-grained timestamp on the first change after it
/// was looked at (multigrain timestamps on ext4, xfs, btrfs, tmpfs), so a change by another
/// process is always seen; on older kernels a change by another process within the same clock
/// tick as this process's last change can go unseen by a long-lived store until the next change.
/// A fresh `DiskStore` (one per CNI invocation) always reads the directory.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    lock: File,
    durability: Durability,
    cache: Option<(Stamp, Index)>,
}

impl DiskStore {
    /// Opens (creating if needed, mode 0755) `<data_dir>/<network>` and its lock file.
    pub fn open(data_dir: &Path, network: &str) -> Result<DiskStore> {
        validate_network_name(network)?;
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
            lock,
            durability: Durability::default(),
            cache: None,
        })
    }

    /// Sets the durability of later writes.
    pub fn set_durability(&mut self, d: Durability) {
        self.durability = d;
    }

    /// The network's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        let locked = LockedDisk {
            store: self,
            dirty: false,
        };
        let now = Stamp::of(&locked.store.dir)?;
        if locked.store.cache.as_ref().map(|(s, _)| *s) != Some(now) {
            locked.store.cache = None;
        }
        Ok(locked)
    }
}

/// The disk store with its lock held; unlocks when dropped.
#[derive(Debug)]
pub struct LockedDisk<'a> {
    store: &'a mut DiskStore,
    dirty: bool,
}

impl Drop for LockedDisk<'_> {
    fn drop(&mut self) {
        if self.dirty {
            match Stamp::of(&self.store.dir) {
                Ok(s) => {
                    if let Some((stamp, _)) = self.store.cache.as_mut() {
                        *stamp = s;
                    }
                }
                Err(_) => self.store.cache = None,
            }
        }
        if let Err(e) = self.store.lock.unlock() {
            tracing::warn!(error = %e, "unlocking the host-local store");
        }
    }
}

impl LockedDisk<'_> {
    fn path(&self, name: &str) -> PathBuf {
        self.store.dir.join(name)
    }

    fn index(&mut self) -> Result<&mut Index> {
        if self.store.cache.is_none() {
            let stamp = Stamp::of(&self.store.dir)?;
            let index = read_index(&self.store.dir)?;
            self.store.cache = Some((stamp, index));
        }
        match self.store.cache.as_mut() {
            Some((_, index)) => Ok(index),
            None => Err(IpamError::Unavailable("index vanished".into())),
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
        self.dirty = true;
        Ok(())
    }
}

fn read_holder(path: &Path) -> Result<Holder> {
    match fs::read(path) {
        Ok(c) => Ok(Holder::parse(&c)),
        Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(Holder::Unknown),
        Err(e) => Err(IpamError::io("read", path, e)),
    }
}

/// Reads every reservation of a network directory. Only entries named exactly as the reference
/// names an address count; `lock`, `last_reserved_ip.*` and anything else are ignored.
fn read_index(dir: &Path) -> Result<Index> {
    let mut index = Index::default();
    let entries = fs::read_dir(dir).map_err(|e| IpamError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| IpamError::io("read directory", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(ip) = parse_ip(name) else { continue };
        if ip.to_string() != name {
            continue;
        }
        let holder = read_holder(&entry.path())?;
        index.insert(ip, holder);
    }
    Ok(index)
}

/// Creates `path` holding `content`, or returns `Ok(false)` when it already exists (never overwriting it).
/// The file appears whole: it is written as an unnamed `O_TMPFILE` in the directory and then linked under its
/// name (`linkat`, which fails on an existing name just as `O_EXCL` does), so a process killed at any point
/// leaves either no file or a complete one, never an empty reservation that DEL could not match. File systems
/// without `O_TMPFILE` get `O_CREAT|O_EXCL` and a write, as the reference plugin does.
fn create_whole(
    path: &Path,
    content: &[u8],
    fsync: bool,
) -> std::result::Result<bool, (&'static str, std::io::Error)> {
    let dir = path.parent().unwrap_or(Path::new("."));
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o644)
        .open(dir)
    {
        Ok(mut f) => {
            f.write_all(content).map_err(|e| ("write", e))?;
            if fsync {
                f.sync_all().map_err(|e| ("fsync", e))?;
            }
            link_tmpfile(&f, path).map_err(|e| ("link", e))
        }
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
            ) =>
        {
            create_exclusive(path, content, fsync)
        }
        Err(e) => Err(("create", e)),
    }
}

/// Gives an `O_TMPFILE` file its name; `Ok(false)` when the name is taken.
fn link_tmpfile(f: &File, path: &Path) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?;
    let to = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e))?;
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.kind() == ErrorKind::AlreadyExists {
        Ok(false)
    } else {
        Err(e)
    }
}

/// `O_CREAT|O_EXCL` and a write; on a failed write the file is removed again.
fn create_exclusive(
    path: &Path,
    content: &[u8],
    fsync: bool,
) -> std::result::Result<bool, (&'static str, std::io::Error)> {
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(("create", e)),
    };
    let written = f
        .write_all(content)
        .and_then(|()| if fsync { f.sync_all() } else { Ok(()) });
    if let Err(e) = written {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(("write", e));
    }
    Ok(true)
}

impl Store for LockedDisk<'_> {
    fn reserve(&mut self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool> {
        if self.index()?.by_ip.contains_key(&ip) {
            return Ok(false);
        }
        let path = self.path(&ip.to_string());
        let content = attachment_key(container_id, ifname);
        let fsync = self.store.durability == Durability::Fsync;
        match create_whole(&path, content.as_bytes(), fsync) {
            Ok(true) => {}
            Ok(false) => {
                // Someone wrote it behind the index's back: learn it, never overwrite it.
                let holder = read_holder(&path)?;
                self.index()?.insert(ip, holder);
                return Ok(false);
            }
            Err((what, e)) => return Err(IpamError::io(what, &path, e)),
        }
        self.dirty = true;
        self.sync_dir()?;
        let holder = Holder::parse(content.as_bytes());
        self.index()?.insert(ip, holder);
        Ok(true)
    }

    fn release(&mut self, ip: IpAddr) -> Result<bool> {
        let path = self.path(&ip.to_string());
        let removed = match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(IpamError::io("remove", &path, e)),
        };
        self.dirty = true;
        self.index()?.remove(ip);
        if removed {
            self.sync_dir()?;
        }
        Ok(removed)
    }

    fn held_by(&mut self, container_id: &str, ifname: &str) -> Result<Held> {
        let index = self.index()?;
        Ok(Held {
            exact: index.get(&attachment_key(container_id, ifname)),
            legacy: index.get(container_id.trim()),
        })
    }

    fn reservations(&mut self) -> Result<Vec<Reservation>> {
        let index = self.index()?;
        let mut v: Vec<Reservation> = index
            .by_ip
            .iter()
            .map(|(ip, h)| Reservation {
                ip: *ip,
                holder: h.clone(),
            })
            .collect();
        v.sort_by_key(|r| r.ip);
        Ok(v)
    }

    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool> {
        Ok(self.index()?.by_ip.contains_key(&ip))
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
        self.dirty = true;
        match content {
            None => match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(IpamError::io("remove", &path, e)),
            },
            Some(c) => {
                // Rewritten in place (write at offset 0, then cut to length), not via a
                // temporary file and rename: on ext4 a rename over an existing file forces the
                // new file's data out (auto_da_alloc), which costs more than the whole
                // allocation. The record is only where the next walk starts: a crash between the
                // two steps can leave a wrong or unparsable address, which makes the next walk
                // start elsewhere (unparsable: at the first range's start, as the reference does
                // with its own truncate-and-write), never hand out a reserved address.
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(&path)
                    .map_err(|e| IpamError::io("open", &path, e))?;
                f.write_all_at(c, 0)
                    .and_then(|()| f.set_len(c.len() as u64))
                    .and_then(|()| {
                        if self.store.durability == Durability::Fsync {
                            f.sync_all()
                        } else {
                            Ok(())
                        }
                    })
                    .map_err(|e| IpamError::io("write", &path, e))?;
            }
        }
        self.sync_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_parsing() {
        assert_eq!(
            Holder::parse(b"c1\r\neth0"),
            Holder::Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(
            Holder::parse(b" c1\r\neth0\n"),
            Holder::Attachment {
                container_id: "c1".into(),
                ifname: "eth0".into()
            }
        );
        assert_eq!(Holder::parse(b"c1"), Holder::Legacy("c1".into()));
        assert_eq!(Holder::parse(b""), Holder::Unknown);
        assert_eq!(Holder::parse(b"\xff\xfe"), Holder::Unknown);
    }

    #[test]
    fn names() {
        for bad in ["", ".", "..", "../x", "a/b", "a\0b"] {
            assert_eq!(
                validate_network_name(bad).unwrap_err().cni_code(),
                7,
                "{bad:?}"
            );
        }
        assert!(validate_network_name("my net.1").is_ok());
        for bad in ["", "-a", "a/b", "../a", "a\0", "a b", "a\r\nb"] {
            assert_eq!(
                validate_container_id(bad).unwrap_err().cni_code(),
                4,
                "{bad:?}"
            );
        }
        assert!(validate_container_id("a_b.c-D9").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "0123456789abcdef",
            "a\r\n",
        ] {
            assert_eq!(validate_ifname(bad).unwrap_err().cni_code(), 4, "{bad:?}");
        }
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("0123456789abcde").is_ok());
    }
}

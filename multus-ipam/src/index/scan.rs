//! Reading the network directory itself: a scan that rebuilds the index (reading only the files
//! that changed since an old one), and the read of one reservation file.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind, Read};
use std::net::IpAddr;
use std::os::unix::fs::{DirEntryExt, OpenOptionsExt};
use std::path::Path;

use super::codec::holder_hash;
use super::snapshot::Snapshot;
use super::stamp::{Entry, Stamp};
use super::{Corrupt, Index};
use crate::ip::{file_name, parse_ip, NAME_MAX};
use crate::store::Holder;

/// Counts of one scan.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScanCounts {
    /// Files read (new, or changed since the old index).
    pub read: u64,
    /// Files only `lstat`ed (unchanged since the old index).
    pub statted: u64,
    /// Whether there was a usable old index to compare with.
    pub incremental: bool,
}

impl Index {
    /// Rebuilds the index from the directory. With an old index (`base`, even a stale one), a
    /// file whose name and inode it knows is only `lstat`ed and reused if its stamp is the same;
    /// any other file is read. `stamp` is the directory's stamp taken before listing it. The
    /// result is a snapshot in memory, written at the next save.
    pub fn scan(
        dir: &Path,
        network: &str,
        base: Option<&mut Index>,
        stamp: Stamp,
    ) -> io::Result<(Index, ScanCounts)> {
        let mut counts = ScanCounts::default();
        let old: Vec<(IpAddr, Entry)> = match base.map(Index::all) {
            Some(Ok(v)) => {
                counts.incremental = true;
                v
            }
            Some(Err(Corrupt)) | None => Vec::new(),
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
            let known = old.next_if(|(oip, _)| *oip == ip).map(|(_, e)| e);
            if let Some(e) = known.filter(|e| e.ino == entry.ino()) {
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
        let index = Index::new(Snapshot::build(network, stamp, &entries)?, stamp);
        Ok((index, counts))
    }
}

/// Whether `name` is exactly how the reference names `ip` (Go's `net.IP.String()`).
fn is_canonical_name(ip: IpAddr, name: &str) -> bool {
    file_name(ip, &mut [0u8; NAME_MAX]) == name.as_bytes()
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

//! Stamps: what tells the index that something changed. [`Stamp`] is the network directory's
//! (any entry created or removed changes it; see [`mark`] for why that holds even within one clock
//! tick), [`Entry`] a reservation file's (a rewrite of its content changes its ctime and mtime).

use std::fs::{self, File, Metadata};
use std::io::{self, ErrorKind};
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::codec::{Le, Reader};
use crate::ip::{file_name, NAME_MAX};

/// Bytes of an encoded [`Stamp`].
pub(crate) const STAMP_LEN: usize = 56;
/// Bytes of an encoded [`Entry`].
pub(crate) const ENTRY_LEN: usize = 32;

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
    /// The stamp of `dir` now.
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

    /// Appends the [`STAMP_LEN`] bytes of its encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (m, c) = (self.mtime, self.ctime);
        for v in [
            self.dev, self.ino, m.0 as u64, m.1 as u64, c.0 as u64, c.1 as u64,
        ] {
            v.put(out);
        }
        self.size.put(out);
    }

    /// Reads one from `r`.
    pub fn decode(r: &mut Reader<'_>) -> Option<Stamp> {
        let mut v = || r.get::<u64>();
        Some(Stamp {
            dev: v()?,
            ino: v()?,
            mtime: (v()? as i64, v()? as i64),
            ctime: (v()? as i64, v()? as i64),
            size: v()?,
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
    /// [`super::key_hash`] of the holder key, 0 for a holder without one
    /// ([`crate::Holder::Unknown`]).
    pub key: u32,
}

fn ns(sec: i64, nsec: i64) -> i64 {
    sec.wrapping_mul(1_000_000_000).wrapping_add(nsec)
}

impl Entry {
    /// The entry of the file `md` describes, whose holder hashes to `key`.
    pub fn new(md: &Metadata, key: u32) -> Entry {
        Entry {
            ino: md.ino(),
            ctime: ns(md.ctime(), md.ctime_nsec()),
            mtime: ns(md.mtime(), md.mtime_nsec()),
            size: u32::try_from(md.size()).unwrap_or(u32::MAX),
            key,
        }
    }

    /// The entry of the file named like `ip` in `dir` now (an `lstat` through the directory's
    /// descriptor: no path to resolve), with holder hash `key`; `None` if there is none.
    pub fn of_name(dir: &File, ip: IpAddr, key: u32) -> io::Result<Option<Entry>> {
        let mut buf = [0u8; NAME_MAX + 1];
        let mut text = [0u8; NAME_MAX];
        let text = file_name(ip, &mut text);
        buf[..text.len()].copy_from_slice(text);
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `buf` is NUL-terminated (one byte longer than any name) and `st` is a buffer for one `stat`,
        // both alive for the call; `dir` is an open descriptor.
        let rc = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                buf.as_ptr().cast(),
                st.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            };
        }
        // SAFETY: fstatat succeeded, so it filled `st`.
        let st = unsafe { st.assume_init() };
        Ok(Some(Entry {
            ino: st.st_ino,
            ctime: ns(st.st_ctime, st.st_ctime_nsec),
            mtime: ns(st.st_mtime, st.st_mtime_nsec),
            size: u32::try_from(st.st_size).unwrap_or(u32::MAX),
            key,
        }))
    }

    /// Whether `md` (an `lstat` of the name) is still the file this entry was made from.
    pub fn same_file(&self, md: &Metadata) -> bool {
        Entry::new(md, self.key) == *self
    }

    /// Whether the file was empty and without a holder when indexed: possibly an orphan (see
    /// [`crate::store`]), to be confirmed on the file itself.
    pub fn maybe_orphan(&self) -> bool {
        self.size == 0 && self.key == 0
    }

    /// Appends the [`ENTRY_LEN`] bytes of its encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.ino.put(out);
        (self.ctime as u64).put(out);
        (self.mtime as u64).put(out);
        self.size.put(out);
        self.key.put(out);
    }

    /// Reads one from `r`.
    pub fn decode(r: &mut Reader<'_>) -> Option<Entry> {
        Some(Entry {
            ino: r.get()?,
            ctime: r.get::<u64>()? as i64,
            mtime: r.get::<u64>()? as i64,
            size: r.get()?,
            key: r.get()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_at_their_lengths() {
        let s = Stamp {
            dev: 1,
            ino: 2,
            mtime: (3, -4),
            ctime: (i64::MIN, 5),
            size: u64::MAX,
        };
        let mut b = Vec::new();
        s.encode(&mut b);
        assert_eq!(b.len(), STAMP_LEN);
        assert_eq!(Stamp::decode(&mut Reader::new(&b)), Some(s));
        assert_eq!(Stamp::decode(&mut Reader::new(&b[..STAMP_LEN - 1])), None);
        let e = Entry {
            ino: 9,
            ctime: -1,
            mtime: 7,
            size: 0,
            key: 0,
        };
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(b.len(), ENTRY_LEN);
        assert_eq!(Entry::decode(&mut Reader::new(&b)), Some(e));
        assert!(e.maybe_orphan());
        assert_eq!(Entry::decode(&mut Reader::new(&b[..ENTRY_LEN - 1])), None);
    }
}

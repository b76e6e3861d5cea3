//! The file primitives of the store: a reservation file created whole and never over an existing
//! one, and a small record rewritten in place.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Creates `path` holding `content` and returns the new file's metadata, or `Ok(None)` when it already exists
/// (never overwriting it).
/// The file appears whole: it is written as an unnamed `O_TMPFILE` in the directory and then linked under its
/// name (`linkat`, which fails on an existing name just as `O_EXCL` does), so a process killed at any point
/// leaves either no file or a complete one, never an empty reservation that DEL could not match. File systems
/// without `O_TMPFILE` get `O_CREAT|O_EXCL` and a write, as the reference plugin does.
pub(super) fn create_whole(
    path: &Path,
    content: &[u8],
    fsync: bool,
) -> std::result::Result<Option<Metadata>, (&'static str, std::io::Error)> {
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
            if !link_tmpfile(&f, path).map_err(|e| ("link", e))? {
                return Ok(None);
            }
            // After the link, which changed its ctime: the stamp the name will show.
            f.metadata().map(Some).map_err(|e| ("stat", e))
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
) -> std::result::Result<Option<Metadata>, (&'static str, std::io::Error)> {
    let mut f = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(("create", e)),
    };
    let written = f
        .write_all(content)
        .and_then(|()| if fsync { f.sync_all() } else { Ok(()) })
        .and_then(|()| f.metadata());
    match written {
        Ok(md) => Ok(Some(md)),
        Err(e) => {
            drop(f);
            let _ = fs::remove_file(path);
            Err(("write", e))
        }
    }
}

/// Replaces the content of the small record at `path` (creating it, mode 0644): written at offset
/// 0, then cut to length; not through a temporary file and a rename (nor `multus_core::fs`): on
/// ext4 a rename over an existing file forces the new file's data out (`auto_da_alloc`), which
/// costs more than a whole allocation. Only for records where a torn content is harmless: the
/// `last_reserved_ip` record is only where the next walk starts, and a crash between the two steps
/// can only leave a wrong or unparsable address, which makes the next walk start elsewhere
/// (unparsable: at the first range's start, as the reference does with its own truncate-and-write),
/// never hand out a reserved address.
pub(super) fn write_in_place(path: &Path, content: &[u8], fsync: bool) -> std::io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)?;
    f.write_all_at(content, 0)?;
    f.set_len(content.len() as u64)?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

//! The one way this project writes a file that someone else reads (a container runtime, the kubelet, another
//! plugin process, our own DEL after a crash): whole or not at all.
//!
//! [`write_atomic`] writes a temp file in the target's directory, optionally fsyncs it, renames it over the
//! target and fsyncs the directory. Temp files are named `.multus-tmp-<pid>-<n>`: a process killed between
//! creating and renaming one leaves it behind, and [`remove_stale_temps`] (run by the stores that own a
//! directory) removes those of processes that are gone.
//!
//! ```
//! use multus_core::fs::{write_atomic, Durability};
//! # let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("00-multus.conf");
//! write_atomic(&path, br#"{"cniVersion":"1.0.0"}"#, 0o644, Durability::Durable).unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), br#"{"cniVersion":"1.0.0"}"#);
//! ```

use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// The name prefix of every temp file [`write_atomic`] makes.
pub const TEMP_PREFIX: &str = ".multus-tmp-";

/// Whether a write must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory: the new content survives a power loss.
    Durable,
    /// Only atomic: after a crash the file holds the old or the new content, never a mix.
    AtomicOnly,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Writes `bytes` to `path` whole, with permissions `mode`, creating the directory if needed. On any failure
/// the previous file is untouched and the temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, sync: Durability) -> io::Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    let (tmp, mut file) = create_temp(dir, mode)?;
    let written = (|| {
        file.write_all(bytes)?;
        // The umask may have narrowed the mode at creation.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if sync == Durability::Durable {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if sync == Durability::Durable {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The most [`read_input`] reads: far above any config, record, result or checkpoint this project reads.
pub const INPUT_FILE_MAX: u64 = 64 << 20;

/// Reads a file whose path or content comes from input (a config file, a file a config names, a record, a
/// checkpoint): never blocks in `open(2)` (`O_NONBLOCK`: a FIFO in its place once hung the plugin),
/// refuses what is not a regular file (a device such as `/dev/zero` would never end; a directory is
/// `EISDIR`, as [`std::fs::read`] says) and a file larger than [`INPUT_FILE_MAX`]. A missing file is
/// `NotFound`, as with [`std::fs::read`].
pub fn read_input(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut out = Vec::with_capacity(meta.len().min(INPUT_FILE_MAX) as usize);
    f.take(INPUT_FILE_MAX + 1).read_to_end(&mut out)?;
    if out.len() as u64 > INPUT_FILE_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {INPUT_FILE_MAX} bytes"),
        ));
    }
    Ok(out)
}

/// Copies a file whole (a running binary is replaced by rename, never rewritten in place: no "text file
/// busy", and no runtime ever runs a half-copied binary).
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> io::Result<()> {
    let bytes = std::fs::read(from)?;
    write_atomic(to, &bytes, mode, Durability::Durable)
}

/// Removes a file; `Ok(false)` when there was none. A read-only file system or a directory in the file's
/// place is an error only when something is really there to remove: "nothing to remove" is checked first,
/// so that an idempotent DEL converges whatever state the directory is in.
pub fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the temp files of [`write_atomic`] left in `dir` by processes that no longer run (or older than
/// `max_age` whatever their process, in case its PID was reused). Returns how many were removed; never fails.
pub fn remove_stale_temps(dir: &Path, max_age: Duration) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        let old = e
            .metadata()
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| now.duration_since(m).ok())
            .is_some_and(|age| age > max_age);
        if (!alive || old) && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn create_temp(dir: &Path, mode: u32) -> io::Result<(PathBuf, std::fs::File)> {
    let pid = std::process::id();
    loop {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TEMP_PREFIX}{pid}-{n}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            // A file of a dead process with our PID: take the next number.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_whole_files_with_the_mode_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/f.conf");
        write_atomic(&p, b"one", 0o644, Durability::Durable).unwrap();
        write_atomic(&p, b"two", 0o600, Durability::AtomicOnly).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A directory in the target's place: an error, and no temp file left.
        let dir_target = d.path().join("sub/adir");
        std::fs::create_dir(&dir_target).unwrap();
        assert!(write_atomic(&dir_target, b"x", 0o644, Durability::Durable).is_err());
        assert_eq!(names(&d.path().join("sub")), ["adir", "f.conf"]);
        copy_atomic(&p, &d.path().join("sub/g"), 0o755).unwrap();
        assert_eq!(std::fs::read(d.path().join("sub/g")).unwrap(), b"two");
    }

    #[test]
    fn input_files_are_regular_and_bounded() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("conf");
        std::fs::write(&f, b"{}").unwrap();
        assert_eq!(read_input(&f).unwrap(), b"{}");
        assert_eq!(
            read_input(&d.path().join("none")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            read_input(d.path()).unwrap_err().raw_os_error(),
            Some(libc::EISDIR)
        );
        // A FIFO without a writer and an endless device: refused at once (on a thread, so that the old
        // behaviour, blocking forever, fails the test instead of hanging it).
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((
                read_input(&fifo).is_err(),
                read_input(Path::new("/dev/zero")).is_err(),
            ));
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("read_input blocked");
        assert_eq!(refused, (true, true));
        // Larger than the bound (a sparse file: nothing is written).
        let big = std::fs::File::create(d.path().join("big")).unwrap();
        big.set_len(INPUT_FILE_MAX + 1).unwrap();
        assert_eq!(
            read_input(&d.path().join("big")).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn remove_if_exists_converges() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"x").unwrap();
        assert!(remove_if_exists(&p).unwrap());
        assert!(!remove_if_exists(&p).unwrap());
        // Nothing there inside a missing directory: nothing to do either.
        assert!(!remove_if_exists(&d.path().join("none/f")).unwrap());
        // A directory in the file's place is something we must not silently ignore.
        std::fs::create_dir(&p).unwrap();
        assert!(remove_if_exists(&p).is_err());
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let mine = d
            .path()
            .join(format!("{TEMP_PREFIX}{}-7", std::process::id()));
        // PID 0 never names a process in /proc; a pid above pid_max cannot run either.
        let dead = d.path().join(format!("{TEMP_PREFIX}4194305-1"));
        let garbage = d.path().join(format!("{TEMP_PREFIX}x"));
        for f in [&mine, &dead, &garbage] {
            std::fs::write(f, b"half").unwrap();
        }
        std::fs::write(d.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(remove_stale_temps(d.path(), Duration::from_secs(3600)), 2);
        assert_eq!(
            names(d.path()),
            [
                format!("{TEMP_PREFIX}{}-7", std::process::id()),
                "keep.json".into()
            ]
        );
        // Old enough, even a live PID's temp goes.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(remove_stale_temps(d.path(), Duration::ZERO), 1);
    }
}

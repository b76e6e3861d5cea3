//! Writing files so that a reader (the container runtime, the kubelet) never sees a half-written one:
//! a temp file in the same directory, fsync, rename over the target, fsync of the directory.

use std::io::Write;
use std::path::Path;

/// Whether a write must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// fsync the file and its directory: the new content survives a crash.
    Durable,
    /// Only atomic: after a crash the file holds the old or the new content, never a mix.
    AtomicOnly,
}

/// Writes `bytes` to `path` atomically with `mode`. On any failure the previous file is untouched and the
/// temp file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_atomic_with(path, bytes, mode, Sync::Durable)
}

/// [`write_atomic`] with a choice of durability.
pub fn write_atomic_with(path: &Path, bytes: &[u8], mode: u32, sync: Sync) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".multus-tmp-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    if sync == Sync::Durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path).map_err(|e| e.error)?;
    if sync == Sync::Durable {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Copies a file atomically (a running binary is replaced by rename, never rewritten in place, so there is
/// no "text file busy" and no runtime ever runs a half-copied binary).
pub fn copy_atomic(from: &Path, to: &Path, mode: u32) -> std::io::Result<()> {
    let bytes = std::fs::read(from)?;
    write_atomic(to, &bytes, mode)
}

/// Removes a file; a missing one is fine.
pub fn remove_if_exists(path: &Path) -> std::io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_and_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/f.conf");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // Writing where the target is a directory fails and leaves no temp file.
        let dir_target = d.path().join("sub/adir");
        std::fs::create_dir(&dir_target).unwrap();
        assert!(write_atomic(&dir_target, b"x", 0o644).is_err());
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(remove_if_exists(&p).unwrap());
        assert!(!remove_if_exists(&p).unwrap());
    }
}

//! Network namespaces: opening and checking a `CNI_NETNS` path, and running work inside a namespace on a
//! dedicated thread (never on a tokio worker: `setns` changes only the calling thread).

use crate::cni::CniError;
use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// `NSFS_MAGIC` from `linux/magic.h`: the file system of `/proc/<pid>/ns/*` and bind-mounted netns files.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `PROC_SUPER_MAGIC`: older kernels report `/proc/<pid>/ns/net` as procfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// An open network namespace file.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens a netns path and checks that it is a namespace file. A missing or wrong path is code 3
    /// (container unknown or does not exist); a path that cannot be read is code 5.
    pub fn open(path: &Path) -> Result<Self, CniError> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CniError::unknown_container(format!(
                "network namespace {} does not exist",
                path.display()
            )),
            _ => CniError::io(format!(
                "cannot open network namespace {}: {e}",
                path.display()
            )),
        })?;
        let st = nix::sys::statfs::fstatfs(file.as_fd()).map_err(|e| {
            CniError::io(format!(
                "cannot stat network namespace {}: {e}",
                path.display()
            ))
        })?;
        #[allow(clippy::unnecessary_cast)]
        let magic = st.filesystem_type().0 as i64;
        if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
            return Err(CniError::unknown_container(format!(
                "{} is not a network namespace (file system type {magic:#x})",
                path.display()
            )));
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (for `setns` or `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` on a new OS thread that has entered this namespace, and returns its value. The thread ends
    /// afterwards, so no other work ever runs in the wrong namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T, CniError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let fd = self
            .file
            .try_clone()
            .map_err(|e| CniError::io(format!("dup netns fd: {e}")))?;
        let path = self.path.clone();
        let handle = std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || -> Result<T, CniError> {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                    .map_err(|e| CniError::kernel(format!("unshare(CLONE_FS): {e}")))?;
                nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| CniError::kernel(format!("setns into {}: {e}", path.display())))?;
                Ok(f())
            })
            .map_err(|e| CniError::io(format!("cannot start a thread: {e}")))?;
        handle
            .join()
            .map_err(|_| CniError::kernel("a thread working in a network namespace panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_netns() {
        assert_eq!(
            NetNs::open(Path::new("/nonexistent/ns"))
                .unwrap_err()
                .code
                .code(),
            3
        );
        assert_eq!(
            NetNs::open(Path::new("/etc/hostname"))
                .unwrap_err()
                .code
                .code(),
            3
        );
        let own = NetNs::open(Path::new("/proc/self/ns/net")).unwrap();
        let v = own.run(|| 41 + 1).unwrap();
        assert_eq!(v, 42);
    }
}

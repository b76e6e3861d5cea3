//! Sysctls under `/proc/sys`, read and written from a thread inside the target namespace: the `net/`
//! subtree shows the namespace of the thread that opens the file.
//!
//! Or without a thread: [`SysctlDirs`] holds the `net/ipv4/conf` and `net/ipv6/conf` directories opened
//! inside the namespace (by the thread that opens its netlink socket anyway); names looked up below them
//! stay in that namespace whatever the namespace of the caller, so the per-interface keys are written from
//! the runtime thread with one `openat` each. Used only once [`SysctlDirs::verify`] has seen a name that
//! exists nowhere but in the target namespace resolve through them.

use crate::cni::CniError;
use crate::netns::NetNs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// One sysctl step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysctlOp {
    /// Write `value`; a failure is ignored (as the reference plugins treat `arp_notify`).
    TrySet {
        /// Key below `/proc/sys`, `/`-separated (`net/ipv4/conf/eth0/arp_notify`).
        key: String,
        /// Value.
        value: String,
    },
    /// Make sure the key holds `value`: read it, write it when it differs; a failed write is an error, a
    /// failed read skips the key.
    Ensure {
        /// Key below `/proc/sys`, `/`-separated.
        key: String,
        /// Value.
        value: String,
    },
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key)
}

/// Reads a sysctl of the calling thread's namespace (trailing newline removed).
pub fn read(key: &str) -> io::Result<String> {
    Ok(std::fs::read_to_string(path(key))?.trim_end().to_string())
}

/// Writes a sysctl of the calling thread's namespace.
pub fn write(key: &str, value: &str) -> io::Result<()> {
    std::fs::write(path(key), value)
}

fn apply(ops: &[SysctlOp]) -> Result<(), CniError> {
    apply_with(ops, read, write)
}

fn apply_with(
    ops: &[SysctlOp],
    read: impl Fn(&str) -> io::Result<String>,
    write: impl Fn(&str, &str) -> io::Result<()>,
) -> Result<(), CniError> {
    for op in ops {
        match op {
            SysctlOp::TrySet { key, value } => {
                if let Err(e) = write(key, value) {
                    tracing::debug!("sysctl {key}={value} not set: {e}");
                }
            }
            SysctlOp::Ensure { key, value } => match read(key) {
                Ok(cur) if cur == *value => {}
                Ok(cur) => write(key, value).map_err(|e| {
                    CniError::kernel(format!(
                        "failed to set sysctl {key}={value} (was {cur}): {e}"
                    ))
                })?,
                Err(e) => tracing::debug!("sysctl {key} not readable: {e}"),
            },
        }
    }
    Ok(())
}

/// The per-interface sysctl directories of one network namespace (`net/ipv4/conf`, `net/ipv6/conf`),
/// opened from inside it.
#[derive(Debug, Default)]
pub struct SysctlDirs {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
    verified: AtomicBool,
}

fn open_dir(path: &std::ffi::CStr) -> Option<OwnedFd> {
    // SAFETY: a NUL-terminated path and constant flags; the result is a new descriptor we own, or -1.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    // SAFETY: `fd` was just returned by open(2) and is owned by nothing else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

impl SysctlDirs {
    /// Opens the directories of the calling thread's namespace (run it on a thread inside the target
    /// namespace). A directory that does not exist (IPv6 disabled at boot) is left out.
    pub fn open_here() -> Self {
        SysctlDirs {
            v4: open_dir(c"/proc/sys/net/ipv4/conf"),
            v6: open_dir(c"/proc/sys/net/ipv6/conf"),
            verified: AtomicBool::new(false),
        }
    }

    /// Checks that names resolve in the directories' namespace: `probe_ifname` must be the name of a link
    /// that exists in the target namespace and nowhere else (a fresh random temporary name). Returns whether
    /// the directories are now usable by [`SysctlDirs::apply`].
    pub fn verify(&self, probe_ifname: &str) -> bool {
        self.verified_if(self.resolves(probe_ifname))
    }

    /// As [`SysctlDirs::verify`] with a name that may exist in the caller's namespace too (a container's
    /// `eth0`): `inside` must resolve and `outside`, a link of the caller's namespace only (a fresh random
    /// name), must not.
    pub fn verify_apart(&self, inside: &str, outside: &str) -> bool {
        self.verified_if(self.resolves(inside) && !self.resolves(outside))
    }

    fn verified_if(&self, ok: bool) -> bool {
        if ok {
            self.verified.store(true, Ordering::Relaxed);
        }
        ok
    }

    /// Whether `ifname` has a directory below `net/ipv4/conf` as these directories show it.
    fn resolves(&self, ifname: &str) -> bool {
        self.v4.as_ref().is_some_and(|d| {
            std::ffi::CString::new(ifname).is_ok_and(|name| {
                // SAFETY: a valid directory descriptor and a NUL-terminated relative name.
                unsafe { libc::faccessat(d.as_raw_fd(), name.as_ptr(), libc::F_OK, 0) == 0 }
            })
        })
    }

    /// Whether [`SysctlDirs::verify`] succeeded.
    pub fn is_verified(&self) -> bool {
        self.verified.load(Ordering::Relaxed)
    }

    fn resolve<'k>(&self, key: &'k str) -> Option<(&OwnedFd, &'k str)> {
        if let Some(rest) = key.strip_prefix("net/ipv4/conf/") {
            return self.v4.as_ref().map(|d| (d, rest));
        }
        if let Some(rest) = key.strip_prefix("net/ipv6/conf/") {
            return self.v6.as_ref().map(|d| (d, rest));
        }
        None
    }

    fn open_key(&self, key: &str, write: bool) -> io::Result<std::fs::File> {
        let (dir, rest) = self.resolve(key).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "not below net/ipv{4,6}/conf")
        })?;
        let name = std::ffi::CString::new(rest)?;
        let flags = libc::O_CLOEXEC
            | if write {
                libc::O_WRONLY
            } else {
                libc::O_RDONLY
            };
        // SAFETY: a valid directory descriptor and a NUL-terminated relative name.
        let fd = unsafe { libc::openat(dir.as_fd().as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by openat(2) and is owned by nothing else.
        Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn read(&self, key: &str) -> io::Result<String> {
        use std::io::Read;
        let mut s = String::new();
        self.open_key(key, false)?.read_to_string(&mut s)?;
        Ok(s.trim_end().to_string())
    }

    fn write(&self, key: &str, value: &str) -> io::Result<()> {
        use std::io::Write;
        self.open_key(key, true)?.write_all(value.as_bytes())
    }

    /// Whether every key of `ops` is one these directories can reach.
    fn covers(&self, ops: &[SysctlOp]) -> bool {
        ops.iter().all(|op| match op {
            SysctlOp::TrySet { key, .. } => {
                // A family whose directory is missing (IPv6 off) cannot be set either way.
                key.starts_with("net/ipv4/conf/") || key.starts_with("net/ipv6/conf/")
            }
            SysctlOp::Ensure { key, .. } => self.resolve(key).is_some(),
        })
    }

    /// Applies `ops` through the directories when they are verified and reach every key, else inside `ns`
    /// on a throwaway thread (as [`apply_in`]).
    pub fn apply(&self, ns: &NetNs, ops: Vec<SysctlOp>) -> Result<(), CniError> {
        if ops.is_empty() {
            return Ok(());
        }
        if self.is_verified() && self.covers(&ops) {
            return apply_with(&ops, |k| self.read(k), |k, v| self.write(k, v));
        }
        apply_in(Some(ns), ops)
    }
}

/// Applies `ops` inside `ns` (on a throwaway thread), or in this process's namespace when `ns` is `None`.
pub fn apply_in(ns: Option<&NetNs>, ops: Vec<SysctlOp>) -> Result<(), CniError> {
    if ops.is_empty() {
        return Ok(());
    }
    match ns {
        Some(ns) => ns.run(move || apply(&ops))?,
        None => apply(&ops),
    }
}

/// Reads `keys` inside `ns`; each value is `None` when it cannot be read.
pub fn read_in(ns: &NetNs, keys: Vec<String>) -> Result<Vec<Option<String>>, CniError> {
    ns.run(move || keys.iter().map(|k| read(k).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_apart_needs_the_inside_name_and_not_the_outside_one() {
        // Opened here: the directories show this namespace, where `lo` exists and the random name does not.
        let dirs = SysctlDirs::open_here();
        assert!(!dirs.verify_apart("lo", "lo"));
        assert!(!dirs.verify_apart("nx0a1b2c3d4", "lo"));
        assert!(!dirs.is_verified());
        assert!(dirs.verify_apart("lo", "nx0a1b2c3d4"));
        assert!(dirs.is_verified());
    }
}

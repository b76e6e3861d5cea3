//! Sysctls under `/proc/sys`, read and written from a thread inside the target namespace: the `net/`
//! subtree shows the namespace of the thread that opens the file.

use crate::cni::CniError;
use crate::netns::NetNs;
use std::io;
use std::path::PathBuf;

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

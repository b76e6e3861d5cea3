//! Thin netlink effects over `rtnetlink`: a [`Netlink`] handle opened in the right network namespace, and
//! the link, address, route and sysctl operations the built-in delegates need: [`link`] (one
//! [`link::LinkChange`] builder for every link change), [`mac`] (the one [`MacAddr`] type), [`netdev`] (the
//! one save/restore of a netdev's name, MAC, MTU and up flag), [`addr`], [`route`], [`sysctl`]. Nothing here decides *what*
//! to do: the plugins plan, these functions carry the plan out.
//!
//! Namespaces are handled as the kernel requires: a netlink socket stays bound to the namespace it was
//! created in, and `setns` changes only the calling thread. So a handle for a container namespace is made
//! by a throwaway OS thread that enters the namespace, creates the socket and exits; the socket is then
//! driven by the tokio runtime like any other. No runtime worker ever changes namespace.

pub mod addr;
pub mod handle;
pub mod link;
pub mod mac;
pub mod netdev;
pub mod route;
pub mod sysctl;

pub use handle::Netlink;
pub use mac::MacAddr;

use crate::cni::CniError;
use std::fmt;

/// A failed netlink request: the kernel's errno (when it answered with one) and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    /// The positive errno from the kernel's answer (`ENODEV` = 19, ...), `None` when the request did not
    /// reach the kernel or the answer could not be read.
    pub errno: Option<i32>,
    /// What failed.
    pub msg: String,
}

impl NlError {
    pub(crate) fn new(errno: Option<i32>, msg: impl Into<String>) -> Self {
        NlError {
            errno,
            msg: msg.into(),
        }
    }

    /// Prefixes the description with what was being done.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    /// True when the kernel answered "no such device / entry" (`ENODEV` or `ENOENT`).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno, Some(libc::ENODEV) | Some(libc::ENOENT))
    }

    /// True when the object to delete is already gone (`ESRCH`, as the kernel answers for a route, or
    /// `ENOENT`/`ENODEV`).
    pub fn is_gone(&self) -> bool {
        self.errno == Some(libc::ESRCH) || self.is_not_found()
    }

    /// True when the object already exists (`EEXIST`).
    pub fn is_exists(&self) -> bool {
        self.errno == Some(libc::EEXIST)
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for NlError {}

impl From<NlError> for CniError {
    fn from(e: NlError) -> Self {
        CniError::kernel(e.msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos() {
        let e = NlError::new(Some(libc::ENODEV), "x");
        assert!(e.is_not_found() && !e.is_exists());
    }
}

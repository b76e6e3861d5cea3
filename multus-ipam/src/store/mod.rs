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
//! Nothing else is written there: the index that spares a fresh process reading every file lives
//! in `<dataDir>/.multus-index/` ([`crate::index`]). The directory's mtime is moved 1 ns back
//! after each change (see there); the reference never looks at it.
//!
//! # Orphans: empty reservation files
//!
//! Every writer of this directory (the reference, this crate) creates a reservation file and writes
//! its holder while holding the lock, and the holder is never empty (a container ID is required):
//! the reference opens it with `O_CREAT|O_EXCL` and then writes `<containerID>\r\n<ifname>`, both
//! under the `flock` of `lock`, and removes the file again if the write fails; this crate creates
//! it whole (or, without `O_TMPFILE`, like the reference). So an empty regular file seen while the
//! lock is held is not being written by anyone: its writer was killed between the create and the
//! write (a runtime's or the meta-plugin's `delegateTimeout` killing a delegate's process group can
//! land there), and its `flock` went away with it. No DEL can ever match it, and the reference
//! skips it forever. Such a file is an orphan, and:
//! - an ADD's walk takes an orphan's address only when it finds no free address in the range set:
//!   it walks again in the same order and takes the first orphan (removes the file and creates its
//!   own, under the lock). While any address is free the choice is the reference's, so the store
//!   stays byte for byte what the reference would make, and a walk costs one lookup per address;
//! - a requested address that is an orphan is taken (the reference refuses it as taken);
//! - STATUS counts a range set with an orphan and nothing free as available;
//! - GC releases it, as every reservation that no valid attachment holds ([`crate::gc`]);
//! - DEL and CHECK leave it alone (no attachment holds it).
//!
//! Only an empty *regular* file is an orphan: the index points at candidates (entries of an empty
//! file without a holder, [`crate::index`]), and the file itself is `lstat`ed under the lock before
//! anything is removed. A file with other content that is no holder (garbage, whitespace), a
//! directory, a FIFO or a symlink (even to an empty file) stays reserved. A reference running at the same time
//! is safe: its create and its write happen under the lock we hold when we look, so it is either
//! before its create (it then finds our new file and moves on) or after its write (the file is not
//! empty). Writers that do not take the lock are not safe with the reference either, and are out
//! of scope (as in [`crate::index`]'s limits). What changes for someone who reserved an address by
//! hand with an empty file (`touch`): the reference never hands it out, this crate does; any
//! content (e.g. `reserved`) keeps it reserved for both.
//!
//! The parts: [`DiskStore`] and its locked view ([`LockedDisk`], in `disk`), and the file
//! primitives they use (`files`: the whole-file create of a reservation, the in-place record).
//!
//! Durability: like the reference (which calls no `fsync`), files are not synced by default;
//! [`Durability::Fsync`] syncs each written file and the directory.

mod disk;
mod files;

use multus_core::cni::names;
use std::net::IpAddr;

pub use disk::{DiskStore, LockedDisk};

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
    /// Empty, not UTF-8 or not a regular file: reserved, owned by no attachment, reclaimed by GC
    /// (an empty regular file is an orphan: also reclaimed by an ADD, see the module's doc).
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
    pub(crate) fn key(&self) -> Option<String> {
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

impl Held {
    /// How many addresses, of either format.
    pub fn len(&self) -> usize {
        self.exact.len() + self.legacy.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    /// Whether `ip` is reserved (an orphan too).
    fn is_reserved(&mut self, ip: IpAddr) -> Result<bool>;
    /// Whether `ip`'s reservation is an orphan (see the module's doc), as its file is now. A
    /// store that cannot tell (the default) has none.
    fn is_orphan(&mut self, _ip: IpAddr) -> Result<bool> {
        Ok(false)
    }
    /// Removes `ip`'s reservation if it is an orphan; whether it did.
    fn reclaim(&mut self, _ip: IpAddr) -> Result<bool> {
        Ok(false)
    }
    /// The raw content of the last-reserved record of range set `set`, if any.
    fn last_reserved(&mut self, set: usize) -> Result<Option<Vec<u8>>>;
    /// Replaces (`Some`) or removes (`None`) the last-reserved record of range set `set`.
    fn set_last_reserved(&mut self, set: usize, content: Option<&[u8]>) -> Result<()>;
    /// Brings what the store knows of the holders up to date with every file, for when
    /// [`Store::held_by`]'s answer may be short (files rewritten in place, see [`crate::index`]);
    /// `true` if something was out of date. A store that reads every file each time (the
    /// default) has nothing to do.
    fn verify(&mut self) -> Result<bool> {
        Ok(false)
    }
}

/// Checks an attachment's container ID and interface name (from the environment, code 4) with the one check
/// of [`multus_core::cni::names`]; the IDs also end up in reservation files, where they must not break the
/// format.
pub fn check_attachment(container_id: &str, ifname: &str) -> Result<()> {
    names::container_id(container_id).map_err(IpamError::InvalidEnvName)?;
    names::ifname(ifname).map_err(IpamError::InvalidEnvName)
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

    /// The rules are multus-core's (`names`); here: which code each kind of name gets.
    #[test]
    fn names_are_checked_with_their_codes() {
        let code = |e: IpamError| multus_core::cni::ErrorCode::from(&e).code();
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(code(DiskStore::open(tmp.path(), "../x").unwrap_err()), 7);
        assert!(DiskStore::open(tmp.path(), "my net.1").is_ok());
        assert_eq!(code(check_attachment("a\r\nb", "eth0").unwrap_err()), 4);
        assert_eq!(code(check_attachment("c", "a:b").unwrap_err()), 4);
        assert!(check_attachment("a_b.c-D9", "0123456789abcde").is_ok());
    }
}

//! Garbage collection (CNI 1.1 `GC` with `cni.dev/valid-attachments`): release every reservation
//! whose attachment is not in the valid list. The reference plugin has no GC.

use crate::store::{attachment_key, Holder, Reservation, Store};
use crate::Result;
use std::collections::HashSet;

/// An attachment: a container ID and an interface name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// Container ID.
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

impl Attachment {
    /// An attachment from its parts.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Attachment {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }
}

/// Which reservations a GC keeps, given the valid attachments (pure).
///
/// A current-format reservation is kept if its (container ID, ifname) is valid; a legacy one
/// (container ID only) if any valid attachment has that container ID; one with an unreadable
/// holder (empty, e.g. left by a crash between create and write, or garbage) is never kept.
pub fn keeps(valid: &[Attachment]) -> impl Fn(&Holder) -> bool {
    let exact: HashSet<String> = valid
        .iter()
        .map(|a| attachment_key(&a.container_id, &a.ifname))
        .collect();
    let ids: HashSet<String> = valid
        .iter()
        .map(|a| a.container_id.trim().to_string())
        .collect();
    move |h: &Holder| match h {
        Holder::Attachment {
            container_id,
            ifname,
        } => exact.contains(&attachment_key(container_id, ifname)),
        Holder::Legacy(id) => ids.contains(id),
        Holder::Unknown => false,
    }
}

/// Releases every reservation not held by a valid attachment; returns what it released.
/// Best effort: a reservation that cannot be released does not stop the others; the first such
/// error is returned after all were tried. The caller holds the store's lock.
pub fn gc<S: Store>(store: &mut S, valid: &[Attachment]) -> Result<Vec<Reservation>> {
    let keep = keeps(valid);
    let mut released = Vec::new();
    let mut first_err = None;
    for r in store.reservations()? {
        if keep(&r.holder) {
            continue;
        }
        match store.release(r.ip) {
            Ok(true) => released.push(r),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(ip = %r.ip, error = %e, "GC could not release");
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(released),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rules() {
        let k = keeps(&[Attachment::new("c1", "eth0"), Attachment::new("c2", "net1")]);
        let att = |c: &str, i: &str| Holder::Attachment {
            container_id: c.into(),
            ifname: i.into(),
        };
        assert!(k(&att("c1", "eth0")));
        assert!(!k(&att("c1", "net1")));
        assert!(k(&att("c2", "net1")));
        assert!(!k(&att("c3", "eth0")));
        assert!(k(&Holder::Legacy("c2".into())));
        assert!(!k(&Holder::Legacy("c3".into())));
        assert!(!k(&Holder::Unknown));
    }
}

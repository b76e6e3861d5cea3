//! Where a netdev is put back: the state of a device's netdev before a delegate changes it ([`NetdevState`]:
//! name, MAC, MTU, up), saved at ADD and restored at DEL by every delegate that hands a device to a pod (the
//! SR-IOV VF netdev moved into a pod, the netdev a DPDK bind took away).
//!
//! - [`NetdevState::of`] / [`save`]: what a netdev is now.
//! - [`restore`]: its name (set down first when it runs, as the kernel renames only a stopped netdev), MAC,
//!   MTU and up flag put back, each only where it differs now; every step is tried, the first failure is
//!   returned.
//! - [`restore_addresses`]: MAC and MTU only, wherever the netdev is (in a pod, before it goes home).
//! - [`ensure_mac`]: a MAC set and checked, for drivers that take one only at their next reset.

use super::link::{self, LinkChange, LinkInfo};
use super::{MacAddr, Netlink};
use crate::cni::CniError;
use serde::{Deserialize, Serialize};

/// A netdev as it was before ADD.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetdevState {
    /// Its name.
    pub name: String,
    /// Its own (effective) MAC; all-zero: not known, never restored.
    pub mac: MacAddr,
    /// Its MTU; 0: not known, never restored.
    pub mtu: u32,
    /// Whether it was administratively up.
    pub up: bool,
}

impl NetdevState {
    /// The state of a link as the kernel reports it.
    pub fn of(l: &LinkInfo) -> Self {
        NetdevState {
            name: l.name.clone(),
            mac: l.mac_addr().unwrap_or_default(),
            mtu: l.mtu,
            up: l.up,
        }
    }
}

/// The state of the netdev named `name` in `nl`'s namespace; `None` when there is none.
pub async fn save(nl: &Netlink, name: &str) -> Result<Option<NetdevState>, CniError> {
    Ok(link::by_name(nl, name).await?.map(|l| NetdevState::of(&l)))
}

/// Sets one change, naming the netdev and the change in the error.
async fn change(nl: &Netlink, index: u32, name: &str, c: LinkChange<'_>) -> Result<(), CniError> {
    link::set(nl, index, &c)
        .await
        .map_err(|e| CniError::kernel(format!("netdev {name:?} ({c}): {e}")))
}

/// Puts a netdev (index `index` in `nl`'s namespace) back as `saved` says: its name (down first when it
/// runs), MAC ([`ensure_mac`]), MTU, then its up flag, each only where it differs now. Every step is tried;
/// the first failure is returned. Another interface holding the saved name is a failure of that step.
pub async fn restore(nl: &Netlink, index: u32, saved: &NetdevState) -> Result<(), CniError> {
    let l = link::by_index(nl, index)
        .await?
        .ok_or_else(|| CniError::kernel(format!("netdev #{index} vanished")))?;
    let mut first: Option<CniError> = None;
    if l.name != saved.name {
        let renamed = async {
            if let Some(other) = link::by_name(nl, &saved.name).await? {
                return Err(CniError::kernel(format!(
                    "cannot rename netdev {:?} back to {:?}: interface #{} has that name",
                    l.name, saved.name, other.index
                )));
            }
            if l.up {
                change(nl, index, &l.name, LinkChange::new().down()).await?;
            }
            change(nl, index, &l.name, LinkChange::new().name(&saved.name)).await
        };
        if let Err(e) = renamed.await {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = restore_addresses(nl, index, &saved.name, saved).await {
        first.get_or_insert(e);
    }
    let up = link::by_index(nl, index).await?.map(|l| l.up);
    if up.is_some_and(|u| u != saved.up) {
        if let Err(e) = change(nl, index, &saved.name, LinkChange::new().set_up(saved.up)).await {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// Puts a netdev's MAC and MTU back (wherever it is: `nl` is a connection in its namespace; `name` is for
/// messages). Both are tried; the first failure is returned.
pub async fn restore_addresses(
    nl: &Netlink,
    index: u32,
    name: &str,
    saved: &NetdevState,
) -> Result<(), CniError> {
    let mac = if saved.mac.is_zero() {
        Ok(())
    } else {
        ensure_mac(nl, index, name, saved.mac).await
    };
    let l = link::by_index(nl, index).await?;
    if saved.mtu > 0 && l.is_some_and(|l| l.mtu != saved.mtu) {
        change(nl, index, name, LinkChange::new().mtu(saved.mtu)).await?;
    }
    mac
}

/// Sets a netdev's MAC and checks it took. A VF driver may refuse its own MAC change while the PF has set an
/// administrative MAC, and take that MAC only at its next reset (igbvf does both): when the set fails or
/// does not stick, the link is cycled up and down once (igbvf resets on down), then checked again; its up
/// flag is left as it was.
pub async fn ensure_mac(
    nl: &Netlink,
    index: u32,
    name: &str,
    mac: MacAddr,
) -> Result<(), CniError> {
    let current = |l: Option<LinkInfo>| l.and_then(|l| l.mac_addr());
    if current(link::by_index(nl, index).await?) == Some(mac) {
        return Ok(());
    }
    let first = link::set(nl, index, &LinkChange::new().mac(mac)).await;
    if first.is_ok() && current(link::by_index(nl, index).await?) == Some(mac) {
        return Ok(());
    }
    let was_up = link::by_index(nl, index)
        .await?
        .map(|l| l.up)
        .unwrap_or(false);
    for up in [true, false] {
        if let Err(e) = link::set(nl, index, &LinkChange::new().set_up(up)).await {
            tracing::debug!("cycling {name} to pick up MAC {mac}: {e}");
        }
    }
    if was_up {
        change(nl, index, name, LinkChange::new().up()).await?;
    }
    let got = current(link::by_index(nl, index).await?);
    if got == Some(mac) {
        return Ok(());
    }
    let why = match first {
        Err(e) => e.to_string(),
        Ok(()) => "the MAC did not stick".into(),
    };
    Err(CniError::kernel(format!(
        "cannot set MAC {mac} on {name:?}: {why} (it has {})",
        got.map(|m| m.to_string()).unwrap_or_else(|| "none".into())
    )))
}

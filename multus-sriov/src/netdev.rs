//! The VF's netdev: finding it (in the host through sysfs, in a pod by its parent PCI device), changing its
//! name, MAC, MTU and state, and moving it between network namespaces.
//!
//! A netdev moves with one `RTM_SETLINK` carrying `IFLA_NET_NS_FD` and a temporary `IFLA_IFNAME` (random, so
//! it collides with nothing on either side); the final rename happens in the target namespace, where a clash
//! with an existing interface is a clean error with the netdev still under its temporary name.
//!
//! In a pod the VF is found by `IFLA_PARENT_DEV_NAME` (the PCI address of the netdev's parent device, sent
//! by kernels 5.16 and later), so DEL finds it whatever it is called there now.

use crate::config::MacAddr;
use crate::PciAddress;
use multus_core::cni::CniError;
use multus_core::netlink::link::{self, LinkInfo};
use multus_core::netlink::{Netlink, NlError};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// One `RTM_SETLINK`'s worth of changes; unset fields are left alone.
#[derive(Debug, Clone, Default)]
pub struct LinkSet<'a> {
    /// New name (in the target namespace when `netns_fd` is set).
    pub name: Option<&'a str>,
    /// New MAC.
    pub mac: Option<MacAddr>,
    /// New MTU.
    pub mtu: Option<u32>,
    /// Up (`Some(true)`) or down (`Some(false)`).
    pub up: Option<bool>,
    /// Move into the namespace of this file descriptor.
    pub netns_fd: Option<RawFd>,
}

/// Applies a [`LinkSet`] to the link with `index` in `nl`'s namespace.
pub async fn set(nl: &Netlink, index: u32, change: &LinkSet<'_>) -> Result<(), NlError> {
    let mut b = LinkUnspec::new_with_index(index);
    if let Some(fd) = change.netns_fd {
        b = b.setns_by_fd(fd);
    }
    if let Some(n) = change.name {
        b = b.name(n);
    }
    if let Some(m) = change.mac {
        b = b.address(m.0.to_vec());
    }
    if let Some(m) = change.mtu {
        b = b.mtu(m);
    }
    match change.up {
        Some(true) => b = b.up(),
        Some(false) => b = b.down(),
        None => {}
    }
    nl.request(RouteNetlinkMessage::SetLink(b.build()), 0)
        .await
        .map(|_| ())
}

/// The MAC of a link, when it is an Ethernet one.
pub fn link_mac(l: &LinkInfo) -> Option<MacAddr> {
    <[u8; 6]>::try_from(l.mac.as_slice()).ok().map(MacAddr)
}

/// The link named `name` in `nl`'s namespace.
pub async fn by_name(nl: &Netlink, name: &str) -> Result<Option<LinkInfo>, CniError> {
    link::by_name(nl, name).await.map_err(CniError::from)
}

/// `IFLA_PARENT_DEV_NAME` of a link message (the PCI address for a PCI device's netdev).
fn parent_dev(m: &LinkMessage) -> Option<&str> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::ParentDevName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// The netdev of PCI function `pci` in `nl`'s namespace (one link dump), by its parent device. `None` when
/// it is not there (or the kernel does not report parent devices).
pub async fn find_by_pci(nl: &Netlink, pci: PciAddress) -> Result<Option<LinkInfo>, CniError> {
    let want = pci.to_string();
    let msgs = nl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .await
        .map_err(|e| CniError::kernel(format!("sriov: listing links: {e}")))?;
    Ok(msgs.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) if parent_dev(l) == Some(want.as_str()) => {
            Some(LinkInfo::from_message(l))
        }
        _ => None,
    }))
}

/// The PCI address of a link's parent device, asked by index (`None` when the kernel does not say).
pub async fn parent_pci(nl: &Netlink, index: u32) -> Result<Option<String>, CniError> {
    let msg = LinkUnspec::new_with_index(index).build();
    let msgs = nl
        .request(RouteNetlinkMessage::GetLink(msg), 0)
        .await
        .map_err(|e| CniError::kernel(format!("sriov: reading link #{index}: {e}")))?;
    Ok(msgs.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => parent_dev(l).map(str::to_string),
        _ => None,
    }))
}

/// Sets a netdev's MAC and checks it took. A VF driver may refuse the VF's own MAC change while the PF has
/// set an administrative MAC, and take that MAC only at its next reset (igbvf does both): when the set fails
/// or does not stick, the link is cycled up and down once (igbvf resets on down), then checked again.
pub async fn ensure_mac(
    nl: &Netlink,
    index: u32,
    ifname: &str,
    mac: MacAddr,
) -> Result<(), CniError> {
    let current = |l: Option<LinkInfo>| l.and_then(|l| link_mac(&l));
    let now = current(link::by_index(nl, index).await?);
    if now == Some(mac) {
        return Ok(());
    }
    let first = set(
        nl,
        index,
        &LinkSet {
            mac: Some(mac),
            ..Default::default()
        },
    )
    .await;
    if first.is_ok() && current(link::by_index(nl, index).await?) == Some(mac) {
        return Ok(());
    }
    let was_up = link::by_index(nl, index)
        .await?
        .map(|l| l.up)
        .unwrap_or(false);
    for up in [true, false] {
        if let Err(e) = set(
            nl,
            index,
            &LinkSet {
                up: Some(up),
                ..Default::default()
            },
        )
        .await
        {
            tracing::debug!("cycling {ifname} to pick up MAC {mac}: {e}");
        }
    }
    if was_up {
        set(
            nl,
            index,
            &LinkSet {
                up: Some(true),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| CniError::kernel(format!("sriov: setting {ifname:?} up: {e}")))?;
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
        "sriov: cannot set MAC {mac} on {ifname:?}: {why} (it has {})",
        got.map(|m| m.to_string()).unwrap_or_else(|| "none".into())
    )))
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

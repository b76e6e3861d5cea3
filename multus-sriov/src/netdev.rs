//! The VF's netdev: finding it in a pod by its parent PCI device, and waiting for it to come home. Its
//! changes (name, MAC, MTU, up, netns) are `multus_core::netlink::link::LinkChange`s; where it is put back,
//! `multus_core::netlink::netdev`.
//!
//! A netdev moves with one `RTM_SETLINK` carrying `IFLA_NET_NS_FD` and a temporary `IFLA_IFNAME` (random, so
//! it collides with nothing on either side); the final rename happens in the target namespace, where a clash
//! with an existing interface is a clean error with the netdev still under its temporary name.
//!
//! In a pod the VF is found by `IFLA_PARENT_DEV_NAME` (the PCI address of the netdev's parent device, sent
//! by kernels 5.16 and later), so DEL finds it whatever it is called there now.

use crate::PciAddress;
use multus_core::cni::CniError;
use multus_core::netlink::link::LinkInfo;
use multus_core::netlink::Netlink;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::LinkUnspec;
use std::time::{Duration, Instant};

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

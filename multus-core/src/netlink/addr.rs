//! Addresses: add one to a link or delete one, list a link's addresses.

use super::{Netlink, NlError};
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::AddressMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// Link index.
    pub index: u32,
    /// Address with prefix length.
    pub addr: IpNetwork,
    /// `IFA_F_*` flags (from `IFA_FLAGS` when present, else the header).
    pub flags: u32,
}

impl AddrInfo {
    /// Still doing duplicate address detection, or failed it.
    pub fn is_tentative_or_failed(&self) -> bool {
        self.flags & (AddressFlags::Tentative.bits() | AddressFlags::Dadfailed.bits()) != 0
    }

    fn from_message(m: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut flags = u32::from(m.header.flags.bits());
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Flags(f) => flags = f.bits(),
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on point-to-point links).
        let ip = local.or(address)?;
        let addr = IpNetwork::new(ip, m.header.prefix_len).ok()?;
        Some(AddrInfo {
            index: m.header.index,
            addr,
            flags,
        })
    }
}

/// Adds `addr` to link `index` (IPv4 gets the broadcast address of its subnet, as `ip` and the reference
/// plugins set it).
pub async fn add(nl: &Netlink, index: u32, addr: IpNetwork) -> Result<(), NlError> {
    add_queued(nl, index, addr).await
}

/// As [`add`], with the request queued at once ([`Netlink::queue`]): the future only collects the answer.
pub fn add_queued(
    nl: &Netlink,
    index: u32,
    addr: IpNetwork,
) -> impl std::future::Future<Output = Result<(), NlError>> + Send + 'static {
    let msg = message(index, addr);
    let answer = nl.queue(
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    );
    async move {
        answer
            .await
            .map(|_| ())
            .map_err(|e| e.context(format!("failed to add address {addr} to link #{index}")))
    }
}

/// Deletes `addr` from link `index` (the kernel matches the address and prefix; the broadcast address of
/// the same message is not compared).
pub async fn del(nl: &Netlink, index: u32, addr: IpNetwork) -> Result<(), NlError> {
    nl.request(RouteNetlinkMessage::DelAddress(message(index, addr)), 0)
        .await
        .map(|_| ())
        .map_err(|e| {
            e.context(format!(
                "could not remove address {addr} from link #{index}"
            ))
        })
}

/// The message naming `addr` on link `index`, for adding or deleting it.
fn message(index: u32, addr: IpNetwork) -> AddressMessage {
    match addr.ip() {
        IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(ip, addr.prefix())
            .build(),
        IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(ip, addr.prefix())
            .build(),
    }
}

/// The addresses of link `index` (all families).
pub async fn list(nl: &Netlink, index: u32) -> Result<Vec<AddrInfo>, NlError> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Unspec;
    msg.header.index = index;
    let msgs = nl
        .dump(RouteNetlinkMessage::GetAddress(msg))
        .await
        .map_err(|e| e.context("failed to list addresses"))?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewAddress(a) => AddrInfo::from_message(a),
            _ => None,
        })
        .filter(|a| a.index == index)
        .collect())
}

//! Links: create a macvlan / ipvlan, a veth pair or a bridge, look one up, change one ([`LinkChange`]: name,
//! MAC, MTU, up/down, promiscuity, master, netns; [`set_hairpin`] for a bridge port), delete.

use super::{MacAddr, Netlink, NlError};
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoIpVlan, InfoMacVlan, InfoPortData, InfoPortKind, InfoVeth,
    IpVlanMode, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage, MacVlanMode, State,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::{LinkBridge, LinkIpVlan, LinkMacVlan, LinkUnspec, LinkVeth};
use std::os::fd::RawFd;

/// The kind of a link stacked on a master, with its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// A macvlan.
    MacVlan(MacVlanMode),
    /// An ipvlan.
    IpVlan(IpVlanMode),
}

/// A link to create on top of a master.
#[derive(Debug, Clone)]
pub struct NewSubLink<'a> {
    /// Name at creation (a temporary one when the link moves to another namespace).
    pub name: &'a str,
    /// Index of the master, in the namespace of the connection that creates the link.
    pub master: u32,
    /// Kind and mode.
    pub kind: SubKind,
    /// MTU; `None` leaves the kernel's choice (the master's).
    pub mtu: Option<u32>,
    /// Hardware address; `None` lets the kernel choose (macvlan: random).
    pub mac: Option<MacAddr>,
    /// The namespace to create the link in (`IFLA_NET_NS_FD`); `None`: the connection's own.
    pub netns_fd: Option<RawFd>,
    /// Transmit queue length; `None` leaves the kernel's default.
    pub txqlen: Option<u32>,
}

/// What this crate reads of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`"macvlan"`, `"veth"`, ...), when it has one.
    pub kind: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Hardware address (6 bytes for Ethernet; see [`LinkInfo::mac_addr`]).
    pub mac: Vec<u8>,
    /// Administratively up.
    pub up: bool,
    /// `IFLA_LINK`: the index of the master (in the namespace named by `link_netnsid`, when set).
    pub parent: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the master lives in another namespace.
    pub link_netnsid: Option<i32>,
    /// The macvlan mode, for a macvlan.
    pub macvlan_mode: Option<MacVlanMode>,
    /// The ipvlan mode, for an ipvlan.
    pub ipvlan_mode: Option<IpVlanMode>,
    /// `IFLA_MASTER`: the index of the bridge (or bond, VRF) it is a port of.
    pub controller: Option<u32>,
    /// The operational state is `UP` (`IFLA_OPERSTATE`).
    pub oper_up: bool,
    /// Promiscuous mode is on (`IFF_PROMISC`).
    pub promisc: bool,
}

impl LinkInfo {
    /// The hardware address, when it is an Ethernet one.
    pub fn mac_addr(&self) -> Option<MacAddr> {
        MacAddr::from_slice(&self.mac)
    }

    /// The hardware address as a result carries it (`aa:bb:..`; empty when it is not an Ethernet one).
    pub fn mac_text(&self) -> String {
        self.mac_addr().map(|m| m.to_string()).unwrap_or_default()
    }

    /// Reads a kernel link message.
    pub fn from_message(m: &LinkMessage) -> Self {
        let mut out = LinkInfo {
            index: m.header.index,
            up: m.header.flags.contains(LinkFlags::Up),
            promisc: m.header.flags.contains(LinkFlags::Promisc),
            ..Default::default()
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => out.name = n.clone(),
                LinkAttribute::Mtu(v) => out.mtu = *v,
                LinkAttribute::Address(v) => out.mac = v.clone(),
                LinkAttribute::Link(v) => out.parent = Some(*v),
                LinkAttribute::LinkNetNsId(v) => out.link_netnsid = Some(*v),
                LinkAttribute::Controller(v) => out.controller = Some(*v),
                LinkAttribute::OperState(s) => out.oper_up = *s == State::Up,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            NlLinkInfo::Kind(k) => out.kind = Some(k.to_string()),
                            NlLinkInfo::Data(InfoData::MacVlan(d)) => {
                                for x in d {
                                    if let InfoMacVlan::Mode(mode) = x {
                                        out.macvlan_mode = Some(*mode);
                                    }
                                }
                            }
                            NlLinkInfo::Data(InfoData::IpVlan(d)) => {
                                for x in d {
                                    if let InfoIpVlan::Mode(mode) = x {
                                        out.ipvlan_mode = Some(*mode);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn first_link(msgs: Vec<RouteNetlinkMessage>) -> Option<LinkInfo> {
    msgs.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(LinkInfo::from_message(&l)),
        _ => None,
    })
}

/// Refuses a name the kernel cannot take ([`crate::cni::names::ifname`]) before it goes into a request: a
/// name of ~64 KiB would make a request whose error answer no longer fits the receive buffer (or that
/// netlink-packet-core cannot even encode). Every request of this module that carries a name checks it.
pub fn check_name(name: &str) -> Result<(), NlError> {
    crate::cni::names::ifname(name).map_err(|e| NlError::new(Some(libc::EINVAL), e.to_string()))
}

/// Creates a macvlan or ipvlan (`RTM_NEWLINK`, create-exclusive).
pub async fn create_sublink(nl: &Netlink, spec: &NewSubLink<'_>) -> Result<(), NlError> {
    check_name(spec.name)?;
    let mut msg = match spec.kind {
        SubKind::MacVlan(mode) => LinkMacVlan::new(spec.name, spec.master, mode).build(),
        SubKind::IpVlan(mode) => LinkIpVlan::new(spec.name, spec.master, mode).build(),
    };
    if let Some(mtu) = spec.mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(q) = spec.txqlen {
        msg.attributes.push(LinkAttribute::TxQueueLen(q));
    }
    if let Some(fd) = spec.netns_fd {
        msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    let what = match spec.kind {
        SubKind::MacVlan(_) => "macvlan",
        SubKind::IpVlan(_) => "ipvlan",
    };
    nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .await
        .map(|_| ())
        .map_err(|e| e.context(format!("failed to create {what} {:?}", spec.name)))
}

/// A veth pair to create: `name` (in the namespace of `netns_fd`, else the connection's) and its `peer` (in
/// the connection's namespace).
#[derive(Debug, Clone)]
pub struct NewVeth<'a> {
    /// The name of the end created in `netns_fd`.
    pub name: &'a str,
    /// The name of the other end, which stays in the connection's namespace.
    pub peer: &'a str,
    /// MTU of both ends; `None` leaves the kernel's default.
    pub mtu: Option<u32>,
    /// Hardware address of the `name` end; `None` lets the kernel choose (random).
    pub mac: Option<MacAddr>,
    /// Transmit queue length of both ends; `None` leaves the kernel's default.
    pub txqlen: Option<u32>,
    /// The namespace of the `name` end (`IFLA_NET_NS_FD`); `None`: the connection's own.
    pub netns_fd: Option<RawFd>,
}

/// Creates a veth pair (`RTM_NEWLINK`, create-exclusive): `EEXIST` when either name is taken.
pub async fn create_veth(nl: &Netlink, spec: &NewVeth<'_>) -> Result<(), NlError> {
    check_name(spec.name)?;
    check_name(spec.peer)?;
    let mut peer = LinkUnspec::new_with_name(spec.peer).build();
    let mut msg = LinkVeth::new(spec.name, spec.peer).build();
    for attrs in [&mut msg.attributes, &mut peer.attributes] {
        if let Some(mtu) = spec.mtu {
            attrs.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(q) = spec.txqlen {
            attrs.push(LinkAttribute::TxQueueLen(q));
        }
    }
    if let Some(mac) = spec.mac {
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
    }
    if let Some(fd) = spec.netns_fd {
        msg.attributes.push(LinkAttribute::NetNsFd(fd));
    }
    for a in &mut msg.attributes {
        if let LinkAttribute::LinkInfo(infos) = a {
            for i in infos.iter_mut() {
                if let NlLinkInfo::Data(InfoData::Veth(v)) = i {
                    *v = InfoVeth::Peer(peer.clone());
                }
            }
        }
    }
    nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .await
        .map(|_| ())
        .map_err(|e| {
            e.context(format!(
                "failed to create veth {:?} / {:?}",
                spec.name, spec.peer
            ))
        })
}

/// Creates a bridge named `name` with `mtu` (`None`: the kernel's default); `EEXIST` when a link has the name.
pub async fn create_bridge(nl: &Netlink, name: &str, mtu: Option<u32>) -> Result<(), NlError> {
    check_name(name)?;
    let mut msg = LinkBridge::new(name).build();
    if let Some(mtu) = mtu {
        msg.attributes.push(LinkAttribute::Mtu(mtu));
    }
    nl.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
        .await
        .map(|_| ())
        .map_err(|e| e.context(format!("could not add bridge {name:?}")))
}

/// Sets the hairpin mode of the bridge port with `index` (`IFLA_BRPORT_MODE`, as `ip link set .. type
/// bridge_slave hairpin on|off`). The link must already be a port of a bridge.
pub async fn set_hairpin(nl: &Netlink, index: u32, on: bool) -> Result<(), NlError> {
    let msg = LinkUnspec::new_with_index(index)
        .set_port_kind(InfoPortKind::Bridge)
        .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
            on,
        )]))
        .build();
    nl.request(RouteNetlinkMessage::NewLink(msg), 0)
        .await
        .map(|_| ())
        .map_err(|e| e.context(format!("failed to set hairpin mode {on} on link #{index}")))
}

/// Looks a link up by name; `Ok(None)` when there is none.
pub async fn by_name(nl: &Netlink, name: &str) -> Result<Option<LinkInfo>, NlError> {
    check_name(name)?;
    let msg = LinkUnspec::new_with_name(name).build();
    match nl.request(RouteNetlinkMessage::GetLink(msg), 0).await {
        Ok(msgs) => Ok(first_link(msgs)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.context(format!("failed to look up link {name:?}"))),
    }
}

/// Looks a link up by index; `Ok(None)` when there is none.
pub async fn by_index(nl: &Netlink, index: u32) -> Result<Option<LinkInfo>, NlError> {
    let msg = LinkUnspec::new_with_index(index).build();
    match nl.request(RouteNetlinkMessage::GetLink(msg), 0).await {
        Ok(msgs) => Ok(first_link(msgs)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.context(format!("failed to look up link #{index}"))),
    }
}

/// Changes to apply to a link in one `RTM_SETLINK`, built rtnetlink-style; what is not set is left alone.
/// The kernel moves the link to the target namespace first, then renames it, then changes its MAC and MTU,
/// then its flags: so a move and a temporary name go together, and so do a rename and `up`. A running link
/// is renamed only after it was set down (by an earlier request).
///
/// ```
/// use multus_core::netlink::link::LinkChange;
/// let c = LinkChange::new().name("net1").mtu(1400).up();
/// assert_eq!(format!("{c}"), "name net1, mtu 1400, up");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkChange<'a> {
    name: Option<&'a str>,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
    up: Option<bool>,
    promisc: Option<bool>,
    controller: Option<u32>,
    netns_fd: Option<RawFd>,
}

impl<'a> LinkChange<'a> {
    /// No change yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the link (in the target namespace, with [`LinkChange::netns_fd`]).
    pub fn name(mut self, name: &'a str) -> Self {
        self.name = Some(name);
        self
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = Some(mtu);
        self
    }

    /// Sets the hardware address.
    pub fn mac(mut self, mac: MacAddr) -> Self {
        self.mac = Some(mac);
        self
    }

    /// Brings the link up.
    pub fn up(self) -> Self {
        self.set_up(true)
    }

    /// Sets the link down.
    pub fn down(self) -> Self {
        self.set_up(false)
    }

    /// Brings the link up (`true`) or sets it down (`false`).
    pub fn set_up(mut self, up: bool) -> Self {
        self.up = Some(up);
        self
    }

    /// Sets promiscuous mode on (`true`) or off.
    pub fn promisc(mut self, on: bool) -> Self {
        self.promisc = Some(on);
        self
    }

    /// Makes the link a port of the bridge (or other master) with `index` (`IFLA_MASTER`).
    pub fn controller(mut self, index: u32) -> Self {
        self.controller = Some(index);
        self
    }

    /// Moves the link into the network namespace of this file descriptor (`IFLA_NET_NS_FD`).
    pub fn netns_fd(mut self, fd: RawFd) -> Self {
        self.netns_fd = Some(fd);
        self
    }

    /// The `RTM_SETLINK` message for the link with `index`.
    pub fn message(&self, index: u32) -> LinkMessage {
        let mut b = LinkUnspec::new_with_index(index);
        if let Some(fd) = self.netns_fd {
            b = b.setns_by_fd(fd);
        }
        if let Some(n) = self.name {
            b = b.name(n);
        }
        if let Some(m) = self.mtu {
            b = b.mtu(m);
        }
        if let Some(mac) = self.mac {
            b = b.address(mac.0.to_vec());
        }
        if let Some(c) = self.controller {
            b = b.controller(c);
        }
        if let Some(p) = self.promisc {
            b = b.promiscuous(p);
        }
        match self.up {
            Some(true) => b = b.up(),
            Some(false) => b = b.down(),
            None => {}
        }
        b.build()
    }
}

/// What a change does, for messages: `name net1, mtu 1400, up`.
impl std::fmt::Display for LinkChange<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.netns_fd.is_some() {
            parts.push("into another netns".into());
        }
        if let Some(n) = self.name {
            // A name is cut, as a hostile one may be huge (it is refused before any request).
            match n.char_indices().nth(crate::cni::names::IFNAME_MAX + 1) {
                Some((cut, _)) => parts.push(format!("name {}...", &n[..cut])),
                None => parts.push(format!("name {n}")),
            }
        }
        if let Some(m) = self.mac {
            parts.push(format!("mac {m}"));
        }
        if let Some(m) = self.mtu {
            parts.push(format!("mtu {m}"));
        }
        if let Some(c) = self.controller {
            parts.push(format!("master #{c}"));
        }
        if let Some(p) = self.promisc {
            parts.push(format!("promisc {}", if p { "on" } else { "off" }));
        }
        match self.up {
            Some(true) => parts.push("up".into()),
            Some(false) => parts.push("down".into()),
            None => {}
        }
        f.write_str(&parts.join(", "))
    }
}

/// Applies a [`LinkChange`] to the link with `index`.
pub async fn set(nl: &Netlink, index: u32, change: &LinkChange<'_>) -> Result<(), NlError> {
    set_queued(nl, index, change).await
}

/// As [`set`], with the request queued at once ([`Netlink::queue`]): the future only collects the answer.
pub fn set_queued(
    nl: &Netlink,
    index: u32,
    change: &LinkChange<'_>,
) -> impl std::future::Future<Output = Result<(), NlError>> + Send + 'static {
    let what = format!("failed to change link #{index} ({change})");
    let checked = change.name.map_or(Ok(()), check_name);
    let answer = checked.map(|()| nl.queue(RouteNetlinkMessage::SetLink(change.message(index)), 0));
    async move {
        match answer {
            Ok(answer) => answer.await.map(|_| ()).map_err(|e| e.context(what)),
            Err(e) => Err(e.context(what)),
        }
    }
}

/// Deletes the link with `index`; `Ok(false)` when it was already gone.
pub async fn delete(nl: &Netlink, index: u32) -> Result<bool, NlError> {
    let msg = LinkUnspec::new_with_index(index).build();
    match nl.request(RouteNetlinkMessage::DelLink(msg), 0).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.context(format!("failed to delete link #{index}"))),
    }
}

/// Deletes the link named `name`; `Ok(false)` when there is none.
pub async fn delete_by_name(nl: &Netlink, name: &str) -> Result<bool, NlError> {
    check_name(name)?;
    let msg = LinkUnspec::new_with_name(name).build();
    match nl.request(RouteNetlinkMessage::DelLink(msg), 0).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e.context(format!("failed to delete link {name:?}"))),
    }
}

/// The `InfoKind` name of a sub-link kind.
pub fn kind_name(kind: &SubKind) -> &'static str {
    match kind {
        SubKind::MacVlan(_) => "macvlan",
        SubKind::IpVlan(_) => "ipvlan",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names the kernel cannot take never go into a request: before the check, a 65,500-byte name waited
    /// for an answer that never fit the receive buffer, and one of 65,531 bytes panicked netlink-packet-core.
    #[tokio::test]
    async fn names_are_checked_before_any_request() {
        let nl = Netlink::current().unwrap();
        for n in [65_480, 65_500, 65_530, 65_531, 70_000, 16] {
            let name = "x".repeat(n);
            let errs = [
                by_name(&nl, &name).await.map(|_| ()).unwrap_err(),
                delete_by_name(&nl, &name).await.map(|_| ()).unwrap_err(),
                set(&nl, 1, &LinkChange::new().name(&name))
                    .await
                    .unwrap_err(),
                create_sublink(
                    &nl,
                    &NewSubLink {
                        name: &name,
                        master: 1,
                        kind: SubKind::MacVlan(MacVlanMode::Bridge),
                        mtu: None,
                        mac: None,
                        netns_fd: None,
                        txqlen: None,
                    },
                )
                .await
                .unwrap_err(),
            ];
            for e in errs {
                assert_eq!(e.errno, Some(libc::EINVAL), "{e}");
                assert!(e.msg.contains("interface name") && e.msg.len() < 200, "{e}");
            }
        }
        for bad in ["", "a/b", "a b", "..", "a:b"] {
            assert!(by_name(&nl, bad).await.is_err(), "{bad:?}");
        }
        assert!(by_name(&nl, "lo").await.unwrap().is_some());
    }
}

//! Routes: add and delete one, list them, find the default routes and the interface of the first.

use super::{Netlink, NlError};
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The main routing table.
pub const MAIN_TABLE: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// A route to add through one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop, if any.
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: u32,
    /// Route MTU (`RTAX_MTU`).
    pub mtu: Option<u32>,
    /// Advertised MSS (`RTAX_ADVMSS`).
    pub advmss: Option<u32>,
    /// Metric (`RTA_PRIORITY`).
    pub priority: Option<u32>,
    /// Table; `None` is the main table.
    pub table: Option<u32>,
    /// Scope; `None` is universe, as the reference plugins add routes.
    pub scope: Option<u8>,
}

/// A route as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNetwork,
    /// Next hop.
    pub gw: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Table.
    pub table: u32,
    /// Metric.
    pub priority: Option<u32>,
    /// Scope.
    pub scope: u8,
    /// Route MTU.
    pub mtu: Option<u32>,
    /// Advertised MSS.
    pub advmss: Option<u32>,
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v) => Some(IpAddr::V4(*v)),
        RouteAddress::Inet6(v) => Some(IpAddr::V6(*v)),
        _ => None,
    }
}

impl RouteInfo {
    fn from_message(m: &RouteMessage) -> Option<Self> {
        let mut dst = None;
        let mut gw = None;
        let mut oif = None;
        let mut table = u32::from(m.header.table);
        let mut priority = None;
        let mut mtu = None;
        let mut advmss = None;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = route_ip(d),
                RouteAttribute::Gateway(g) => gw = route_ip(g),
                RouteAttribute::Via(RouteVia::Inet(v)) => gw = Some(IpAddr::V4(*v)),
                RouteAttribute::Via(RouteVia::Inet6(v)) => gw = Some(IpAddr::V6(*v)),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => priority = Some(*p),
                RouteAttribute::Metrics(ms) => {
                    for x in ms {
                        match x {
                            RouteMetric::Mtu(v) => mtu = Some(*v),
                            RouteMetric::Advmss(v) => advmss = Some(*v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let dst_ip = match (dst, m.header.address_family) {
            (Some(d), _) => d,
            (None, AddressFamily::Inet) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (None, AddressFamily::Inet6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            _ => return None,
        };
        let dst = IpNetwork::new(dst_ip, m.header.destination_prefix_length).ok()?;
        Some(RouteInfo {
            dst,
            gw,
            oif,
            table,
            priority,
            scope: u8::from(m.header.scope),
            mtu,
            advmss,
        })
    }
}

/// Adds a route (`RTM_NEWROUTE`, create-exclusive, protocol `boot` as `ip route add` and the reference
/// plugins use). An identical route already present is `EEXIST`: see [`NlError::is_exists`].
pub async fn add(nl: &Netlink, r: &RouteSpec) -> Result<(), NlError> {
    add_queued(nl, r).await
}

/// As [`add`], with the request queued at once ([`Netlink::queue`]): the future only collects the answer.
pub fn add_queued(
    nl: &Netlink,
    r: &RouteSpec,
) -> impl std::future::Future<Output = Result<(), NlError>> + Send + 'static {
    let what = match r.gw {
        Some(gw) => format!("failed to add route {} via {gw} dev #{}", r.dst, r.oif),
        None => format!("failed to add route {} dev #{}", r.dst, r.oif),
    };
    let answer = add_message(r).map(|msg| {
        nl.queue(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    });
    async move {
        match answer {
            Ok(a) => a.await.map(|_| ()),
            Err(e) => Err(e),
        }
        .map_err(|e| e.context(what))
    }
}

fn add_message(r: &RouteSpec) -> Result<RouteMessage, NlError> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.network(), r.dst.prefix())
        .map_err(|e| NlError::new(Some(libc::EINVAL), e.to_string()))?
        .output_interface(r.oif)
        .protocol(RouteProtocol::Boot)
        .scope(RouteScope::from(r.scope.unwrap_or(0)));
    if let Some(gw) = r.gw {
        b = b
            .gateway(gw)
            .map_err(|e| NlError::new(Some(libc::EINVAL), e.to_string()))?;
    }
    if let Some(p) = r.priority {
        b = b.priority(p);
    }
    if let Some(t) = r.table {
        b = b.table_id(t);
    }
    let mut msg = b.build();
    let mut metrics = Vec::new();
    if let Some(m) = r.mtu {
        metrics.push(RouteMetric::Mtu(m));
    }
    if let Some(m) = r.advmss {
        metrics.push(RouteMetric::Advmss(m));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    Ok(msg)
}

/// All routes of a family (`v6` false: IPv4), in every table.
pub async fn list(nl: &Netlink, v6: bool) -> Result<Vec<RouteInfo>, NlError> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let msgs = nl
        .dump(RouteNetlinkMessage::GetRoute(msg))
        .await
        .map_err(|e| e.context("failed to list routes"))?;
    Ok(msgs
        .iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => RouteInfo::from_message(r),
            _ => None,
        })
        .collect())
}

/// The output interface of the first default route of the main table (IPv4 first, then IPv6), as the
/// reference plugins pick a default master.
pub async fn default_route_oif(nl: &Netlink) -> Result<Option<u32>, NlError> {
    for v6 in [false, true] {
        let found = list(nl, v6)
            .await?
            .into_iter()
            .find(|r| r.table == MAIN_TABLE && r.dst.prefix() == 0 && r.oif.is_some());
        if let Some(r) = found {
            return Ok(r.oif);
        }
    }
    Ok(None)
}

/// The default routes (`0.0.0.0/0`, or `::/0` when `v6`) of the main table, on every interface.
pub async fn defaults(nl: &Netlink, v6: bool) -> Result<Vec<RouteInfo>, NlError> {
    Ok(list(nl, v6)
        .await?
        .into_iter()
        .filter(|r| r.table == MAIN_TABLE && r.dst.prefix() == 0)
        .collect())
}

/// Deletes a route as read back by [`list`] (`RTM_DELROUTE` matching its destination, next hop, output
/// interface, table and metric; any scope and protocol, as `ip route del` does). A route already gone is
/// `ESRCH`/`ENOENT`: see [`NlError::is_gone`].
pub async fn del(nl: &Netlink, r: &RouteInfo) -> Result<(), NlError> {
    let what = || match (r.gw, r.oif) {
        (Some(gw), Some(oif)) => format!("failed to delete route {} via {gw} dev #{oif}", r.dst),
        (Some(gw), None) => format!("failed to delete route {} via {gw}", r.dst),
        (None, Some(oif)) => format!("failed to delete route {} dev #{oif}", r.dst),
        (None, None) => format!("failed to delete route {}", r.dst),
    };
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(r.dst.network(), r.dst.prefix())
        .map_err(|e| NlError::new(Some(libc::EINVAL), e.to_string()).context(what()))?
        .protocol(RouteProtocol::Unspec)
        .scope(RouteScope::NoWhere)
        .table_id(r.table);
    if let Some(oif) = r.oif {
        b = b.output_interface(oif);
    }
    if let Some(gw) = r.gw {
        b = b
            .gateway(gw)
            .map_err(|e| NlError::new(Some(libc::EINVAL), e.to_string()).context(what()))?;
    }
    if let Some(p) = r.priority {
        b = b.priority(p);
    }
    nl.request(RouteNetlinkMessage::DelRoute(b.build()), 0)
        .await
        .map(|_| ())
        .map_err(|e| e.context(what()))
}

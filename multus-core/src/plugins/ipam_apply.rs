//! Configuring an interface from an IPAM result, as the reference plugins' `ConfigureIface` does: bring it
//! up, add the addresses of the IPs that name it, wait for IPv6 duplicate address detection when there is an
//! IPv6 gateway, then add the result's routes (a route without `gw` goes via the IPAM gateway of its
//! family; the spec 1.1 fields `mtu`, `advmss`, `priority`, `table`, `scope` are applied when present).
//!
//! [`plan`] is pure; [`apply`] carries a plan out in a namespace.

use crate::cni::{CniError, CniResult};
use crate::netlink::sysctl::{self, SysctlDirs, SysctlOp};
use crate::netlink::{addr, link, route, Netlink};
use crate::netns::NetNs;
use ipnetwork::IpNetwork;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long IPv6 addresses may stay tentative before ADD fails (the reference waits 10 s).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A route to add, before the interface index is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRoute {
    /// Destination (host bits cleared).
    pub dst: IpNetwork,
    /// Next hop: the route's own `gw`, else the IPAM gateway of its family, else none (on-link).
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1).
    pub advmss: Option<u32>,
    /// Metric (1.1).
    pub priority: Option<u32>,
    /// Table (1.1).
    pub table: Option<u32>,
    /// Scope (1.1).
    pub scope: Option<u8>,
}

impl PlannedRoute {
    /// The netlink route through interface `oif`.
    pub fn to_spec(&self, oif: u32) -> route::RouteSpec {
        route::RouteSpec {
            dst: self.dst,
            gw: self.gw,
            oif,
            mtu: self.mtu,
            advmss: self.advmss,
            priority: self.priority,
            table: self.table,
            scope: self.scope,
        }
    }
}

/// What to do to an interface for a result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IfacePlan {
    /// Addresses to add, in order.
    pub addresses: Vec<IpNetwork>,
    /// Routes to add, in order.
    pub routes: Vec<PlannedRoute>,
    /// An IPv6 address is among them (IPv6 must be enabled on `lo` and the interface).
    pub has_v6: bool,
    /// Wait for IPv6 DAD before adding routes (there is an IPv6 gateway).
    pub settle: bool,
}

/// Normalizes a prefix (`10.1.2.3/8` -> `10.0.0.0/8`).
pub fn network_of(n: &IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(*n)
}

/// Plans the configuration of interface `ifname` from `result`: the IPs whose `interface` index names an
/// interface called `ifname` (an index naming another interface is an error, as in the reference).
pub fn plan(result: &CniResult, ifname: &str) -> Result<IfacePlan, CniError> {
    if result.interfaces.is_empty() {
        return Err(CniError::invalid_config("no interfaces to configure"));
    }
    let mut p = IfacePlan::default();
    let mut v4gw = None;
    let mut v6gw = None;
    for ip in &result.ips {
        let Some(idx) = ip.interface else { continue };
        if result.interfaces.get(idx).map(|i| i.name.as_str()) != Some(ifname) {
            return Err(CniError::invalid_config(format!(
                "failed to add IP addr {} to {ifname:?}: invalid interface index {idx}",
                ip.address
            )));
        }
        if ip.address.is_ipv6() {
            p.has_v6 = true;
        }
        p.addresses.push(ip.address);
        match ip.gateway {
            Some(g @ IpAddr::V4(_)) if v4gw.is_none() => v4gw = Some(g),
            Some(g @ IpAddr::V6(_)) if v6gw.is_none() => v6gw = Some(g),
            _ => {}
        }
    }
    p.settle = v6gw.is_some();
    for r in &result.routes {
        let gw = r.gw.or(if r.dst.is_ipv4() { v4gw } else { v6gw });
        p.routes.push(PlannedRoute {
            dst: network_of(&r.dst),
            gw,
            mtu: r.mtu,
            advmss: r.advmss,
            priority: r.priority,
            table: r.table,
            scope: r.scope,
        });
    }
    Ok(p)
}

/// The sysctls set before the interface comes up: `arp_notify` and `ndisc_notify` (best effort, as the
/// reference does), and `disable_ipv6=0` on `lo` and the interface when an IPv6 address is to be added.
pub fn sysctl_ops(plan: &IfacePlan, ifname: &str) -> Vec<SysctlOp> {
    let mut ops = vec![
        SysctlOp::TrySet {
            key: format!("net/ipv4/conf/{ifname}/arp_notify"),
            value: "1".into(),
        },
        SysctlOp::TrySet {
            key: format!("net/ipv6/conf/{ifname}/ndisc_notify"),
            value: "1".into(),
        },
    ];
    if plan.has_v6 {
        for i in ["lo", ifname] {
            ops.push(SysctlOp::Ensure {
                key: format!("net/ipv6/conf/{i}/disable_ipv6"),
                value: "0".into(),
            });
        }
    }
    ops
}

/// Carries out `plan` on interface `index` (named `ifname`) of namespace `ns`, through `nl` (a connection
/// in that namespace): sysctls, up, addresses, IPv6 settling, routes (an identical route already present
/// is skipped, as in the reference).
pub async fn apply(
    nl: &Netlink,
    ns: &NetNs,
    index: u32,
    ifname: &str,
    plan: &IfacePlan,
) -> Result<(), CniError> {
    apply_with(nl, ns, None, index, ifname, plan).await
}

/// [`apply`], writing the sysctls through `dirs` (the namespace's sysctl directories, see
/// [`SysctlDirs`]) when they are verified, instead of from a thread entering `ns`.
pub async fn apply_with(
    nl: &Netlink,
    ns: &NetNs,
    dirs: Option<&SysctlDirs>,
    index: u32,
    ifname: &str,
    plan: &IfacePlan,
) -> Result<(), CniError> {
    let ops = sysctl_ops(plan, ifname);
    match dirs {
        Some(d) => d.apply(ns, ops)?,
        None => sysctl::apply_in(Some(ns), ops)?,
    }
    // Up, the addresses and (unless IPv6 must settle first) the routes are queued together: the kernel
    // carries them out in this order, and the answers are read afterwards, in the same order.
    let up = link::set_queued(nl, index, &link::LinkChange::new().up());
    let addrs: Vec<_> = plan
        .addresses
        .iter()
        .map(|a| addr::add_queued(nl, index, *a))
        .collect();
    let early_routes: Vec<_> = if plan.settle {
        Vec::new()
    } else {
        plan.routes
            .iter()
            .map(|r| route::add_queued(nl, &r.to_spec(index)))
            .collect()
    };
    up.await
        .map_err(|e| CniError::kernel(format!("failed to set {ifname:?} up: {e}")))?;
    for a in addrs {
        a.await?;
    }
    let routes = if plan.settle {
        settle(nl, index, ifname, SETTLE_TIMEOUT).await?;
        plan.routes
            .iter()
            .map(|r| route::add_queued(nl, &r.to_spec(index)))
            .collect()
    } else {
        early_routes
    };
    for r in routes {
        match r.await {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Waits until no address of the interface is tentative (IPv6 DAD done); a failed DAD is an error.
pub async fn settle(
    nl: &Netlink,
    index: u32,
    ifname: &str,
    timeout: Duration,
) -> Result<(), CniError> {
    let deadline = Instant::now() + timeout;
    loop {
        let addrs = addr::list(nl, index).await?;
        if let Some(a) = addrs.iter().find(|a| {
            a.flags & rtnetlink::packet_route::address::AddressFlags::Dadfailed.bits() != 0
        }) {
            return Err(CniError::kernel(format!(
                "duplicate address detection failed for {} on {ifname:?}",
                a.addr
            )));
        }
        if !addrs.iter().any(addr::AddrInfo::is_tentative_or_failed) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CniError::kernel(format!(
                "link {ifname:?} still has tentative addresses after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn result(v: serde_json::Value) -> CniResult {
        CniResult::from_value(&v).unwrap()
    }

    #[test]
    fn plans_addresses_and_gateway_routes() {
        let r = result(json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "sandbox": "/x"}],
            "ips": [
                {"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                {"interface": 0, "address": "10.2.0.5/24", "gateway": "10.2.0.1"},
                {"interface": 0, "address": "fd00::5/64", "gateway": "fd00::1"},
                {"address": "192.168.9.9/24"}
            ],
            "routes": [
                {"dst": "0.0.0.0/0"},
                {"dst": "10.9.1.7/16", "gw": "10.1.0.254", "mtu": 1300, "advmss": 1200, "priority": 7, "table": 100, "scope": 253},
                {"dst": "::/0"}
            ]
        }));
        let p = plan(&r, "net1").unwrap();
        assert_eq!(
            p.addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
            ["10.1.0.5/24", "10.2.0.5/24", "fd00::5/64"]
        );
        assert!(p.has_v6 && p.settle);
        assert_eq!(
            p.routes[0].gw,
            Some("10.1.0.1".parse().unwrap()),
            "first v4 gateway"
        );
        assert_eq!(p.routes[1].dst.to_string(), "10.9.0.0/16");
        assert_eq!(p.routes[1].gw, Some("10.1.0.254".parse().unwrap()));
        assert_eq!(
            (
                p.routes[1].mtu,
                p.routes[1].advmss,
                p.routes[1].priority,
                p.routes[1].table,
                p.routes[1].scope
            ),
            (Some(1300), Some(1200), Some(7), Some(100), Some(253))
        );
        assert_eq!(p.routes[2].gw, Some("fd00::1".parse().unwrap()));
        let ops = sysctl_ops(&p, "net1");
        assert_eq!(
            ops.len(),
            4,
            "notify x2 + disable_ipv6 for lo and net1: {ops:?}"
        );
    }

    #[test]
    fn v4_only_without_gateway() {
        let r = result(json!({
            "interfaces": [{"name": "net1"}],
            "ips": [{"interface": 0, "address": "10.1.0.5/24"}],
            "routes": [{"dst": "10.5.0.0/16"}]
        }));
        let p = plan(&r, "net1").unwrap();
        assert!(!p.has_v6 && !p.settle);
        assert_eq!(p.routes[0].gw, None, "on-link route");
        assert_eq!(sysctl_ops(&p, "net1").len(), 2);
    }

    #[test]
    fn refuses_ips_of_other_interfaces() {
        let r = result(json!({
            "interfaces": [{"name": "eth0"}, {"name": "net1"}],
            "ips": [{"interface": 0, "address": "10.1.0.5/24"}]
        }));
        assert_eq!(plan(&r, "net1").unwrap_err().code.code(), 7);
        let empty = result(json!({"ips": [{"address": "10.1.0.5/24"}]}));
        assert!(plan(&empty, "net1").is_err(), "no interfaces");
    }
}

//! Configuring an interface from an IPAM result, as the reference plugins' `ConfigureIface` does: bring it
//! up, add the addresses of the IPs that name it, wait for IPv6 duplicate address detection when there is an
//! IPv6 gateway, then add the result's routes (a route without `gw` goes via the IPAM gateway of its
//! family; the spec 1.1 fields `mtu`, `advmss`, `priority`, `table`, `scope` are applied when present).
//!
//! [`plan`] is pure; [`apply`] carries a plan out in a namespace; [`check_ipam_applied`] is CHECK's view of
//! it (every delegate that puts an IPAM result on an interface checks it so).

use crate::cni::{CniError, CniResult, Route};
use crate::netlink::link::LinkInfo;
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
    /// The delegate's own sysctls of the interface, set with the others before it comes up (the bridge's
    /// `accept_dad` 0).
    pub extra_sysctls: Vec<SysctlOp>,
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
/// reference does), the plan's `extra_sysctls`, and `disable_ipv6=0` on `lo` and the interface when an IPv6
/// address is to be added.
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
    ops.extend(plan.extra_sysctls.iter().cloned());
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

/// Checks that an IPAM result applied to a container interface is still there: every address of `prev` for
/// interface `idx` is on `l`, and every route of `prev` is in the container's table of its family (see
/// [`check_route`]). `sandbox` names the netns in errors. Shared by the CHECK of every delegate that puts
/// an IPAM result on an interface.
pub async fn check_ipam_applied(
    cont: &Netlink,
    l: &LinkInfo,
    prev: &CniResult,
    idx: usize,
    sandbox: &str,
) -> Result<(), CniError> {
    let have = crate::netlink::addr::list(cont, l.index).await?;
    for ip in prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == idx))
    {
        if !have.iter().any(|a| a.addr == ip.address) {
            return Err(CniError::kernel(format!(
                "address {} of prevResult is not on {:?}",
                ip.address, l.name
            )));
        }
    }
    let mut tables = [None, None];
    for r in &prev.routes {
        let v6 = r.dst.is_ipv6();
        let slot = &mut tables[usize::from(v6)];
        if slot.is_none() {
            *slot = Some(route::list(cont, v6).await?);
        }
        let routes = slot.as_deref().unwrap_or_default();
        check_route(r, routes).map_err(|e| {
            CniError::kernel(format!(
                "route {} via {:?} of prevResult {e} in {sandbox}",
                r.dst, r.gw
            ))
        })?;
    }
    Ok(())
}

/// Finds `want` (a `prevResult` route) among the kernel's routes of its family: the same destination and
/// table, the same next hop when it names one, and the CNI 1.1 fields it sets (`mtu`, `advmss`, `priority`,
/// and for IPv4 `scope`: the kernel keeps no scope on IPv6 routes). A field it does not set is not
/// compared; 0 and absent are the same for the kernel's metrics. The error says what differs.
pub fn check_route(want: &Route, have: &[route::RouteInfo]) -> Result<(), String> {
    let dst = network_of(&want.dst);
    let table = want.table.unwrap_or(route::MAIN_TABLE);
    let candidates: Vec<&route::RouteInfo> = have
        .iter()
        .filter(|k| k.dst == dst && k.table == table && (want.gw.is_none() || k.gw == want.gw))
        .collect();
    if candidates.is_empty() {
        return Err("not found".to_string());
    }
    let differences = |k: &route::RouteInfo| {
        let mut d = Vec::new();
        let mut field = |name: &str, want: Option<u32>, have: u32| {
            if let Some(w) = want {
                if w != have {
                    d.push(format!("{name} {w} (the kernel's: {have})"));
                }
            }
        };
        field("mtu", want.mtu, k.mtu.unwrap_or(0));
        field("advmss", want.advmss, k.advmss.unwrap_or(0));
        field("priority", want.priority, k.priority.unwrap_or(0));
        if want.dst.is_ipv4() {
            field("scope", want.scope.map(u32::from), u32::from(k.scope));
        }
        d
    };
    let mut first = None;
    for k in candidates {
        let d = differences(k);
        if d.is_empty() {
            return Ok(());
        }
        first.get_or_insert(d);
    }
    Err(format!(
        "does not match the kernel's: {}",
        first.unwrap_or_default().join(", ")
    ))
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

    // CHECK of an applied result

    fn kernel(dst: &str, gw: Option<&str>, table: u32) -> route::RouteInfo {
        route::RouteInfo {
            dst: dst.parse().unwrap(),
            gw: gw.map(|g| g.parse().unwrap()),
            oif: Some(2),
            table,
            priority: None,
            scope: 0,
            mtu: None,
            advmss: None,
        }
    }

    fn want(v: serde_json::Value) -> Route {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn check_route_compares_the_1_1_fields_it_is_given() {
        let mut k = kernel("10.79.0.0/16", Some("10.77.0.254"), 100);
        k.mtu = Some(1300);
        k.advmss = Some(1200);
        k.priority = Some(7);
        let onlink = route::RouteInfo {
            scope: 253,
            priority: Some(9),
            ..kernel("10.80.0.0/16", None, route::MAIN_TABLE)
        };
        let have = [kernel("0.0.0.0/0", Some("10.77.0.1"), 254), k, onlink];
        let full = serde_json::json!({"dst": "10.79.1.2/16", "gw": "10.77.0.254", "mtu": 1300,
            "advmss": 1200, "priority": 7, "table": 100});
        assert_eq!(check_route(&want(full.clone()), &have), Ok(()));
        // Fields not given are not compared; 0 is the kernel's absent metric.
        assert_eq!(
            check_route(
                &want(serde_json::json!({"dst": "10.79.0.0/16", "table": 100})),
                &have
            ),
            Ok(())
        );
        assert_eq!(
            check_route(
                &want(serde_json::json!({"dst": "0.0.0.0/0", "mtu": 0, "priority": 0})),
                &have
            ),
            Ok(())
        );
        for (k, v) in [("mtu", 1400), ("advmss", 1100), ("priority", 8)] {
            let mut w = full.clone();
            w[k] = v.into();
            let e = check_route(&want(w), &have).unwrap_err();
            assert!(e.contains(&format!("{k} {v}")), "{k}: {e}");
        }
        let mut w = full.clone();
        w["table"] = 101.into();
        assert_eq!(check_route(&want(w), &have).unwrap_err(), "not found");
        // Scope, for IPv4.
        let link = serde_json::json!({"dst": "10.80.0.0/16", "scope": 253, "priority": 9});
        assert_eq!(check_route(&want(link.clone()), &have), Ok(()));
        let mut w = link;
        w["scope"] = 0.into();
        assert!(check_route(&want(w), &have)
            .unwrap_err()
            .contains("scope 0"));
        // IPv6 routes have no scope in the kernel: a scope in prevResult is not held against them.
        let v6 = [route::RouteInfo {
            priority: Some(1024),
            ..kernel("fd00:1::/64", Some("fd00::1"), 254)
        }];
        assert_eq!(
            check_route(
                &want(
                    serde_json::json!({"dst": "fd00:1::/64", "gw": "fd00::1", "scope": 253, "priority": 1024})
                ),
                &v6
            ),
            Ok(())
        );
    }
}

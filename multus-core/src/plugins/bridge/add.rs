//! The bridge's kernel work: ADD (the bridge ensured, the veth pair made and attached, IPAM, the container
//! interface configured, the gateway addresses and forwarding) and CHECK. Any ADD failure after the veth
//! pair exists deletes it and releases the IPAM reservation.

use super::{calc_gateways, BridgeConf};
use crate::cni::{CniError, CniResult, Interface, PluginConf};
use crate::delegate::Context;
use crate::netlink::link::{self, LinkChange, LinkInfo, NewVeth};
use crate::netlink::sysctl::{self, SysctlDirs, SysctlOp};
use crate::netlink::{addr, Netlink};
use crate::netns::NetNs;
use crate::plugins::sublink::{self, LINK_INDEPENDENT_IPAM};
use crate::plugins::{ipam, ipam_apply};
use ipnetwork::IpNetwork;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// How often the host veth's name is drawn again when the drawn one is taken (as the reference).
const NAME_ATTEMPTS: usize = 10;

/// The waits before each look at the host veth's operational state (as the reference).
const PORT_UP_WAITS_MS: [u64; 5] = [0, 50, 500, 1000, 1000];

/// One ADD's namespace, connections and links.
struct Attach<'a> {
    ctx: &'a Context,
    c: &'a BridgeConf,
    ns: NetNs,
    host: Netlink,
    cont: Netlink,
    dirs: Option<SysctlDirs>,
    bridge: LinkInfo,
    /// The host end, a port of the bridge.
    port: LinkInfo,
    /// The container end, `CNI_IFNAME`.
    iface: LinkInfo,
}

fn try_set(key: String, value: &str) -> SysctlOp {
    SysctlOp::TrySet {
        key,
        value: value.into(),
    }
}

/// `accept_ra` 0 on a host link of ours (the bridge, the host veth): router advertisements must not give it
/// routes or addresses (best effort, as the reference).
fn no_router_advertisements(name: &str) -> Result<(), CniError> {
    sysctl::apply_in(
        None,
        vec![try_set(format!("net/ipv6/conf/{name}/accept_ra"), "0")],
    )
}

/// ADD: see the module documentation. The result is the reference's: interfaces bridge, host veth,
/// container interface; the IPs for interface 2.
pub(super) async fn add(
    ctx: &Context,
    conf: &PluginConf,
    c: &BridgeConf,
) -> Result<CniResult, CniError> {
    crate::cni::names::ifname(&ctx.ifname)?;
    let ns = sublink::netns_of(ctx, "ADD")?;
    let setup = setup(ctx, c, ns);
    // host-local and static do not look at the interface: they run while the links are made.
    let early = c
        .ipam_type
        .as_deref()
        .is_some_and(|t| LINK_INDEPENDENT_IPAM.contains(&t));
    let (at, ipam) = if early {
        match tokio::join!(setup, ipam::add(ctx, conf)) {
            (Ok(at), Ok(r)) => (at, Some(r)),
            (Err(e), _) => {
                ipam::release(ctx, conf).await;
                return Err(e);
            }
            (Ok(at), Err(e)) => {
                at.remove_veth().await;
                ipam::release(ctx, conf).await;
                return Err(e);
            }
        }
    } else {
        (setup.await?, None)
    };
    match configure(&at, conf, ipam).await {
        Ok(r) => Ok(r),
        Err(e) => {
            at.remove_veth().await;
            if c.ipam_type.is_some() {
                ipam::release(ctx, conf).await;
            }
            Err(e)
        }
    }
}

/// The bridge ensured (while a thread opens the container's connection), then the veth pair.
async fn setup<'a>(ctx: &'a Context, c: &'a BridgeConf, ns: NetNs) -> Result<Attach<'a>, CniError> {
    let pending = Netlink::open_in_background_with_sysctl(&ns, c.ipam_type.is_some())?;
    let host = Netlink::current()?;
    let (opened, bridge) = tokio::join!(pending.wait(), ensure_bridge(&host, c));
    let ((cont, dirs), bridge) = (opened?, bridge?);
    let (port, iface) = make_veth(ctx, c, &ns, &host, &cont).await?;
    let at = Attach {
        ctx,
        c,
        ns,
        host,
        cont,
        dirs,
        bridge,
        port,
        iface,
    };
    if let Err(e) = at.attach_port().await {
        at.remove_veth().await;
        return Err(e);
    }
    Ok(at)
}

/// Creates the bridge unless it exists (then it must be a bridge), sets promiscuous mode when asked,
/// `accept_ra` 0 (the routes of the bridge are ours) and brings it up.
async fn ensure_bridge(host: &Netlink, c: &BridgeConf) -> Result<LinkInfo, CniError> {
    let name = c.bridge.as_str();
    let failed = |e: String| CniError::kernel(format!("failed to create bridge {name:?}: {e}"));
    match link::create_bridge(host, name, c.mtu).await {
        Ok(()) => {}
        Err(e) if e.is_exists() => {}
        Err(e) => return Err(failed(e.to_string())),
    }
    let br = link::by_name(host, name)
        .await?
        .ok_or_else(|| failed(format!("could not lookup {name:?}: link not found")))?;
    if br.kind.as_deref() != Some("bridge") {
        return Err(failed(format!(
            "{name:?} already exists but is not a bridge"
        )));
    }
    no_router_advertisements(name)?;
    let change = LinkChange::new().up();
    let change = if c.promisc {
        change.promisc(true)
    } else {
        change
    };
    link::set(host, br.index, &change).await?;
    Ok(br)
}

/// A fresh host veth name: `veth` and 8 random hex digits.
fn veth_name() -> String {
    sublink::temp_name().replacen("cni", "veth", 1)
}

/// Creates the veth pair: `CNI_IFNAME` in the container (an interface of that name there is an error), its
/// peer under a fresh name in the host (drawn again when taken). Returns the host and container ends.
async fn make_veth(
    ctx: &Context,
    c: &BridgeConf,
    ns: &NetNs,
    host: &Netlink,
    cont: &Netlink,
) -> Result<(LinkInfo, LinkInfo), CniError> {
    let ifname = ctx.ifname.as_str();
    for _ in 0..NAME_ATTEMPTS {
        let peer = veth_name();
        let spec = NewVeth {
            name: ifname,
            peer: &peer,
            mtu: c.mtu,
            mac: c.mac,
            // As the reference (the Go netlink library sends the zero value): a veth has no queue of its
            // own, and matching keeps `ip link` identical.
            txqlen: Some(0),
            netns_fd: Some(ns.file().as_raw_fd()),
        };
        match link::create_veth(host, &spec).await {
            Ok(()) => {}
            Err(e) if e.is_exists() => {
                if link::by_name(cont, ifname).await?.is_some() {
                    return Err(CniError::kernel(format!(
                        "container veth name provided ({ifname}) already exists"
                    )));
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        let (p, i) = tokio::join!(link::by_name(host, &peer), link::by_name(cont, ifname));
        return match (p?, i?) {
            (Some(p), Some(i)) => Ok((p, i)),
            (p, _) => {
                if let Some(p) = p {
                    let _ = link::delete(host, p.index).await;
                }
                let _ = link::delete_by_name(cont, ifname).await;
                Err(CniError::kernel(format!(
                    "the new veth {peer:?} / {ifname:?} vanished"
                )))
            }
        };
    }
    Err(CniError::kernel(format!(
        "failed to find a free host veth name in {NAME_ATTEMPTS} attempts"
    )))
}

impl Attach<'_> {
    /// Deletes the veth pair (through its host end; a failure is logged: the ADD's error is reported).
    async fn remove_veth(&self) {
        if let Err(e) = link::delete(&self.host, self.port.index).await {
            tracing::warn!("cleanup after a failed ADD: {e}");
        }
    }

    /// The host end up, `accept_ra` 0, on the bridge with its hairpin mode; the container end up when
    /// there is no IPAM.
    async fn attach_port(&self) -> Result<(), CniError> {
        let name = &self.port.name;
        no_router_advertisements(name)?;
        let attach = LinkChange::new().controller(self.bridge.index).up();
        let attached = link::set_queued(&self.host, self.port.index, &attach);
        // With IPAM the container end comes up once its sysctls are set (`accept_dad` 0 before its
        // link-local address exists), in `apply`.
        let l2 = self.c.ipam_type.is_none();
        let cont_up =
            l2.then(|| link::set_queued(&self.cont, self.iface.index, &LinkChange::new().up()));
        attached.await.map_err(|e| {
            CniError::kernel(format!(
                "failed to connect {name:?} to bridge {:?}: {e}",
                self.bridge.name
            ))
        })?;
        if self.c.hairpin {
            link::set_hairpin(&self.host, self.port.index, true)
                .await
                .map_err(|e| {
                    CniError::kernel(format!("failed to setup hairpin mode for {name}: {e}"))
                })?;
        }
        if let Some(up) = cont_up {
            up.await?;
        }
        Ok(())
    }
}

/// The result, with the IPAM's IPs (got early, else now) put on the container interface and, with
/// `isGateway`, the gateways on the bridge; then the port's state awaited and the MACs read again.
async fn configure(
    at: &Attach<'_>,
    conf: &PluginConf,
    early: Option<CniResult>,
) -> Result<CniResult, CniError> {
    let ifname = at.ctx.ifname.as_str();
    let mut result = CniResult::new(conf.cni_version().unwrap_or(crate::cni::CURRENT_VERSION));
    let iface = |name: &str, mac: String| Interface {
        name: name.to_string(),
        mac,
        ..Default::default()
    };
    result.interfaces = vec![
        iface(&at.bridge.name, String::new()),
        iface(&at.port.name, String::new()),
        Interface {
            sandbox: at.ns.path().display().to_string(),
            ..iface(ifname, at.iface.mac_text())
        },
    ];
    let mut dns = at.c.dns.clone();
    if at.c.ipam_type.is_some() {
        let r = match early {
            Some(r) => r,
            None => ipam::add(at.ctx, conf).await?,
        };
        let ipam_dns = ipam::into_result(&mut result, r)?;
        if dns.is_empty() {
            dns = ipam_dns;
        }
        let gws = calc_gateways(&mut result, at.c);
        at.apply(ipam_apply::plan(&result, ifname)?).await?;
        at.set_gateways(&gws).await?;
    }
    let port = at.wait_port_up().await?;
    // The bridge's MAC may have changed when the port joined or an address was set.
    let bridge = link::by_index(&at.host, at.bridge.index).await?;
    result.interfaces[0].mac = bridge.map(|b| b.mac_text()).unwrap_or_default();
    result.interfaces[1].mac = port.mac_text();
    result.dns = dns;
    Ok(result)
}

impl Attach<'_> {
    /// The addresses and routes of `plan` on the container interface, with the reference's sysctls: IPv6
    /// DAD off (`accept_dad` 0: 1.1.1 disables it unless `enabledad`, which the built-in declines; hairpin
    /// and promiscuous modes would echo its neighbour solicitations and fail it).
    async fn apply(&self, mut plan: ipam_apply::IfacePlan) -> Result<(), CniError> {
        let ifname = self.ctx.ifname.as_str();
        plan.extra_sysctls
            .push(try_set(format!("net/ipv6/conf/{ifname}/accept_dad"), "0"));
        // The sysctl directories are used only when they show the container: `CNI_IFNAME` resolves in them
        // and the host veth (a fresh name, in the host only) does not.
        let dirs = self
            .dirs
            .as_ref()
            .filter(|d| d.verify_apart(ifname, &self.port.name));
        ipam_apply::apply_with(&self.cont, &self.ns, dirs, self.iface.index, ifname, &plan).await
    }

    /// With `isGateway`: each gateway address on the bridge ([`Attach::ensure_addr`]), then forwarding on
    /// for each family that has one.
    async fn set_gateways(&self, gws: &[IpNetwork]) -> Result<(), CniError> {
        for gw in gws {
            self.ensure_addr(*gw).await.map_err(|e| {
                CniError::new(e.code, format!("failed to set bridge addr: {}", e.msg))
            })?;
        }
        let mut ops = Vec::new();
        for (v6, key) in [
            (false, "net/ipv4/ip_forward"),
            (true, "net/ipv6/conf/all/forwarding"),
        ] {
            if gws.iter().any(|g| g.is_ipv6() == v6) {
                ops.push(SysctlOp::Ensure {
                    key: key.into(),
                    value: "1".into(),
                });
            }
        }
        sysctl::apply_in(None, ops)
            .map_err(|e| CniError::new(e.code, format!("failed to enable forwarding: {}", e.msg)))
    }

    /// Puts `gw` on the bridge as the reference's `ensureAddr`: nothing when it is there; another IPv4
    /// address (or an overlapping IPv6 one) is removed with `forceAddress`, an error without; then the
    /// bridge's MAC is set to the one it had before the port joined (so it no longer follows its ports).
    async fn ensure_addr(&self, gw: IpNetwork) -> Result<(), CniError> {
        let (host, br) = (&self.host, &self.bridge);
        let have = addr::list(host, br.index).await?;
        for a in have.iter().filter(|a| a.addr.is_ipv6() == gw.is_ipv6()) {
            if a.addr.ip() == gw.ip() && a.addr.prefix() == gw.prefix() {
                return Ok(());
            }
            let overlaps = a.addr.contains(gw.ip()) || gw.contains(a.addr.ip());
            if gw.is_ipv4() || overlaps {
                if !self.c.force_address {
                    return Err(CniError::kernel(format!(
                        "{:?} already has an IP address different from {gw}",
                        br.name
                    )));
                }
                addr::del(host, br.index, a.addr).await?;
            }
        }
        match addr::add(host, br.index, gw).await {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(e.into()),
        }
        match br.mac_addr() {
            Some(mac) => Ok(link::set(host, br.index, &LinkChange::new().mac(mac)).await?),
            None => Ok(()),
        }
    }

    /// Waits (as the reference: 0, 50, 500, 1000, 1000 ms) for the host veth to be operationally up.
    async fn wait_port_up(&self) -> Result<LinkInfo, CniError> {
        let mut last = None;
        for ms in PORT_UP_WAITS_MS {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let p = link::by_index(&self.host, self.port.index)
                .await?
                .ok_or_else(|| CniError::kernel(format!("{:?} vanished", self.port.name)))?;
            if p.oper_up {
                return Ok(p);
            }
            last = Some(p);
        }
        Err(CniError::kernel(format!(
            "bridge port {:?} in error state (not up: {last:?})",
            self.port.name
        )))
    }
}

/// CHECK: the IPAM's CHECK; the bridge exists, is a bridge, has the configured promiscuous mode; the
/// container interface of `prevResult` is a veth with its MAC, whose peer is a port of the bridge; its
/// addresses and routes are there.
pub(super) async fn check(
    ctx: &Context,
    conf: &PluginConf,
    c: &BridgeConf,
) -> Result<(), CniError> {
    if c.ipam_type.is_some() {
        ipam::check(ctx, conf).await?;
    }
    let (prev, idx, iface) = ipam::prev_interface(ctx, conf)?;
    let ns = sublink::netns_of(ctx, "CHECK")?;
    let pending = Netlink::open_in_background(&ns)?;
    let host = Netlink::current()?;
    let (opened, br) = tokio::join!(pending.wait(), link::by_name(&host, &c.bridge));
    let (cont, ()) = opened?;
    let br = br?
        .filter(|b| b.kind.as_deref() == Some("bridge"))
        .ok_or_else(|| {
            CniError::kernel(format!(
                "CNI created bridge {} in host namespace was not found",
                c.bridge
            ))
        })?;
    if br.promisc != c.promisc {
        return Err(CniError::kernel(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {}",
            br.name, c.promisc, br.promisc
        )));
    }
    let l = link::by_name(&cont, &iface.name)
        .await?
        .filter(|l| l.kind.as_deref() == Some("veth"))
        .ok_or_else(|| {
            CniError::kernel(format!(
                "CNI created interface in container {} not found",
                iface.name
            ))
        })?;
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&l.mac_text()) {
        return Err(CniError::kernel(format!(
            "Interface {} Mac {} doesn't match container Mac: {}",
            l.name,
            iface.mac,
            l.mac_text()
        )));
    }
    let peer = match l.parent {
        Some(p) => link::by_index(&host, p).await?,
        None => None,
    };
    if peer.and_then(|p| p.controller) != Some(br.index) {
        return Err(CniError::kernel(format!(
            "CNI veth created for bridge {} was not found",
            c.bridge
        )));
    }
    let sandbox = ns.path().display().to_string();
    ipam_apply::check_ipam_applied(&cont, &l, &prev, idx, &sandbox).await
}

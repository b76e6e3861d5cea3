//! What the macvlan and ipvlan delegates share: a link stacked on a master, created in the master's
//! namespace under a temporary name with the target namespace given at creation (`IFLA_NET_NS_FD`), then
//! renamed inside the target, so that a host link with the requested name never collides. Then IPAM and
//! the interface configuration; any failure removes the link and releases the IPAM reservation.

pub use super::ipam_apply::{check_ipam_applied, check_route};
use super::{ipam, ipam_apply};
use crate::cni::{CniError, CniResult, Dns, ErrorCode, Interface, PluginConf};
use crate::delegate::Context;
use crate::netlink::link::{self, LinkChange, LinkInfo, NewSubLink, SubKind};
use crate::netlink::sysctl::SysctlDirs;
use crate::netlink::{route, MacAddr, Netlink};
use crate::netns::NetNs;
use std::os::fd::AsRawFd;

/// The link to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubLinkSpec {
    /// Kind and mode.
    pub kind: SubKind,
    /// Master name; `None`: the interface of the default route.
    pub master: Option<String>,
    /// MTU; 0 keeps the master's.
    pub mtu: u32,
    /// Hardware address.
    pub mac: Option<MacAddr>,
    /// The master is in the container's namespace (`linkInContainer`).
    pub link_in_container: bool,
    /// An MTU above the master's is a config error (macvlan) rather than left to the kernel (ipvlan).
    pub limit_mtu_to_master: bool,
}

/// Where the interface's IP configuration comes from.
#[derive(Debug, Clone)]
pub enum IpSource {
    /// None: a layer-2 interface, only brought up.
    None,
    /// The IPAM plugin named by `ipam.type`.
    Ipam,
    /// A previous plugin's result (a chained ipvlan): its IPs and routes.
    Prev(CniResult),
}

/// A temporary link name: `cni` and 8 random hex digits (the random seed of std's hasher comes from the OS).
/// For a link of an attachment, [`temp_name_for`] instead: a DEL can find that one.
pub fn temp_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    format!("cni{:08x}", h.finish() as u32)
}

/// The temporary name of the link an ADD of the attachment (`container_id`, `ifname`) creates before it is
/// renamed `ifname`: `cni` and 8 hex digits of a stable hash (64-bit FNV-1a, folded) of both. A process
/// killed between the creation and the rename leaves a link under this name, so DEL and a retried ADD,
/// knowing only the attachment, find it and remove it. Stable across versions and processes by design.
///
/// ```
/// use multus_core::plugins::sublink::temp_name_for;
/// assert_eq!(temp_name_for("c1", "net1"), temp_name_for("c1", "net1"));
/// assert_ne!(temp_name_for("c1", "net1"), temp_name_for("c1", "net2"));
/// assert_eq!(temp_name_for("c1", "net1").len(), 11);
/// ```
pub fn temp_name_for(container_id: &str, ifname: &str) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    // The NUL between them keeps (`ab`, `c`) and (`a`, `bc`) apart: neither name may hold one.
    for b in container_id.bytes().chain([0]).chain(ifname.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(PRIME);
    }
    format!("cni{:08x}", (h ^ (h >> 32)) as u32)
}

fn kind_name(kind: &SubKind) -> &'static str {
    link::kind_name(kind)
}

/// Finds the master by name, or the interface of the default route when `name` is `None`.
pub async fn resolve_master(nl: &Netlink, name: Option<&str>) -> Result<LinkInfo, CniError> {
    match name {
        Some(n) => link::by_name(nl, n).await?.ok_or_else(|| {
            CniError::kernel(format!("failed to lookup master {n:?}: link not found"))
        }),
        None => {
            let oif = route::default_route_oif(nl)
                .await?
                .ok_or_else(|| CniError::kernel("no default route interface found"))?;
            link::by_index(nl, oif).await?.ok_or_else(|| {
                CniError::kernel(format!("default route interface #{oif} not found"))
            })
        }
    }
}

/// The `CNI_NETNS` of an invocation, opened; code 4 when there is none.
pub(crate) fn netns_of(ctx: &Context, verb: &str) -> Result<NetNs, CniError> {
    let path = ctx
        .netns
        .as_ref()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| CniError::invalid_env(format!("CNI_NETNS is required for {verb}")))?;
    NetNs::open(path)
}

/// One ADD's namespace and connections, shared by its steps.
struct Attach<'a> {
    ctx: &'a Context,
    /// The container's namespace.
    ns: NetNs,
    /// A connection in it.
    cont: Netlink,
    /// A connection in the host, when the master is there (not `linkInContainer`).
    host: Option<Netlink>,
    /// The container's sysctl directories, when addresses are to be set.
    dirs: Option<SysctlDirs>,
}

impl Attach<'_> {
    /// The connection in the master's namespace.
    fn master_nl(&self) -> &Netlink {
        self.host.as_ref().unwrap_or(&self.cont)
    }

    /// Deletes the link made for this ADD (a failure is logged: the ADD's error is what is reported).
    async fn remove_link(&self, index: u32) {
        if let Err(d) = link::delete(&self.cont, index).await {
            tracing::warn!("cleanup after a failed ADD: {d}");
        }
    }
}

/// ADD: creates the link, configures it from `ips`, and returns the result (in the config's version). A
/// [`LINK_INDEPENDENT_IPAM`] runs while the link is being made; any other after it.
/// On any failure nothing is left: the link is deleted and an IPAM reservation released.
pub async fn add(
    ctx: &Context,
    conf: &PluginConf,
    spec: &SubLinkSpec,
    ips: IpSource,
    dns: Dns,
) -> Result<CniResult, CniError> {
    crate::cni::names::ifname(&ctx.ifname)?;
    let ns = netns_of(ctx, "ADD")?;
    let l2 = matches!(ips, IpSource::None);
    let setup = setup(ctx, ns, spec, l2);
    // An IPAM that does not use the interface runs from the start, alongside the namespace thread and the
    // link's creation (its process start-up or file work and the kernel work overlap); any other (dhcp
    // needs the link) runs after, as in the reference.
    let early = matches!(ips, IpSource::Ipam)
        && super::ipam_type(conf).is_some_and(|t| LINK_INDEPENDENT_IPAM.contains(&t.as_str()));
    let ((at, created), ipam) = if early {
        match tokio::join!(setup, ipam::add(ctx, conf)) {
            (Ok(made), Ok(r)) => (made, Some(r)),
            (Err(e), _) => {
                ipam::release(ctx, conf).await;
                return Err(e);
            }
            (Ok((at, l)), Err(e)) => {
                at.remove_link(l.index).await;
                ipam::release(ctx, conf).await;
                return Err(e);
            }
        }
    } else {
        (setup.await?, None)
    };
    match configure(&at, conf, &created, ips, ipam, dns).await {
        Ok(r) => Ok(r),
        Err(e) => {
            at.remove_link(created.index).await;
            Err(e)
        }
    }
}

/// ADD's kernel part before the addresses: the container's connection (and, when addresses are to be
/// set, its sysctl directories) opened by a thread entering the namespace while this one finds the master
/// in the host; then the link made ([`make_link`]).
async fn setup<'a>(
    ctx: &'a Context,
    ns: NetNs,
    spec: &SubLinkSpec,
    l2: bool,
) -> Result<(Attach<'a>, LinkInfo), CniError> {
    let pending = Netlink::open_in_background_with_sysctl(&ns, !l2)?;
    let (cont, dirs, host, master) = if spec.link_in_container {
        let (cont, dirs) = pending.wait().await?;
        let master = resolve_master(&cont, spec.master.as_deref()).await?;
        (cont, dirs, None, master)
    } else {
        let host = Netlink::current()?;
        let (opened, master) = tokio::join!(
            pending.wait(),
            resolve_master(&host, spec.master.as_deref())
        );
        let (cont, dirs) = opened?;
        (cont, dirs, Some(host), master?)
    };
    if spec.limit_mtu_to_master && spec.mtu > master.mtu {
        return Err(CniError::invalid_config(format!(
            "invalid MTU {}, must be [0, master MTU({})]",
            spec.mtu, master.mtu
        )));
    }
    let at = Attach {
        ctx,
        ns,
        cont,
        host,
        dirs,
    };
    let created = make_link(&at, &master, spec, l2).await?;
    Ok((at, created))
}

/// IPAM types that never look at the container interface, so they may run while it is being made (and
/// released while it is being deleted).
pub const LINK_INDEPENDENT_IPAM: &[&str] = &["host-local", "static"];

/// Creates the link on `master` under a temporary name (in the container's namespace directly when the
/// master is there, else moved there at creation), then renames it to `CNI_IFNAME` (and brings it up for a
/// layer-2 link). On failure nothing is left.
async fn make_link(
    at: &Attach<'_>,
    master: &LinkInfo,
    spec: &SubLinkSpec,
    up: bool,
) -> Result<LinkInfo, CniError> {
    let (cont, mnl) = (&at.cont, at.master_nl());
    let kind = kind_name(&spec.kind);
    let tmp = temp_name_for(&at.ctx.container_id, &at.ctx.ifname);
    let new = NewSubLink {
        name: &tmp,
        master: master.index,
        kind: spec.kind,
        mtu: (spec.mtu > 0).then_some(spec.mtu),
        mac: spec.mac,
        netns_fd: at.host.is_some().then(|| at.ns.file().as_raw_fd()),
        // The reference plugins create the link with txqlen 0 (the Go netlink library sends the zero
        // value); a macvlan / ipvlan has no queue of its own, and matching keeps `ip link` identical.
        txqlen: Some(0),
    };
    match link::create_sublink(mnl, &new).await {
        Err(e) if e.is_exists() => {
            // The temporary name is this attachment's: the link of an ADD killed before its rename, in
            // the namespace the link is created in (the container's). Removed, then made anew.
            tracing::info!("removing {tmp:?}, left in the container by an interrupted ADD");
            link::delete_by_name(cont, &tmp).await?;
            link::create_sublink(mnl, &new).await?;
        }
        other => other?,
    }
    let created = match link::by_name(cont, &tmp).await {
        Ok(Some(l)) => l,
        other => {
            // Should not happen; remove whatever carries the temporary name, in both namespaces.
            let _ = link::delete_by_name(cont, &tmp).await;
            let _ = link::delete_by_name(mnl, &tmp).await;
            return Err(match other {
                Err(e) => e.into(),
                _ => CniError::kernel(format!(
                    "the new {kind} {tmp:?} is not in {}",
                    at.ns.path().display()
                )),
            });
        }
    };
    if let Some(d) = &at.dirs {
        // The temporary name exists only in the container's namespace: it resolving through the
        // directories proves they show that namespace, and the sysctls can be set without a thread.
        d.verify(&tmp);
    }
    let ifname = at.ctx.ifname.as_str();
    let rename = LinkChange::new().name(ifname);
    let rename = if up { rename.up() } else { rename };
    if let Err(e) = link::set(cont, created.index, &rename).await {
        at.remove_link(created.index).await;
        return Err(CniError::kernel(format!(
            "failed to rename {tmp:?} to {ifname:?}: {e}"
        )));
    }
    Ok(LinkInfo {
        name: ifname.to_string(),
        up,
        ..created
    })
}

/// ADD's configuration of the new link: the result, and the addresses and routes of `ips` (an IPAM result
/// got early, else the IPAM run now) put on the link. An IPAM reservation is released on failure.
async fn configure(
    at: &Attach<'_>,
    conf: &PluginConf,
    created: &LinkInfo,
    ips: IpSource,
    ipam: Option<CniResult>,
    dns: Dns,
) -> Result<CniResult, CniError> {
    let ifname = at.ctx.ifname.as_str();
    let mut result = CniResult::new(conf.cni_version().unwrap_or(crate::cni::CURRENT_VERSION));
    result.interfaces = vec![Interface {
        name: ifname.to_string(),
        mac: created.mac_text(),
        sandbox: at.ns.path().display().to_string(),
        ..Default::default()
    }];
    let apply = |result: &CniResult| {
        let plan = ipam_apply::plan(result, ifname);
        async move {
            let dirs = at.dirs.as_ref();
            ipam_apply::apply_with(&at.cont, &at.ns, dirs, created.index, ifname, &plan?).await
        }
    };
    match ips {
        IpSource::None => {}
        IpSource::Prev(prev) => {
            ipam::into_result(&mut result, prev)?;
            apply(&result).await?;
        }
        IpSource::Ipam => {
            // From here on a failure releases whatever the IPAM may hold for this attachment, also when its
            // own ADD failed half-way or timed out (a DEL of nothing is a no-op for an IPAM).
            let applied = async {
                let ipam = match ipam {
                    Some(r) => r,
                    None => ipam::add(at.ctx, conf).await?,
                };
                ipam::into_result(&mut result, ipam)?;
                apply(&result).await
            }
            .await;
            if let Err(e) = applied {
                ipam::release(at.ctx, conf).await;
                return Err(e);
            }
        }
    }
    result.dns = dns;
    Ok(result)
}

/// DEL: releases the IPAM reservation (whatever state the netns, link or master are in) and deletes the link
/// in the container: at the same time for a [`LINK_INDEPENDENT_IPAM`], else the IPAM first as the reference
/// does. A missing netns or link is success, so DEL is idempotent.
pub async fn del(ctx: &Context, conf: &PluginConf, has_ipam: bool) -> Result<(), CniError> {
    let unlink = async {
        let ns = match netns_of(ctx, "DEL") {
            Ok(ns) => ns,
            Err(e)
                if matches!(
                    e.code,
                    ErrorCode::UnknownContainer | ErrorCode::InvalidEnvironment
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        if ctx.ifname.is_empty() {
            return Ok(());
        }
        let (nl, ()) = Netlink::open_in_background(&ns)?.wait().await?;
        // The link, and the one an ADD killed before its rename left under the temporary name; both
        // requests go out back to back.
        let tmp = temp_name_for(&ctx.container_id, &ctx.ifname);
        let (final_name, temporary) = tokio::join!(
            link::delete_by_name(&nl, &ctx.ifname),
            link::delete_by_name(&nl, &tmp)
        );
        final_name?;
        temporary?;
        Ok(())
    };
    let unlink = async {
        let (pod, host) = tokio::join!(unlink, remove_host_temp(ctx));
        pod.and(host)
    };
    let release = || ipam::del(ctx, conf);
    if !has_ipam {
        return unlink.await;
    }
    let independent =
        super::ipam_type(conf).is_some_and(|t| LINK_INDEPENDENT_IPAM.contains(&t.as_str()));
    if independent {
        // The kernel's teardown of the link (most of a DEL) and the IPAM's release overlap: the delete
        // request goes out first, the release (in-process or a plugin process) runs while it is served.
        let (unlinked, released) = tokio::join!(unlink, release());
        released?;
        unlinked
    } else {
        release().await?;
        unlink.await
    }
}

/// Removes the attachment's temporarily named link ([`temp_name_for`]) from the host, where a link stacked
/// on a host master would be if an ADD died before moving it (this one creates it in the container, but
/// DEL does not rely on which version made it). Only a macvlan or ipvlan is removed.
async fn remove_host_temp(ctx: &Context) -> Result<(), CniError> {
    if ctx.ifname.is_empty() || ctx.container_id.is_empty() {
        return Ok(());
    }
    let tmp = temp_name_for(&ctx.container_id, &ctx.ifname);
    let host = Netlink::current()?;
    if let Some(l) = link::by_name(&host, &tmp).await? {
        if matches!(l.kind.as_deref(), Some("macvlan" | "ipvlan")) {
            tracing::info!("removing {tmp:?}, left in the host by an interrupted ADD");
            link::delete(&host, l.index).await?;
        }
    }
    Ok(())
}

/// CHECK: the interface of `prevResult` exists in the netns, is of the configured kind and mode, sits on
/// the configured master, has `prevResult`'s MAC, addresses and routes. The IPAM's CHECK runs first.
pub async fn check(
    ctx: &Context,
    conf: &PluginConf,
    spec: &SubLinkSpec,
    has_ipam: bool,
) -> Result<(), CniError> {
    if has_ipam {
        ipam::check(ctx, conf).await?;
    }
    let (prev, idx, iface) = ipam::prev_interface(ctx, conf)?;
    let ns = netns_of(ctx, "CHECK")?;
    let pending = Netlink::open_in_background(&ns)?;
    let (cont, master) = if spec.link_in_container {
        let (cont, ()) = pending.wait().await?;
        let master = resolve_master(&cont, spec.master.as_deref()).await?;
        (cont, master)
    } else {
        let host = Netlink::current()?;
        let (opened, master) = tokio::join!(
            pending.wait(),
            resolve_master(&host, spec.master.as_deref())
        );
        (opened?.0, master?)
    };
    let kind = kind_name(&spec.kind);
    let l = link::by_name(&cont, &iface.name).await?.ok_or_else(|| {
        CniError::kernel(format!(
            "container interface {:?} of prevResult not found",
            iface.name
        ))
    })?;
    if l.kind.as_deref() != Some(kind) {
        return Err(CniError::kernel(format!(
            "container interface {:?} is not a {kind} but {}",
            l.name,
            l.kind.as_deref().unwrap_or("a link without a kind")
        )));
    }
    let mode_ok = match spec.kind {
        SubKind::MacVlan(m) => l.macvlan_mode == Some(m),
        SubKind::IpVlan(m) => l.ipvlan_mode == Some(m),
    };
    if !mode_ok {
        return Err(CniError::kernel(format!(
            "container {kind} mode {:?} does not match the configured {:?}",
            l.macvlan_mode
                .map(|m| format!("{m:?}"))
                .or(l.ipvlan_mode.map(|m| format!("{m:?}"))),
            spec.kind
        )));
    }
    if l.parent != Some(master.index) {
        return Err(CniError::kernel(format!(
            "container interface {:?} is not on master {:?} (#{}), its link is {:?}",
            l.name, master.name, master.index, l.parent
        )));
    }
    if !iface.mac.is_empty() && !iface.mac.eq_ignore_ascii_case(&l.mac_text()) {
        return Err(CniError::kernel(format!(
            "interface {:?} MAC {} does not match the container's {}",
            l.name,
            iface.mac,
            l.mac_text()
        )));
    }
    check_ipam_applied(&cont, &l, &prev, idx, &ns.path().display().to_string()).await
}

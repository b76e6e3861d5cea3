//! Shared helpers of the macvlan / ipvlan / bridge tests: a registry with the built-ins and the reference plugins, and
//! running one verb through a delegate. Namespaces, links and the root check are the workspace's
//! (`multus-testsupport`), re-exported here.
#![allow(dead_code, unused_imports)]

use multus_core::cni::{CniArgs, CniError, CniResult, Command, PluginConf};
use multus_core::delegate::{Context, Delegate, ExternalPlugin, Registry};
use multus_core::plugins::{Bridge, Ipvlan, Macvlan};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use multus_testsupport::{
    global_addrs, host_link, host_links_on, ip_json, pick, require_root, sh, sh_quiet, HostLink,
    Netns,
};

/// Where Debian's containernetworking-plugins are.
pub const REF_DIR: &str = "/usr/lib/cni";

/// A registry with the built-in macvlan, ipvlan and bridge; every other type (host-local) is the reference
/// binary.
pub fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register("macvlan", Arc::new(Macvlan))
        .register("ipvlan", Arc::new(Ipvlan))
        .register("bridge", Arc::new(Bridge))
        .set_timeout(Duration::from_secs(30));
    Arc::new(r)
}

/// A context for one verb.
pub fn ctx(command: Command, id: &str, netns: Option<&Path>, ifname: &str, args: &str) -> Context {
    let mut c = Context::new(
        command,
        id,
        netns.map(Path::to_path_buf),
        ifname,
        registry(),
    );
    c.args = CniArgs::parse(args).unwrap();
    c.cni_path = vec![PathBuf::from(REF_DIR)];
    c
}

/// A plugin config from JSON.
pub fn conf(v: Value) -> PluginConf {
    PluginConf::from_value(v).unwrap()
}

/// The same config with `prevResult` set (for CHECK / DEL).
pub fn with_prev(c: &PluginConf, prev: &CniResult) -> PluginConf {
    let mut c = c.clone();
    let version = c.cni_version().unwrap_or("1.0.0").to_string();
    c.set("prevResult", prev.to_value(&version).unwrap());
    c
}

/// The built-in delegate or the reference binary of `type`.
pub fn delegate(kind: &str, reference: bool) -> Arc<dyn Delegate> {
    if reference {
        Arc::new(ExternalPlugin::new(
            Path::new(REF_DIR).join(kind),
            Duration::from_secs(30),
        ))
    } else {
        registry().resolve(kind, &[]).unwrap()
    }
}

/// Runs one verb through a delegate.
pub async fn run(
    d: &Arc<dyn Delegate>,
    command: Command,
    id: &str,
    ns: Option<&Path>,
    ifname: &str,
    args: &str,
    c: &PluginConf,
) -> Result<Option<CniResult>, CniError> {
    let cx = ctx(command, id, ns, ifname, args);
    match command {
        Command::Add => d.add(&cx, c).await.map(Some),
        Command::Check => d.check(&cx, c).await.map(|_| None),
        Command::Del => d.del(&cx, c).await.map(|_| None),
        Command::Status => d.status(&cx, c).await.map(|_| None),
        Command::Gc => d.gc(&cx, c).await.map(|_| None),
        Command::Version => Ok(None),
    }
}

/// The IPs host-local holds reserved for network `net` under `data_dir`.
pub fn reserved(data_dir: &Path, net: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join(net))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The parts of `ip -d -j link show` of a container interface that the differential tests compare (not the
/// index, MAC or master's index).
pub const LINK_KEYS: &[&str] = &[
    "ifname",
    "flags",
    "mtu",
    "qdisc",
    "operstate",
    "linkmode",
    "group",
    "txqlen",
    "link_type",
    "promiscuity",
    "allmulti",
    "min_mtu",
    "max_mtu",
    "linkinfo",
    "inet6_addr_gen_mode",
    "num_tx_queues",
    "num_rx_queues",
    "gso_max_size",
    "gso_max_segs",
];

/// The differential tests' verdict: `results` are (ours, reference) and `states` (ours after ADD, ours after
/// DEL, reference after ADD, reference after DEL); ours must equal the reference's at each point.
pub fn assert_same_as_reference(tag: &str, results: &[Value], states: &[Value]) {
    assert_eq!(results[0], results[1], "{tag}: results (ours, reference)");
    assert_eq!(
        states[0], states[2],
        "{tag}: kernel state after ADD (ours, reference)"
    );
    assert_eq!(
        states[1], states[3],
        "{tag}: state after DEL (ours, reference)"
    );
}

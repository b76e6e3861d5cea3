//! The `bridge` plugin, in-process: a veth pair whose container end is `CNI_IFNAME` and whose host end
//! (`veth` and 8 hex digits) is a port of a Linux bridge, with the reference plugin's (containernetworking
//! plugins 1.1.1) keys `bridge` (default `cni0`), `isGateway`, `isDefaultGateway`, `forceAddress`, `mtu`,
//! `hairpinMode`, `promiscMode`, the MAC of `CNI_ARGS` `MAC=` / `args.cni.mac` / `runtimeConfig.mac`, and an
//! optional `ipam` (run through the registry: the built-in host-local runs in-process).
//!
//! What it does not implement (`ipMasq`, VLANs, `macspoofchk`, `enabledad`, ...; see [`declined_key`]) it
//! declines ([`Delegate::declines`]): the registry then runs the node's `bridge` binary for that config.
//!
//! - this module: the config ([`BridgeConf`]), what is declined, the gateway computation of the result
//!   ([`calc_gateways`]) — pure and unit-tested — and the [`Delegate`].
//! - `add`: ADD's kernel work (bridge, veth pair, addresses, gateway addresses, forwarding) and CHECK's.

mod add;

use super::{ipam_type, sublink};
use crate::cni::keys::{self, Keys};
use crate::cni::{CniArgs, CniError, CniResult, Dns, PluginConf, Route};
use crate::delegate::known_keys::{self, KnownKeys};
use crate::delegate::{Context, Delegate};
use crate::netlink::MacAddr;
use async_trait::async_trait;
use ipnetwork::IpNetwork;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The bridge when the config names none.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// The keys the built-in implements.
const IMPLEMENTED: &[&str] = &[
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "mtu",
    "hairpinMode",
    "promiscMode",
];

/// The keys of the reference plugin the built-in does not implement: a value other than [`neutral`] makes
/// the built-in decline the config.
const DECLINED: &[&str] = &[
    "ipMasq",
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
];

/// The value of a [`DECLINED`] key that has no effect (the reference's default).
fn neutral(key: &str) -> Value {
    match key {
        "vlan" | "vlanTrunk" => Value::Null,
        "preserveDefaultVlan" => Value::Bool(true),
        _ => Value::Bool(false),
    }
}

/// A parsed bridge config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConf {
    /// `bridge`.
    pub bridge: String,
    /// `isGateway` (or `isDefaultGateway`): the gateway addresses go on the bridge, forwarding is enabled.
    pub is_gateway: bool,
    /// `isDefaultGateway`: a default route via the gateway, per family, unless IPAM gave one.
    pub is_default_gateway: bool,
    /// `forceAddress`: another address of the gateway's subnet on the bridge is replaced, not an error.
    pub force_address: bool,
    /// `mtu`; `None` (or 0): the kernel's default.
    pub mtu: Option<u32>,
    /// `hairpinMode` of the host veth's bridge port.
    pub hairpin: bool,
    /// `promiscMode` of the bridge.
    pub promisc: bool,
    /// The container interface's MAC: `runtimeConfig.mac`, else `args.cni.mac`, else `CNI_ARGS` `MAC`.
    pub mac: Option<MacAddr>,
    /// `ipam.type`, when there is an IPAM section.
    pub ipam_type: Option<String>,
    /// `dns`: the result's DNS when set, else the IPAM's.
    pub dns: Dns,
}

fn parse_mac(text: &str) -> Result<MacAddr, CniError> {
    text.parse::<MacAddr>().map_err(|_| {
        CniError::invalid_config(format!(
            "invalid args {text} for MAC addr: not a MAC address"
        ))
    })
}

impl BridgeConf {
    /// Parses the config and the `CNI_ARGS` of an invocation; a bad value is code 7 naming the key.
    pub fn parse(conf: &PluginConf, args: &CniArgs) -> Result<Self, CniError> {
        let k = Keys::of(conf);
        let mtu = k.uint("mtu", u64::from(u32::MAX))?.unwrap_or(0) as u32;
        let is_default_gateway = k.bool("isDefaultGateway")?.unwrap_or(false);
        let hairpin = k.bool("hairpinMode")?.unwrap_or(false);
        let promisc = k.bool("promiscMode")?.unwrap_or(false);
        if hairpin && promisc {
            return Err(CniError::invalid_config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        let mut mac = args.get("MAC").filter(|m| !m.is_empty()).map(parse_mac);
        let args_mac = k.nested("args")?.nested("cni")?.string("mac")?;
        if let Some(m) = args_mac.filter(|m| !m.is_empty()) {
            mac = Some(parse_mac(m));
        }
        if let Some(m) = k.nested("runtimeConfig")?.string("mac")? {
            mac = Some(parse_mac(m));
        }
        Ok(BridgeConf {
            bridge: k.ifname("bridge")?.unwrap_or(DEFAULT_BRIDGE).to_string(),
            is_gateway: is_default_gateway || k.bool("isGateway")?.unwrap_or(false),
            is_default_gateway,
            force_address: k.bool("forceAddress")?.unwrap_or(false),
            mtu: (mtu > 0).then_some(mtu),
            hairpin,
            promisc,
            mac: mac.transpose()?,
            ipam_type: ipam_type(conf),
            dns: keys::dns(conf)?,
        })
    }
}

/// The first key of `conf` the built-in does not implement, with its value: a key the reference reads set to
/// anything but its neutral value, or a key the reference plugin may know and the built-in does not.
/// `None`: the built-in serves the config.
pub fn declined_key(conf: &PluginConf) -> Option<String> {
    for key in DECLINED {
        let neutral = neutral(key);
        match conf.raw().get(*key) {
            None | Some(Value::Null) => {}
            Some(v) if *v == neutral => {}
            Some(Value::Number(n)) if neutral == Value::Null && n.as_i64() == Some(0) => {}
            Some(v) => return Some(format!("{key:?}: {v}")),
        }
    }
    known_keys::unimplemented(&Bridge, conf)
        .into_iter()
        .next()
        .map(|k| format!("{k:?} (unknown to it)"))
}

/// The gateways of an IPAM result, as the reference computes them: every IP is for interface 2 (the
/// container's); with `isGateway` an IP without a gateway gets the first address of its subnet; with
/// `isDefaultGateway` each family without a default route via a gateway gets one via its first IP's
/// gateway. Returns the addresses (gateway with the IP's prefix) to put on the bridge (with `isGateway`).
pub fn calc_gateways(result: &mut CniResult, c: &BridgeConf) -> Vec<IpNetwork> {
    let mut default_found = [false, false];
    let mut gws = Vec::new();
    for ip in &mut result.ips {
        ip.interface = Some(2);
        let v6 = ip.address.is_ipv6();
        if ip.gateway.is_none() && c.is_gateway {
            ip.gateway = next_ip(ip.address.network());
        }
        let unspecified = match v6 {
            false => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            true => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let wanted = c.is_default_gateway && !default_found[usize::from(v6)];
        if let Some(default) = IpNetwork::new(unspecified, 0).ok().filter(|_| wanted) {
            let found = result
                .routes
                .iter()
                .any(|r| r.gw.is_some() && r.dst == default);
            if !found {
                result.routes.push(Route::new(default, ip.gateway));
            }
            default_found[usize::from(v6)] = true;
        }
        if let Some(gw) = ip.gateway.filter(|_| c.is_gateway) {
            gws.extend(IpNetwork::new(gw, ip.address.prefix()));
        }
    }
    gws.sort_by_key(IpNetwork::is_ipv6);
    gws
}

fn next_ip(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// The built-in `bridge` delegate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bridge;

/// The refusal of a config this built-in declines (see [`declined_key`]).
fn refusal(conf: &PluginConf) -> Option<String> {
    declined_key(conf).map(|k| format!("the built-in bridge declined key {k}"))
}

#[async_trait]
impl Delegate for Bridge {
    fn describe(&self) -> String {
        "built-in bridge".into()
    }

    fn known_keys(&self) -> Option<KnownKeys> {
        Some(KnownKeys::Plugin(&[IMPLEMENTED, DECLINED]))
    }

    fn declines(&self, conf: &PluginConf) -> Option<String> {
        refusal(conf)
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        // Run directly (standalone, or a registry that did not ask): never lose what it cannot do. The
        // spec's code 2, "unsupported field", with the key and its value in the message.
        if let Some(why) = refusal(conf) {
            return Err(CniError::unsupported_field(format!(
                "{why}; the node's bridge plugin must run this config"
            )));
        }
        let c = BridgeConf::parse(conf, &ctx.args)?;
        add::add(ctx, conf, &c).await
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let c = BridgeConf::parse(conf, &ctx.args)?;
        add::check(ctx, conf, &c).await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        // The IPAM's release and the container interface's deletion (its host end goes with it); a missing
        // netns or interface is success.
        sublink::del(ctx, conf, ipam_type(conf).is_some()).await
    }
}

#[cfg(test)]
mod tests;

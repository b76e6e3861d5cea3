//! The `ipvlan` plugin: an ipvlan on a master interface, moved into the container, with the reference
//! plugin's keys: `master`, `mode` (`l2` default, `l3`, `l3s`), `mtu` (0: the master's), `linkInContainer`,
//! and `ipam` or, when chained after another plugin without an `ipam` section, the IPs of `prevResult`
//! (whose single interface is then also the default master).

use super::ipam_type;
use super::sublink::{self, IpSource, SubLinkSpec};
use crate::cni::keys::{self, Keys};
use crate::cni::names;
use crate::cni::{CniError, CniResult, Dns, PluginConf};
use crate::delegate::{Context, Delegate};
use crate::netlink::link::SubKind;
use async_trait::async_trait;
use rtnetlink::packet_route::link::IpVlanMode;

/// An ipvlan mode, as spelled in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `l2` (the default).
    L2,
    /// `l3`.
    L3,
    /// `l3s`.
    L3s,
}

impl Mode {
    /// Parses a config value; `""` is `l2`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "" | "l2" => Mode::L2,
            "l3" => Mode::L3,
            "l3s" => Mode::L3s,
            other => {
                return Err(CniError::invalid_config(format!(
                    "unknown ipvlan mode: {other:?}"
                )))
            }
        })
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::L2 => "l2",
            Mode::L3 => "l3",
            Mode::L3s => "l3s",
        }
    }

    /// The kernel's mode.
    pub fn to_netlink(self) -> IpVlanMode {
        match self {
            Mode::L2 => IpVlanMode::L2,
            Mode::L3 => IpVlanMode::L3,
            Mode::L3s => IpVlanMode::L3S,
        }
    }
}

/// A parsed ipvlan config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpvlanConf {
    /// `master`, or the single interface of `prevResult` when chained; `None`: the default route's.
    pub master: Option<String>,
    /// `mode`.
    pub mode: Mode,
    /// `mtu`; 0 keeps the master's.
    pub mtu: u32,
    /// `linkInContainer`.
    pub link_in_container: bool,
    /// `ipam.type`, when there is an IPAM section.
    pub ipam_type: Option<String>,
    /// `prevResult`, when chained.
    pub prev: Option<CniResult>,
    /// `dns`, copied to the result.
    pub dns: Dns,
}

impl IpvlanConf {
    /// Parses the config (`prevResult` included).
    pub fn parse(conf: &PluginConf) -> Result<Self, CniError> {
        let k = Keys::of(conf);
        let mode = Mode::parse(k.string("mode")?.unwrap_or(""))?;
        let mtu = k.int("mtu")?.unwrap_or(0);
        let mtu = u32::try_from(mtu)
            .map_err(|_| CniError::invalid_config(format!("invalid MTU {mtu}")))?;
        let prev = conf.prev_result().map_err(|e| {
            CniError::invalid_config(format!("could not parse prevResult: {}", e.msg))
        })?;
        let mut master = k.ifname("master")?.map(str::to_string);
        if master.is_none() {
            if let Some(p) = &prev {
                match p.interfaces.as_slice() {
                    [one] if !one.name.is_empty() => {
                        names::ifname(&one.name).map_err(|e| {
                            CniError::invalid_config(format!(
                                "chained master failure: prevResult's interface: {e}"
                            ))
                        })?;
                        master = Some(one.name.clone())
                    }
                    _ => {
                        return Err(CniError::invalid_config(
                            "chained master failure: prevResult lacks a single named interface",
                        ))
                    }
                }
            }
        }
        Ok(IpvlanConf {
            master,
            mode,
            mtu,
            link_in_container: k.bool("linkInContainer")?.unwrap_or(false),
            ipam_type: ipam_type(conf),
            prev,
            dns: keys::dns(conf)?,
        })
    }

    /// The link to create.
    pub fn spec(&self) -> SubLinkSpec {
        SubLinkSpec {
            kind: SubKind::IpVlan(self.mode.to_netlink()),
            master: self.master.clone(),
            mtu: self.mtu,
            mac: None,
            link_in_container: self.link_in_container,
            limit_mtu_to_master: false,
        }
    }

    /// Where the IPs come from: `prevResult`'s IPs when there is no `ipam` section and it has some, else
    /// the IPAM plugin (an error when there is no `ipam` section either).
    pub fn ip_source(&self) -> Result<IpSource, CniError> {
        if self.ipam_type.is_none() {
            if let Some(p) = self.prev.as_ref().filter(|p| !p.ips.is_empty()) {
                return Ok(IpSource::Prev(p.clone()));
            }
            return Err(CniError::invalid_config(
                "ipvlan needs an \"ipam\" section, or a prevResult with IPs when chained",
            ));
        }
        Ok(IpSource::Ipam)
    }
}

/// The built-in `ipvlan` delegate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ipvlan;

#[async_trait]
impl Delegate for Ipvlan {
    fn describe(&self) -> String {
        "built-in ipvlan".into()
    }

    fn known_keys(&self) -> Option<crate::delegate::KnownKeys> {
        Some(crate::delegate::KnownKeys::Plugin(&[&[
            "master",
            "mode",
            "mtu",
            "linkInContainer",
        ]]))
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let c = IpvlanConf::parse(conf)?;
        let ips = c.ip_source()?;
        sublink::add(ctx, conf, &c.spec(), ips, c.dns.clone()).await
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let c = IpvlanConf::parse(conf)?;
        sublink::check(ctx, conf, &c.spec(), c.ipam_type.is_some()).await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        sublink::del(ctx, conf, ipam_type(conf).is_some()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<IpvlanConf, CniError> {
        IpvlanConf::parse(&PluginConf::from_value(v).unwrap())
    }

    #[test]
    fn keys_and_modes() {
        let c = parse(
            json!({"type": "ipvlan", "master": "eth1", "mtu": 1400, "linkInContainer": true,
                             "ipam": {"type": "host-local"}}),
        )
        .unwrap();
        assert_eq!(c.master.as_deref(), Some("eth1"));
        assert_eq!(c.mode, Mode::L2);
        assert_eq!(c.mtu, 1400);
        assert!(c.link_in_container);
        assert!(!c.spec().limit_mtu_to_master);
        assert!(matches!(c.ip_source().unwrap(), IpSource::Ipam));
        for (m, k) in [
            ("l2", IpVlanMode::L2),
            ("l3", IpVlanMode::L3),
            ("l3s", IpVlanMode::L3S),
        ] {
            let c = parse(json!({"type": "ipvlan", "mode": m, "ipam": {"type": "x"}})).unwrap();
            assert_eq!(c.mode.as_str(), m);
            assert_eq!(c.spec().kind, SubKind::IpVlan(k));
        }
        assert_eq!(
            parse(json!({"type": "ipvlan", "mode": "bridge"}))
                .unwrap_err()
                .code
                .code(),
            7
        );
        assert_eq!(
            parse(json!({"type": "ipvlan", "mtu": -5}))
                .unwrap_err()
                .code
                .code(),
            7
        );
    }

    #[test]
    fn chained_uses_prev_result() {
        let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                          "ips": [{"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}]});
        let c =
            parse(json!({"type": "ipvlan", "cniVersion": "1.0.0", "prevResult": prev})).unwrap();
        assert_eq!(
            c.master.as_deref(),
            Some("eth0"),
            "master from the single prevResult interface"
        );
        match c.ip_source().unwrap() {
            IpSource::Prev(p) => assert_eq!(p.ips[0].address.to_string(), "10.1.0.5/24"),
            other => panic!("{other:?}"),
        }
        // an ipam section wins over prevResult
        let c = parse(json!({"type": "ipvlan", "cniVersion": "1.0.0", "prevResult": prev, "ipam": {"type": "host-local"}})).unwrap();
        assert!(matches!(c.ip_source().unwrap(), IpSource::Ipam));
        // two interfaces: no default master
        let two =
            json!({"cniVersion": "1.0.0", "interfaces": [{"name": "a"}, {"name": "b"}], "ips": []});
        assert_eq!(
            parse(json!({"type": "ipvlan", "cniVersion": "1.0.0", "prevResult": two}))
                .unwrap_err()
                .code
                .code(),
            7
        );
        // a master name the kernel cannot take, given or from prevResult
        let long = "x".repeat(65_530);
        let e = parse(json!({"type": "ipvlan", "master": long})).unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(e.msg.contains("\"master\"") && e.msg.len() < 300, "{e}");
        let bad = json!({"cniVersion": "1.0.0", "interfaces": [{"name": long}], "ips": []});
        let e =
            parse(json!({"type": "ipvlan", "cniVersion": "1.0.0", "prevResult": bad})).unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(e.msg.contains("prevResult") && e.msg.len() < 300, "{e}");
        // neither ipam nor prevResult IPs
        let c = parse(json!({"type": "ipvlan", "master": "eth0"})).unwrap();
        assert_eq!(c.ip_source().unwrap_err().code.code(), 7);
    }
}

//! The `macvlan` plugin: a macvlan on a master interface, moved into the container, with the reference
//! plugin's keys: `master` (default: the interface of the default route), `mode` (`bridge`, `private`,
//! `vepa`, `passthru`), `mtu` (0: the master's; above the master's is an error), `mac` (overridden by
//! `CNI_ARGS` `MAC=` and then by `runtimeConfig.mac`), `linkInContainer` (the master is in the container's
//! namespace) and an optional `ipam` (without it the link is layer 2 only, just brought up).

use super::ipam_type;
use super::sublink::{self, IpSource, SubLinkSpec};
use crate::cni::keys::{self, Keys};
use crate::cni::{CniArgs, CniError, CniResult, Dns, PluginConf};
use crate::delegate::{Context, Delegate};
use crate::netlink::link::SubKind;
use crate::netlink::MacAddr;
use async_trait::async_trait;
use rtnetlink::packet_route::link::MacVlanMode;

/// A macvlan mode, as spelled in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `bridge` (the default).
    Bridge,
    /// `private`.
    Private,
    /// `vepa`.
    Vepa,
    /// `passthru`.
    Passthru,
}

impl Mode {
    /// Parses a config value; `""` is `bridge`.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "" | "bridge" => Mode::Bridge,
            "private" => Mode::Private,
            "vepa" => Mode::Vepa,
            "passthru" => Mode::Passthru,
            other => {
                return Err(CniError::invalid_config(format!(
                    "unknown macvlan mode: {other:?}"
                )))
            }
        })
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Private => "private",
            Mode::Vepa => "vepa",
            Mode::Passthru => "passthru",
        }
    }

    /// The kernel's mode.
    pub fn to_netlink(self) -> MacVlanMode {
        match self {
            Mode::Bridge => MacVlanMode::Bridge,
            Mode::Private => MacVlanMode::Private,
            Mode::Vepa => MacVlanMode::Vepa,
            Mode::Passthru => MacVlanMode::Passthrough,
        }
    }
}

/// A parsed macvlan config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacvlanConf {
    /// `master`; `None`: the interface of the default route.
    pub master: Option<String>,
    /// `mode`.
    pub mode: Mode,
    /// `mtu`; 0 keeps the master's.
    pub mtu: u32,
    /// The MAC to set: `runtimeConfig.mac`, else `CNI_ARGS` `MAC`, else `mac`.
    pub mac: Option<MacAddr>,
    /// `linkInContainer`.
    pub link_in_container: bool,
    /// `ipam.type`, when there is an IPAM section.
    pub ipam_type: Option<String>,
    /// `dns`, copied to the result.
    pub dns: Dns,
}

impl MacvlanConf {
    /// Parses the config and the `CNI_ARGS` of an invocation.
    pub fn parse(conf: &PluginConf, args: &CniArgs) -> Result<Self, CniError> {
        let k = Keys::of(conf);
        let mode = Mode::parse(k.string("mode")?.unwrap_or(""))?;
        let mtu = k.int("mtu")?.unwrap_or(0);
        let mtu = u32::try_from(mtu).map_err(|_| {
            CniError::invalid_config(format!("invalid MTU {mtu}, must be [0, master MTU]"))
        })?;
        let mut mac_text = k.string("mac")?.map(str::to_string);
        if let Some(m) = args.get("MAC").filter(|m| !m.is_empty()) {
            mac_text = Some(m.to_string());
        }
        if let Some(m) = conf
            .runtime_config()
            .get("mac")
            .and_then(|m| m.as_str())
            .filter(|m| !m.is_empty())
        {
            mac_text = Some(m.to_string());
        }
        let mac = match mac_text {
            None => None,
            Some(t) => Some(t.parse::<MacAddr>().map_err(|_| {
                CniError::invalid_config(format!(
                    "invalid args {t} for MAC addr: not a MAC address"
                ))
            })?),
        };
        Ok(MacvlanConf {
            master: k.ifname("master")?.map(str::to_string),
            mode,
            mtu,
            mac,
            link_in_container: k.bool("linkInContainer")?.unwrap_or(false),
            ipam_type: ipam_type(conf),
            dns: keys::dns(conf)?,
        })
    }

    /// The link to create.
    pub fn spec(&self) -> SubLinkSpec {
        SubLinkSpec {
            kind: SubKind::MacVlan(self.mode.to_netlink()),
            master: self.master.clone(),
            mtu: self.mtu,
            mac: self.mac,
            link_in_container: self.link_in_container,
            limit_mtu_to_master: true,
        }
    }

    /// Where the IPs come from: the IPAM plugin, or none (layer 2 only).
    pub fn ip_source(&self) -> IpSource {
        if self.ipam_type.is_some() {
            IpSource::Ipam
        } else {
            IpSource::None
        }
    }
}

/// The built-in `macvlan` delegate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Macvlan;

#[async_trait]
impl Delegate for Macvlan {
    fn describe(&self) -> String {
        "built-in macvlan".into()
    }

    fn known_keys(&self) -> Option<crate::delegate::KnownKeys> {
        Some(crate::delegate::KnownKeys::Plugin(&[&[
            "master",
            "mode",
            "mtu",
            "mac",
            "linkInContainer",
        ]]))
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let c = MacvlanConf::parse(conf, &ctx.args)?;
        sublink::add(ctx, conf, &c.spec(), c.ip_source(), c.dns.clone()).await
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let c = MacvlanConf::parse(conf, &ctx.args)?;
        sublink::check(ctx, conf, &c.spec(), c.ipam_type.is_some()).await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        // Only the IPAM section matters: DEL must work whatever became of the master.
        sublink::del(ctx, conf, ipam_type(conf).is_some()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value, args: &str) -> Result<MacvlanConf, CniError> {
        MacvlanConf::parse(
            &PluginConf::from_value(v).unwrap(),
            &CniArgs::parse(args).unwrap(),
        )
    }

    #[test]
    fn defaults() {
        let c = parse(json!({"type": "macvlan"}), "").unwrap();
        assert_eq!(c.master, None);
        assert_eq!(c.mode, Mode::Bridge);
        assert_eq!(c.mtu, 0);
        assert_eq!(c.mac, None);
        assert!(!c.link_in_container);
        assert!(matches!(c.ip_source(), IpSource::None));
        assert!(c.spec().limit_mtu_to_master);
    }

    #[test]
    fn every_key() {
        let c = parse(
            json!({"type": "macvlan", "master": "eth1", "mode": "passthru", "mtu": 1400, "mac": "02:00:00:00:00:01",
                   "linkInContainer": true, "ipam": {"type": "host-local"}, "dns": {"nameservers": ["10.0.0.53"]}}),
            "",
        )
        .unwrap();
        assert_eq!(c.master.as_deref(), Some("eth1"));
        assert_eq!(c.mode, Mode::Passthru);
        assert_eq!(c.mtu, 1400);
        assert_eq!(c.mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert!(c.link_in_container);
        assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
        assert_eq!(c.dns.nameservers, ["10.0.0.53"]);
        assert!(matches!(c.ip_source(), IpSource::Ipam));
        assert_eq!(c.spec().kind, SubKind::MacVlan(MacVlanMode::Passthrough));
        for (m, k) in [
            ("bridge", MacVlanMode::Bridge),
            ("private", MacVlanMode::Private),
            ("vepa", MacVlanMode::Vepa),
            ("passthru", MacVlanMode::Passthrough),
        ] {
            let c = parse(json!({"type": "macvlan", "mode": m}), "").unwrap();
            assert_eq!(c.mode.as_str(), m);
            assert_eq!(c.mode.to_netlink(), k);
        }
    }

    #[test]
    fn mac_precedence() {
        let base = json!({"type": "macvlan", "mac": "02:00:00:00:00:01"});
        assert_eq!(
            parse(base.clone(), "").unwrap().mac,
            Some(MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(
            parse(base.clone(), "IgnoreUnknown=1;MAC=02:00:00:00:00:02")
                .unwrap()
                .mac,
            Some(MacAddr([2, 0, 0, 0, 0, 2]))
        );
        let mut rc = base.clone();
        rc["runtimeConfig"] = json!({"mac": "02:00:00:00:00:03"});
        assert_eq!(
            parse(rc, "MAC=02:00:00:00:00:02").unwrap().mac,
            Some(MacAddr([2, 0, 0, 0, 0, 3]))
        );
    }

    #[test]
    fn bad_keys_are_config_errors() {
        for bad in [
            json!({"type": "macvlan", "mode": "l2"}),
            json!({"type": "macvlan", "mtu": -1}),
            json!({"type": "macvlan", "mtu": "1500"}),
            json!({"type": "macvlan", "mtu": 5_000_000_000u64}),
            json!({"type": "macvlan", "mac": "nope"}),
            json!({"type": "macvlan", "master": 3}),
            json!({"type": "macvlan", "master": "x".repeat(65_500)}),
            json!({"type": "macvlan", "master": "eth0:1"}),
            json!({"type": "macvlan", "linkInContainer": "yes"}),
            json!({"type": "macvlan", "runtimeConfig": {"mac": "02:00:00:00:00"}}),
        ] {
            assert_eq!(parse(bad.clone(), "").unwrap_err().code.code(), 7, "{bad}");
        }
        assert_eq!(
            parse(json!({"type": "macvlan"}), "MAC=zz")
                .unwrap_err()
                .code
                .code(),
            7
        );
    }
}

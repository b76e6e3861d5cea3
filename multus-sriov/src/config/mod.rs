//! The sriov-cni configuration keys, parsed from a delegate's full invocation config into a typed [`SriovConf`]
//! (with `multus_core::cni::keys`), and (in `plan`) the pure planning of VF settings: [`VfState`] (a VF's
//! settings as read from the PF) and [`plan_changes`] (exactly the settings ADD must change, so that DEL
//! restores exactly those).
//!
//! Key names and rules follow sriov-cni (`pkg/types`, `pkg/config`):
//!
//! | key | type | rule |
//! |---|---|---|
//! | `deviceID` | string | a VF's PCI address `dddd:bb:dd.f`; also `pciBusID` and `runtimeConfig.deviceID` |
//! | `master` / `pfName` | string | the PF to take a free VF from, only used when no device ID is given |
//! | `vlan` | int | 0–4094 |
//! | `vlanQoS` | int | 0–7; needs `vlan`; non-zero needs a non-zero `vlan`; default 0 when `vlan` is set |
//! | `vlanProto` | string | `802.1q` or `802.1ad` (any case); needs `vlan`; `802.1ad` needs a non-zero `vlan`; default `802.1q` |
//! | `mac` | string | a unicast MAC; `runtimeConfig.mac` wins over it (as in sriov-cni's ADD) |
//! | `spoofchk`, `trust` | string | `on` or `off` |
//! | `link_state` | string | `auto`, `enable` or `disable` |
//! | `min_tx_rate`, `max_tx_rate` | int | Mbps, 0 to 2^32-1 (0 = no limit); `min <= max` when both are set and `max != 0` |
//! | `ipam` | object | optional, kept raw |
//! | `logLevel` | string | `panic`, `error`, `warning`, `info` or `debug` (any case) |
//! | `logFile` | string | a path |
//! | `dataDir` | string | this project's key, not sriov-cni's: an absolute path for the allocation records and the per-attachment cache (default `/var/lib/cni/sriov`) |
//!
//! Device ID precedence: top-level `deviceID` wins, then `pciBusID`, then `runtimeConfig.deviceID`. sriov-cni
//! reads only `deviceID`, and Go Multus writes the device plugin's ID into `deviceID` (and `pciBusID`, for
//! host-device) of the delegate config, so `deviceID` is what both see first; the other two are fallbacks for
//! configs that carry only those. Every one that is present must be a valid PCI address.
//!
//! An empty string is "not set" for the string keys, as it is for sriov-cni (Go's zero value); `null` is "not
//! set" for every key. Each bad value is a CNI error with code 7 naming the key and the value. Keys this module
//! does not know stay in [`SriovConf::raw`], which is the whole config as received.
//!
//! ```
//! use multus_core::cni::PluginConf;
//! use multus_sriov::config::{SriovConf, VfSelector};
//!
//! let conf = PluginConf::from_slice(br#"{"cniVersion":"1.0.0","name":"n","type":"sriov",
//!     "deviceID":"0000:03:10.1","vlan":100,"vlanQoS":3,"spoofchk":"off"}"#).unwrap();
//! let s = SriovConf::parse(&conf).unwrap();
//! assert!(matches!(s.device, VfSelector::Vf(_)));
//! assert_eq!(s.vlan.map(|v| (v.id, v.qos)), Some((100, 3)));
//! assert_eq!(s.spoofchk, Some(false));
//! ```

mod plan;

pub use plan::{plan_changes, VfChange, VfSettings, VfState};

use crate::PciAddress;
use multus_core::cni::keys::Keys;
use multus_core::cni::{CniError, PluginConf};
use multus_core::netlink::MacAddr;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The highest VLAN ID a VF takes.
pub const MAX_VLAN: u16 = 4094;
/// The highest VLAN QoS (PCP) value.
pub const MAX_QOS: u8 = 7;

/// The VLAN protocol of a VF's VLAN tag (serialized in the config spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum VlanProto {
    /// 802.1Q (ethertype 0x8100), the default.
    #[default]
    #[serde(rename = "802.1q")]
    Dot1Q,
    /// 802.1ad, QinQ (ethertype 0x88a8).
    #[serde(rename = "802.1ad")]
    Dot1Ad,
}

impl VlanProto {
    /// The ethertype netlink's `IFLA_VF_VLAN_INFO` carries.
    pub fn ethertype(self) -> u16 {
        match self {
            VlanProto::Dot1Q => 0x8100,
            VlanProto::Dot1Ad => 0x88a8,
        }
    }
    /// The protocol for an ethertype read from the kernel (None for other values).
    pub fn from_ethertype(t: u16) -> Option<Self> {
        match t {
            0x8100 => Some(VlanProto::Dot1Q),
            0x88a8 => Some(VlanProto::Dot1Ad),
            _ => None,
        }
    }
    /// The config spelling (`802.1q`, `802.1ad`).
    pub fn as_str(self) -> &'static str {
        match self {
            VlanProto::Dot1Q => "802.1q",
            VlanProto::Dot1Ad => "802.1ad",
        }
    }
}

/// A VF's administrative link state (`IFLA_VF_LINK_STATE`; serialized in the config spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    /// Follows the PF's link (kernel value 0).
    #[default]
    Auto,
    /// Always up (1).
    Enable,
    /// Always down (2).
    Disable,
}

impl LinkState {
    /// The kernel's `IFLA_VF_LINK_STATE_*` value.
    pub fn kernel_value(self) -> u32 {
        match self {
            LinkState::Auto => 0,
            LinkState::Enable => 1,
            LinkState::Disable => 2,
        }
    }
    /// The state for a kernel value (None for unknown values).
    pub fn from_kernel_value(v: u32) -> Option<Self> {
        match v {
            0 => Some(LinkState::Auto),
            1 => Some(LinkState::Enable),
            2 => Some(LinkState::Disable),
            _ => None,
        }
    }
    /// The config spelling (`auto`, `enable`, `disable`).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Auto => "auto",
            LinkState::Enable => "enable",
            LinkState::Disable => "disable",
        }
    }
}

/// A VF's VLAN settings, set together on the PF (`IFLA_VF_VLAN_LIST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct VlanConf {
    /// VLAN ID, 0 (no VLAN) to 4094.
    pub id: u16,
    /// QoS (PCP), 0 to 7.
    pub qos: u8,
    /// Tag protocol.
    pub proto: VlanProto,
}

/// Which VF to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VfSelector {
    /// This VF (from `deviceID`, `pciBusID` or `runtimeConfig.deviceID`).
    Vf(PciAddress),
    /// A free VF of the PF with this netdev name (`master` or `pfName`).
    Pf(String),
}

/// The source of the device ID that was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceIdSource {
    /// Top-level `deviceID`.
    DeviceId,
    /// Top-level `pciBusID`.
    PciBusId,
    /// `runtimeConfig.deviceID`.
    RuntimeConfig,
}

/// sriov-cni's log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `panic`.
    Panic,
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
    /// `debug`.
    Debug,
}

/// A delegate config for type `sriov`, typed, with the whole config kept in [`SriovConf::raw`].
#[derive(Debug, Clone, PartialEq)]
pub struct SriovConf {
    /// The VF to use, or the PF to take one from.
    pub device: VfSelector,
    /// Where the VF's address came from (None when a PF was named).
    pub device_id_source: Option<DeviceIdSource>,
    /// VLAN settings; None when `vlan` is not set (the VF's VLAN is then left alone).
    pub vlan: Option<VlanConf>,
    /// MAC for the VF (`runtimeConfig.mac` over `mac`).
    pub mac: Option<MacAddr>,
    /// Spoof checking (`spoofchk`: on = true).
    pub spoofchk: Option<bool>,
    /// Trust (`trust`: on = true).
    pub trust: Option<bool>,
    /// `link_state`.
    pub link_state: Option<LinkState>,
    /// `min_tx_rate`, Mbps.
    pub min_tx_rate: Option<u32>,
    /// `max_tx_rate`, Mbps.
    pub max_tx_rate: Option<u32>,
    /// `ipam`, as given.
    pub ipam: Option<Map<String, Value>>,
    /// `logLevel`.
    pub log_level: Option<LogLevel>,
    /// `logFile`.
    pub log_file: Option<String>,
    /// The whole config as received, unknown keys included.
    pub raw: PluginConf,
}

/// The keys of a config, errors prefixed with `sriov`.
fn keys(conf: &PluginConf) -> Keys<'_> {
    Keys::of(conf).plugin("sriov")
}

/// The keys sriov-cni reads that this delegate implements (besides the CNI spec's and Multus' own).
pub const SRIOV_KEYS: &[&str] = &[
    "master",
    "pfName",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "mac",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
    "logLevel",
    "logFile",
    "dataDir",
];

const ON_OFF: &[(&str, bool)] = &[("on", true), ("off", false)];
const LINK_STATES: &[(&str, LinkState)] = &[
    ("auto", LinkState::Auto),
    ("enable", LinkState::Enable),
    ("disable", LinkState::Disable),
];
const VLAN_PROTOS: &[(&str, VlanProto)] =
    &[("802.1q", VlanProto::Dot1Q), ("802.1ad", VlanProto::Dot1Ad)];
const LOG_LEVELS: &[(&str, LogLevel)] = &[
    ("panic", LogLevel::Panic),
    ("error", LogLevel::Error),
    ("warning", LogLevel::Warning),
    ("info", LogLevel::Info),
    ("debug", LogLevel::Debug),
];

/// A PCI address under `key`.
fn pci(k: &Keys<'_>, key: &str) -> Result<Option<PciAddress>, CniError> {
    k.parse(
        key,
        "must be a PCI address dddd:bb:dd.f, for example 0000:03:10.1",
    )
}

/// A unicast MAC under `key`.
fn mac(k: &Keys<'_>, key: &str) -> Result<Option<MacAddr>, CniError> {
    let Some(m) = k.parse::<MacAddr>(key, "must be a MAC address like 02:00:00:00:00:01")? else {
        return Ok(None);
    };
    if !m.is_unicast() {
        return Err(k.invalid(
            key,
            &Value::from(m.to_string()),
            "must be a unicast MAC (not all-zero, multicast or broadcast)",
        ));
    }
    Ok(Some(m))
}

/// `vlan`, `vlanQoS` and `vlanProto`, with their rules (QoS and proto need a VLAN; a non-zero QoS and 802.1ad
/// a non-zero one).
fn vlan(k: &Keys<'_>) -> Result<Option<VlanConf>, CniError> {
    let id = k.uint("vlan", u64::from(MAX_VLAN))?;
    let qos = k.uint("vlanQoS", u64::from(MAX_QOS))?;
    let proto = k.choice_any_case("vlanProto", VLAN_PROTOS)?;
    let needs_vlan = |key: &str| {
        k.invalid(
            key,
            k.get(key).unwrap_or(&Value::Null),
            "needs \"vlan\" to be set",
        )
    };
    let Some(id) = id else {
        if qos.is_some() {
            return Err(needs_vlan("vlanQoS"));
        }
        if proto.is_some() {
            return Err(needs_vlan("vlanProto"));
        }
        return Ok(None);
    };
    // In range: checked by `uint` above.
    let (id, qos, proto) = (id as u16, qos.unwrap_or(0) as u8, proto.unwrap_or_default());
    if qos != 0 && id == 0 {
        return Err(k.invalid(
            "vlanQoS",
            &Value::from(qos),
            "a non-zero QoS needs a non-zero \"vlan\"",
        ));
    }
    if proto == VlanProto::Dot1Ad && id == 0 {
        return Err(k.invalid(
            "vlanProto",
            &Value::from(proto.as_str()),
            "802.1ad needs a non-zero \"vlan\"",
        ));
    }
    Ok(Some(VlanConf { id, qos, proto }))
}

/// `min_tx_rate` and `max_tx_rate` (Mbps), min not above a non-zero max.
fn tx_rates(k: &Keys<'_>) -> Result<(Option<u32>, Option<u32>), CniError> {
    let rate = |key| Ok::<_, CniError>(k.uint(key, u64::from(u32::MAX))?.map(|x| x as u32));
    let (min, max) = (rate("min_tx_rate")?, rate("max_tx_rate")?);
    if let (Some(min), Some(max)) = (min, max) {
        if max != 0 && min > max {
            return Err(k.invalid(
                "min_tx_rate",
                &Value::from(min),
                &format!("must not exceed \"max_tx_rate\" {max}"),
            ));
        }
    }
    Ok((min, max))
}

impl SriovConf {
    /// Parses and checks every sriov-cni key of a delegate's invocation config (code 7 on any bad value).
    pub fn parse(conf: &PluginConf) -> Result<Self, CniError> {
        let k = keys(conf);
        let rt = k.nested("runtimeConfig")?;
        let (device, device_id_source) = device_selector(conf)?.ok_or_else(|| {
            CniError::invalid_config(
                "sriov: no VF given: set \"deviceID\" (or \"pciBusID\", \"runtimeConfig.deviceID\"), \
                 or \"master\"/\"pfName\" to take a free VF of that PF",
            )
        })?;
        data_dir(conf)?;
        let vlan = vlan(&k)?;
        // MAC: runtimeConfig.mac wins, as in sriov-cni's ADD; both are checked.
        let conf_mac = mac(&k, "mac")?;
        let rt_mac = mac(&rt, "mac")?;
        let link_state = k.choice("link_state", LINK_STATES)?;
        let (min_tx_rate, max_tx_rate) = tx_rates(&k)?;
        Ok(SriovConf {
            device,
            device_id_source,
            vlan,
            mac: rt_mac.or(conf_mac),
            spoofchk: k.choice("spoofchk", ON_OFF)?,
            trust: k.choice("trust", ON_OFF)?,
            link_state,
            min_tx_rate,
            max_tx_rate,
            ipam: k.object("ipam")?.cloned(),
            log_level: k.choice_any_case("logLevel", LOG_LEVELS)?,
            log_file: k.string("logFile")?.map(str::to_string),
            raw: conf.clone(),
        })
    }

    /// The rates ADD sets, as sriov-cni does: when either is set, both are written, the unset one as 0
    /// (no limit). None when neither is set.
    pub fn tx_rates(&self) -> Option<(u32, u32)> {
        if self.min_tx_rate.is_none() && self.max_tx_rate.is_none() {
            return None;
        }
        Some((self.min_tx_rate.unwrap_or(0), self.max_tx_rate.unwrap_or(0)))
    }
}

/// The VF (or the PF to take one from) a config names, checking only the device keys (`deviceID`, `pciBusID`,
/// `runtimeConfig.deviceID`, `master`, `pfName`): what STATUS needs from a config that may name no device at
/// all (a network whose device comes from the device plugin at ADD). `None` when it names none.
pub fn device_selector(
    conf: &PluginConf,
) -> Result<Option<(VfSelector, Option<DeviceIdSource>)>, CniError> {
    select_device(&keys(conf))
}

/// [`device_selector`] over any plugin's keys (the `dpdk` delegate reads the same device keys, its errors
/// prefixed with its own name).
pub fn select_device(
    k: &Keys<'_>,
) -> Result<Option<(VfSelector, Option<DeviceIdSource>)>, CniError> {
    let rt = k.nested("runtimeConfig")?;
    // Device: deviceID, then pciBusID, then runtimeConfig.deviceID; each present one must be valid.
    let ids = [
        (pci(k, "deviceID")?, DeviceIdSource::DeviceId),
        (pci(k, "pciBusID")?, DeviceIdSource::PciBusId),
        (pci(&rt, "deviceID")?, DeviceIdSource::RuntimeConfig),
    ];
    let found = ids.into_iter().find_map(|(id, src)| id.map(|id| (id, src)));
    let master = k.string("master")?;
    let pf_name = k.string("pfName")?;
    if let (Some(a), Some(b)) = (master, pf_name) {
        if a != b {
            return Err(k.invalid(
                "pfName",
                &Value::from(b),
                &format!("differs from \"master\" {a:?}"),
            ));
        }
    }
    Ok(match (found, master.or(pf_name)) {
        (Some((id, src)), _) => Some((VfSelector::Vf(id), Some(src))),
        (None, Some(pf)) => Some((VfSelector::Pf(pf.to_string()), None)),
        (None, None) => None,
    })
}

/// The state directory a config names with `dataDir` (this project's key: allocation records and the
/// per-attachment records live there; default [`crate::cache::DEFAULT_DATA_DIR`]). Must be an absolute path.
pub fn data_dir(conf: &PluginConf) -> Result<Option<PathBuf>, CniError> {
    let k = keys(conf);
    match k.string("dataDir")? {
        None => Ok(None),
        Some(d) if d.starts_with('/') => Ok(Some(PathBuf::from(d))),
        Some(d) => Err(k.invalid("dataDir", &Value::from(d), "must be an absolute path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_core::cni::ErrorCode;
    use serde_json::json;

    fn conf(extra: Value) -> PluginConf {
        let mut v = json!({"cniVersion": "1.0.0", "name": "n", "type": "sriov"});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        PluginConf::from_value(v).unwrap()
    }

    fn parse(extra: Value) -> Result<SriovConf, CniError> {
        SriovConf::parse(&conf(extra))
    }

    fn vf(extra: Value) -> SriovConf {
        let mut base = json!({"deviceID": "0000:03:10.1"});
        if let (Some(o), Value::Object(e)) = (base.as_object_mut(), extra) {
            o.extend(e);
        }
        parse(base).unwrap()
    }

    /// Asserts a code-7 error whose message names the key and the value.
    fn refused(extra: Value, key: &str, value: &str) {
        let mut base = json!({"deviceID": "0000:03:10.1"});
        if let (Some(o), Value::Object(e)) = (base.as_object_mut(), extra.clone()) {
            o.extend(e);
        }
        let err = parse(base).expect_err(&format!("accepted {extra}"));
        assert_eq!(err.code, ErrorCode::InvalidNetworkConfig, "{err}");
        assert_eq!(err.code.code(), 7);
        let msg = err.to_string();
        assert!(msg.contains(&format!("\"{key}\"")), "{msg} lacks {key}");
        assert!(msg.contains(value), "{msg} lacks {value}");
    }

    #[test]
    fn minimal_and_full() {
        let s = vf(json!({}));
        assert_eq!(s.device, VfSelector::Vf("0000:03:10.1".parse().unwrap()));
        assert_eq!(s.device_id_source, Some(DeviceIdSource::DeviceId));
        assert_eq!(
            (s.vlan, s.mac, s.spoofchk, s.trust, s.link_state),
            (None, None, None, None, None)
        );
        assert_eq!((s.tx_rates(), s.ipam.is_none()), (None, true));

        let s = vf(json!({
            "vlan": 100, "vlanQoS": 5, "vlanProto": "802.1AD", "mac": "02:AA:bb:cc:dd:0e",
            "spoofchk": "off", "trust": "on", "link_state": "disable",
            "min_tx_rate": 10, "max_tx_rate": 1000, "ipam": {"type": "host-local", "x": [1]},
            "logLevel": "Debug", "logFile": "/var/log/sriov.log", "someVendorKey": {"k": 1}
        }));
        assert_eq!(
            s.vlan,
            Some(VlanConf {
                id: 100,
                qos: 5,
                proto: VlanProto::Dot1Ad
            })
        );
        assert_eq!(
            s.mac.map(|m| m.to_string()).as_deref(),
            Some("02:aa:bb:cc:dd:0e")
        );
        assert_eq!((s.spoofchk, s.trust), (Some(false), Some(true)));
        assert_eq!(s.link_state, Some(LinkState::Disable));
        assert_eq!(s.tx_rates(), Some((10, 1000)));
        assert_eq!(s.ipam.as_ref().and_then(|i| i.get("x")), Some(&json!([1])));
        assert_eq!(s.log_level, Some(LogLevel::Debug));
        assert_eq!(s.log_file.as_deref(), Some("/var/log/sriov.log"));
        // Unknown keys are kept.
        assert_eq!(s.raw.get("someVendorKey"), Some(&json!({"k": 1})));
    }

    #[test]
    fn device_id_precedence() {
        let a = "0000:03:10.1";
        let b = "0000:03:10.2";
        let c = "0000:03:10.3";
        let s =
            parse(json!({"deviceID": a, "pciBusID": b, "runtimeConfig": {"deviceID": c}})).unwrap();
        assert_eq!(s.device, VfSelector::Vf(a.parse().unwrap()));
        let s = parse(json!({"pciBusID": b, "runtimeConfig": {"deviceID": c}})).unwrap();
        assert_eq!(s.device, VfSelector::Vf(b.parse().unwrap()));
        assert_eq!(s.device_id_source, Some(DeviceIdSource::PciBusId));
        let s = parse(json!({"runtimeConfig": {"deviceID": c}, "master": "ens1"})).unwrap();
        assert_eq!(s.device, VfSelector::Vf(c.parse().unwrap()));
        assert_eq!(s.device_id_source, Some(DeviceIdSource::RuntimeConfig));
        // An empty deviceID is "not set", as in sriov-cni.
        let s = parse(json!({"deviceID": "", "pciBusID": b})).unwrap();
        assert_eq!(s.device, VfSelector::Vf(b.parse().unwrap()));
        // A malformed one is an error even when a valid one wins.
        let e = parse(json!({"deviceID": a, "pciBusID": "03:10.2"})).unwrap_err();
        assert!(e.to_string().contains("\"pciBusID\"") && e.to_string().contains("03:10.2"));
        let e = parse(json!({"runtimeConfig": {"deviceID": "x"}})).unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(
            e.to_string()
                .contains("\"runtimeConfig.deviceID\" value \"x\""),
            "{e}"
        );
    }

    #[test]
    fn pf_when_no_device_id() {
        let s = parse(json!({"master": "ens1f0"})).unwrap();
        assert_eq!(s.device, VfSelector::Pf("ens1f0".into()));
        assert_eq!(s.device_id_source, None);
        let s = parse(json!({"pfName": "ens1f1"})).unwrap();
        assert_eq!(s.device, VfSelector::Pf("ens1f1".into()));
        assert!(parse(json!({"master": "a", "pfName": "a"})).is_ok());
        let e = parse(json!({"master": "a", "pfName": "b"})).unwrap_err();
        assert!(e.to_string().contains("\"pfName\""), "{e}");
        let e = parse(json!({})).unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(e.to_string().contains("deviceID"));
        let e = parse(json!({"deviceID": 3})).unwrap_err();
        assert!(e.to_string().contains("\"deviceID\" value 3"), "{e}");
    }

    #[test]
    fn vlan_rules() {
        assert_eq!(vf(json!({"vlan": 0})).vlan, Some(VlanConf::default()));
        assert_eq!(vf(json!({"vlan": 4094})).vlan.map(|v| v.id), Some(4094));
        let s = vf(json!({"vlan": 7, "vlanProto": "802.1Q"}));
        assert_eq!(
            s.vlan.map(|v| (v.qos, v.proto)),
            Some((0, VlanProto::Dot1Q))
        );
        // QoS 0 with VLAN 0 is fine; 802.1q with VLAN 0 is fine.
        assert!(parse(
            json!({"deviceID": "0000:03:10.1", "vlan": 0, "vlanQoS": 0, "vlanProto": "802.1q"})
        )
        .is_ok());
        refused(json!({"vlan": 4095}), "vlan", "4095");
        refused(json!({"vlan": -1}), "vlan", "-1");
        refused(json!({"vlan": 1.5}), "vlan", "1.5");
        refused(json!({"vlan": "10"}), "vlan", "\"10\"");
        refused(json!({"vlan": 1, "vlanQoS": 8}), "vlanQoS", "8");
        refused(json!({"vlanQoS": 0}), "vlanQoS", "0");
        refused(json!({"vlan": 0, "vlanQoS": 3}), "vlanQoS", "3");
        refused(
            json!({"vlan": 5, "vlanProto": "802.1x"}),
            "vlanProto",
            "802.1x",
        );
        refused(json!({"vlanProto": "802.1q"}), "vlanProto", "802.1q");
        refused(
            json!({"vlan": 0, "vlanProto": "802.1ad"}),
            "vlanProto",
            "802.1ad",
        );
    }

    #[test]
    fn mac_rules() {
        let m = |s: &str| s.parse::<MacAddr>().unwrap();
        assert_eq!(
            vf(json!({"mac": "02:00:00:00:00:01"})).mac,
            Some(m("02:00:00:00:00:01"))
        );
        assert_eq!(
            vf(json!({"mac": "02-00-00-00-00-02"})).mac,
            Some(m("02:00:00:00:00:02"))
        );
        // runtimeConfig.mac wins.
        let s =
            vf(json!({"mac": "02:00:00:00:00:01", "runtimeConfig": {"mac": "02:00:00:00:00:09"}}));
        assert_eq!(s.mac, Some(m("02:00:00:00:00:09")));
        for bad in [
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:0g",
            "0200.0000.0001",
            "02:00-00:00:00:01",
        ] {
            refused(json!({"mac": bad}), "mac", bad);
        }
        refused(
            json!({"runtimeConfig": {"mac": "zz"}}),
            "runtimeConfig.mac",
            "zz",
        );
        refused(
            json!({"runtimeConfig": {"mac": 5}}),
            "runtimeConfig.mac",
            "5",
        );
    }

    #[test]
    fn flags_link_state_rates_ipam_logs() {
        refused(json!({"spoofchk": "yes"}), "spoofchk", "yes");
        refused(json!({"spoofchk": true}), "spoofchk", "true");
        refused(json!({"trust": "ON"}), "trust", "ON");
        assert_eq!(vf(json!({"spoofchk": "", "trust": null})).spoofchk, None);
        for (s, l) in [
            ("auto", LinkState::Auto),
            ("enable", LinkState::Enable),
            ("disable", LinkState::Disable),
        ] {
            assert_eq!(vf(json!({"link_state": s})).link_state, Some(l));
        }
        refused(json!({"link_state": "up"}), "link_state", "up");

        assert_eq!(vf(json!({"max_tx_rate": 100})).tx_rates(), Some((0, 100)));
        assert_eq!(vf(json!({"min_tx_rate": 100})).tx_rates(), Some((100, 0)));
        assert_eq!(
            vf(json!({"min_tx_rate": 100, "max_tx_rate": 0})).tx_rates(),
            Some((100, 0))
        );
        assert_eq!(
            vf(json!({"min_tx_rate": 100, "max_tx_rate": 100})).tx_rates(),
            Some((100, 100))
        );
        refused(
            json!({"min_tx_rate": 101, "max_tx_rate": 100}),
            "min_tx_rate",
            "101",
        );
        refused(json!({"min_tx_rate": -5}), "min_tx_rate", "-5");
        refused(
            json!({"max_tx_rate": 4294967296u64}),
            "max_tx_rate",
            "4294967296",
        );

        refused(json!({"ipam": "host-local"}), "ipam", "host-local");
        refused(json!({"logLevel": "verbose"}), "logLevel", "verbose");
        refused(json!({"logFile": 1}), "logFile", "1");
        refused(json!({"runtimeConfig": []}), "runtimeConfig", "[]");
    }

    #[test]
    fn kernel_values_round_trip() {
        for l in [LinkState::Auto, LinkState::Enable, LinkState::Disable] {
            assert_eq!(LinkState::from_kernel_value(l.kernel_value()), Some(l));
        }
        assert_eq!(LinkState::from_kernel_value(3), None);
        for p in [VlanProto::Dot1Q, VlanProto::Dot1Ad] {
            assert_eq!(VlanProto::from_ethertype(p.ethertype()), Some(p));
        }
        assert_eq!(VlanProto::Dot1Ad.ethertype(), 0x88a8);
    }
}

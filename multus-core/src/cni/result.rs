//! CNI results, held in the spec 1.1 model whatever version they were read in, and their conversion between
//! every supported version in both directions, as libcni's `convert` does. Rendering a result in a version
//! ([`CniResult::to_value`]) is the conversion; what each direction keeps and loses:
//!
//! | from | to | what happens |
//! | --- | --- | --- |
//! | 0.1.0 / 0.2.0 | 0.3.0 and later | `ip4` then `ip6` become `ips` (no `interface` index), their `routes` become the result's `routes` (`ip4`'s first), `dns` is kept. Nothing is lost. |
//! | 0.3.0 and later | 0.1.0 / 0.2.0 | `interfaces` are dropped and so are the `interface` indexes; only the first IP of each family is kept (`ip4`, `ip6`, each with its `gateway`); every route goes to the family of its `dst`, and is dropped when that family has no IP; routes keep `dst` and `gw` only; `dns` is kept. |
//! | 0.1.0 | 0.2.0, and back | the same shape: only `cniVersion` changes. |
//! | 0.3.x, 0.4.0, 1.0.0, 1.1.0 | each other | `ips`, `interfaces`, `routes` and `dns` are kept; 0.3.x / 0.4.0 carry each IP's `version` ("4" / "6"), 1.x does not; anything older than 1.1.0 drops the 1.1 fields (interface `mtu`, `socketPath`, `pciID`; route `mtu`, `advmss`, `priority`, `table`, `scope`). |
//!
//! Two deliberate differences from libcni: (1) libcni refuses to bring a result holding no IP down to 0.1.0 /
//! 0.2.0 ("cannot convert: no valid IP addresses"); here it becomes a result with neither `ip4` nor `ip6`
//! (which libcni reads back fine), so that an IP-less default network (or a pod already gone) does not fail
//! an ADD whose Multus config is 0.1.0 / 0.2.0 (Go Multus does not convert the default network's result at
//! all). (2) libcni's Go types let the 1.1 fields ride along into older versions where they happen to share
//! a struct (routes in 0.4.0 and 1.0.0, interfaces in 1.0.0); here each version carries only its own fields.
//!
//! A result without `cniVersion` is read in the shape it has: with `ip4` / `ip6` (and no `ips`) as 0.1.0 /
//! 0.2.0, else as 0.3.0 and later (libcni takes the config's version, which comes to the same for any
//! plugin that answers in its config's shape).

use super::error::CniError;
use super::version::{Version, SUPPORTED_VERSIONS};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Deserializer, Serialize};
use std::net::IpAddr;

/// A list or object that may also be `null` (read as empty), as Go's decoder takes it.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// MTU (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for a container interface; empty for a host interface.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    /// Socket path of a vhost-user style interface (spec 1.1).
    #[serde(
        rename = "socketPath",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub socket_path: String,
    /// PCI ID of the device backing the interface (spec 1.1).
    #[serde(rename = "pciID", default, skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

/// One IP configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// Address with prefix length (host bits kept), e.g. `10.1.0.5/24`.
    pub address: IpNetwork,
    /// Default gateway of that subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop; absent means the IPAM's gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Priority / metric (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (spec 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope (spec 1.1; 0 universe, 253 link, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A route to `dst` via `gw` without the 1.1 attributes.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A CNI result, held in the spec 1.1 model whatever version it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniResult {
    /// The version it was produced in (used when no other is asked for).
    pub cni_version: String,
    /// Interfaces.
    pub interfaces: Vec<Interface>,
    /// IP configurations.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS.
    pub dns: Dns,
}

#[derive(Serialize, Deserialize)]
struct WireIp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

#[derive(Serialize, Deserialize)]
struct WireResult {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    interfaces: Vec<Interface>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    ips: Vec<WireIp>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "nullable")]
    dns: Dns,
}

/// One family's IP configuration in the 0.1.0 / 0.2.0 shape (`ip4`, `ip6`).
#[derive(Serialize, Deserialize)]
struct LegacyIp {
    ip: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    routes: Vec<Route>,
}

/// A result in the 0.1.0 / 0.2.0 shape.
#[derive(Serialize, Deserialize)]
struct LegacyResult {
    #[serde(rename = "cniVersion", default)]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<LegacyIp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<LegacyIp>,
    #[serde(default, deserialize_with = "nullable")]
    dns: Dns,
}

impl CniResult {
    /// An empty result of a version.
    pub fn new(cni_version: &str) -> Self {
        CniResult {
            cni_version: cni_version.to_string(),
            interfaces: Vec::new(),
            ips: Vec::new(),
            routes: Vec::new(),
            dns: Dns::default(),
        }
    }

    /// Parses a result of any supported version (0.1.0 to 1.1.0).
    pub fn from_json(bytes: &[u8]) -> Result<Self, CniError> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("result is not JSON: {e}")))?;
        Self::from_value(&v)
    }

    /// Parses a result held as a JSON value (for example a config's `prevResult`), in the shape of its
    /// `cniVersion` (without one, in the shape it has: see the module's documentation).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, CniError> {
        let declared = v
            .get("cniVersion")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let legacy = if declared.is_empty() {
            (v.get("ip4").is_some() || v.get("ip6").is_some()) && v.get("ips").is_none()
        } else {
            Version::parse_supported(declared)?.is_legacy()
        };
        if legacy {
            return Self::from_legacy_value(v);
        }
        let wire: WireResult = serde_json::from_value(v.clone())
            .map_err(|e| CniError::decoding(format!("result cannot be decoded: {e}")))?;
        for (i, ip) in wire.ips.iter().enumerate() {
            if let Some(idx) = ip.interface {
                if idx >= wire.interfaces.len() {
                    return Err(CniError::decoding(format!(
                        "result ips[{i}].interface is {idx} but there are {} interfaces",
                        wire.interfaces.len()
                    )));
                }
            }
        }
        Ok(CniResult {
            cni_version: wire.cni_version,
            interfaces: wire.interfaces,
            ips: wire
                .ips
                .into_iter()
                .map(|ip| IpConfig {
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect(),
            routes: wire.routes,
            dns: wire.dns,
        })
    }

    /// A result in the 0.1.0 / 0.2.0 shape: `ip4` then `ip6` as IPs without an interface, their routes in
    /// that order.
    fn from_legacy_value(v: &serde_json::Value) -> Result<Self, CniError> {
        let wire: LegacyResult = serde_json::from_value(v.clone())
            .map_err(|e| CniError::decoding(format!("result cannot be decoded: {e}")))?;
        let mut out = CniResult::new(&wire.cni_version);
        for ip in [wire.ip4, wire.ip6].into_iter().flatten() {
            out.ips.push(IpConfig {
                interface: None,
                address: ip.ip,
                gateway: ip.gateway,
            });
            out.routes.extend(ip.routes);
        }
        out.dns = wire.dns;
        Ok(out)
    }

    /// The 0.1.0 / 0.2.0 shape, as libcni's `convertTo02x`: the first IP of each family, each route under
    /// the family of its `dst` (dropped when that family has no IP) with `dst` and `gw` only, no interfaces.
    fn to_legacy_value(&self, version: &str) -> Result<serde_json::Value, CniError> {
        let first = |v4: bool| {
            self.ips
                .iter()
                .find(|ip| ip.address.is_ipv4() == v4)
                .map(|ip| LegacyIp {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: Vec::new(),
                })
        };
        let (mut ip4, mut ip6) = (first(true), first(false));
        for r in &self.routes {
            let family = if r.dst.is_ipv4() { &mut ip4 } else { &mut ip6 };
            if let Some(f) = family {
                f.routes.push(Route::new(r.dst, r.gw));
            }
        }
        let wire = LegacyResult {
            cni_version: version.to_string(),
            ip4,
            ip6,
            dns: self.dns.clone(),
        };
        serde_json::to_value(wire).map_err(|e| CniError::decoding(e.to_string()))
    }

    /// Renders the result in the shape of `version` (one of [`SUPPORTED_VERSIONS`]), converting it as the
    /// module's documentation says: 0.1.0 / 0.2.0 the `ip4` / `ip6` shape, 0.3.x / 0.4.0 add `version` to
    /// each IP and drop the 1.1 fields, 1.0.0 drops the 1.1 fields.
    pub fn to_value(&self, version: &str) -> Result<serde_json::Value, CniError> {
        let v = Version::parse_supported(version)?;
        if v.is_legacy() {
            return self.to_legacy_value(version);
        }
        let v11 = v >= Version::V1_1_0;
        let interfaces = self
            .interfaces
            .iter()
            .cloned()
            .map(|mut i| {
                if !v11 {
                    i.mtu = None;
                    i.socket_path.clear();
                    i.pci_id.clear();
                }
                i
            })
            .collect();
        let ips = self
            .ips
            .iter()
            .map(|ip| WireIp {
                version: (!v.is_1x())
                    .then(|| if ip.address.is_ipv4() { "4" } else { "6" }.to_string()),
                interface: ip.interface,
                address: ip.address,
                gateway: ip.gateway,
            })
            .collect();
        let routes = self
            .routes
            .iter()
            .map(|r| {
                if v11 {
                    r.clone()
                } else {
                    Route::new(r.dst, r.gw)
                }
            })
            .collect();
        let wire = WireResult {
            cni_version: version.to_string(),
            interfaces,
            ips,
            routes,
            dns: self.dns.clone(),
        };
        serde_json::to_value(wire).map_err(|e| CniError::decoding(e.to_string()))
    }

    /// Converts to another supported version in place (what [`CniResult::to_value`] would render).
    pub fn convert(&self, version: &str) -> Result<CniResult, CniError> {
        let mut r = CniResult::from_value(&self.to_value(version)?)?;
        r.cni_version = version.to_string();
        Ok(r)
    }

    /// The first interface inside a sandbox with this name, with its index.
    pub fn sandbox_interface(&self, name: &str) -> Option<(usize, &Interface)> {
        self.interfaces
            .iter()
            .enumerate()
            .find(|(_, i)| i.name == name && !i.sandbox.is_empty())
    }

    /// The IPs that belong to interface index `idx` (or all IPs when none names an interface).
    pub fn ips_of(&self, idx: usize) -> Vec<&IpConfig> {
        let named: Vec<_> = self
            .ips
            .iter()
            .filter(|ip| ip.interface == Some(idx))
            .collect();
        if named.is_empty() && self.ips.iter().all(|ip| ip.interface.is_none()) {
            self.ips.iter().collect()
        } else {
            named
        }
    }
}

/// True when `v` is a version this implementation renders.
pub fn is_supported(v: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> serde_json::Value {
        json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "mtu": 1400, "sandbox": "/var/run/netns/x", "pciID": "0000:00:01.0"}],
            "ips": [{"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                    {"interface": 0, "address": "fd00::5/64"}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1300, "advmss": 1200, "priority": 10, "table": 100, "scope": 0}],
            "dns": {"nameservers": ["10.1.0.1"]}
        })
    }

    #[test]
    fn renders_old_shapes() {
        let r = CniResult::from_value(&sample()).unwrap();
        let old = r.to_value("0.3.1").unwrap();
        assert_eq!(old["cniVersion"], "0.3.1");
        assert_eq!(old["ips"][0]["version"], "4");
        assert_eq!(old["ips"][1]["version"], "6");
        assert!(old["interfaces"][0].get("mtu").is_none());
        assert!(old["interfaces"][0].get("pciID").is_none());
        assert_eq!(
            old["routes"][0],
            json!({"dst": "0.0.0.0/0", "gw": "10.1.0.1"})
        );
        let v100 = r.to_value("1.0.0").unwrap();
        assert!(v100["ips"][0].get("version").is_none());
        assert!(v100["routes"][0].get("table").is_none());
        let v110 = r.to_value("1.1.0").unwrap();
        assert_eq!(v110["routes"][0]["table"], 100);
        assert_eq!(v110["interfaces"][0]["mtu"], 1400);
        assert_eq!(v110, sample());
    }

    #[test]
    fn reads_old_shapes() {
        let old = json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/8"}], "dns": {}});
        let r = CniResult::from_value(&old).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/8");
        assert_eq!(
            r.to_value("1.0.0").unwrap()["ips"][0],
            json!({"address": "10.0.0.2/8"})
        );
    }

    #[test]
    fn rejects_bad_results() {
        assert!(CniResult::from_json(b"nope").is_err());
        assert!(CniResult::from_value(&json!({"cniVersion": "9.9.9"})).is_err());
        assert!(CniResult::from_value(&json!({"ips": [{"address": "10.0.0.300/8"}]})).is_err());
        assert!(CniResult::from_value(
            &json!({"ips": [{"address": "10.0.0.3/8", "interface": 2}]})
        )
        .is_err());
        assert!(CniResult::new("1.0.0").to_value("0.5.0").is_err());
        assert!(
            CniResult::from_value(&json!({"cniVersion": "0.2.0", "ip4": {"ip": "nope"}})).is_err()
        );
        assert!(CniResult::from_value(
            &json!({"cniVersion": "0.2.0", "ip4": {"gateway": "10.0.0.1"}})
        )
        .is_err());
    }

    /// What Debian's reference host-local 1.1.1 prints for a config without `cniVersion`.
    const REFERENCE_0_1_0: &str = r#"{
    "cniVersion": "0.1.0",
    "ip4": {
        "ip": "10.9.0.2/24",
        "gateway": "10.9.0.1",
        "routes": [
            {
                "dst": "0.0.0.0/0"
            }
        ]
    },
    "dns": {}
}"#;

    /// A result with one IP per family, no interfaces and plain routes: every version can hold it whole.
    fn portable() -> CniResult {
        CniResult::from_value(&json!({
            "cniVersion": "0.2.0",
            "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
                    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "192.0.2.0/24"}]},
            "ip6": {"ip": "fd00::5/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
            "dns": {"nameservers": ["10.1.0.1"], "domain": "example", "search": ["a"], "options": ["ndots:2"]}
        }))
        .unwrap()
    }

    /// The model without its version, to compare conversions.
    fn body(r: &CniResult) -> CniResult {
        CniResult {
            cni_version: String::new(),
            ..r.clone()
        }
    }

    #[test]
    fn reads_and_writes_the_reference_legacy_output() {
        let r = CniResult::from_json(REFERENCE_0_1_0.as_bytes()).unwrap();
        assert_eq!(r.cni_version, "0.1.0");
        assert_eq!(r.ips.len(), 1);
        assert_eq!(r.ips[0].address.to_string(), "10.9.0.2/24");
        assert_eq!(r.ips[0].interface, None);
        assert_eq!(r.routes, [Route::new("0.0.0.0/0".parse().unwrap(), None)]);
        let again = r.to_value("0.1.0").unwrap();
        assert_eq!(
            again,
            serde_json::from_str::<serde_json::Value>(REFERENCE_0_1_0).unwrap()
        );
        // Without its cniVersion it is still read by its shape.
        let mut bare = again.clone();
        bare.as_object_mut().unwrap().remove("cniVersion");
        assert_eq!(body(&CniResult::from_value(&bare).unwrap()), body(&r));
        // Up, as libcni's convertFrom02x: ips with a version, routes of ip4 then ip6, no interfaces.
        assert_eq!(
            r.to_value("0.4.0").unwrap(),
            json!({"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.9.0.2/24", "gateway": "10.9.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {}})
        );
        assert_eq!(
            r.to_value("1.1.0").unwrap(),
            json!({"cniVersion": "1.1.0", "ips": [{"address": "10.9.0.2/24", "gateway": "10.9.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}], "dns": {}})
        );
    }

    #[test]
    fn every_version_to_every_version_is_lossless_for_what_all_can_hold() {
        let start = portable();
        for from in SUPPORTED_VERSIONS {
            let a = start.convert(from).unwrap();
            assert_eq!(a.cni_version, *from);
            assert_eq!(body(&a), body(&start), "to {from}");
            for to in SUPPORTED_VERSIONS {
                let b = a.convert(to).unwrap();
                assert_eq!(b.cni_version, *to);
                assert_eq!(body(&b), body(&start), "{from} -> {to}");
                let back = b.convert(from).unwrap();
                assert_eq!(body(&back), body(&start), "{from} -> {to} -> {from}");
                // And what is written is what is read.
                let v = b.to_value(to).unwrap();
                assert_eq!(v["cniVersion"], *to);
                assert_eq!(CniResult::from_value(&v).unwrap(), b, "{from} -> {to}");
            }
        }
        // The legacy wire shape exactly.
        assert_eq!(
            start.to_value("0.2.0").unwrap(),
            json!({"cniVersion": "0.2.0",
                   "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
                           "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "192.0.2.0/24"}]},
                   "ip6": {"ip": "fd00::5/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
                   "dns": {"nameservers": ["10.1.0.1"], "domain": "example", "search": ["a"], "options": ["ndots:2"]}})
        );
    }

    #[test]
    fn going_down_to_0_2_0_loses_what_libcni_loses() {
        let rich = CniResult::from_value(&json!({
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "br0", "mac": "aa:aa:aa:aa:aa:aa"},
                           {"name": "eth0", "mac": "aa:aa:aa:aa:aa:ab", "sandbox": "/x", "mtu": 1400}],
            "ips": [{"interface": 1, "address": "fd00::5/64"},
                    {"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                    {"interface": 1, "address": "10.2.0.5/24", "gateway": "10.2.0.1"},
                    {"interface": 1, "address": "fd01::5/64", "gateway": "fd01::1"}],
            "routes": [{"dst": "10.9.0.0/16", "gw": "10.2.0.1", "mtu": 1300, "table": 7},
                       {"dst": "fd09::/32"}],
            "dns": {"nameservers": ["10.1.0.1"]}
        }))
        .unwrap();
        for v in ["0.1.0", "0.2.0"] {
            // The first IP of each family (order kept within it), routes by the family of their dst with
            // dst and gw only, no interfaces, dns kept.
            assert_eq!(
                rich.to_value(v).unwrap(),
                json!({"cniVersion": v,
                       "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "10.9.0.0/16", "gw": "10.2.0.1"}]},
                       "ip6": {"ip": "fd00::5/64", "routes": [{"dst": "fd09::/32"}]},
                       "dns": {"nameservers": ["10.1.0.1"]}})
            );
            let down = rich.convert(v).unwrap();
            assert!(down.interfaces.is_empty());
            assert_eq!(down.ips.len(), 2);
            assert!(down.ips.iter().all(|ip| ip.interface.is_none()));
            // What is lost stays lost on the way back up; the rest comes back as it was.
            let up = down.convert("1.1.0").unwrap();
            assert_eq!(
                up.to_value("1.1.0").unwrap(),
                json!({"cniVersion": "1.1.0",
                       "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}, {"address": "fd00::5/64"}],
                       "routes": [{"dst": "10.9.0.0/16", "gw": "10.2.0.1"}, {"dst": "fd09::/32"}],
                       "dns": {"nameservers": ["10.1.0.1"]}})
            );
        }
        // A route whose family has no IP has nowhere to go.
        let v4only = CniResult::from_value(&json!({"cniVersion": "1.0.0",
            "ips": [{"address": "10.1.0.5/24"}], "routes": [{"dst": "::/0"}, {"dst": "0.0.0.0/0"}]}))
        .unwrap();
        assert_eq!(
            v4only.to_value("0.2.0").unwrap(),
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/24", "routes": [{"dst": "0.0.0.0/0"}]}, "dns": {}})
        );
        // Between 0.3.0 and 1.1.0 only the 1.1 fields are lost; interfaces and every IP stay.
        for v in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            let down = rich.convert(v).unwrap();
            assert_eq!(down.interfaces.len(), 2);
            assert_eq!(down.interfaces[1].mtu, None);
            assert_eq!(down.ips, rich.ips);
            assert_eq!(
                down.routes[0],
                Route::new(rich.routes[0].dst, rich.routes[0].gw)
            );
            assert_eq!(down.convert("1.1.0").unwrap().ips, rich.ips);
        }
    }

    #[test]
    fn a_result_without_ips_goes_down_empty() {
        // libcni refuses this conversion; here it is an empty 0.x result (see the module's documentation).
        let mut empty = CniResult::new("1.0.0");
        empty.interfaces.push(Interface {
            name: "eth0".into(),
            ..Default::default()
        });
        let v = empty.to_value("0.2.0").unwrap();
        assert_eq!(v, json!({"cniVersion": "0.2.0", "dns": {}}));
        let back = CniResult::from_value(&v).unwrap();
        assert_eq!(back, CniResult::new("0.2.0"));
        assert_eq!(
            back.to_value("1.0.0").unwrap(),
            json!({"cniVersion": "1.0.0", "dns": {}})
        );
    }

    #[test]
    fn shapes_are_read_by_version_then_by_keys() {
        // A declared 0.x version reads ip4/ip6 and nothing else (as libcni's 0.2.0 type does).
        let r = CniResult::from_value(
            &json!({"cniVersion": "0.2.0", "ips": [{"address": "10.0.0.2/8"}]}),
        )
        .unwrap();
        assert!(r.ips.is_empty());
        let r = CniResult::from_value(&json!({"cniVersion": "1.0.0", "ip4": {"ip": "10.0.0.2/8"}}))
            .unwrap();
        assert!(r.ips.is_empty());
        // Without a version, the keys decide.
        let r = CniResult::from_value(&json!({"ip6": {"ip": "fd00::2/64", "gateway": "fd00::1"}}))
            .unwrap();
        assert_eq!(r.ips[0].gateway, Some("fd00::1".parse().unwrap()));
        let r = CniResult::from_value(&json!({"ips": [{"address": "10.0.0.2/8"}]})).unwrap();
        assert_eq!(r.ips.len(), 1);
        // Go writes no nulls, but takes them.
        let r = CniResult::from_value(&json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/8", "routes": null}, "ip6": null, "dns": null})).unwrap();
        assert_eq!(r.ips.len(), 1);
        let r = CniResult::from_value(&json!({"cniVersion": "1.0.0", "interfaces": null, "ips": null, "routes": null, "dns": null})).unwrap();
        assert_eq!(r, CniResult::new("1.0.0"));
    }
}

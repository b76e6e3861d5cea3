//! CNI results (spec 1.1 model) and their conversion to and from the 1.0 and 0.4.0 / 0.3.x shapes.

use super::error::CniError;
use super::version::{Version, SUPPORTED_VERSIONS};
use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<WireIp>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(default)]
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

    /// Parses a result of any supported version (0.3.0 to 1.1.0).
    pub fn from_json(bytes: &[u8]) -> Result<Self, CniError> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("result is not JSON: {e}")))?;
        Self::from_value(&v)
    }

    /// Parses a result held as a JSON value (for example a config's `prevResult`).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, CniError> {
        let wire: WireResult = serde_json::from_value(v.clone())
            .map_err(|e| CniError::decoding(format!("result cannot be decoded: {e}")))?;
        if !wire.cni_version.is_empty() {
            Version::parse_supported(&wire.cni_version)?;
        }
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

    /// Renders the result in the shape of `version` (one of [`SUPPORTED_VERSIONS`]):
    /// 0.3.x / 0.4.0 add `version` to each IP and drop the 1.1 fields, 1.0.0 drops the 1.1 fields.
    pub fn to_value(&self, version: &str) -> Result<serde_json::Value, CniError> {
        let v = Version::parse_supported(version)?;
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
        assert!(CniResult::new("1.0.0").to_value("0.2.0").is_err());
    }
}

//! `k8s.v1.cni.cncf.io/network-status`: one entry per sandbox interface of every attachment, built from the
//! CNI results, in the shape upstream Multus and the network-attachment-definition client write.

use multus_core::cni::{CniResult, Dns};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One entry of the network-status annotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkStatus {
    /// The network: `namespace/nad` for a NAD, else the network's name.
    pub name: String,
    /// The interface in the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Its addresses, without prefix length (as upstream writes them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    /// Its MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU, when the result gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Whether this is the pod's cluster-wide default network (multi-net spec 4.1.2.1.3; also when another
    /// network took the default route with `default-route`, as Go Multus keeps it).
    #[serde(default)]
    pub default: bool,
    /// DNS settings from the result.
    #[serde(default)]
    pub dns: Dns,
    /// Gateways of the default routes the result gave through this network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<String>,
    /// Device information (SR-IOV PCI address, vhost-user socket, ...).
    #[serde(
        rename = "device-info",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_info: Option<Value>,
}

/// The status entries of one attachment: one per sandbox interface of its result (or one entry for the
/// requested interface with every IP when the result names no sandbox interface; none for an empty result).
pub fn from_result(
    name: &str,
    ifname: &str,
    result: &CniResult,
    is_default: bool,
    device_info: Option<&Value>,
) -> Vec<NetworkStatus> {
    let gateway: Vec<String> = result
        .routes
        .iter()
        .filter(|r| r.dst.prefix() == 0)
        .filter_map(|r| r.gw.map(|g| g.to_string()))
        .collect();
    let mut out = Vec::new();
    for (idx, intf) in result.interfaces.iter().enumerate() {
        if intf.sandbox.is_empty() {
            continue;
        }
        out.push(NetworkStatus {
            name: name.to_string(),
            interface: Some(intf.name.clone()),
            ips: result
                .ips_of(idx)
                .iter()
                .map(|ip| ip.address.ip().to_string())
                .collect(),
            mac: Some(intf.mac.clone()).filter(|m| !m.is_empty()),
            mtu: intf.mtu,
            default: is_default,
            dns: result.dns.clone(),
            gateway: gateway.clone(),
            device_info: device_info.cloned(),
        });
    }
    // A result with neither interfaces nor addresses (a chain that only tunes, an auxiliary chain) is no
    // network the pod sees: no entry, as Go Multus.
    if out.is_empty() && !(result.interfaces.is_empty() && result.ips.is_empty()) {
        out.push(NetworkStatus {
            name: name.to_string(),
            interface: Some(ifname.to_string()),
            ips: result
                .ips
                .iter()
                .map(|ip| ip.address.ip().to_string())
                .collect(),
            mac: None,
            mtu: None,
            default: is_default,
            dns: result.dns.clone(),
            gateway,
            device_info: device_info.cloned(),
        });
    }
    out
}

/// The annotation's value for a list of entries.
pub fn render(statuses: &[NetworkStatus]) -> String {
    serde_json::to_string_pretty(statuses).unwrap_or_else(|_| "[]".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_sandbox_interface() {
        let r = CniResult::from_json(
            br#"{"cniVersion":"1.1.0",
                "interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:aa"},{"name":"veth1"},
                              {"name":"eth0","mac":"0a:58:0a:f4:00:05","mtu":1450,"sandbox":"/var/run/netns/x"}],
                "ips":[{"interface":2,"address":"10.244.0.5/24","gateway":"10.244.0.1"}],
                "routes":[{"dst":"0.0.0.0/0","gw":"10.244.0.1"},{"dst":"10.0.0.0/8"}],
                "dns":{"nameservers":["10.96.0.10"]}}"#,
        )
        .unwrap();
        let s = from_result("cbr0", "eth0", &r, true, None);
        assert_eq!(s.len(), 1);
        let v = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name":"cbr0","interface":"eth0","ips":["10.244.0.5"],"mac":"0a:58:0a:f4:00:05",
                               "mtu":1450,"default":true,"dns":{"nameservers":["10.96.0.10"]},"gateway":["10.244.0.1"]})
        );
    }

    #[test]
    fn result_without_interfaces() {
        let r = CniResult::from_json(
            br#"{"cniVersion":"0.3.1","ips":[{"version":"4","address":"192.168.1.200/24"}]}"#,
        )
        .unwrap();
        let info = serde_json::json!({"type":"pci","pci":{"pci-address":"0000:03:00.1"}});
        let s = from_result("default/macvlan-conf", "net1", &r, false, Some(&info));
        assert_eq!(s[0].interface.as_deref(), Some("net1"));
        assert_eq!(s[0].ips, ["192.168.1.200"]);
        assert!(!s[0].default);
        let v = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(v["device-info"]["type"], "pci");
        assert_eq!(v["dns"], serde_json::json!({}));
        let back: Vec<NetworkStatus> = serde_json::from_str(&render(&s)).unwrap();
        assert_eq!(back, s);
    }
}

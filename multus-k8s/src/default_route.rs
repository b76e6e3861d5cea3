//! The `default-route` request of the networks annotation, planned from the attachments' results (pure).
//!
//! As Go Multus does (`setDefaultGW` / `deleteDefaultGW`): for each IP family with a requested gateway, the
//! default routes of that family are removed from every interface of the pod, and one default route via the
//! gateway is added on the interface of the attachment that asked for it. The results are rewritten to
//! match, so that the cache, network-status (`gateway`) and the result returned to the runtime tell the
//! truth. Unlike Go Multus, a gateway that no address of the attachment can reach is refused up front with
//! an error naming it, instead of a bare `ENETUNREACH` from the kernel.

use ipnetwork::IpNetwork;
use multus_core::cni::{CniError, CniResult, Route};
use multus_core::pipeline::Attachment;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One family's change, to carry out in the pod's netns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayChange {
    /// The family: every default route of it (main table, any interface) is deleted first.
    pub v6: bool,
    /// The new default route's next hop.
    pub gateway: IpAddr,
    /// The interface (in the pod) that gets the new default route.
    pub ifname: String,
    /// The attachment (index) that asked for it.
    pub attachment: usize,
}

/// The default destination of a family (`0.0.0.0/0` or `::/0`).
pub fn default_dst(v6: bool) -> IpNetwork {
    // A zero prefix is valid for both families, so the fallbacks are never taken.
    if v6 {
        ipnetwork::Ipv6Network::new(Ipv6Addr::UNSPECIFIED, 0)
            .map(IpNetwork::V6)
            .unwrap_or_else(|_| IpNetwork::from(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
    } else {
        ipnetwork::Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0)
            .map(IpNetwork::V4)
            .unwrap_or_else(|_| IpNetwork::from(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
    }
}

/// Plans `request` (the plan's `default_route`: the attachment index and its gateways, at most one per
/// family) against the successful ADD's `results` (one per attachment, same order): the changes to make in
/// the netns, and the results rewritten (the family's default routes dropped from every result, one via the
/// gateway added to the requesting attachment's). A gateway outside every subnet of that attachment's
/// result addresses is an error naming the gateway and the attachment.
pub fn plan(
    request: &(usize, Vec<IpAddr>),
    attachments: &[Attachment],
    results: &[CniResult],
) -> Result<(Vec<GatewayChange>, Vec<CniResult>), CniError> {
    let (idx, gateways) = request;
    let (att, res) = attachments
        .get(*idx)
        .zip(results.get(*idx))
        .ok_or_else(|| {
            CniError::invalid_config(format!(
                "\"default-route\" is set on network {idx}, which has no result"
            ))
        })?;
    let mut changes = Vec::new();
    for gw in gateways {
        let v6 = gw.is_ipv6();
        if changes.iter().any(|c: &GatewayChange| c.v6 == v6) {
            return Err(CniError::invalid_config(format!(
                "{} ({}): \"default-route\" names two gateways of one address family",
                att.name, att.ifname
            )));
        }
        if !res.ips.iter().any(|ip| ip.address.contains(*gw)) {
            let addrs: Vec<String> = res.ips.iter().map(|ip| ip.address.to_string()).collect();
            return Err(CniError::invalid_config(format!(
                "\"default-route\" gateway {gw} of {} ({}) is in no subnet of its addresses [{}]",
                att.name,
                att.ifname,
                addrs.join(", ")
            )));
        }
        changes.push(GatewayChange {
            v6,
            gateway: *gw,
            ifname: att.ifname.clone(),
            attachment: *idx,
        });
    }
    let mut out = results.to_vec();
    for r in &mut out {
        r.routes.retain(|rt| {
            !(rt.dst.prefix() == 0 && changes.iter().any(|c| c.v6 == rt.dst.is_ipv6()))
        });
    }
    if let Some(r) = out.get_mut(*idx) {
        for c in &changes {
            r.routes
                .push(Route::new(default_dst(c.v6), Some(c.gateway)));
        }
    }
    Ok((changes, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_core::cni::NetworkConfig;

    fn att(name: &str, ifname: &str, default: bool) -> Attachment {
        let net = NetworkConfig::from_slice(
            format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge"}}"#).as_bytes(),
        )
        .unwrap();
        let mut a = Attachment::new(net, ifname);
        a.is_default = default;
        a
    }

    fn res(json: &str) -> CniResult {
        CniResult::from_json(json.as_bytes()).unwrap()
    }

    fn fixture() -> (Vec<Attachment>, Vec<CniResult>) {
        (
            vec![
                att("podnet", "eth0", true),
                att("default/macvlan-conf", "net1", false),
            ],
            vec![
                res(
                    r#"{"cniVersion":"1.0.0","ips":[{"address":"10.7.0.5/24","gateway":"10.7.0.1"},
                    {"address":"fd00::5/64"}],
                    "routes":[{"dst":"0.0.0.0/0","gw":"10.7.0.1"},{"dst":"::/0","gw":"fd00::1"},
                              {"dst":"10.96.0.0/12"}]}"#,
                ),
                res(
                    r#"{"cniVersion":"1.0.0","ips":[{"address":"192.168.1.200/24"}],
                    "routes":[{"dst":"0.0.0.0/0","gw":"192.168.1.1"}]}"#,
                ),
            ],
        )
    }

    #[test]
    fn v4_gateway_moves_the_v4_default_only() {
        let (atts, results) = fixture();
        let gw: IpAddr = "192.168.1.254".parse().unwrap();
        let (changes, out) = plan(&(1, vec![gw]), &atts, &results).unwrap();
        assert_eq!(
            changes,
            [GatewayChange {
                v6: false,
                gateway: gw,
                ifname: "net1".into(),
                attachment: 1
            }]
        );
        let dsts = |r: &CniResult| -> Vec<String> {
            r.routes
                .iter()
                .map(|r| format!("{}>{:?}", r.dst, r.gw))
                .collect()
        };
        // eth0 keeps its v6 default and its other routes, loses the v4 default.
        assert_eq!(dsts(&out[0]), ["::/0>Some(fd00::1)", "10.96.0.0/12>None"]);
        // net1's own default route is replaced by the requested one.
        assert_eq!(dsts(&out[1]), ["0.0.0.0/0>Some(192.168.1.254)"]);
    }

    #[test]
    fn both_families_on_the_default_network() {
        let (atts, results) = fixture();
        let gws: Vec<IpAddr> = vec!["10.7.0.9".parse().unwrap(), "fd00::9".parse().unwrap()];
        let (changes, out) = plan(&(0, gws), &atts, &results).unwrap();
        assert_eq!(changes.len(), 2);
        assert!(changes.iter().all(|c| c.ifname == "eth0"));
        assert!(out[1].routes.is_empty());
        assert_eq!(out[0].routes.len(), 3);
    }

    #[test]
    fn gateway_outside_the_subnets_is_an_error_naming_it() {
        let (atts, results) = fixture();
        let e = plan(&(1, vec!["10.7.0.1".parse().unwrap()]), &atts, &results).unwrap_err();
        assert!(
            e.msg.contains("10.7.0.1")
                && e.msg.contains("default/macvlan-conf")
                && e.msg.contains("net1"),
            "{}",
            e.msg
        );
        // A v6 gateway on an attachment without v6 addresses, too.
        assert!(plan(&(1, vec!["fd00::1".parse().unwrap()]), &atts, &results).is_err());
        // Two of one family.
        let two = vec![
            "192.168.1.2".parse().unwrap(),
            "192.168.1.3".parse().unwrap(),
        ];
        assert!(plan(&(1, two), &atts, &results).is_err());
        // No such attachment.
        assert!(plan(&(5, vec!["192.168.1.2".parse().unwrap()]), &atts, &results).is_err());
    }
}

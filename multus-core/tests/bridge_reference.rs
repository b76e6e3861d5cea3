//! Differential test: the same configs through the reference plugin (`/usr/lib/cni/bridge`, Debian's
//! containernetworking-plugins 1.1.1) and through the built-in bridge, each with its own netns, bridge and
//! host-local dataDir. The results (apart from MACs, bridge and veth names and netns paths) and the kernel
//! state (the container interface, its addresses and routes; the bridge, its addresses; the host veth on
//! the bridge and its hairpin flag) must match, and both DELs must leave the same state. Where the
//! reference fails, both must fail; the built-in must then leave nothing behind, where 1.1.1 leaves the
//! container interface and its port on the bridge (it only releases the IP) until DEL.

mod sublink_util;

use multus_core::cni::{CniError, CniResult, Command};
use serde_json::{json, Value};
use std::time::Instant;

use sublink_util::*;

/// The bridge port attributes of the host veth that must be equal.
const PORT_KEYS: &[&str] = &[
    "state",
    "priority",
    "cost",
    "hairpin",
    "guard",
    "root_block",
    "fastleave",
    "learning",
    "flood",
    "mcast_flood",
    "proxy_arp",
    "isolated",
];

struct Side {
    ns: Netns,
    bridge: HostLink,
    data: tempfile::TempDir,
}

impl Side {
    fn new(tag: &str, s: &str) -> Self {
        Side {
            ns: Netns::named(&format!("brref-{tag}-{s}")),
            bridge: HostLink::bridge_name(&format!("bz{tag}{s}")),
            data: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, case: &Value) -> Value {
        let mut c = case.clone();
        c["bridge"] = json!(self.bridge.0);
        if c.get("ipam").is_some() {
            c["ipam"]["dataDir"] = json!(self.data.path());
        }
        c
    }

    /// The kernel state of the attachment: container interface, addresses, routes, sysctls; the bridge and
    /// its addresses; the host veth `veth` (from the result) and its port attributes; the reservations.
    fn state(&self, net: &str, veth: Option<&str>) -> Value {
        let cont = self.ns.link("eth0");
        let br = host_link(&self.bridge.0);
        let port = veth.and_then(host_link);
        json!({
            "link": cont.as_ref().map(|l| pick(l, LINK_KEYS)),
            "addrs": cont.as_ref().map(|_| global_addrs(&self.ns.ip(&["addr", "show", "dev", "eth0"]))),
            "routes": cont.as_ref().map(|_| json!({
                "v4": self.ns.ip(&["-4", "route", "show", "table", "all"]),
                "v6": self.ns.ip(&["-6", "route", "show", "table", "main"]),
            })),
            "sysctls": cont.as_ref().map(|_| json!([
                self.ns.sysctl("net/ipv6/conf/eth0/accept_dad"),
                self.ns.sysctl("net/ipv4/conf/eth0/arp_notify"),
                self.ns.sysctl("net/ipv6/conf/eth0/disable_ipv6"),
                self.ns.sysctl("net/ipv6/conf/lo/disable_ipv6"),
            ])),
            "bridge": br.as_ref().map(|b| json!({
                "link": pick(b, &["flags", "mtu", "operstate", "promiscuity", "txqlen", "group"]),
                "kind": b["linkinfo"]["info_kind"],
                "addrs": global_addrs(&ip_json(&["addr", "show", "dev", &self.bridge.0])),
            })),
            "port": port.as_ref().map(|p| json!({
                "link": pick(p, &["flags", "mtu", "operstate", "txqlen", "promiscuity", "linkmode"]),
                "master_is_bridge": p["master"] == json!(self.bridge.0),
                "kind": p["linkinfo"]["info_kind"],
                "port": pick(&p["linkinfo"]["info_slave_data"], PORT_KEYS),
            })),
            "ports_on_bridge": self.ports(),
            "reserved": reserved(self.data.path(), net),
        })
    }

    /// The names of the links that are ports of the bridge.
    fn ports(&self) -> usize {
        if host_link(&self.bridge.0).is_none() {
            return 0;
        }
        ip_json(&["link", "show", "master", &self.bridge.0])
            .as_array()
            .map_or(0, Vec::len)
    }
}

fn normalized(r: &CniResult, version: &str) -> (Value, String) {
    let mut v = r.to_value(version).unwrap();
    let ifs = v["interfaces"].as_array_mut().expect("interfaces");
    assert_eq!(ifs.len(), 3, "{ifs:?}");
    let veth = ifs[1]["name"].as_str().unwrap().to_string();
    assert!(
        veth.starts_with("veth") && veth.len() == 12,
        "host veth {veth}"
    );
    for i in ifs.iter_mut() {
        assert!(i["mac"].as_str().is_some_and(|m| m.len() == 17), "{i}");
        i["mac"] = json!("MAC");
    }
    ifs[0]["name"] = json!("BRIDGE");
    ifs[1]["name"] = json!("VETH");
    assert!(ifs[2]["sandbox"]
        .as_str()
        .is_some_and(|s| s.starts_with("/var/run/netns/")));
    ifs[2]["sandbox"] = json!("NS");
    (v, veth)
}

/// What to do before ADD on each side.
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    /// The bridge exists with this address.
    BridgeAddr(&'static str),
    /// host-local's only address is reserved by another container.
    Reserved(&'static str),
}

fn prepare(side: &Side, case: &Value, before: Before) {
    match before {
        Before::Nothing => {}
        Before::BridgeAddr(a) => {
            sh(&["ip", "link", "add", &side.bridge.0, "type", "bridge"]);
            sh(&["ip", "addr", "add", a, "dev", &side.bridge.0]);
        }
        Before::Reserved(ip) => {
            let dir = side.data.path().join(case["name"].as_str().unwrap());
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(ip), "other-container\r\neth0").unwrap();
        }
    }
}

async fn verb(
    reference: bool,
    command: Command,
    side: &Side,
    c: &multus_core::cni::PluginConf,
) -> Result<Option<CniResult>, CniError> {
    let d = delegate("bridge", reference);
    let path = side.ns.path();
    run(&d, command, "c-ref", Some(&path), "eth0", "", c).await
}

/// Runs `case` through both plugins (after `before`) and compares. Returns the ADD errors when both
/// failed, (ours, reference).
async fn differential(tag: &str, case: Value, before: Before) -> Option<(CniError, CniError)> {
    require_root();
    let sides = [Side::new(tag, "o"), Side::new(tag, "r")];
    let version = case["cniVersion"].as_str().unwrap().to_string();
    let net = case["name"].as_str().unwrap();
    let mut results = Vec::new();
    let mut states = Vec::new();
    let mut errors = Vec::new();
    for (side, reference) in sides.iter().zip([false, true]) {
        prepare(side, &case, before);
        let c = conf(side.config(&case));
        let started = Instant::now();
        let added = verb(reference, Command::Add, side, &c).await;
        let add_time = started.elapsed();
        let veth = match &added {
            Ok(Some(r)) => {
                let (v, veth) = normalized(r, &version);
                results.push(v);
                Some(veth)
            }
            Ok(None) => unreachable!(),
            Err(e) => {
                errors.push(e.clone());
                None
            }
        };
        states.push(side.state(net, veth.as_deref()));
        match &added {
            Ok(Some(r)) if version != "0.3.1" => {
                let checked = verb(reference, Command::Check, side, &with_prev(&c, r)).await;
                match checked {
                    // 1.1.1's CHECK fails on its own ADDs: without `ipam` ("no plugin name provided") and
                    // on a route without `gw` (it looks for it without the gateway ConfigureIface used).
                    Err(e) if reference => println!("{tag}: the reference's CHECK failed: {e}"),
                    Err(e) => panic!("{tag} CHECK: {e}"),
                    Ok(_) => {}
                }
            }
            _ => {}
        }
        let prev = added.as_ref().ok().and_then(Option::as_ref);
        let del_conf = prev.map_or_else(|| c.clone(), |r| with_prev(&c, r));
        let started = Instant::now();
        verb(reference, Command::Del, side, &del_conf)
            .await
            .unwrap_or_else(|e| panic!("{tag} DEL (reference: {reference}): {e}"));
        let del_time = started.elapsed();
        println!("{tag} reference={reference}: ADD {add_time:?}, DEL {del_time:?}");
        states.push(json!({
            "container": side.ns.interfaces(),
            "veth_left": veth.as_deref().is_some_and(|v| host_link(v).is_some()),
            "ports_on_bridge": side.ports(),
            "reserved": reserved(side.data.path(), net),
        }));
    }
    println!("{tag}: {:?}\n{}", results.first(), states[0]);
    match errors.len() {
        0 => {}
        2 => {
            let (ours, reference) = (errors[0].clone(), errors[1].clone());
            println!(
                "{tag}: both failed: ours {} {:?}; reference {} {:?}",
                ours.code.code(),
                ours.msg,
                reference.code.code(),
                reference.msg
            );
            // Ours leaves no interface, no port and no reservation of its own after the failed ADD.
            assert!(
                states[0]["link"].is_null(),
                "{tag}: ours left {}",
                states[0]
            );
            assert_eq!(
                states[0]["ports_on_bridge"],
                json!(0),
                "{tag}: {}",
                states[0]
            );
            println!("{tag}: reference after the failed ADD: {}", states[2]);
            assert_eq!(
                states[1], states[3],
                "{tag}: state after DEL (ours, reference)"
            );
            return Some((ours, reference));
        }
        _ => panic!("{tag}: only one ADD failed: {errors:?} (results {results:?})"),
    }
    assert_same_as_reference(tag, &results, &states);
    None
}

fn host_local(subnet: &str) -> Value {
    json!({"type": "host-local", "subnet": subnet})
}

#[tokio::test]
async fn plain() {
    let case = json!({"cniVersion": "1.0.0", "name": "brpl", "type": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.91.0.0/24", "routes": [{"dst": "10.92.0.0/16"}]}});
    assert!(differential("pl", case, Before::Nothing).await.is_none());
}

#[tokio::test]
async fn is_gateway() {
    let case = json!({"cniVersion": "1.0.0", "name": "brgw", "type": "bridge", "isGateway": true,
        "ipam": host_local("10.93.0.0/24")});
    assert!(differential("gw", case, Before::Nothing).await.is_none());
}

#[tokio::test]
async fn is_default_gateway_with_mtu() {
    let case = json!({"cniVersion": "1.0.0", "name": "brdg", "type": "bridge",
        "isDefaultGateway": true, "mtu": 1400, "dns": {"nameservers": ["10.94.0.53"]},
        "ipam": host_local("10.94.0.0/24")});
    assert!(differential("dg", case, Before::Nothing).await.is_none());
}

#[tokio::test]
async fn hairpin_old_version() {
    let case = json!({"cniVersion": "0.3.1", "name": "brhp", "type": "bridge", "hairpinMode": true,
        "ipam": host_local("10.95.0.0/24")});
    assert!(differential("hp", case, Before::Nothing).await.is_none());
}

#[tokio::test]
async fn layer2_only_promiscuous() {
    let case =
        json!({"cniVersion": "1.0.0", "name": "brl2", "type": "bridge", "promiscMode": true});
    assert!(differential("l2", case, Before::Nothing).await.is_none());
}

#[tokio::test]
async fn existing_bridge_address_without_force_address_is_an_error() {
    let case = json!({"cniVersion": "1.0.0", "name": "brfa", "type": "bridge", "isGateway": true,
        "ipam": host_local("10.96.0.0/24")});
    let (ours, reference) = differential("fa", case, Before::BridgeAddr("10.96.0.9/24"))
        .await
        .expect("both fail");
    assert!(
        ours.msg
            .contains("already has an IP address different from 10.96.0.1/24"),
        "{ours}"
    );
    assert!(
        reference
            .msg
            .contains("already has an IP address different from"),
        "{reference}"
    );
    // The reference reports every such failure as 999 (a plain Go error); ours is a kernel-operation
    // failure, as every other netlink-side failure of the built-ins.
    assert_eq!((ours.code.code(), reference.code.code()), (103, 999));
}

#[tokio::test]
async fn existing_bridge_address_with_force_address_is_replaced() {
    let case = json!({"cniVersion": "1.0.0", "name": "brff", "type": "bridge", "isGateway": true,
        "forceAddress": true, "ipam": host_local("10.97.0.0/24")});
    assert!(differential("ff", case, Before::BridgeAddr("10.97.0.9/24"))
        .await
        .is_none());
}

#[tokio::test]
async fn exhausted_ipam_leaves_nothing() {
    let case = json!({"cniVersion": "1.0.0", "name": "brex", "type": "bridge",
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.98.0.0/24",
            "rangeStart": "10.98.0.5", "rangeEnd": "10.98.0.5"}]]}});
    let (ours, reference) = differential("ex", case, Before::Reserved("10.98.0.5"))
        .await
        .expect("both fail");
    assert!(ours.msg.contains("10.98.0"), "{ours}");
    assert!(reference.msg.contains("10.98.0"), "{reference}");
}

#[tokio::test]
async fn dual_stack_default_gateway() {
    let case = json!({"cniVersion": "1.0.0", "name": "brds", "type": "bridge", "isDefaultGateway": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}], [{"subnet": "fd99::/64"}]]}});
    assert!(differential("ds", case, Before::Nothing).await.is_none());
}

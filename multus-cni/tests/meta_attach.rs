//! The meta-plugin through the built binary, as root in real network namespaces, with the reference
//! plugins (Debian's containernetworking-plugins) as delegates: bridge for eth0, macvlan for net1.

mod support;

use serde_json::{json, Value};
use support::*;

struct Setup {
    ns: Netns,
    master: HostLink,
    _bridge: HostLink,
    data: tempfile::TempDir,
    conf: Value,
    cid: String,
}

/// eth0 from the reference bridge plugin, net1 from the reference macvlan plugin, host-local for both.
fn setup(version: &str, second_master: Option<&str>) -> Setup {
    reference_dir();
    let ns = Netns::new("mt");
    let master = HostLink::veth("mvm");
    let bridge = HostLink::bridge_name("mbr");
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("ipam");
    let cache = data.path().join("cache");
    let net3 = (std::process::id() % 200) as u8 + 20;
    let conf = json!({
        "cniVersion": version, "name": "multus-test", "type": "multus",
        "binDir": "/usr/lib/cni", "cniDir": cache, "logLevel": "debug",
        "delegates": [
            {"cniVersion": version, "name": "podnet", "type": "bridge", "bridge": bridge.0, "isGateway": true,
             "ipam": {"type": "host-local", "subnet": format!("10.{net3}.1.0/24"), "dataDir": store}},
            {"cniVersion": version, "name": "macnet", "type": "macvlan", "master": second_master.unwrap_or(&master.0), "mode": "bridge",
             "ipam": {"type": "host-local", "subnet": format!("10.{net3}.2.0/24"), "dataDir": store,
                      "routes": [{"dst": "192.0.2.0/24", "gw": format!("10.{net3}.2.1")}]}}
        ]
    });
    let cid = unique("c");
    Setup {
        ns,
        master,
        _bridge: bridge,
        data,
        conf,
        cid,
    }
}

#[test]
fn add_check_del_bridge_and_macvlan() {
    let s = setup("1.0.0", None);
    let path = s.ns.path();
    let r = cni("ADD", &s.cid, Some(&path), "eth0", &s.conf).ok();
    // The default network's result, as Multus returns it.
    assert_eq!(r["cniVersion"], "1.0.0");
    let eth0_ip = r["ips"][0]["address"].as_str().unwrap().to_string();
    assert!(eth0_ip.contains(".1."), "{r}");
    let names = s.ns.link_names();
    assert!(
        names.contains(&"eth0".to_string()) && names.contains(&"net1".to_string()),
        "{names:?}"
    );
    assert_eq!(s.ns.addrs("eth0"), vec![eth0_ip]);
    let net1 = s.ns.addrs("net1");
    assert_eq!(net1.len(), 1);
    assert!(net1[0].contains(".2."), "{net1:?}");
    let link =
        s.ns.links()
            .into_iter()
            .find(|l| l["ifname"] == "net1")
            .unwrap();
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(reservations(&s.data.path().join("ipam")).len(), 2);

    cni("CHECK", &s.cid, Some(&path), "eth0", &s.conf).ok();

    cni("DEL", &s.cid, Some(&path), "eth0", &s.conf).ok();
    let names = s.ns.link_names();
    assert!(
        !names.contains(&"eth0".to_string()) && !names.contains(&"net1".to_string()),
        "{names:?}"
    );
    assert!(reservations(&s.data.path().join("ipam")).is_empty());
    assert!(!s
        .data
        .path()
        .join("cache")
        .join(format!("{}@eth0.json", s.cid))
        .exists());
    // DEL again converges.
    cni("DEL", &s.cid, Some(&path), "eth0", &s.conf).ok();
    assert!(host_link_exists(&s.master.0));
}

#[test]
fn failing_second_delegate_leaves_nothing_of_the_first() {
    let s = setup("1.0.0", Some("nosuchmaster0"));
    let path = s.ns.path();
    let e = cni("ADD", &s.cid, Some(&path), "eth0", &s.conf).err();
    assert!(e["msg"].as_str().unwrap().contains("macnet"), "{e}");
    assert_eq!(s.ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&s.data.path().join("ipam")).is_empty());
    // The host side of the bridge's veth is gone too: only the bridge itself may stay.
    let out = sh(&["ip", "-j", "link", "show", "master", &s._bridge.0]);
    let ports: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
    assert!(ports.is_empty(), "{out}");
    assert!(!s
        .data
        .path()
        .join("cache")
        .join(format!("{}@eth0.json", s.cid))
        .exists());
}

#[test]
fn old_config_versions_get_old_result_shapes() {
    for v in ["0.3.1", "0.4.0"] {
        let s = setup(v, None);
        let path = s.ns.path();
        let r = cni("ADD", &s.cid, Some(&path), "eth0", &s.conf).ok();
        assert_eq!(r["cniVersion"], v);
        assert_eq!(r["ips"][0]["version"], "4", "{r}");
        cni("DEL", &s.cid, Some(&path), "eth0", &s.conf).ok();
        assert!(reservations(&s.data.path().join("ipam")).is_empty());
    }
}

#[test]
fn del_after_the_netns_is_gone_releases_addresses() {
    let s = setup("1.0.0", None);
    let path = s.ns.path();
    cni("ADD", &s.cid, Some(&path), "eth0", &s.conf).ok();
    assert_eq!(reservations(&s.data.path().join("ipam")).len(), 2);
    sh(&["ip", "netns", "del", &s.ns.name]);
    cni("DEL", &s.cid, Some(&path), "eth0", &s.conf).ok();
    assert!(reservations(&s.data.path().join("ipam")).is_empty());
}

#[test]
fn del_works_from_the_cache_when_the_config_changed() {
    let s = setup("1.0.0", None);
    let path = s.ns.path();
    cni("ADD", &s.cid, Some(&path), "eth0", &s.conf).ok();
    // The node's config now names only one delegate; the cache still knows both.
    let mut changed = s.conf.clone();
    changed["delegates"].as_array_mut().unwrap().truncate(1);
    cni("DEL", &s.cid, Some(&path), "eth0", &changed).ok();
    assert_eq!(s.ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&s.data.path().join("ipam")).is_empty());
}

#[test]
fn version_lists_every_supported_version() {
    let r = run_plugin(&multus_bin(), &[("CNI_COMMAND", "VERSION")], b"").ok();
    assert_eq!(
        r["supportedVersions"],
        json!(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    let r = run_plugin(
        &multus_bin(),
        &[("CNI_COMMAND", "VERSION")],
        br#"{"cniVersion":"0.4.0"}"#,
    )
    .ok();
    assert_eq!(r["cniVersion"], "0.4.0");
}

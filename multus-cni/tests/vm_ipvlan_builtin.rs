//! VM test (tests/vm/run.sh): the built-in ipvlan, run standalone (the `multus` binary started as `ipvlan`, a
//! drop-in for `/usr/lib/cni/ipvlan`), in every mode (l2, l3, l3s) on the igb PF, compared with the reference
//! plugin on the same config: results (apart from the netns path) and kernel state (`ip -d link`, addresses,
//! routes) must match. Also: CHECK catching drift, DEL idempotent and releasing the IP, chaining on a
//! prevResult without IPAM, MTU, and nothing left behind after a failed ADD.

#[allow(dead_code)]
mod vm_common;

use multus_testsupport::pick;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use vm_common::{
    clean_command, igb_pf, ip_json, link_exists, plugin_link, require_vm, reserved_ips, run_cni,
    run_ok, show, Netns, CNI_PATH,
};

fn builtin_exe(dir: &Path) -> PathBuf {
    plugin_link(dir, "ipvlan")
}

/// Runs a CNI command of a plugin binary; returns (exit code, stdout JSON or Null).
fn cni(exe: &Path, command: &str, ns: &Netns, conf: &Value) -> (Option<i32>, Value) {
    let cid = format!("c-{}", ns.name);
    let c = run_cni(clean_command(exe), command, &cid, ns.path(), "eth0", conf);
    (c.code, c.json())
}

fn ok(r: (Option<i32>, Value), what: &str) -> Value {
    assert_eq!(r.0, Some(0), "{what} failed: {}", r.1);
    r.1
}

const LINK_KEYS: &[&str] = &[
    "ifname",
    "flags",
    "mtu",
    "qdisc",
    "operstate",
    "group",
    "txqlen",
    "link_type",
    "address",
    "promiscuity",
    "allmulti",
    "min_mtu",
    "max_mtu",
    "linkinfo",
    "num_tx_queues",
    "num_rx_queues",
];

/// The kernel state of eth0 in `ns` that both plugins must produce alike.
fn state(ns: &Netns) -> Value {
    let link = pick(
        &ip_json(&["-n", &ns.name, "-d", "link", "show", "eth0"])[0],
        LINK_KEYS,
    );
    let addrs: Vec<Value> = ip_json(&["-n", &ns.name, "addr", "show", "eth0"])[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !(a["family"] == "inet6" && a["scope"] == "link"))
        .map(|mut a| {
            if let Some(o) = a.as_object_mut() {
                o.remove("valid_life_time");
                o.remove("preferred_life_time");
            }
            a
        })
        .collect();
    json!({
        "link": link,
        "addrs": addrs,
        "routes4": ip_json(&["-n", &ns.name, "-4", "route", "show", "table", "all"]),
        "routes6": ip_json(&["-n", &ns.name, "-6", "route", "show", "table", "main"]),
        "arp_notify": run_ok("ip", &["netns", "exec", &ns.name, "cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify"]).trim(),
    })
}

fn delegate(pf: &str, mode: &str, data: &Path, net: &str) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": net,
        "type": "ipvlan",
        "master": pf,
        "mode": mode,
        "ipam": {"type": "host-local", "subnet": "10.56.0.0/24", "gateway": "10.56.0.1",
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.57.0.0/16", "gw": "10.56.0.254"}],
                 "dataDir": data},
    })
}

fn mode_case(mode: &str) {
    require_vm();
    let pf = igb_pf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ours = builtin_exe(tmp.path());
    let reference = Path::new(CNI_PATH).join("ipvlan");
    let mut seen = Vec::new();
    // One after the other: two ipvlans on one master may not hold the same address.
    for exe in [ours.as_path(), reference.as_path()] {
        let ns = Netns::named(&format!("vm-ipvb-{mode}"));
        let data = tempfile::tempdir().expect("tempdir");
        let conf = delegate(&pf, mode, data.path(), "ipvb");
        let mut result = ok(cni(exe, "ADD", &ns, &conf), "ADD");
        show(&["-n", &ns.name, "-d", "addr", "show", "eth0"]);
        let st = state(&ns);
        assert_eq!(st["link"]["linkinfo"]["info_kind"], "ipvlan", "{st}");
        assert_eq!(st["link"]["linkinfo"]["info_data"]["mode"], mode, "{st}");
        assert_eq!(
            reserved_ips(data.path(), "ipvb"),
            vec!["10.56.0.2".to_string()]
        );
        // CHECK passes, then fails once the address is gone (ours; the reference too)
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = result.clone();
        ok(cni(exe, "CHECK", &ns, &with_prev), "CHECK");
        run_ok(
            "ip",
            &["-n", &ns.name, "addr", "del", "10.56.0.2/24", "dev", "eth0"],
        );
        let bad = cni(exe, "CHECK", &ns, &with_prev);
        assert_ne!(
            bad.0,
            Some(0),
            "CHECK must fail on a missing address: {}",
            bad.1
        );
        // DEL, twice
        ok(cni(exe, "DEL", &ns, &with_prev), "DEL");
        assert!(!link_exists(&ns, "eth0"), "eth0 gone after DEL");
        assert!(reserved_ips(data.path(), "ipvb").is_empty(), "IP released");
        ok(cni(exe, "DEL", &ns, &with_prev), "second DEL");
        result["interfaces"][0]["sandbox"] = json!("NS");
        seen.push((result, st));
    }
    assert_eq!(
        seen[0].0, seen[1].0,
        "{mode}: results (built-in, reference)"
    );
    assert_eq!(
        seen[0].1, seen[1].1,
        "{mode}: kernel state (built-in, reference)"
    );
    println!("ipvlan {mode}: built-in and reference agree: {}", seen[0].1);
}

#[test]
fn vm_ipvlan_builtin_l2() {
    mode_case("l2");
}

#[test]
fn vm_ipvlan_builtin_l3() {
    mode_case("l3");
}

#[test]
fn vm_ipvlan_builtin_l3s() {
    mode_case("l3s");
}

#[test]
fn vm_ipvlan_builtin_chained_mtu_and_cleanup() {
    require_vm();
    let pf = igb_pf();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ours = builtin_exe(tmp.path());

    // Chained: no ipam section; the IPs of prevResult, and its single interface as the master.
    let ns = Netns::named("vm-ipvb-chain");
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": pf}],
                      "ips": [{"interface": 0, "address": "10.58.0.7/24", "gateway": "10.58.0.1"}],
                      "routes": [{"dst": "0.0.0.0/0"}]});
    let conf = json!({"cniVersion": "1.0.0", "name": "chain", "type": "ipvlan", "mode": "l3", "mtu": 1400,
                      "prevResult": prev});
    let r = ok(cni(&ours, "ADD", &ns, &conf), "chained ADD");
    assert_eq!(r["ips"][0]["address"], "10.58.0.7/24", "{r}");
    assert_eq!(r["interfaces"].as_array().map(Vec::len), Some(1), "{r}");
    let link = &ip_json(&["-n", &ns.name, "-d", "link", "show", "eth0"])[0];
    assert_eq!(link["mtu"], 1400, "{link}");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "l3", "{link}");
    let routes = ip_json(&["-n", &ns.name, "route", "show", "default"]);
    assert_eq!(routes[0]["gateway"], "10.58.0.1", "{routes}");
    show(&["-n", &ns.name, "-d", "addr", "show", "eth0"]);
    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    ok(cni(&ours, "CHECK", &ns, &check), "chained CHECK");
    ok(cni(&ours, "DEL", &ns, &check), "chained DEL");
    assert!(!link_exists(&ns, "eth0"));

    // A failed ADD leaves nothing: unknown IPAM type (in the netns and on the PF).
    let ns = Netns::named("vm-ipvb-fail");
    let data = tempfile::tempdir().expect("tempdir");
    let mut bad = delegate(&pf, "l2", data.path(), "fail");
    bad["ipam"]["type"] = json!("no-such-ipam");
    let (code, err) = cni(&ours, "ADD", &ns, &bad);
    assert_eq!(code, Some(1), "{err}");
    let links: Vec<String> = ip_json(&["-n", &ns.name, "link", "show"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .filter(|n| n != "lo")
        .collect();
    assert!(links.is_empty(), "nothing left in the netns: {links:?}");
    // DEL with the netns gone still releases the IP.
    let conf = delegate(&pf, "l2", data.path(), "gone");
    ok(cni(&ours, "ADD", &ns, &conf), "ADD");
    run_ok("ip", &["netns", "del", &ns.name]);
    ok(cni(&ours, "DEL", &ns, &conf), "DEL without netns");
    assert!(reserved_ips(data.path(), "gone").is_empty());
}

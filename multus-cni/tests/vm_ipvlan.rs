//! VM test (tests/vm/run.sh): ipvlan in every mode (l2, l3, l3s) on the igb PF, through the `multus` binary,
//! ADD / CHECK / DEL, each in a fresh network namespace, with the reference ipvlan and host-local as delegates.

#[allow(dead_code)]
mod vm_common;

use serde_json::json;
use vm_common::{
    addrs_in, igb_pf, link_exists, link_in, require_vm, reserved_ips, result_ip, run_ok, show,
    Netns, Plugin,
};

fn ipvlan_case(mode: &str) {
    require_vm();
    let plugin = Plugin::from_env();
    let pf = igb_pf();
    let ns = Netns::named(&format!("vm-ipvlan-{mode}"));
    let data = tempfile::tempdir().expect("tempdir");
    let id = format!("vm-ipvlan-{mode}");
    let delegate = json!({
        "cniVersion": "1.0.0",
        "name": "ipvl",
        "type": "ipvlan",
        "master": pf,
        "mode": mode,
        "ipam": {"type": "host-local", "subnet": "10.55.0.0/24", "dataDir": data.path()},
    });

    // ADD
    let result = plugin.cni("ADD", &id, &ns, &delegate, None).ok("ADD");
    let ip = result_ip(&result);
    assert!(ip.starts_with("10.55.0."), "address from the subnet: {ip}");
    let link = link_in(&ns, "eth0");
    show(&["-n", &ns.name, "-d", "addr", "show", "eth0"]);
    assert_eq!(
        link["linkinfo"]["info_kind"], "ipvlan",
        "eth0 is an ipvlan: {link}"
    );
    assert_eq!(
        link["linkinfo"]["info_data"]["mode"], mode,
        "ipvlan mode: {link}"
    );
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(flags.contains(&"UP"), "eth0 is up: {flags:?}");
    assert_eq!(
        addrs_in(&ns, "eth0"),
        vec![ip.clone()],
        "eth0 carries the result's address"
    );
    let bare_ip = ip.split('/').next().expect("ip");
    assert_eq!(
        reserved_ips(data.path(), "ipvl"),
        vec![bare_ip.to_string()],
        "host-local reserved it"
    );
    println!(
        "ipvlan {mode} link eth0 made in netns {} with {ip}",
        ns.name
    );

    // CHECK, with the ADD result as prevResult (as a runtime does): passes while the kernel state matches ...
    plugin
        .cni("CHECK", &id, &ns, &delegate, Some(&result))
        .ok("CHECK");
    // ... and fails once it does not (the address taken off eth0 behind the plugin's back): CHECK really checks.
    run_ok("ip", &["-n", &ns.name, "addr", "del", &ip, "dev", "eth0"]);
    let bad = plugin.cni("CHECK", &id, &ns, &delegate, Some(&result));
    assert_ne!(
        bad.code,
        Some(0),
        "CHECK must fail when eth0 lacks the ADD result's address {ip}: {bad:?}"
    );

    // DEL removes the link and the reservation; a second DEL is fine (idempotent).
    plugin
        .cni("DEL", &id, &ns, &delegate, Some(&result))
        .ok("DEL");
    assert!(!link_exists(&ns, "eth0"), "eth0 gone after DEL");
    assert_eq!(
        reserved_ips(data.path(), "ipvl"),
        Vec::<String>::new(),
        "no reservation left after DEL"
    );
    plugin
        .cni("DEL", &id, &ns, &delegate, Some(&result))
        .ok("second DEL");
}

#[test]
fn vm_ipvlan_l2() {
    ipvlan_case("l2");
}

#[test]
fn vm_ipvlan_l3() {
    ipvlan_case("l3");
}

#[test]
fn vm_ipvlan_l3s() {
    ipvlan_case("l3s");
}

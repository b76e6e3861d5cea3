//! VM test (tests/vm/run.sh): macvlan (bridge mode) on the igb PF through the `multus` binary, ADD / CHECK / DEL,
//! in a fresh network namespace, with the reference macvlan and host-local as delegates.

#[allow(dead_code)]
mod vm_common;

use serde_json::json;
use vm_common::{
    addrs_in, igb_pf, ip_json, link_exists, link_in, require_vm, reserved_ips, result_ip, run_ok,
    show, Netns, Plugin,
};

#[test]
fn vm_macvlan_pf_bridge() {
    require_vm();
    let plugin = Plugin::from_env();
    let pf = igb_pf();
    let pf_mac = ip_json(&["link", "show", &pf])[0]["address"]
        .as_str()
        .expect("PF mac")
        .to_string();
    let ns = Netns::named("vm-macvlan-pf");
    let data = tempfile::tempdir().expect("tempdir");
    let id = "vm-macvlan-pf";
    let delegate = json!({
        "cniVersion": "1.0.0",
        "name": "macvl",
        "type": "macvlan",
        "master": pf,
        "mode": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.56.0.0/24", "dataDir": data.path()},
    });

    let result = plugin.cni("ADD", id, &ns, &delegate, None).ok("ADD");
    let ip = result_ip(&result);
    assert!(ip.starts_with("10.56.0."), "address from the subnet: {ip}");
    let link = link_in(&ns, "eth0");
    show(&["-n", &ns.name, "-d", "addr", "show", "eth0"]);
    assert_eq!(
        link["linkinfo"]["info_kind"], "macvlan",
        "eth0 is a macvlan: {link}"
    );
    assert_eq!(
        link["linkinfo"]["info_data"]["mode"], "bridge",
        "macvlan mode: {link}"
    );
    assert_ne!(
        link["address"],
        pf_mac.as_str(),
        "a macvlan has its own MAC"
    );
    assert_eq!(
        addrs_in(&ns, "eth0"),
        vec![ip.clone()],
        "eth0 carries the result's address"
    );
    let bare_ip = ip.split('/').next().expect("ip");
    assert_eq!(
        reserved_ips(data.path(), "macvl"),
        vec![bare_ip.to_string()],
        "host-local reserved it"
    );
    // The macvlan's lower device is the PF: its ifindex in the host namespace.
    let pf_index = ip_json(&["link", "show", &pf])[0]["ifindex"].clone();
    assert_eq!(
        link["link_index"], pf_index,
        "macvlan lower device is the PF: {link}"
    );
    println!(
        "macvlan bridge link eth0 made on {pf} in netns {} with {ip}",
        ns.name
    );

    plugin
        .cni("CHECK", id, &ns, &delegate, Some(&result))
        .ok("CHECK");
    run_ok("ip", &["-n", &ns.name, "addr", "del", &ip, "dev", "eth0"]);
    let bad = plugin.cni("CHECK", id, &ns, &delegate, Some(&result));
    assert_ne!(
        bad.code,
        Some(0),
        "CHECK must fail when eth0 lacks the ADD result's address {ip}: {bad:?}"
    );

    plugin
        .cni("DEL", id, &ns, &delegate, Some(&result))
        .ok("DEL");
    assert!(!link_exists(&ns, "eth0"), "eth0 gone after DEL");
    assert_eq!(
        reserved_ips(data.path(), "macvl"),
        Vec::<String>::new(),
        "no reservation left after DEL"
    );
}

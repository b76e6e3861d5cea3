//! The built-in macvlan delegate against the real kernel, as root: each test makes its own network
//! namespace(s), a veth pair as master and a host-local dataDir (host-local is the reference binary, run
//! through the registry), and checks the kernel with `ip -j`.

mod sublink_util;

use multus_core::cni::Command;
use multus_core::netlink::{route, Netlink};
use multus_core::plugins::sublink::resolve_master;
use serde_json::{json, Value};
use std::path::Path;
use sublink_util::*;

fn macvlan_conf(net: &str, master: &str, data: &Path, extra: Value) -> Value {
    let mut v = json!({
        "cniVersion": "1.0.0",
        "name": net,
        "type": "macvlan",
        "master": master,
        "ipam": {
            "type": "host-local",
            "subnet": "10.77.0.0/24",
            "gateway": "10.77.0.1",
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.78.0.0/16", "gw": "10.77.0.254"}],
            "dataDir": data,
        },
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, val) in e {
            if val.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), val.clone());
            }
        }
    }
    v
}

#[tokio::test]
async fn add_check_del_with_host_local() {
    require_root();
    let ns = Netns::named("mvt-acd");
    let veth = HostLink::veth("mvacd");
    let data = tempfile::tempdir().unwrap();
    let c = conf(macvlan_conf(
        "mvnet",
        &veth.0,
        data.path(),
        json!({"dns": {"nameservers": ["10.77.0.53"]}}),
    ));
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let p = p.as_deref();

    let r = run(&d, Command::Add, "c-acd", p, "net1", "", &c)
        .await
        .unwrap()
        .unwrap();
    let v = r.to_value("1.0.0").unwrap();
    assert_eq!(v["interfaces"][0]["name"], "net1");
    assert_eq!(
        v["interfaces"][0]["sandbox"],
        ns.path().display().to_string()
    );
    assert_eq!(
        v["ips"][0],
        json!({"interface": 0, "address": "10.77.0.2/24", "gateway": "10.77.0.1"})
    );
    assert_eq!(
        v["routes"],
        json!([{"dst": "0.0.0.0/0"}, {"dst": "10.78.0.0/16", "gw": "10.77.0.254"}])
    );
    assert_eq!(
        v["dns"]["nameservers"],
        json!(["10.77.0.53"]),
        "dns comes from the config"
    );

    let link = ns.link("net1").expect("net1 in the netns");
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "bridge");
    assert!(
        link["flags"].as_array().unwrap().contains(&json!("UP")),
        "{link}"
    );
    assert_eq!(
        link["address"], v["interfaces"][0]["mac"],
        "result MAC is the link's"
    );
    assert_eq!(link["mtu"], 1500);
    assert_eq!(ns.addrs("net1"), ["10.77.0.2/24"]);
    let routes = ns.ip(&["route", "show"]);
    let has = |dst: &str, gw: &str| {
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == dst && r["gateway"] == gw && r["dev"] == "net1")
    };
    assert!(
        has("default", "10.77.0.1"),
        "default route via the gateway: {routes}"
    );
    assert!(has("10.78.0.0/16", "10.77.0.254"), "{routes}");
    assert_eq!(ns.sysctl("net/ipv4/conf/net1/arp_notify"), "1");
    assert_eq!(ns.sysctl("net/ipv6/conf/net1/ndisc_notify"), "1");
    assert_eq!(reserved(data.path(), "mvnet"), ["10.77.0.2"]);
    assert!(
        host_links_on(&veth.0).is_empty(),
        "nothing stays in the host"
    );

    // CHECK passes on the state ADD made ...
    let cp = with_prev(&c, &r);
    run(&d, Command::Check, "c-acd", p, "net1", "", &cp)
        .await
        .unwrap();
    // ... and fails once an address changes.
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "del",
        "10.77.0.2/24",
        "dev",
        "net1",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        "10.77.0.9/24",
        "dev",
        "net1",
    ]);
    let e = run(&d, Command::Check, "c-acd", p, "net1", "", &cp)
        .await
        .unwrap_err();
    assert!(e.msg.contains("10.77.0.2/24"), "{e}");
    // ... or a route is missing.
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        "10.77.0.2/24",
        "dev",
        "net1",
    ]);
    run(&d, Command::Check, "c-acd", p, "net1", "", &cp)
        .await
        .unwrap_err(); // routes went with the address
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "route",
        "add",
        "default",
        "via",
        "10.77.0.1",
        "dev",
        "net1",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "route",
        "add",
        "10.78.0.0/16",
        "via",
        "10.77.0.254",
        "dev",
        "net1",
    ]);
    run(&d, Command::Check, "c-acd", p, "net1", "", &cp)
        .await
        .unwrap();
    // ... or the mode is not the configured one.
    let mut other_mode = cp.clone();
    other_mode.set("mode", json!("vepa"));
    let e = run(&d, Command::Check, "c-acd", p, "net1", "", &other_mode)
        .await
        .unwrap_err();
    assert!(e.msg.contains("mode"), "{e}");
    // ... or the prevResult is missing.
    assert_eq!(
        run(&d, Command::Check, "c-acd", p, "net1", "", &c)
            .await
            .unwrap_err()
            .code
            .code(),
        7
    );

    // DEL removes link and reservation; DEL again is fine.
    run(&d, Command::Del, "c-acd", p, "net1", "", &cp)
        .await
        .unwrap();
    assert!(ns.link("net1").is_none());
    assert!(reserved(data.path(), "mvnet").is_empty());
    run(&d, Command::Del, "c-acd", p, "net1", "", &cp)
        .await
        .unwrap();
}

/// CHECK compares the CNI 1.1 route fields (mtu, advmss, priority, table, scope) of prevResult's routes with
/// the kernel's: routes set up with `ip` next to the ones ADD made, then prevResults that match and that
/// differ in one field each.
#[tokio::test]
async fn check_compares_route_fields() {
    require_root();
    let ns = Netns::named("mvt-chkrt");
    let veth = HostLink::veth("mvchk");
    let data = tempfile::tempdir().unwrap();
    // (1.0.0: the reference host-local 1.1.1 does not take 1.1.0; the route fields are read all the same.)
    let c = conf(macvlan_conf("mvchk", &veth.0, data.path(), json!({})));
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let p = p.as_deref();
    let r = run(&d, Command::Add, "c-chkrt", p, "net1", "", &c)
        .await
        .unwrap()
        .unwrap();
    let ipn = |args: &[&str]| {
        let mut full = vec!["ip", "-n", ns.name.as_str()];
        full.extend_from_slice(args);
        sh(&full);
    };
    ipn(&[
        "route",
        "add",
        "10.79.0.0/16",
        "via",
        "10.77.0.254",
        "dev",
        "net1",
        "mtu",
        "1300",
        "advmss",
        "1200",
        "metric",
        "7",
        "table",
        "100",
    ]);
    ipn(&[
        "route",
        "add",
        "10.80.0.0/16",
        "dev",
        "net1",
        "scope",
        "link",
        "metric",
        "9",
    ]);
    let mut prev = r.to_value("1.1.0").unwrap();
    let extra = [
        json!({"dst": "10.79.0.0/16", "gw": "10.77.0.254", "mtu": 1300, "advmss": 1200, "priority": 7, "table": 100}),
        json!({"dst": "10.80.0.0/16", "scope": 253, "priority": 9}),
    ];
    prev["routes"]
        .as_array_mut()
        .unwrap()
        .extend(extra.iter().cloned());
    let check = |prev: Value| {
        let mut cp = c.clone();
        cp.set("prevResult", prev);
        let d = d.clone();
        async move { run(&d, Command::Check, "c-chkrt", p, "net1", "", &cp).await }
    };
    check(prev.clone()).await.unwrap();
    // Each field that differs from the kernel's fails CHECK, and the error names it.
    for (i, field, value) in [
        (0, "mtu", json!(1400)),
        (0, "advmss", json!(1100)),
        (0, "priority", json!(8)),
        (0, "table", json!(101)),
        (1, "scope", json!(0)),
        (1, "priority", json!(10)),
    ] {
        let mut bad = prev.clone();
        let routes = bad["routes"].as_array_mut().unwrap();
        let n = routes.len();
        routes[n - 2 + i][field] = value.clone();
        let e = check(bad).await.unwrap_err();
        assert_eq!(e.code.code(), 103, "{field}: {e}");
        if field == "table" {
            assert!(e.msg.contains("not found"), "{field}: {e}");
        } else {
            assert!(e.msg.contains(&format!("{field} {value}")), "{field}: {e}");
        }
    }
    // The kernel's route changed under the same destination: CHECK sees it.
    ipn(&[
        "route",
        "change",
        "10.79.0.0/16",
        "via",
        "10.77.0.254",
        "dev",
        "net1",
        "mtu",
        "1280",
        "advmss",
        "1200",
        "metric",
        "7",
        "table",
        "100",
    ]);
    let e = check(prev.clone()).await.unwrap_err();
    assert!(e.msg.contains("mtu 1300 (the kernel's: 1280)"), "{e}");
    run(&d, Command::Del, "c-chkrt", p, "net1", "", &c)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_mode_l2_only() {
    require_root();
    let ns = Netns::named("mvt-modes");
    let veth = HostLink::veth("mvmod");
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let p = p.as_deref();
    for mode in ["bridge", "private", "vepa", "passthru"] {
        let c = conf(
            json!({"cniVersion": "1.1.0", "name": "l2", "type": "macvlan", "master": veth.0, "mode": mode}),
        );
        let r = run(&d, Command::Add, "c-modes", p, "eth9", "", &c)
            .await
            .unwrap()
            .unwrap();
        let v = r.to_value("1.1.0").unwrap();
        assert!(v.get("ips").is_none(), "L2 only: no IPs: {v}");
        let link = ns.link("eth9").unwrap();
        assert_eq!(link["linkinfo"]["info_data"]["mode"], mode, "{link}");
        assert!(
            link["flags"].as_array().unwrap().contains(&json!("UP")),
            "L2 link is up: {link}"
        );
        assert!(ns.addrs("eth9").is_empty());
        assert_eq!(
            ns.sysctl("net/ipv4/conf/eth9/arp_notify"),
            "0",
            "L2: sysctls untouched, as the reference"
        );
        run(
            &d,
            Command::Check,
            "c-modes",
            p,
            "eth9",
            "",
            &with_prev(&c, &r),
        )
        .await
        .unwrap();
        // STATUS without IPAM is fine
        run(&d, Command::Status, "", None, "", "", &c)
            .await
            .unwrap();
        run(&d, Command::Del, "c-modes", p, "eth9", "", &c)
            .await
            .unwrap();
        assert!(ns.link("eth9").is_none(), "{mode}: gone");
    }
}

#[tokio::test]
async fn mtu_and_its_errors() {
    require_root();
    let ns = Netns::named("mvt-mtu");
    let veth = HostLink::veth("mvmtu");
    sh(&["ip", "link", "set", &veth.0, "mtu", "1450"]);
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let p = p.as_deref();
    for (mtu, want) in [(json!(0), 1450), (json!(1400), 1400), (json!(1450), 1450)] {
        let c = conf(
            json!({"cniVersion": "1.0.0", "name": "m", "type": "macvlan", "master": veth.0, "mtu": mtu}),
        );
        run(&d, Command::Add, "c-mtu", p, "net1", "", &c)
            .await
            .unwrap();
        assert_eq!(ns.link("net1").unwrap()["mtu"], want, "mtu {mtu}");
        run(&d, Command::Del, "c-mtu", p, "net1", "", &c)
            .await
            .unwrap();
    }
    let data = tempfile::tempdir().unwrap();
    for bad in [json!(1451), json!(9000), json!(-1), json!("1400")] {
        let c = conf(macvlan_conf("m", &veth.0, data.path(), json!({"mtu": bad})));
        let e = run(&d, Command::Add, "c-mtu", p, "net1", "", &c)
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 7, "mtu {bad}: {e}");
        assert!(ns.interfaces().is_empty(), "nothing left in the netns");
        assert!(
            host_links_on(&veth.0).is_empty(),
            "nothing left in the host"
        );
        assert!(reserved(data.path(), "m").is_empty(), "no reservation");
    }
}

#[tokio::test]
async fn mac_from_conf_args_and_runtime_config() {
    require_root();
    let ns = Netns::named("mvt-mac");
    let veth = HostLink::veth("mvmac");
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let p = p.as_deref();
    let base = json!({"cniVersion": "1.0.0", "name": "m", "type": "macvlan", "master": veth.0, "mac": "02:00:00:aa:00:01"});
    let mut rc = base.clone();
    rc["runtimeConfig"] = json!({"mac": "02:00:00:aa:00:03"});
    for (c, args, want) in [
        (base.clone(), "", "02:00:00:aa:00:01"),
        (
            base.clone(),
            "IgnoreUnknown=1;MAC=02:00:00:aa:00:02",
            "02:00:00:aa:00:02",
        ),
        (rc, "MAC=02:00:00:aa:00:02", "02:00:00:aa:00:03"),
    ] {
        let c = conf(c);
        let r = run(&d, Command::Add, "c-mac", p, "net1", args, &c)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ns.link("net1").unwrap()["address"], want);
        assert_eq!(r.interfaces[0].mac, want);
        run(
            &d,
            Command::Check,
            "c-mac",
            p,
            "net1",
            args,
            &with_prev(&c, &r),
        )
        .await
        .unwrap();
        run(&d, Command::Del, "c-mac", p, "net1", args, &c)
            .await
            .unwrap();
    }
    let mut bad = base.clone();
    bad["mac"] = json!("02:00:00:aa:00");
    let e = run(&d, Command::Add, "c-mac", p, "net1", "", &conf(bad))
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 7, "{e}");
    let e = run(
        &d,
        Command::Add,
        "c-mac",
        p,
        "net1",
        "MAC=xx",
        &conf(base.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code.code(), 7, "{e}");
    // a multicast MAC is refused by the kernel: an error, and nothing left
    let mut mc = base;
    mc["mac"] = json!("01:00:5e:00:00:01");
    let e = run(&d, Command::Add, "c-mac", p, "net1", "", &conf(mc))
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 103, "{e}");
    assert!(ns.interfaces().is_empty() && host_links_on(&veth.0).is_empty());
}

#[tokio::test]
async fn link_in_container_with_default_route_master() {
    require_root();
    let ns = Netns::named("mvt-lic");
    let veth = HostLink::veth("mvlic");
    sh(&[
        "ip",
        "link",
        "set",
        &veth.peer(),
        "netns",
        &ns.name,
        "name",
        "uplink",
    ]);
    sh(&["ip", "-n", &ns.name, "link", "set", "uplink", "up"]);
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "addr",
        "add",
        "192.0.2.10/24",
        "dev",
        "uplink",
    ]);
    sh(&[
        "ip",
        "-n",
        &ns.name,
        "route",
        "add",
        "default",
        "via",
        "192.0.2.1",
    ]);
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let p = p.as_deref();
    // no master: the interface of the container's default route
    let c = conf(
        json!({"cniVersion": "1.0.0", "name": "lic", "type": "macvlan", "linkInContainer": true, "mode": "private"}),
    );
    let r = run(&d, Command::Add, "c-lic", p, "net1", "", &c)
        .await
        .unwrap()
        .unwrap();
    let link = ns.link("net1").unwrap();
    assert_eq!(
        link["link"], "uplink",
        "stacked on the container's uplink: {link}"
    );
    assert_eq!(link["linkinfo"]["info_data"]["mode"], "private");
    run(
        &d,
        Command::Check,
        "c-lic",
        p,
        "net1",
        "",
        &with_prev(&c, &r),
    )
    .await
    .unwrap();
    run(&d, Command::Del, "c-lic", p, "net1", "", &c)
        .await
        .unwrap();
    assert!(ns.link("net1").is_none());
    // a named master in the container
    let c = conf(
        json!({"cniVersion": "1.0.0", "name": "lic", "type": "macvlan", "linkInContainer": true, "master": "uplink"}),
    );
    run(&d, Command::Add, "c-lic", p, "net2", "", &c)
        .await
        .unwrap();
    assert_eq!(ns.link("net2").unwrap()["link"], "uplink");
    // the same name on the host is not a master for linkInContainer
    let c = conf(
        json!({"cniVersion": "1.0.0", "name": "lic", "type": "macvlan", "linkInContainer": true, "master": veth.0}),
    );
    assert_eq!(
        run(&d, Command::Add, "c-lic", p, "net3", "", &c)
            .await
            .unwrap_err()
            .code
            .code(),
        103
    );
    assert!(ns.link("net3").is_none());
}

#[tokio::test]
async fn default_master_is_the_default_route_interface() {
    require_root();
    let routes = ip_json(&["route", "show", "default"]);
    let want = routes[0]["dev"].as_str().map(str::to_string);
    let nl = Netlink::current().unwrap();
    let got = match route::default_route_oif(&nl).await.unwrap() {
        Some(_) => Some(resolve_master(&nl, None).await.unwrap().name),
        None => None,
    };
    assert_eq!(got, want);
}

#[tokio::test]
async fn same_name_on_the_host_does_not_collide() {
    require_root();
    let ns = Netns::named("mvt-coll");
    let veth = HostLink::veth("mvcol");
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let c = conf(json!({"cniVersion": "1.0.0", "name": "c", "type": "macvlan", "master": veth.0}));
    // the container interface is named like the host's master
    run(
        &d,
        Command::Add,
        "c-coll",
        p.as_deref(),
        &veth.peer(),
        "",
        &c,
    )
    .await
    .unwrap();
    assert!(ns.link(&veth.peer()).is_some());
    run(
        &d,
        Command::Del,
        "c-coll",
        p.as_deref(),
        &veth.peer(),
        "",
        &c,
    )
    .await
    .unwrap();
    assert!(ns.link(&veth.peer()).is_none());
}

#[tokio::test]
async fn del_in_every_state_releases_the_ip() {
    require_root();
    let d = delegate("macvlan", false);
    let data = tempfile::tempdir().unwrap();
    for state in ["netns gone", "link gone", "master gone", "no netns given"] {
        let ns = Netns::named("mvt-del");
        let veth = HostLink::veth("mvdel");
        let c = conf(macvlan_conf("delnet", &veth.0, data.path(), json!({})));
        let path = ns.path();
        let r = run(&d, Command::Add, "c-del", Some(&path), "net1", "", &c)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reserved(data.path(), "delnet").len(), 1);
        let mut del_ns = Some(path.clone());
        match state {
            "netns gone" => {
                sh(&["ip", "netns", "del", &ns.name]);
            }
            "link gone" => {
                sh(&["ip", "-n", &ns.name, "link", "del", "net1"]);
            }
            "master gone" => {
                sh(&["ip", "link", "del", &veth.0]);
                assert!(
                    ns.link("net1").is_none(),
                    "the kernel removed the macvlan with its master"
                );
            }
            _ => del_ns = None,
        }
        let cp = with_prev(&c, &r);
        run(
            &d,
            Command::Del,
            "c-del",
            del_ns.as_deref(),
            "net1",
            "",
            &cp,
        )
        .await
        .unwrap_or_else(|e| panic!("{state}: {e}"));
        assert!(
            reserved(data.path(), "delnet").is_empty(),
            "{state}: IP released"
        );
        run(
            &d,
            Command::Del,
            "c-del",
            del_ns.as_deref(),
            "net1",
            "",
            &cp,
        )
        .await
        .unwrap_or_else(|e| panic!("{state}, again: {e}"));
        if state == "no netns given" {
            sh(&["ip", "-n", &ns.name, "link", "del", "net1"]);
        }
    }
}

#[tokio::test]
async fn failed_add_leaves_nothing() {
    require_root();
    let ns = Netns::named("mvt-fail");
    let veth = HostLink::veth("mvfai");
    let d = delegate("macvlan", false);
    let data = tempfile::tempdir().unwrap();
    let p = Some(ns.path());
    let p = p.as_deref();
    let check_clean = |what: &str| {
        assert!(
            ns.interfaces().is_empty(),
            "{what}: netns links {:?}",
            ns.interfaces()
        );
        assert!(host_links_on(&veth.0).is_empty(), "{what}: host links");
        assert!(
            reserved(data.path(), "fail").is_empty(),
            "{what}: reservations"
        );
    };
    // unknown IPAM type (the reference leaves a DOWN net1 here)
    let mut c = macvlan_conf("fail", &veth.0, data.path(), json!({}));
    c["ipam"]["type"] = json!("no-such-ipam");
    let e = run(&d, Command::Add, "c-fail", p, "net1", "", &conf(c))
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 7, "{e}");
    check_clean("unknown ipam");
    // IPAM succeeded, then a route cannot be added (gateway not on-link): IP released, link removed
    let mut c = macvlan_conf("fail", &veth.0, data.path(), json!({}));
    c["ipam"]["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "198.51.100.1"}]);
    let e = run(&d, Command::Add, "c-fail", p, "net1", "", &conf(c))
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 103, "{e}");
    check_clean("route failure");
    // host-local (run while the link is made) fails: the link it raced with is removed
    let mut c = macvlan_conf("fail", &veth.0, data.path(), json!({}));
    c["ipam"]["subnet"] = json!("10.77.0.0/31");
    let e = run(&d, Command::Add, "c-fail", p, "net1", "", &conf(c))
        .await
        .unwrap_err();
    assert_ne!(e.code.code(), 0, "{e}");
    check_clean("host-local failure");
    // unknown master / mode / netns
    let c = conf(macvlan_conf("fail", "mv-nonexist", data.path(), json!({})));
    assert_eq!(
        run(&d, Command::Add, "c-fail", p, "net1", "", &c)
            .await
            .unwrap_err()
            .code
            .code(),
        103
    );
    let c = conf(macvlan_conf(
        "fail",
        &veth.0,
        data.path(),
        json!({"mode": "l3"}),
    ));
    assert_eq!(
        run(&d, Command::Add, "c-fail", p, "net1", "", &c)
            .await
            .unwrap_err()
            .code
            .code(),
        7
    );
    let c = conf(macvlan_conf("fail", &veth.0, data.path(), json!({})));
    let gone = Path::new("/run/netns/mvt-no-such-ns");
    assert_eq!(
        run(&d, Command::Add, "c-fail", Some(gone), "net1", "", &c)
            .await
            .unwrap_err()
            .code
            .code(),
        3
    );
    check_clean("bad master / mode / netns");
    // an interface of that name already in the netns: error, the existing one untouched
    sh(&[
        "ip", "-n", &ns.name, "link", "add", "net1", "type", "veth", "peer", "name", "net1p",
    ]);
    let e = run(&d, Command::Add, "c-fail", p, "net1", "", &c)
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 103, "{e}");
    assert_eq!(ns.link("net1").unwrap()["linkinfo"]["info_kind"], "veth");
    assert_eq!(ns.interfaces().len(), 2, "{:?}", ns.interfaces());
    assert!(reserved(data.path(), "fail").is_empty());
}

#[tokio::test]
async fn dual_stack_waits_for_dad_and_enables_ipv6() {
    require_root();
    let ns = Netns::named("mvt-v6");
    let veth = HostLink::veth("mvv6a");
    let data = tempfile::tempdir().unwrap();
    sh(&[
        "ip",
        "netns",
        "exec",
        &ns.name,
        "sysctl",
        "-qw",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    let c = conf(json!({
        "cniVersion": "1.0.0", "name": "v6", "type": "macvlan", "master": veth.0,
        "ipam": {"type": "host-local", "dataDir": data.path(),
                 "ranges": [[{"subnet": "10.66.0.0/24"}], [{"subnet": "fd66::/64"}]],
                 "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
    }));
    let d = delegate("macvlan", false);
    let p = Some(ns.path());
    let r = run(&d, Command::Add, "c-v6", p.as_deref(), "net1", "", &c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ns.addrs("net1"), ["10.66.0.2/24", "fd66::2/64"]);
    assert_eq!(ns.sysctl("net/ipv6/conf/net1/disable_ipv6"), "0");
    let addrs = ns.ip(&["addr", "show", "dev", "net1"]);
    assert!(
        !addrs.to_string().contains("tentative"),
        "DAD done before the routes: {addrs}"
    );
    let v6 = ns.ip(&["-6", "route", "show", "default"]);
    assert_eq!(v6[0]["gateway"], "fd66::1", "{v6}");
    run(
        &d,
        Command::Check,
        "c-v6",
        p.as_deref(),
        "net1",
        "",
        &with_prev(&c, &r),
    )
    .await
    .unwrap();
    run(&d, Command::Del, "c-v6", p.as_deref(), "net1", "", &c)
        .await
        .unwrap();
    assert!(reserved(data.path(), "v6").is_empty());
}

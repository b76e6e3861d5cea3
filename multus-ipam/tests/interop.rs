//! Interoperation with the reference plugin (Debian's containernetworking-plugins 1.1.1) on one
//! data directory, both ways, and byte-for-byte equality of the store files.

mod common;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use multus_ipam::{config, network, Network};

fn ours_add(conf: &str, cid: &str, ifname: &str) -> Vec<String> {
    let cfg = config::parse(conf.as_bytes(), "").unwrap();
    let r = network::add(&cfg, cid, ifname).unwrap();
    r.ips.iter().map(|c| c.address.addr().to_string()).collect()
}

fn theirs_add(conf: &str, cid: &str, ifname: &str) -> Vec<String> {
    let (ok, v) = reference("ADD", cid, ifname, conf, "");
    assert!(ok, "reference ADD failed: {v}");
    result_ips(&v)
}

#[test]
fn alternating_allocations_follow_one_order_with_no_duplicate_and_no_leak() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = conf("alt", tmp.path(), r#","subnet":"10.20.0.0/24""#);
    let mut seen = Vec::new();
    for i in 0..40 {
        let cid = format!("c{i}");
        let ips = if i % 2 == 0 {
            ours_add(&conf, &cid, "eth0")
        } else {
            theirs_add(&conf, &cid, "eth0")
        };
        seen.push(ips[0].clone());
    }
    // The reference order: .2, .3, ... whoever allocates (last_reserved_ip is shared).
    let expected: Vec<String> = (2..42).map(|i| format!("10.20.0.{i}")).collect();
    assert_eq!(seen, expected);

    // Delete half the other side's allocations: ours releases theirs, theirs releases ours.
    let dir = tmp.path().join("alt");
    for i in 0..20 {
        let cid = format!("c{i}");
        if i % 2 == 0 {
            let (ok, v) = reference("DEL", &cid, "eth0", &conf, "");
            assert!(ok, "{v}");
        } else {
            let cfg = config::parse(conf.as_bytes(), "").unwrap();
            assert_eq!(network::del(&cfg, &cid, "eth0").unwrap().len(), 1);
        }
    }
    assert_eq!(reservations(&dir).len(), 20);

    // Wrap-around: allocations continue after .41, then reuse freed ones; never a taken one.
    let mut all: BTreeSet<String> = reservations(&dir).keys().cloned().collect();
    for i in 40..300 {
        let cid = format!("c{i}");
        let cfg = config::parse(conf.as_bytes(), "").unwrap();
        let r = if i % 3 == 0 {
            let (ok, v) = reference("ADD", &cid, "eth0", &conf, "");
            if !ok {
                assert!(
                    v["msg"]
                        .as_str()
                        .unwrap()
                        .contains("no IP addresses available"),
                    "{v}"
                );
                None
            } else {
                Some(result_ips(&v)[0].clone())
            }
        } else {
            match network::add(&cfg, &cid, "eth0") {
                Ok(r) => Some(r.ips[0].address.addr().to_string()),
                Err(e) => {
                    assert_eq!(code_of(&e), 105, "{e}");
                    None
                }
            }
        };
        if let Some(ip) = r {
            assert!(all.insert(ip.clone()), "{ip} handed out twice");
        }
    }
    // Full: 253 allocatable (.2 - .254).
    assert_eq!(all.len(), 253);
    assert_eq!(reservations(&dir).len(), 253);

    // Release everything, alternating sides: nothing leaks.
    let holders: Vec<(String, String)> = reservations(&dir)
        .into_iter()
        .map(|(ip, c)| (ip, String::from_utf8(c).unwrap()))
        .collect();
    for (n, (_, content)) in holders.iter().enumerate() {
        let (cid, ifname) = content.split_once("\r\n").unwrap();
        if n % 2 == 0 {
            assert!(reference("DEL", cid, ifname, &conf, "").0);
        } else {
            let cfg = config::parse(conf.as_bytes(), "").unwrap();
            network::del(&cfg, cid, ifname).unwrap();
        }
    }
    assert!(reservations(&dir).is_empty());
    assert!(lock_is_free(&dir));
}

#[test]
fn store_files_are_byte_for_byte_the_references() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let extra = r#","ranges":[[{"subnet":"10.30.0.0/24","rangeStart":"10.30.0.250"},{"subnet":"10.30.1.0/30"}],
        [{"subnet":"2001:db8:0:1::/64","rangeStart":"2001:db8:0:1::fffe"}],
        [{"subnet":"fd00:0:0:a::/120","rangeEnd":"fd00:0:0:a::9"}]]"#;
    let c_ours = conf("bytes", ours.path(), extra);
    let c_theirs = conf("bytes", theirs.path(), extra);
    let mut got_ours = Vec::new();
    let mut got_theirs = Vec::new();
    for i in 0..6 {
        let cid = format!("container-{i}");
        let ifname = if i % 2 == 0 { "eth0" } else { "net1" };
        got_ours.push(ours_add(&c_ours, &cid, ifname));
        got_theirs.push(theirs_add(&c_theirs, &cid, ifname));
    }
    assert_eq!(got_ours, got_theirs);
    // One DEL each.
    let cfg = config::parse(c_ours.as_bytes(), "").unwrap();
    network::del(&cfg, "container-3", "net1").unwrap();
    assert!(reference("DEL", "container-3", "net1", &c_theirs, "").0);

    let a = snapshot(&ours.path().join("bytes"));
    let b = snapshot(&theirs.path().join("bytes"));
    assert_eq!(a, b, "store files differ (name -> (bytes, mode))");
    // Spot-check the format itself.
    assert_eq!(a["10.30.0.250"].0, b"container-0\r\neth0");
    assert_eq!(a["2001:db8:0:1::fffe"].0, b"container-0\r\neth0");
    assert!(a.contains_key("last_reserved_ip.2"));
    assert_eq!(a["lock"], (Vec::new(), 0o750));
}

#[test]
fn reference_reads_our_store_and_we_read_its_store() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = conf("rw", tmp.path(), r#","subnet":"10.40.0.0/29""#);
    // Ours allocates, the reference's CHECK finds it and its duplicate check refuses a second ADD.
    let mine = ours_add(&conf, "ours", "eth0");
    assert!(reference("CHECK", "ours", "eth0", &conf, "").0);
    let (ok, v) = reference("ADD", "ours", "eth0", &conf, "");
    assert!(!ok);
    assert!(
        v["msg"]
            .as_str()
            .unwrap()
            .contains("duplicate allocation is not allowed"),
        "{v}"
    );
    // The reference allocates; our CHECK finds it and our duplicate check refuses.
    let theirs = theirs_add(&conf, "theirs", "eth0");
    let cfg = config::parse(conf.as_bytes(), "").unwrap();
    let held = network::check(&cfg, "theirs", "eth0").unwrap();
    assert_eq!(held, vec![theirs[0].parse::<IpAddr>().unwrap()]);
    let e = network::add(&cfg, "theirs", "eth0").unwrap_err();
    assert_eq!(code_of(&e), 109);
    assert_ne!(mine, theirs);

    // A requested address taken by the other side is refused on both sides.
    let (ok, _) = reference("ADD", "x1", "eth0", &conf, &format!("IP={}", mine[0]));
    assert!(!ok);
    let cfg_req = config::parse(conf.as_bytes(), &format!("IP={}", theirs[0])).unwrap();
    assert_eq!(
        code_of(&network::add(&cfg_req, "x2", "eth0").unwrap_err()),
        106
    );

    // Legacy files (container ID only) written by old plugins are released by container ID.
    std::fs::write(tmp.path().join("rw/10.40.0.6"), "oldctr").unwrap();
    let mut net = Network::from_config(&cfg).unwrap();
    assert_eq!(net.release("oldctr", "eth0").unwrap().len(), 1);
    assert!(!tmp.path().join("rw/10.40.0.6").exists());
}

#[test]
fn requested_ips_and_dns_and_routes_match_the_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let resolv = tmp.path().join("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 10.0.0.53\nsearch a.example b.example\noptions ndots:2\ndomain example\n",
    )
    .unwrap();
    let extra = format!(
        r#","subnet":"10.50.0.0/24","resolvConf":"{}","routes":[{{"dst":"0.0.0.0/0"}},{{"dst":"192.168.0.0/16","gw":"10.50.0.254"}}]"#,
        resolv.display()
    );
    let c = conf("req", tmp.path(), &extra);
    let (ok, v) = reference("ADD", "r1", "eth0", &c, "IP=10.50.0.77");
    assert!(ok, "{v}");
    let cfg = config::parse(c.as_bytes(), "IgnoreUnknown=1;IP=10.50.0.78;K8S_POD_NAME=p").unwrap();
    let r = network::add(&cfg, "r2", "eth0").unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.50.0.78/24");
    assert_eq!(v["ips"][0]["address"], "10.50.0.77/24");
    // Same routes and DNS as the reference reports.
    let routes: Vec<String> = r.routes.iter().map(|r| r.dst.to_string()).collect();
    assert_eq!(routes, ["0.0.0.0/0", "192.168.0.0/16"]);
    assert_eq!(v["routes"][1]["gw"], "10.50.0.254");
    assert_eq!(r.routes[1].gw.unwrap().to_string(), "10.50.0.254");
    assert_eq!(v["dns"]["nameservers"][0], "10.0.0.53");
    assert_eq!(r.dns.nameservers, ["10.0.0.53"]);
    assert_eq!(r.dns.search, ["a.example", "b.example"]);
    assert_eq!(v["dns"]["search"][1], "b.example");
    assert_eq!(r.dns.domain.as_deref(), Some("example"));
    assert_eq!(r.dns.options, ["ndots:2"]);
    // Next dynamic allocation continues after the last requested one on both sides.
    assert_eq!(theirs_add(&c, "r3", "eth0"), ["10.50.0.79"]);
    assert_eq!(ours_add(&c, "r4", "eth0"), ["10.50.0.80"]);
}

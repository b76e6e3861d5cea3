//! `route::defaults` and `route::del` against a real kernel, as root, in a throwaway network namespace.

mod sublink_util;

use multus_core::netlink::{link, route, Netlink};
use multus_core::netns::NetNs;
use sublink_util::*;

#[tokio::test]
async fn list_and_delete_default_routes_of_one_family() {
    require_root();
    let ns = Netns::named(&format!("nlrt{}", std::process::id()));
    for c in [
        "link add d0 type veth peer name p0",
        "link add d1 type veth peer name p1",
        "link set p0 up",
        "link set p1 up",
        "link set d0 up",
        "link set d1 up",
        "addr add 10.9.0.2/24 dev d0",
        "addr add 10.9.1.2/24 dev d1",
        "addr add fd09::2/64 dev d0 nodad",
        "route add default via 10.9.0.1 dev d0",
        "route add default via 10.9.1.1 dev d1 metric 50",
        "-6 route add default via fd09::1 dev d0",
    ] {
        let mut args = vec!["ip", "-n", ns.name.as_str()];
        args.extend(c.split(' '));
        sh(&args);
    }
    let nl = Netlink::open_in(&NetNs::open(&ns.path()).unwrap()).unwrap();
    let v4 = route::defaults(&nl, false).await.unwrap();
    assert_eq!(v4.len(), 2, "{v4:?}");
    assert_eq!(route::defaults(&nl, true).await.unwrap().len(), 1);
    for r in &v4 {
        route::del(&nl, r).await.unwrap();
    }
    assert!(route::defaults(&nl, false).await.unwrap().is_empty());
    // The other family and the subnet routes are untouched.
    assert_eq!(route::defaults(&nl, true).await.unwrap().len(), 1);
    assert_eq!(ns.ip(&["-4", "route", "show"]).as_array().unwrap().len(), 2);
    // Deleting again: gone, and said so.
    let e = route::del(&nl, &v4[0]).await.unwrap_err();
    assert!(e.is_gone(), "{e:?}");
}

/// A connection asked for in a namespace uses what `netns::preopen` opened there only when it is the same
/// namespace (by identity, not path), once; the sysctl directories it opened show that namespace; and
/// queued requests are carried out in order.
#[tokio::test]
async fn preopened_socket_goes_to_its_namespace_only() {
    require_root();
    let a = Netns::named(&format!("nlpa{}", std::process::id()));
    let b = Netns::named(&format!("nlpb{}", std::process::id()));
    sh(&[
        "ip", "-n", &a.name, "link", "add", "ina", "type", "veth", "peer", "name", "ina1",
    ]);
    sh(&[
        "ip", "-n", &b.name, "link", "add", "inb", "type", "veth", "peer", "name", "inb1",
    ]);
    // The test harness runs other tests on other threads: preopen from a fresh thread of its own, which
    // is what the function asks for (no other work on that thread).
    let pa = a.path();
    assert!(
        std::thread::spawn(move || multus_core::netns::preopen(&pa).unwrap())
            .join()
            .unwrap()
    );
    let nb = NetNs::open(&b.path()).unwrap();
    let (in_b, ()) = Netlink::open_in_background(&nb)
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(link::by_name(&in_b, "inb").await.unwrap().is_some());
    assert!(
        link::by_name(&in_b, "ina").await.unwrap().is_none(),
        "b's own socket"
    );
    let na = NetNs::open(&a.path()).unwrap();
    let (in_a, dirs) = Netlink::open_in_background_with_sysctl(&na, true)
        .unwrap()
        .wait()
        .await
        .unwrap();
    let dirs = dirs.unwrap();
    let ina = link::by_name(&in_a, "ina")
        .await
        .unwrap()
        .expect("a's link");
    assert!(dirs.verify("ina") && !dirs.verify("inb"));
    // Queued: up, then an address; both answered, in order.
    let up = link::set_queued(&in_a, ina.index, &link::LinkChange::new().up());
    let addr =
        multus_core::netlink::addr::add_queued(&in_a, ina.index, "10.9.9.2/24".parse().unwrap());
    up.await.unwrap();
    addr.await.unwrap();
    assert_eq!(a.addrs("ina"), ["10.9.9.2/24"]);
    dirs.apply(
        &na,
        vec![multus_core::netlink::sysctl::SysctlOp::TrySet {
            key: "net/ipv4/conf/ina/arp_notify".into(),
            value: "1".into(),
        }],
    )
    .unwrap();
    assert_eq!(a.sysctl("net/ipv4/conf/ina/arp_notify"), "1");
    assert_eq!(b.sysctl("net/ipv4/conf/inb/arp_notify"), "0");
}

/// The one netdev save/restore: a veth renamed, re-addressed, resized and set down (as a delegate does to
/// a device it hands out) gets its name, MAC, MTU and up flag back; moved to another namespace by one
/// `LinkChange` with `netns_fd` and a temporary name.
#[tokio::test]
async fn netdev_save_change_move_and_restore() {
    use multus_core::netlink::link::LinkChange;
    use multus_core::netlink::netdev;
    use std::os::fd::AsRawFd;
    require_root();
    let a = Netns::named(&format!("nlsr{}", std::process::id()));
    let b = Netns::named(&format!("nlsb{}", std::process::id()));
    sh(&[
        "ip",
        "-n",
        &a.name,
        "link",
        "add",
        "orig0",
        "mtu",
        "1400",
        "address",
        "02:00:00:00:11:01",
        "type",
        "veth",
        "peer",
        "name",
        "peer0",
    ]);
    sh(&["ip", "-n", &a.name, "link", "set", "orig0", "up"]);
    let nl = Netlink::open_in(&NetNs::open(&a.path()).unwrap()).unwrap();
    let saved = netdev::save(&nl, "orig0").await.unwrap().expect("orig0");
    assert_eq!(
        (saved.mtu, saved.up, saved.mac.to_string()),
        (1400, true, "02:00:00:00:11:01".to_string())
    );
    let idx = link::by_name(&nl, "orig0").await.unwrap().unwrap().index;
    link::set(&nl, idx, &LinkChange::new().down())
        .await
        .unwrap();
    let c = LinkChange::new()
        .name("other0")
        .mtu(1300)
        .mac("02:00:00:00:11:02".parse().unwrap());
    link::set(&nl, idx, &c).await.unwrap();
    let l = link::by_name(&nl, "other0").await.unwrap().unwrap();
    assert_eq!(
        (l.mtu, l.up, l.mac_text().as_str()),
        (1300, false, "02:00:00:00:11:02")
    );
    netdev::restore(&nl, idx, &saved).await.unwrap();
    let l = link::by_name(&nl, "orig0")
        .await
        .unwrap()
        .expect("renamed back");
    assert_eq!(netdev::NetdevState::of(&l), saved);
    // Another link holding the name: that step fails, the others are still done.
    link::set(&nl, idx, &LinkChange::new().down().mtu(1200))
        .await
        .unwrap();
    link::set(&nl, idx, &LinkChange::new().name("tmp0"))
        .await
        .unwrap();
    let peer = link::by_name(&nl, "peer0").await.unwrap().unwrap().index;
    link::set(&nl, peer, &LinkChange::new().name("orig0"))
        .await
        .unwrap();
    let e = netdev::restore(&nl, idx, &saved).await.unwrap_err();
    assert!(e.msg.contains("has that name"), "{e}");
    let l = link::by_index(&nl, idx).await.unwrap().unwrap();
    assert_eq!((l.name.as_str(), l.mtu, l.up), ("tmp0", 1400, true));
    // Moved to b under a temporary name, down, in one request.
    let nb = NetNs::open(&b.path()).unwrap();
    let mv = LinkChange::new()
        .name("moved0")
        .down()
        .netns_fd(nb.file().as_raw_fd());
    link::set(&nl, idx, &mv).await.unwrap();
    assert!(link::by_index(&nl, idx).await.unwrap().is_none());
    let in_b = Netlink::open_in(&nb).unwrap();
    let l = link::by_name(&in_b, "moved0").await.unwrap().expect("in b");
    assert!(!l.up);
}

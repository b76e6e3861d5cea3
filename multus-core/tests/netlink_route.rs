//! `route::defaults` and `route::del` against a real kernel, as root, in a throwaway network namespace.

mod sublink_util;

use multus_core::netlink::{route, Netlink};
use multus_core::netns::NetNs;
use sublink_util::*;

#[tokio::test]
async fn list_and_delete_default_routes_of_one_family() {
    require_root();
    let ns = Netns::new(&format!("nlrt{}", std::process::id()));
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

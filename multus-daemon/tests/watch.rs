//! The daemon's watch cache through the binaries: what an ADD reads comes from the watch (pods added after
//! start, a NAD changed), a pod the watch has not seen yet costs exactly one GET, 410 Gone makes it list
//! again, a bookmark's resourceVersion is where the next watch resumes, and the API down and back up is
//! resumed without a LIST.

mod support;

use support::*;

fn gets(node: &Node) -> Vec<String> {
    node.flow_requests()
        .into_iter()
        .filter(|r| r.starts_with("GET"))
        .collect()
}

/// A pod the cache does not hold (here: the API says it runs on another node, so the watch never brings
/// it): exactly one GET, of the pod, none of its NAD. A pod whose UID is not the cached one: one GET too.
#[test]
fn a_pod_not_in_the_cache_costs_one_get() {
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    let pod = TestPod::unlisted(None);
    let ann = [(NETWORKS, "macvlan-conf")];
    node.api
        .add_pod_on_node(&pod.namespace, &pod.name, &pod.uid, "other-node", &ann);
    node.api.clear_log();
    node.shim("ADD", &pod, &conf).ok();
    let g = gets(&node);
    assert_eq!(g.len(), 1, "{g:?}");
    assert!(g[0].contains(&format!("/pods/{} ", pod.name)), "{g:?}");
    node.shim("DEL", &pod, &conf).ok();
    // The runtime asks for a UID the cache (and the API) do not have: one GET, then "try again later".
    let old = TestPod::new(&node, Some("macvlan-conf"));
    node.wait_pods_cached(1);
    let newer = TestPod {
        uid: "a-new-pod-of-that-name".into(),
        name: old.name.clone(),
        ..TestPod::unlisted(None)
    };
    node.api.clear_log();
    let e = node.shim("ADD", &newer, &conf).err();
    assert_eq!(e["code"], 11, "{e}");
    assert_eq!(gets(&node).len(), 1, "{:?}", gets(&node));
}

/// A NAD changed after start: the next ADD uses the new config, without a GET.
#[test]
fn nad_changes_reach_the_next_add() {
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    node.api.add_nad(
        "default",
        "macvlan-conf",
        &node.macvlan_conf("192.168.1.230", "192.168.1.231"),
        &[],
    );
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.wait_for("the NAD change and the pod", || {
        let s = node.socket_get("/readyz").map(|x| x.0).unwrap_or_default();
        s == 200 && node.cached_pods() >= 1.0
    });
    // The watch delivers in order: once the pod (added after the NAD change) is in, so is the change.
    node.api.clear_log();
    node.shim("ADD", &pod, &conf).ok();
    let status = node.api.network_status(&pod.namespace, &pod.name).unwrap();
    assert_eq!(status[1]["ips"][0], "192.168.1.230", "{status}");
    assert!(gets(&node).is_empty(), "{:?}", gets(&node));
    node.shim("DEL", &pod, &conf).ok();
    // A NAD deleted: the ADD fails as without Multus' cache (the fallback GET finds nothing).
    node.api.delete_nad("default", "macvlan-conf");
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    let e = node.shim("ADD", &pod, &conf).err();
    assert!(e["msg"].as_str().unwrap().contains("macvlan-conf"), "{e}");
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
}

/// 410 Gone: the daemon lists again and sees what changed meanwhile; a bookmark moves where it resumes.
#[test]
fn gone_relists_and_bookmarks_move_the_resume_point() {
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    let relists = |node: &Node| node.metric("multus_watch_relists_total{resource=\"pods\"}");
    assert_eq!(relists(&node), 0.0);
    let rv = node.api.bookmark();
    node.wait_for("both watches open", || node.api.open_watches() == 2);
    node.api.set_down(true);
    node.api.set_down(false);
    let resume = format!("resourceVersion={rv}&");
    node.wait_for("a watch resumed at the bookmark", || {
        node.api
            .requests()
            .iter()
            .any(|r| r.contains("watch=1") && r.contains(&resume))
    });
    node.wait_for("both watches open again", || node.api.open_watches() == 2);
    node.api.expire_watches();
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.wait_for("a relist after 410", || relists(&node) >= 1.0);
    node.wait_pods_cached(1);
    node.api.clear_log();
    node.shim("ADD", &pod, &conf).ok();
    assert!(gets(&node).is_empty(), "{:?}", gets(&node));
    node.shim("DEL", &pod, &conf).ok();
}

/// The API down: an ADD fails with 11 (its status cannot be written) in bounded time; back up, the
/// watches resume without a LIST and a pod created while it was down is served from the cache.
#[test]
fn api_down_and_back() {
    let mut node = Node::new();
    node.daemon_config["apiRequestTimeout"] = serde_json::json!(2);
    node.start_daemon();
    let conf = node.multus_conf();
    let lists = |node: &Node| {
        node.api
            .requests()
            .iter()
            .filter(|r| r.starts_with("GET") && r.contains("limit="))
            .count()
    };
    let listed = lists(&node);
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.wait_pods_cached(1);
    node.api.set_down(true);
    let e = node.shim("ADD", &pod, &conf).err();
    assert_eq!(e["code"], 11, "{e}");
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()], "rolled back");
    node.wait_for("the cache to notice", || {
        node.metric("multus_watch_cache_staleness_seconds{resource=\"pods\"}") > 0.0
    });
    let late = TestPod::new(&node, Some("macvlan-conf"));
    node.api.set_down(false);
    node.wait_pods_cached(2);
    assert_eq!(lists(&node), listed, "resumed, not listed again");
    node.api.clear_log();
    node.shim("ADD", &late, &conf).ok();
    assert!(gets(&node).is_empty(), "{:?}", gets(&node));
    node.shim("DEL", &late, &conf).ok();
    node.shim("DEL", &pod, &conf).ok();
    assert!(reservations(&node.path("ipam")).is_empty());
}

//! The daemon's life through the binaries: killed mid-ADD then DEL through a new daemon (nothing left),
//! SIGTERM with a request in flight (finished, then the config taken off the node), 50 pods at once,
//! metrics scraped, and a request exactly as upstream's shim sends it.

mod support;

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};
use support::*;

/// A plugin `slow` in the node's bin dir: marks that it started, sleeps, then runs the reference macvlan.
fn slow_plugin(node: &Node, secs: f64) {
    let p = node.path("bin/slow");
    let mark = node.path("slow-started");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ \"$CNI_COMMAND\" = ADD ]; then touch {}; sleep {secs}; fi\nexec /usr/lib/cni/macvlan\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c: Value =
        serde_json::from_str(&node.macvlan_conf("192.168.1.200", "192.168.1.216")).unwrap();
    c["type"] = json!("slow");
    node.api
        .add_nad("default", "slow-conf", &c.to_string(), &[]);
}

fn wait_file(node: &Node, p: &std::path::Path) {
    let t = Instant::now();
    while !p.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{} never appeared: {}",
            p.display(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn daemon_killed_mid_add_then_del_through_a_new_daemon_leaves_nothing() {
    let mut node = Node::new();
    slow_plugin(&node, 3.0);
    node.start_daemon();
    let conf = node.multus_conf();
    let pod = TestPod::new(&node, Some("slow-conf"));
    std::thread::scope(|s| {
        let add = s.spawn(|| node.shim("ADD", &pod, &conf));
        wait_file(&node, &node.path("slow-started"));
        // eth0 is attached, net1's plugin is running: the daemon dies.
        signal(node.daemon.as_ref().unwrap(), libc::SIGKILL);
        let e = add.join().unwrap().err();
        assert_eq!(e["code"], 11, "{e}");
    });
    node.daemon.take().unwrap().wait().unwrap();
    // The plugin died with the daemon: nothing appears later.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!pod.ns.link_names().contains(&"net1".to_string()));
    node.start_daemon();
    node.shim("DEL", &pod, &conf).ok();
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
    assert!(
        reservations(&node.path("ipam")).is_empty(),
        "{:?}",
        reservations(&node.path("ipam"))
    );
    assert_eq!(
        std::fs::read_dir(node.path("cache"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

/// SIGTERM with an ADD in flight: the ADD completes, the daemon stops accepting, then takes the Multus config
/// off with `multus uninstall`'s own code (cleanupConfigOnExit): a pod is still attached, so the config is
/// left retiring; the thin `multus` (what the runtime runs for it now) DELs the pod and steps aside. Without
/// cleanupConfigOnExit (a rolling update) the config stays as it is.
#[test]
fn sigterm_drains_then_takes_the_config_off() {
    let mut node = Node::new();
    slow_plugin(&node, 1.5);
    node.start_daemon();
    let conf = node.multus_conf();
    let conf_file = node.path("net.d/00-multus.conf");
    let pod = TestPod::new(&node, Some("slow-conf"));
    let other = TestPod::new(&node, Some("macvlan-conf"));
    std::thread::scope(|s| {
        let add = s.spawn(|| node.shim("ADD", &pod, &conf));
        wait_file(&node, &node.path("slow-started"));
        signal(node.daemon.as_ref().unwrap(), libc::SIGTERM);
        // No new request once stopping (the socket is gone), answered 11 within the shim's bound.
        std::thread::sleep(Duration::from_millis(200));
        let mut quick = conf.clone();
        quick["daemonConnectTimeout"] = json!(0.3);
        assert_eq!(node.shim("ADD", &other, &quick).err()["code"], 11);
        assert_eq!(
            node.multus_conf()["type"],
            "multus-shim",
            "untouched until the drain ends"
        );
        let r = add.join().unwrap().ok();
        assert!(!r["ips"].as_array().unwrap().is_empty(), "{r}");
    });
    let code = node.daemon.take().unwrap().wait().unwrap().code();
    assert_eq!(code, Some(0));
    assert!(!node.path("run/multus.sock").exists());
    let retiring = node.multus_conf();
    assert_eq!(retiring["type"], "multus", "{retiring}");
    assert_eq!(
        retiring["retiring"]["configFile"],
        json!(conf_file),
        "{retiring}"
    );
    // The runtime now runs the thin meta-plugin with that config: the pod is undone, the config goes.
    let netns = pod.ns.path().display().to_string();
    let args = pod.args();
    let vars = [
        ("CNI_COMMAND", "DEL"),
        ("CNI_CONTAINERID", pod.cid.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
        ("CNI_ARGS", args.as_str()),
        ("CNI_NETNS", netns.as_str()),
    ];
    run_plugin(&multus_bin(), &vars, retiring.to_string().as_bytes()).ok();
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&node.path("ipam")).is_empty());
    assert!(!conf_file.exists(), "stepped aside after the last pod");
    // A new daemon without cleanupConfigOnExit leaves its config at SIGTERM (a rolling update).
    node.daemon_config["cleanupConfigOnExit"] = json!(false);
    node.start_daemon();
    assert_eq!(node.stop_daemon(), 0);
    assert_eq!(node.multus_conf()["type"], "multus-shim");
}

/// SIGTERM with cleanupConfigOnExit on a node where this daemon never cached an attachment (its `cniDir` was
/// never made): the config is removed, not left retiring; the daemon's own view of its `cniDir` is what
/// tells, not a guess at where the host's might be mounted.
#[test]
fn sigterm_removes_the_config_when_nothing_was_ever_cached() {
    let mut node = Node::new();
    let never_made = node.path("never-made/multus");
    node.daemon_config["cniDir"] = json!(never_made);
    node.start_daemon();
    let conf_file = node.path("net.d/00-multus.conf");
    assert_eq!(node.multus_conf()["type"], "multus-shim");
    assert_eq!(node.stop_daemon(), 0);
    assert!(!never_made.exists());
    assert!(
        !conf_file.exists(),
        "removed: {:?}",
        std::fs::read_to_string(&conf_file)
    );
}

/// 50 pods added at once through the shim, with `connectionLimit` 8: all attached with distinct addresses,
/// then all deleted.
#[test]
fn fifty_pods_at_once() {
    let mut node = Node::new();
    let big = json!({"cniVersion":"0.3.1","type":"macvlan","master":node.master.0,"mode":"bridge",
        "ipam":{"type":"host-local","subnet":"172.30.0.0/24","dataDir":node.path("ipam")}});
    node.api.add_nad("default", "big", &big.to_string(), &[]);
    // At most 8 shim connections served at once: the others wait in the socket's backlog.
    node.daemon_config["connectionLimit"] = json!(8);
    node.start_daemon();
    let conf = node.multus_conf();
    let pods: Vec<TestPod> = (0..50).map(|_| TestPod::new(&node, Some("big"))).collect();
    node.wait_pods_cached(50);
    node.shim_bin();
    let results: Vec<Run> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .map(|p| s.spawn(|| node.shim("ADD", p, &conf)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = Vec::new();
    for (r, p) in results.iter().zip(&pods) {
        r.ok();
        let st = node.api.network_status(&p.namespace, &p.name).unwrap();
        ips.push(st[1]["ips"][0].as_str().unwrap().to_string());
        ips.push(st[0]["ips"][0].as_str().unwrap().to_string());
    }
    let n = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n, "distinct addresses");
    assert_eq!(
        node.metric("multus_cni_requests_total{verb=\"ADD\",code=\"0\"}"),
        50.0
    );
    std::thread::scope(|s| {
        for p in &pods {
            s.spawn(|| node.shim("DEL", p, &conf).ok());
        }
    });
    assert!(reservations(&node.path("ipam")).is_empty());
    assert!(pods
        .iter()
        .all(|p| p.ns.link_names() == vec!["lo".to_string()]));
}

/// `/metrics`, `/healthz`, `/readyz` on the metrics port after an ADD and a failed ADD.
#[test]
fn metrics_are_scraped() {
    let mut node = Node::new();
    node.start_daemon();
    assert_eq!(node.metrics_get("/healthz").unwrap().0, 200);
    assert_eq!(node.metrics_get("/readyz").unwrap().0, 200);
    let conf = node.multus_conf();
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.shim("ADD", &pod, &conf).ok();
    let missing = TestPod::new(&node, Some("no-such-nad"));
    let e = node.shim("ADD", &missing, &conf).err();
    let code = e["code"].as_u64().unwrap();
    let (status, text) = node.metrics_get("/metrics").unwrap();
    assert_eq!(status, 200);
    for want in [
        "multus_cni_request_duration_seconds_count{verb=\"ADD\"} 2".to_string(),
        "multus_cni_requests_total{verb=\"ADD\",code=\"0\"} 1".to_string(),
        format!("multus_cni_requests_total{{verb=\"ADD\",code=\"{code}\"}} 1"),
        "multus_cni_requests_in_flight 0".to_string(),
        "multus_api_requests_total{verb=\"PATCH\",outcome=\"200\"} 1".to_string(),
        "multus_api_requests_total{verb=\"LIST\",outcome=\"200\"} 2".to_string(),
        "multus_watch_cache_objects{resource=\"network-attachment-definitions\"} 1".to_string(),
        "multus_watch_cache_staleness_seconds{resource=\"pods\"} 0.0".to_string(),
        "multus_delegate_duration_seconds_count{type=\"bridge\",verb=\"ADD\",outcome=\"ok\"} 1"
            .to_string(),
        "multus_delegate_duration_seconds_count{type=\"macvlan\",verb=\"ADD\",outcome=\"ok\"} 1"
            .to_string(),
        "multus_server_request_total{handler=\"/cni\",code=\"200\",method=\"post\"} 1".to_string(),
    ] {
        assert!(text.contains(&want), "{want} not in\n{text}");
    }
    node.shim("DEL", &pod, &conf).ok();
}

/// A request as upstream's shim marshals it (its whole environment, the config as base64, the result
/// read from `Result` as CNI 1.0.0), and upstream's readiness poll.
#[test]
fn upstream_shims_request_is_served() {
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    let netns = pod.ns.path().display().to_string();
    let mut env: serde_json::Map<String, Value> = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", pod.cid.as_str()),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_ARGS", pod.args().as_str()),
        ("PATH", "/usr/bin"),
        ("HOME", "/root"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), json!(v)))
    .collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(conf.to_string());
    let body = json!({"env": env, "config": b64}).to_string();
    let sock = node.path("run/multus.sock");
    let bounds = multus_cni::shim::http::Bounds {
        connect: Duration::from_secs(1),
        total: Duration::from_secs(60),
    };
    let (status, _) = multus_cni::shim::http::post(&sock, "/readyz", b"", bounds).unwrap();
    assert_eq!(status, 200);
    let (status, answer) =
        multus_cni::shim::http::post(&sock, "/cni", body.as_bytes(), bounds).unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let resp: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(resp["Result"]["cniVersion"], "1.0.0", "{resp}");
    assert!(resp["Result"]["ips"][0]["address"].is_string(), "{resp}");
    env.insert("CNI_COMMAND".into(), json!("DEL"));
    let body = json!({"env": env, "config": b64}).to_string();
    let (status, answer) =
        multus_cni::shim::http::post(&sock, "/cni", body.as_bytes(), bounds).unwrap();
    assert_eq!((status, answer.len()), (200, 0));
    // An error is upstream's 400 with the CNI error object.
    let bad = json!({"env": {"CNI_COMMAND": "ADD"}, "config": b64}).to_string();
    let (status, answer) =
        multus_cni::shim::http::post(&sock, "/cni", bad.as_bytes(), bounds).unwrap();
    assert_eq!(status, 400);
    let e: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(e["code"], 4, "{e}");
}

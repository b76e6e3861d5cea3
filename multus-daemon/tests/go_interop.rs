//! Thick-mode protocol interop with upstream Go Multus v4.2.2, through the real binaries (feature
//! `go-interop`; run by `tests/interop/go-multus.sh`, which builds upstream's `multus-shim` and
//! `multus-daemon`, and our `interop-apiproxy`, naming them in `GO_MULTUS_SHIM`, `GO_MULTUS_DAEMON` and
//! `GO_MULTUS_APIPROXY`):
//!
//! - upstream's `multus-shim` (run as the runtime runs a CNI plugin) against our daemon: ADD, CHECK, DEL;
//! - our shim against upstream's `multus-daemon` (in-cluster API settings pointing at the HTTPS API
//!   stand-in, in a mount namespace of its own so that the host's `/var/run/secrets` is never touched):
//!   ADD, DEL;
//! - upstream's shim with no daemon: what it answers, within a bound.
//!
//! The node is the thick tests' (`support::Node`): the user guide's pod, eth0 from the reference bridge +
//! host-local, net1 from the NAD `macvlan-conf` (reference macvlan + host-local), in real namespaces.

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::go::*;
use support::*;

/// Files (not directories) under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Checks an ADD's result against what is in the pod's netns and on the API. The result is the cluster
/// network's (Multus answers the primary delegate's result, upstream's `multus.CmdAdd` as ours): eth0 in
/// the pod with its IP. net1 (macvlan from `default/macvlan-conf`) is reported in the network-status: both
/// interfaces are read back with `ip -j` in the pod's netns, with the IPs and MAC the status names.
fn assert_attached(node: &Node, pod: &TestPod, result: &Value, cni_version: &str) {
    assert_eq!(result["cniVersion"], cni_version, "{result}");
    let ifaces = result["interfaces"].as_array().expect("interfaces");
    let netns = pod.ns.path().display().to_string();
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    let eth0 = &ifaces[ips[0]["interface"].as_u64().expect("ips[].interface") as usize];
    assert_eq!(eth0["name"], "eth0", "{result}");
    assert_eq!(eth0["sandbox"], netns.as_str(), "{result}");
    let eth0_ip = ips[0]["address"].as_str().unwrap().to_string();
    assert!(
        eth0_ip.starts_with(&format!("10.{}.", node.subnet)) && eth0_ip.ends_with("/16"),
        "{result}"
    );
    assert_eq!(
        ips[0]["gateway"],
        format!("10.{}.0.1", node.subnet).as_str(),
        "{result}"
    );
    // The network-status on the API.
    let status = node
        .api
        .network_status(&pod.namespace, &pod.name)
        .expect("network-status written");
    let list = status.as_array().expect("a list");
    assert_eq!(list.len(), 2, "{status}");
    let bare = |cidr: &str| cidr.split('/').next().unwrap().to_string();
    assert_eq!(list[0]["name"], "podnet", "{status}");
    assert_eq!(list[0]["interface"], "eth0", "{status}");
    assert_eq!(list[0]["default"], true, "{status}");
    assert_eq!(list[0]["ips"], json!([bare(&eth0_ip)]), "{status}");
    assert_eq!(list[0]["mac"], eth0["mac"], "{status}");
    assert_eq!(list[1]["name"], "default/macvlan-conf", "{status}");
    assert_eq!(list[1]["interface"], "net1", "{status}");
    let net1_ip = list[1]["ips"][0].as_str().expect("net1's IP").to_string();
    assert!(net1_ip.starts_with("192.168.1.2"), "{status}");
    // Read back in the pod's netns.
    for (ifname, kind, ip, mac) in [
        ("eth0", "veth", eth0_ip.clone(), &list[0]["mac"]),
        ("net1", "macvlan", format!("{net1_ip}/24"), &list[1]["mac"]),
    ] {
        let link = pod
            .ns
            .link(ifname)
            .unwrap_or_else(|| panic!("no {ifname} in the pod: {:?}", pod.ns.link_names()));
        assert_eq!(link["linkinfo"]["info_kind"], kind, "{link}");
        assert!(
            link["flags"].as_array().unwrap().contains(&json!("UP")),
            "{link}"
        );
        assert_eq!(&link["address"], mac, "{link}");
        assert_eq!(pod.ns.addrs(ifname), vec![ip]);
    }
}

/// After DEL: only `lo` in the pod, no IP reserved, nothing in the daemon's cache directory.
fn assert_released(node: &Node, pod: &TestPod, cache: &Path) {
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
    assert!(
        reservations(&node.path("ipam")).is_empty(),
        "{:?}",
        reservations(&node.path("ipam"))
    );
    assert!(
        files_under(cache).is_empty(),
        "left in the cache: {:?}",
        files_under(cache)
    );
}

/// (a) Upstream's `multus-shim` -> our `multus daemon`: its readiness probe (`POST /healthz` with the
/// body `null`), its request (the whole environment, the config base64) and our answer (`{"Result":..}`,
/// an empty body for CHECK and DEL) work: ADD attaches both networks, CHECK passes, DEL releases all.
#[test]
fn upstream_shim_to_our_daemon_add_check_del() {
    let go_shim = go_bin("GO_MULTUS_SHIM");
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.wait_pods_cached(1);

    let r = run_shim(&go_shim, "ADD", &pod, &conf);
    let result = r.ok();
    assert_attached(&node, &pod, &result, "1.0.0");
    assert_eq!(
        node.metric("multus_cni_requests_total{verb=\"ADD\",code=\"0\"}"),
        1.0
    );

    // CHECK (upstream's shim supports it), with the ADD's result as `prevResult` as a runtime sends it:
    // success, an empty answer; it reached our daemon.
    let mut check_conf = conf.clone();
    check_conf["prevResult"] = result.clone();
    let r = run_shim(&go_shim, "CHECK", &pod, &check_conf);
    assert_eq!(r.ok(), Value::Null, "{}", r.stderr);
    assert_eq!(
        node.metric("multus_cni_requests_total{verb=\"CHECK\",code=\"0\"}"),
        1.0,
        "{}",
        node.log()
    );

    // DEL: upstream's shim answers success whatever happens, so what counts is what is left.
    let r = run_shim(&go_shim, "DEL", &pod, &conf);
    assert_eq!(r.ok(), Value::Null, "{}", r.stderr);
    assert_eq!(
        node.metric("multus_cni_requests_total{verb=\"DEL\",code=\"0\"}"),
        1.0,
        "{}",
        node.log()
    );
    assert_released(&node, &pod, &node.path("cache"));
    let status = node.api.network_status(&pod.namespace, &pod.name);
    assert!(
        status.as_ref().is_none_or(|s| s == &json!([])),
        "network-status after DEL: {status:?}"
    );
    assert_eq!(node.stop_daemon(), 0);
}

/// (b) Our `multus shim` -> upstream's `multus-daemon`: ADD and DEL of the guide's pod, with the config
/// upstream's daemon generated (`type: multus-shim`, its `daemonSocketDir`).
#[test]
fn our_shim_to_upstream_daemon_add_del() {
    let node = Node::new();
    // The pod's netns exists before the daemon starts (its mount namespace sees the host's netns mounts).
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    // Our shim first: building it must not count against the daemon's bounds.
    let shim = node.shim_bin();
    let go = GoDaemon::start(&node);
    let conf = node.multus_conf();
    assert_eq!(conf["type"], "multus-shim", "{conf}");
    assert_eq!(
        conf["daemonSocketDir"],
        node.path("run").display().to_string(),
        "{conf}"
    );

    let r = run_shim(&shim, "ADD", &pod, &conf);
    assert_eq!(
        r.status,
        0,
        "our shim -> upstream's daemon ADD failed: {}\nstderr: {}{}",
        r.stdout,
        r.stderr,
        go.output()
    );
    assert_attached(&node, &pod, &r.json(), "1.0.0");
    // Upstream's daemon wrote the status itself: its protobuf PUT, as JSON on the stand-in.
    let put = format!(
        "PUT /api/v1/namespaces/{}/pods/{}/status",
        pod.namespace, pod.name
    );
    assert!(
        node.api
            .requests()
            .iter()
            .any(|r| r.starts_with(&format!("{put}?")) && r.ends_with(" -> 200")),
        "{:?}",
        node.api.requests()
    );
    assert!(
        go.proxy_log()
            .contains(&format!("{}: Pod body, protobuf -> JSON", &put[4..])),
        "{}",
        go.proxy_log()
    );

    let r = run_shim(&shim, "DEL", &pod, &conf);
    assert_eq!(
        r.status,
        0,
        "DEL: {}\nstderr: {}{}",
        r.stdout,
        r.stderr,
        go.output()
    );
    assert_released(&node, &pod, &node.path("go-cache"));
    // Upstream's DEL writes no status (its multus.CmdDel never calls SetNetworkStatus): what ADD wrote stays
    // until the pod is gone. Ours empties it; either is fine for a pod being deleted.
    let status = node.api.network_status(&pod.namespace, &pod.name);
    assert_eq!(
        status.as_ref().and_then(Value::as_array).map(Vec::len),
        Some(2),
        "network-status after upstream's DEL: {status:?}"
    );
}

/// (c) Upstream's shim with no daemon: ADD polls `/healthz` (every 100 ms, for 60 s: upstream's
/// `api.WaitUntilAPIReady`) and then fails with a CNI error; DEL (`api.CheckAPIReadyNow`, no wait) answers
/// success at once, though nothing was undone. Recorded here as upstream's behaviour, not ours.
#[test]
fn upstream_shim_without_a_daemon() {
    let go_shim = go_bin("GO_MULTUS_SHIM");
    let node = Node::new();
    let pod = TestPod::unlisted(None);
    let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus-shim",
                      "daemonSocketDir": node.path("run")});

    let r = run_shim(&go_shim, "DEL", &pod, &conf);
    assert_eq!((r.status, r.stdout.trim()), (0, ""), "DEL: {}", r.stderr);

    let t = Instant::now();
    let r = run_shim(&go_shim, "ADD", &pod, &conf);
    let took = t.elapsed();
    let e = r.err();
    eprintln!("upstream's shim, ADD with no daemon, after {took:?}: {e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains("CmdAdd (shim)"), "{e}");
}

/// A failing ADD both ways (the pod names a NAD that does not exist): the daemons answer 400 with different
/// bodies (ours: the CNI error object; upstream's `http.Error`: text/plain), and each shim turns the other's
/// into a CNI error on stdout with exit 1; nothing is left in the pod. What each shim makes of it is
/// recorded here: upstream's shim always says code 999 with the body quoted in `msg`; ours says 100 for a
/// body that is not a CNI error, with the text in `msg`.
#[test]
fn a_failing_add_is_a_cni_error_both_ways() {
    let go_shim = go_bin("GO_MULTUS_SHIM");
    // Upstream's shim -> our daemon.
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    let pod = TestPod::new(&node, Some("no-such-nad"));
    let e = run_shim(&go_shim, "ADD", &pod, &conf).err();
    eprintln!("upstream's shim, our daemon's 400: {e}");
    assert_eq!(e["code"], 999, "{e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.starts_with("CmdAdd (shim): CNI request failed with status 400: '{"),
        "{e}"
    );
    assert!(msg.contains("no-such-nad"), "{e}");
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&node.path("ipam")).is_empty());
    drop(pod);
    assert_eq!(node.stop_daemon(), 0);
    drop(node);

    // Our shim -> upstream's daemon.
    let node = Node::new();
    let pod = TestPod::new(&node, Some("no-such-nad"));
    let shim = node.shim_bin();
    let go = GoDaemon::start(&node);
    let conf = node.multus_conf();
    let r = run_shim(&shim, "ADD", &pod, &conf);
    let e = r.err();
    eprintln!("our shim, upstream's daemon's 400: {e}");
    assert_eq!(e["code"], 100, "{e}{}", go.output());
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.starts_with("the multus daemon answered 400: "), "{e}");
    assert!(msg.contains("no-such-nad"), "{e}");
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&node.path("ipam")).is_empty());
}

/// What a `/delegate` ADD then DEL of the macvlan NAD's config as `net5` (with a requested MAC) did: the
/// ADD's HTTP status and answer, and the pod's `net5` (its MAC and addresses) after ADD; after DEL, `net5`
/// gone and no reservation are asserted here.
struct HotPlug {
    status: u16,
    answer: Value,
    mac: Value,
    addrs: Vec<String>,
}

fn hot_plug(node: &Node, pod: &TestPod) -> HotPlug {
    use base64::Engine;
    // Named, as the hot-plug controller sends it (upstream's DEL finds its libcni cache by the name).
    let mut conf: Value =
        serde_json::from_str(&node.macvlan_conf("192.168.1.222", "192.168.1.223")).unwrap();
    conf["name"] = "macvlan-conf".into();
    let b64 = base64::engine::general_purpose::STANDARD.encode(conf.to_string());
    let args = format!(
        "K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.uid
    );
    let body = |cmd: &str| {
        json!({"env": {"CNI_COMMAND": cmd, "CNI_CONTAINERID": pod.cid,
            "CNI_NETNS": pod.ns.path(), "CNI_IFNAME": "net5", "CNI_ARGS": args,
            "CNI_PATH": "/usr/lib/cni"},
            "config": b64, "interfaceAttributes": {"mac": "02:00:00:00:00:42"}})
        .to_string()
    };
    let bounds = multus_cni::shim::http::Bounds {
        connect: Duration::from_secs(5),
        total: Duration::from_secs(60),
    };
    let sock = node.path("run/multus.sock");
    let post = |b: String| {
        multus_cni::shim::http::post(&sock, "/delegate", b.as_bytes(), bounds)
            .unwrap_or_else(|e| panic!("POST /delegate: {e}"))
    };
    let (status, answer) = post(body("ADD"));
    let answer = serde_json::from_slice(&answer)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&answer).into_owned()));
    let link = pod.ns.link("net5").unwrap_or(Value::Null);
    let plug = HotPlug {
        status,
        answer,
        mac: link["address"].clone(),
        addrs: if link.is_null() {
            Vec::new()
        } else {
            pod.ns.addrs("net5")
        },
    };
    let (status, answer) = post(body("DEL"));
    assert_eq!(status, 200, "DEL: {}", String::from_utf8_lossy(&answer));
    assert!(!pod.ns.link_names().contains(&"net5".to_string()));
    assert!(reservations(&node.path("ipam")).is_empty());
    plug
}

/// `/delegate` (upstream's hot-plug API, as multus-dynamic-networks-controller calls it) against upstream's
/// daemon and then ours on the same node and pod: both attach `net5` with the requested MAC and an address
/// of the NAD's range (one store: ours goes on after upstream's last), answer 200 with `{"Result": ...}`
/// naming them, and DEL removes it and releases the address.
/// Ours starts on the socket file upstream's daemon left behind (a stale socket) and replaces it.
#[test]
fn delegate_requests_answered_as_upstreams_daemon_answers_them() {
    let mut node = Node::new();
    let pod = TestPod::new(&node, None);
    node.shim_bin();
    let go = GoDaemon::start(&node);
    let upstream = hot_plug(&node, &pod);
    let go_log = go.output();
    drop(go);
    assert!(
        node.path("run/multus.sock").exists(),
        "upstream's socket is left behind"
    );
    node.start_daemon();
    let ours = hot_plug(&node, &pod);
    // One host-local store: ours goes on after the address upstream's reference host-local reserved last.
    for (who, p, ip) in [
        ("upstream's", &upstream, "192.168.1.222/24"),
        ("ours", &ours, "192.168.1.223/24"),
    ] {
        assert_eq!(p.status, 200, "{who}: {}{go_log}", p.answer);
        assert_eq!(p.mac, "02:00:00:00:00:42", "{who}");
        assert_eq!(p.addrs, vec![ip.to_string()], "{who}");
        let result = &p.answer["Result"];
        assert_eq!(result["ips"][0]["address"], ip, "{who}: {}", p.answer);
        let names: Vec<&str> = result["interfaces"]
            .as_array()
            .map(|l| l.iter().filter_map(|i| i["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(names.contains(&"net5"), "{who}: {}", p.answer);
    }
    eprintln!(
        "upstream's answer: {}\nours: {}",
        upstream.answer, ours.answer
    );
    assert_eq!(node.stop_daemon(), 0);
}

/// STATUS and GC (CNI 1.1) through upstream's shim and through ours to our daemon: STATUS succeeds; GC with
/// `cni.dev/valid-attachments` naming one of two pods' attachments undoes the other's (its eth0 and net1
/// addresses released, its cache entry gone) and keeps the named one's.
#[test]
fn status_and_gc_through_both_shims() {
    let go_shim = go_bin("GO_MULTUS_SHIM");
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    let ours = node.shim_bin();
    for shim in [&go_shim, &ours] {
        let kept = TestPod::new(&node, Some("macvlan-conf"));
        let gone = TestPod::new(&node, Some("macvlan-conf"));
        for p in [&kept, &gone] {
            run_shim(shim, "ADD", p, &conf).ok();
        }
        assert_eq!(reservations(&node.path("ipam")).len(), 4);
        // STATUS and GC need a 1.1.0 config (upstream's skel refuses them otherwise, code 1).
        let mut v11 = conf.clone();
        v11["cniVersion"] = "1.1.0".into();
        let r = run_shim(shim, "STATUS", &kept, &v11);
        assert_eq!(
            r.status,
            0,
            "STATUS via {}: {} {}",
            shim.display(),
            r.stdout,
            r.stderr
        );
        let mut gc = v11.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": kept.cid, "ifname": "eth0"}]);
        let r = run_shim(shim, "GC", &kept, &gc);
        assert_eq!(
            r.status,
            0,
            "GC via {}: {} {}",
            shim.display(),
            r.stdout,
            r.stderr
        );
        assert_eq!(
            reservations(&node.path("ipam")).len(),
            2,
            "GC via {}: the other pod's two addresses released",
            shim.display()
        );
        let cached: Vec<String> = files_under(&node.path("cache"))
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert!(cached.iter().all(|f| !f.contains(&gone.cid)), "{cached:?}");
        assert!(cached.iter().any(|f| f.contains(&kept.cid)), "{cached:?}");
        run_shim(shim, "DEL", &kept, &conf).ok();
        run_shim(shim, "DEL", &gone, &conf).ok();
        assert!(reservations(&node.path("ipam")).is_empty());
    }
    assert_eq!(node.stop_daemon(), 0);
}

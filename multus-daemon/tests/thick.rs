//! The thick plugin through its binaries: `multus-daemon` as a process on a daemon config, against the
//! HTTPS API stand-in, and the `multus` binary started as `multus-shim` as the runtime runs it, as root in
//! real network namespaces (reference bridge as the primary network, the user guide's macvlan NAD).

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::*;

fn ip_of(result: &Value, i: usize) -> String {
    result["ips"][i]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The user guide's pod through the shim: eth0 from the primary, net1 from `macvlan-conf`; network-status
/// written; with a warm cache no read of the API (one status PATCH and the two events); DEL leaves nothing.
#[test]
fn seed_pod_through_the_shim() {
    let mut node = Node::new();
    node.start_daemon();
    let conf = node.multus_conf();
    assert_eq!(conf["type"], "multus-shim");
    assert_eq!(conf["name"], "multus-cni-network");
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.wait_pods_cached(1);
    node.api.clear_log();
    let r = node.shim("ADD", &pod, &conf).ok();
    assert!(
        ip_of(&r, 0).starts_with(&format!("10.{}.", node.subnet)),
        "{r}"
    );
    assert_eq!(r["cniVersion"], "1.0.0");
    let links = pod.ns.link_names();
    assert!(
        links.contains(&"eth0".to_string()) && links.contains(&"net1".to_string()),
        "{links:?}"
    );
    let status = node.api.network_status(&pod.namespace, &pod.name).unwrap();
    assert_eq!(status.as_array().unwrap().len(), 2, "{status}");
    assert_eq!(status[1]["interface"], "net1");
    assert!(status[1]["ips"][0]
        .as_str()
        .unwrap()
        .starts_with("192.168.1.2"));
    let reqs = node.flow_requests();
    assert!(
        !reqs.iter().any(|r| r.starts_with("GET")),
        "no reads with a warm cache: {reqs:?}"
    );
    assert_eq!(
        reqs.iter()
            .filter(|r| r.starts_with("PATCH") && r.ends_with("/status -> 200"))
            .count(),
        1,
        "{reqs:?}"
    );
    assert_eq!(
        reqs.iter().filter(|r| r.starts_with("POST")).count(),
        2,
        "{reqs:?}"
    );
    node.shim("CHECK", &pod, &conf).ok();
    node.shim("DEL", &pod, &conf).ok();
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&node.path("ipam")).is_empty());
    assert_eq!(
        std::fs::read_dir(node.path("cache"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    // DEL again (the runtime may repeat it): still a success.
    node.shim("DEL", &pod, &conf).ok();
}

/// `chrootDir`: the built-ins in the daemon's process (the NAD's in-process macvlan and host-local) resolve
/// their paths in the host's root mounted there, as plugin binaries do: the NAD's host-local `dataDir`,
/// hidden from the daemon's own view of the files as a container's would be, is the host's store, and the
/// pod's netns is the host's.
#[test]
fn builtins_work_with_the_hosts_files_through_chroot_dir() {
    let mut node = Node::new();
    let store = node.path("nad-ipam");
    let hostroot = node.path("hostroot");
    for d in [&store, &hostroot] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut nad: Value =
        serde_json::from_str(&node.macvlan_conf("192.168.1.230", "192.168.1.231")).unwrap();
    nad["ipam"]["dataDir"] = Value::String(store.display().to_string());
    node.api
        .add_nad("default", "macvlan-chroot", &nad.to_string(), &[]);
    node.daemon_config["chrootDir"] = Value::String(hostroot.display().to_string());
    node.daemon_view = Some(ContainerView {
        hostroot,
        hidden: store.clone(),
    });
    node.start_daemon();
    let conf = node.multus_conf();
    let pod = TestPod::new(&node, Some("macvlan-chroot"));
    node.wait_pods_cached(1);
    node.shim("ADD", &pod, &conf).ok();
    let status = node.api.network_status(&pod.namespace, &pod.name).unwrap();
    assert_eq!(status[1]["ips"][0], "192.168.1.230", "{status}");
    assert_eq!(reservations(&store), vec!["192.168.1.230".to_string()]);
    assert!(pod.ns.link_names().contains(&"net1".to_string()));
    node.shim("DEL", &pod, &conf).ok();
    assert!(
        reservations(&store).is_empty(),
        "{:?}",
        reservations(&store)
    );
    assert_eq!(pod.ns.link_names(), vec!["lo".to_string()]);
}

/// No daemon, or one that never answers: code 11 within the bound, never a hang.
#[test]
fn shim_without_a_daemon_answers_11_in_bounded_time() {
    let node = Node::new();
    let pod = TestPod::unlisted(None);
    let conf = serde_json::json!({"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus-shim",
        "daemonSocketDir": node.path("run"), "daemonConnectTimeout": 0.5, "daemonRequestTimeout": 1});
    node.shim_bin();
    let t = Instant::now();
    let e = node.shim("ADD", &pod, &conf).err();
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("multus.sock"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A daemon that accepts and never answers.
    std::fs::create_dir_all(node.path("run")).unwrap();
    let _l = std::os::unix::net::UnixListener::bind(node.path("run/multus.sock")).unwrap();
    let t = Instant::now();
    let e = node.shim("DEL", &pod, &conf).err();
    assert_eq!(e["code"], 11, "{e}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// Go Multus thick's DEL bug, not ours: with `clusterNetwork` a conflist path, the DEL undoes the primary with
/// its plugins' settings (the cache keeps the conflist whole), so eth0's address is released; a failing DEL
/// is reported by the shim, not answered with success.
#[test]
fn a_conflist_primary_is_released_at_del() {
    let mut node = Node::new();
    let net_d = node.path("net.d");
    let conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net_d.join("10-podnet.conf")).unwrap())
            .unwrap();
    std::fs::remove_file(net_d.join("10-podnet.conf")).unwrap();
    let mut plugin = conf.clone();
    plugin.as_object_mut().unwrap().remove("cniVersion");
    plugin.as_object_mut().unwrap().remove("name");
    let list = serde_json::json!({"cniVersion": "1.0.0", "name": "podnet",
        "plugins": [plugin, {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.accept_redirects": "0"}}]});
    std::fs::write(net_d.join("10-podnet.conflist"), list.to_string()).unwrap();
    node.start_daemon();
    let shim_conf = node.multus_conf();
    assert!(shim_conf["clusterNetwork"]
        .as_str()
        .unwrap()
        .ends_with("10-podnet.conflist"));
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.shim("ADD", &pod, &shim_conf).ok();
    assert_eq!(reservations(&node.path("ipam")).len(), 2);
    node.shim("DEL", &pod, &shim_conf).ok();
    assert!(
        reservations(&node.path("ipam")).is_empty(),
        "{:?}",
        reservations(&node.path("ipam"))
    );
    // A DEL that fails is an error at the runtime (here: the cache entry unreadable and the pod gone).
    let pod = TestPod::new(&node, Some("macvlan-conf"));
    node.shim("ADD", &pod, &shim_conf).ok();
    // The pod's record by its name (the directory also holds the store's `lock`, which `read_dir` may list
    // first: writing there left the record intact and the DEL succeeded, in one CI run).
    let entry = node.path("cache").join(format!("{}@eth0.json", pod.cid));
    assert!(entry.is_file(), "the ADD's record {}", entry.display());
    std::fs::write(&entry, "not json").unwrap();
    node.api.delete_pod(&pod.namespace, &pod.name);
    let e = node.shim("DEL", &pod, &shim_conf).err();
    assert_eq!(e["code"], 11, "{e}");
}

/// `POST /delegate` as upstream's hot-plug clients send it: one network attached to a running pod under the
/// interface name asked, with the requested MAC, then detached; the pod must exist.
#[test]
fn delegate_requests_hot_plug_one_network() {
    use base64::Engine;
    let mut node = Node::new();
    node.start_daemon();
    let pod = TestPod::new(&node, None);
    let netns = pod.ns.path().display().to_string();
    let conf = node.macvlan_conf("192.168.1.220", "192.168.1.221");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&conf);
    let body = |cmd: &str, args: &str| {
        serde_json::json!({"env": {"CNI_COMMAND": cmd, "CNI_CONTAINERID": pod.cid, "CNI_NETNS": netns,
            "CNI_IFNAME": "net5", "CNI_ARGS": args},
            "config": b64, "interfaceAttributes": {"mac": "02:00:00:00:00:42", "cni-args": null}})
        .to_string()
    };
    let bounds = multus_cni::shim::http::Bounds {
        connect: Duration::from_secs(1),
        total: Duration::from_secs(60),
    };
    let sock = node.path("run/multus.sock");
    let post =
        |b: String| multus_cni::shim::http::post(&sock, "/delegate", b.as_bytes(), bounds).unwrap();
    let args = format!(
        "K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_UID={}",
        pod.namespace, pod.name, pod.uid
    );
    let (status, answer) = post(body("ADD", &args));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let resp: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(
        resp["Result"]["ips"][0]["address"], "192.168.1.220/24",
        "{resp}"
    );
    assert!(pod.ns.link_names().contains(&"net5".to_string()));
    let (status, _) = post(body("DEL", &args));
    assert_eq!(status, 200);
    assert!(!pod.ns.link_names().contains(&"net5".to_string()));
    assert!(reservations(&node.path("ipam")).is_empty());
    // A pod that does not exist: refused, nothing attached.
    let (status, answer) = post(body("ADD", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=nope"));
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&answer));
    assert!(!pod.ns.link_names().contains(&"net5".to_string()));
}

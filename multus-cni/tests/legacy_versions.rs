//! Config Go Multus accepts without a `cniVersion`, and CNI 0.1.0 / 0.2.0, through the built binary as root
//! in real network namespaces: the meta-plugin with the reference bridge (Debian's containernetworking-plugins)
//! and the built-in macvlan + host-local as delegates, and the binary run as `host-local` / `macvlan` against
//! the reference binaries on the same input.

mod support;

use multus_core::cni::CniResult;
use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use support::*;

/// A second octet of 10.x.0.0 of this process, so that parallel suites do not share subnets.
fn octet(salt: u32) -> u32 {
    (std::process::id() + salt) % 200 + 20
}

/// The sorted keys of a JSON object.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// Routes inside a netns, as `ip -j route show`.
fn routes(ns: &Netns) -> Vec<Value> {
    serde_json::from_str(&sh(&["ip", "-n", &ns.name, "-j", "route", "show"])).unwrap_or_default()
}

/// Cache files of a container left in `dir`.
fn cached(dir: &Path, cid: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(cid))
                .collect()
        })
        .unwrap_or_default()
}

/// The first JSON value inside `v` (itself included) that `pred` accepts.
fn find<'a>(v: &'a Value, pred: &dyn Fn(&Value) -> bool) -> Option<&'a Value> {
    if pred(v) {
        return Some(v);
    }
    match v {
        Value::Array(a) => a.iter().find_map(|x| find(x, pred)),
        Value::Object(m) => m.values().find_map(|x| find(x, pred)),
        _ => None,
    }
}

/// Upstream's how-to-use shape: a Multus config without `cniVersion`, whose default network is the
/// reference bridge without one either, and a 0.2.0 macvlan + host-local. ADD answers the runtime in 0.1.0
/// (the `ip4` shape), both interfaces are there with their addresses, DEL leaves nothing.
#[test]
fn version_less_multus_with_a_version_less_bridge_and_a_0_2_0_macvlan() {
    reference_dir();
    let ns = Netns::new("lv");
    let master = HostLink::veth("lvm");
    let bridge = HostLink::bridge_name("lvbr");
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("ipam");
    let cache = data.path().join("cache");
    let o = octet(0);
    let conf = json!({
        "name": "multus-cni-network", "type": "multus",
        "binDir": "/usr/lib/cni", "cniDir": cache, "logLevel": "debug",
        "delegates": [
            {"name": "podnet", "type": "bridge", "bridge": bridge.0, "isGateway": true,
             "ipam": {"type": "host-local", "subnet": format!("10.{o}.1.0/24"), "dataDir": store}},
            {"cniVersion": "0.2.0", "name": "macnet", "type": "macvlan", "master": master.0, "mode": "bridge",
             "ipam": {"type": "host-local", "subnet": format!("10.{o}.2.0/24"), "dataDir": store,
                      "routes": [{"dst": "192.0.2.0/24", "gw": format!("10.{o}.2.1")}]}}
        ]
    });
    let cid = unique("lv");
    let path = ns.path();
    let r = cni("ADD", &cid, Some(&path), "eth0", &conf).ok();

    // The reference bridge's own 0.1.0 answer, as Multus passes it on: nothing of a later shape.
    assert_eq!(keys(&r), ["cniVersion", "dns", "ip4"], "{r}");
    assert_eq!(r["cniVersion"], "0.1.0");
    let eth0_ip = r["ip4"]["ip"].as_str().unwrap().to_string();
    assert!(eth0_ip.starts_with(&format!("10.{o}.1.")), "{r}");
    assert_eq!(r["ip4"]["gateway"], format!("10.{o}.1.1"));
    // What a runtime reads from it.
    let parsed = CniResult::from_value(&r).unwrap();
    assert_eq!(parsed.cni_version, "0.1.0");
    assert_eq!(parsed.ips.len(), 1);
    assert_eq!(parsed.ips[0].address.to_string(), eth0_ip);

    let names = ns.link_names();
    assert!(
        names.contains(&"eth0".to_string()) && names.contains(&"net1".to_string()),
        "{names:?}"
    );
    assert_eq!(ns.addrs("eth0"), vec![eth0_ip]);
    let net1 = ns.addrs("net1");
    assert_eq!(net1.len(), 1, "{net1:?}");
    assert!(net1[0].starts_with(&format!("10.{o}.2.")), "{net1:?}");
    let link = ns
        .links()
        .into_iter()
        .find(|l| l["ifname"] == "net1")
        .unwrap();
    assert_eq!(link["linkinfo"]["info_kind"], "macvlan");
    // The route of the 0.2.0 IPAM result (ip4.routes) is on net1.
    let rt = routes(&ns);
    assert!(
        rt.iter().any(|r| r["dst"] == "192.0.2.0/24"
            && r["gateway"] == format!("10.{o}.2.1")
            && r["dev"] == "net1"),
        "{rt:?}"
    );
    assert_eq!(reservations(&store).len(), 2);

    cni("DEL", &cid, Some(&path), "eth0", &conf).ok();
    assert_eq!(ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&store).is_empty());
    assert!(
        cached(&cache, &cid).is_empty(),
        "{:?}",
        cached(&cache, &cid)
    );
    let ports = sh(&["ip", "-j", "link", "show", "master", &bridge.0]);
    let ports: Vec<Value> = serde_json::from_str(&ports).unwrap_or_default();
    assert!(ports.is_empty(), "{ports:?}");
    // DEL again converges.
    cni("DEL", &cid, Some(&path), "eth0", &conf).ok();
}

/// Multus at 0.2.0 over a 1.0.0 default network with two IPv4 addresses: the answer is converted to 0.2.0
/// as libcni converts (the first address only, no interfaces) while eth0 keeps both; a delegate without a
/// version runs with Multus' own.
#[test]
fn multus_0_2_0_converts_the_default_network_s_result() {
    reference_dir();
    let ns = Netns::new("lw");
    let master = HostLink::veth("lwm");
    let bridge = HostLink::bridge_name("lwbr");
    let data = tempfile::tempdir().unwrap();
    let store = data.path().join("ipam");
    let cache = data.path().join("cache");
    let o = octet(7);
    let conf = json!({
        "cniVersion": "0.2.0", "name": "multus-cni-network", "type": "multus",
        "binDir": "/usr/lib/cni", "cniDir": cache,
        "delegates": [
            {"cniVersion": "1.0.0", "name": "podnet", "type": "bridge", "bridge": bridge.0,
             "ipam": {"type": "host-local", "dataDir": store,
                      "ranges": [[{"subnet": format!("10.{o}.1.0/24")}], [{"subnet": format!("10.{o}.3.0/24")}]]}},
            {"name": "macnet", "type": "macvlan", "master": master.0, "mode": "bridge",
             "ipam": {"type": "host-local", "subnet": format!("10.{o}.2.0/24"), "dataDir": store}}
        ]
    });
    let cid = unique("lw");
    let path = ns.path();
    let r = cni("ADD", &cid, Some(&path), "eth0", &conf).ok();
    assert_eq!(keys(&r), ["cniVersion", "dns", "ip4"], "{r}");
    assert_eq!(r["cniVersion"], "0.2.0");
    assert_eq!(r["ip4"]["ip"], format!("10.{o}.1.2/24"), "{r}");
    let mut eth0 = ns.addrs("eth0");
    eth0.sort();
    assert_eq!(eth0, [format!("10.{o}.1.2/24"), format!("10.{o}.3.2/24")]);
    assert_eq!(ns.addrs("net1"), [format!("10.{o}.2.2/24")]);
    // The version-less macvlan was run with Multus' version: so the cache records its config and result.
    let files = cached(&cache, &cid);
    assert_eq!(files.len(), 1, "{files:?}");
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join(&files[0])).unwrap()).unwrap();
    let mac = find(&record, &|v| v["network"]["name"] == "macnet").expect("macnet in the cache");
    assert_eq!(mac["network"]["cniVersion"], "0.2.0", "{mac}");
    assert_eq!(mac["result"]["cniVersion"], "0.2.0", "{mac}");
    assert_eq!(
        mac["result"]["ip4"]["ip"],
        format!("10.{o}.2.2/24"),
        "{mac}"
    );

    cni("DEL", &cid, Some(&path), "eth0", &conf).ok();
    assert_eq!(ns.link_names(), vec!["lo".to_string()]);
    assert!(reservations(&store).is_empty());
    assert!(cached(&cache, &cid).is_empty());
}

/// The Kubernetes mode as upstream's DaemonSet ConfigMap configures it: no `cniVersion` in the Multus config,
/// in the cluster network's file (the reference bridge) or in the pod's NAD (macvlan + host-local). ADD
/// answers in 0.1.0, network-status lists both networks with their addresses, DEL leaves nothing.
#[test]
fn kubernetes_mode_without_any_cni_version() {
    reference_dir();
    let api = TestApiServer::start().unwrap();
    let ns = Netns::new("lk");
    let master = HostLink::veth("lkm");
    let bridge = HostLink::bridge_name("lkbr");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("ipam");
    let cache = dir.path().join("cache");
    let o = octet(23);
    let kc = api
        .write_kubeconfig(&dir.path().join("kube"), KubeconfigAuth::Token)
        .unwrap();
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-podnet.conf"),
        json!({"name": "podnet", "type": "bridge", "bridge": bridge.0, "isGateway": true,
               "ipam": {"type": "host-local", "subnet": format!("10.{o}.1.0/24"), "dataDir": store}})
        .to_string(),
    )
    .unwrap();
    api.add_nad(
        "default",
        "macvlan-conf",
        &json!({"type": "macvlan", "master": master.0, "mode": "bridge",
                "ipam": {"type": "host-local", "subnet": format!("10.{o}.2.0/24"), "dataDir": store}})
        .to_string(),
        &[],
    );
    let pod = unique("legacy-pod-");
    let uid = format!("uid-{pod}");
    api.add_pod(
        "default",
        &pod,
        &uid,
        &[("k8s.v1.cni.cncf.io/networks", "macvlan-conf")],
    );
    let conf = json!({
        "name": "multus-cni-network", "type": "multus", "kubeconfig": kc,
        "clusterNetwork": "podnet", "confDir": conf_dir, "binDir": "/usr/lib/cni", "cniDir": cache,
        "apiRetryTimeout": 1, "apiRetryInterval": 0.1
    });
    let cid = unique("lk");
    let args = format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod};K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID={uid}"
    );
    let path = ns.path().display().to_string();
    let run = |command: &str| {
        run_plugin(
            &multus_bin(),
            &[
                ("CNI_COMMAND", command),
                ("CNI_CONTAINERID", &cid),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                ("CNI_ARGS", &args),
                ("CNI_NETNS", &path),
            ],
            conf.to_string().as_bytes(),
        )
    };
    let r = run("ADD").ok();
    assert_eq!(keys(&r), ["cniVersion", "dns", "ip4"], "{r}");
    assert_eq!(r["cniVersion"], "0.1.0");
    let eth0_ip = r["ip4"]["ip"].as_str().unwrap().to_string();
    assert_eq!(ns.addrs("eth0"), std::slice::from_ref(&eth0_ip));
    let net1 = ns.addrs("net1");
    assert_eq!(net1, [format!("10.{o}.2.2/24")]);
    let st = api
        .network_status("default", &pod)
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default();
    assert_eq!(st.len(), 2, "{st:?}");
    assert_eq!(
        (&st[0]["name"], &st[0]["interface"], &st[0]["default"]),
        (&json!("podnet"), &json!("eth0"), &json!(true))
    );
    assert_eq!(st[0]["ips"], json!([eth0_ip.split('/').next().unwrap()]));
    assert_eq!(
        (&st[1]["name"], &st[1]["interface"]),
        (&json!("default/macvlan-conf"), &json!("net1"))
    );
    assert_eq!(st[1]["ips"], json!([format!("10.{o}.2.2")]));
    assert_eq!(reservations(&store).len(), 2);

    run("DEL").ok();
    assert_eq!(ns.link_names(), ["lo"]);
    assert!(reservations(&store).is_empty());
    assert!(cached(&cache, &cid).is_empty());
}

fn link_as(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(multus_bin(), &p).unwrap();
    p
}

fn vars<'a>(cmd: &'a str, cid: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
}

/// `"cniVersion": <v>,` or nothing.
fn with_version(v: Option<&str>, mut conf: Value) -> Value {
    if let Some(v) = v {
        conf["cniVersion"] = json!(v);
    }
    conf
}

/// The binary as `host-local` answers 0.2.0, 0.1.0 and version-less configs exactly as the reference
/// host-local does (each on its own store, so both take the same addresses).
#[test]
fn standalone_host_local_answers_legacy_versions_as_the_reference() {
    let reference = reference_dir().join("host-local");
    let dir = tempfile::tempdir().unwrap();
    let ours = link_as(dir.path(), "host-local");
    let o = octet(13);
    for (i, v) in [Some("0.2.0"), Some("0.1.0"), None].into_iter().enumerate() {
        let mut answers = Vec::new();
        for (who, bin) in [("ours", &ours), ("reference", &reference)] {
            let data = dir.path().join(format!("{who}-{i}"));
            let conf = with_version(
                v,
                json!({"name": "legacy", "type": "bridge",
                       "ipam": {"type": "host-local", "dataDir": data,
                                "ranges": [[{"subnet": format!("10.{o}.0.0/24"), "gateway": format!("10.{o}.0.254")}],
                                           [{"subnet": "fd00:1e9::/64"}]],
                                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.0.2.0/24", "gw": format!("10.{o}.0.9")},
                                           {"dst": "::/0"}]}}),
            )
            .to_string();
            let r = run_plugin(
                bin,
                &vars("ADD", "c1", "/proc/self/ns/net"),
                conf.as_bytes(),
            )
            .ok();
            run_plugin(
                bin,
                &vars("DEL", "c1", "/proc/self/ns/net"),
                conf.as_bytes(),
            )
            .ok();
            assert!(reservations(&data.join("legacy")).is_empty(), "{who}");
            answers.push(r);
        }
        assert_eq!(answers[0], answers[1], "{v:?}: ours, then the reference's");
        let r = &answers[0];
        assert_eq!(r["cniVersion"], v.unwrap_or("0.1.0"));
        assert_eq!(keys(r), ["cniVersion", "dns", "ip4", "ip6"], "{r}");
        assert_eq!(r["ip4"]["ip"], format!("10.{o}.0.1/24"));
    }
}

/// The binary as `macvlan` answers a 0.2.0 and a version-less config as the reference macvlan does (the
/// legacy shape holds no MAC, so the two answers are equal), and DEL removes the link and the address.
#[test]
fn standalone_macvlan_answers_legacy_versions_as_the_reference() {
    let reference = reference_dir().join("macvlan");
    let dir = tempfile::tempdir().unwrap();
    let ours = link_as(dir.path(), "macvlan");
    let master = HostLink::veth("lxm");
    let o = octet(17);
    for (i, v) in [Some("0.2.0"), None].into_iter().enumerate() {
        let mut answers = Vec::new();
        for (who, bin) in [("ours", &ours), ("reference", &reference)] {
            let ns = Netns::new("lx");
            let path = ns.path().to_string_lossy().into_owned();
            let data = dir.path().join(format!("{who}-{i}"));
            let conf = with_version(
                v,
                json!({"name": "mv", "type": "macvlan", "master": master.0, "mode": "bridge",
                       "ipam": {"type": "host-local", "subnet": format!("10.{o}.0.0/24"), "dataDir": data,
                                "routes": [{"dst": "198.51.100.0/24", "gw": format!("10.{o}.0.1")}]}}),
            )
            .to_string();
            let r = run_plugin(bin, &vars("ADD", "c1", &path), conf.as_bytes()).ok();
            assert_eq!(ns.addrs("eth0"), [format!("10.{o}.0.2/24")], "{who}");
            run_plugin(bin, &vars("DEL", "c1", &path), conf.as_bytes()).ok();
            assert_eq!(ns.link_names(), ["lo"], "{who}");
            assert!(reservations(&data.join("mv")).is_empty(), "{who}");
            answers.push(r);
        }
        assert_eq!(answers[0], answers[1], "{v:?}: ours, then the reference's");
        assert_eq!(answers[0]["cniVersion"], v.unwrap_or("0.1.0"));
        assert_eq!(keys(&answers[0]), ["cniVersion", "dns", "ip4"]);
    }
    // CHECK does not exist before 0.4.0, for either.
    for bin in [&ours, &reference] {
        let conf = json!({"cniVersion": "0.2.0", "name": "mv", "type": "macvlan", "master": master.0,
                          "prevResult": {"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/24"}}});
        let e = run_plugin(
            bin,
            &vars("CHECK", "c1", "/proc/self/ns/net"),
            conf.to_string().as_bytes(),
        )
        .err();
        assert_eq!(e["code"], 1, "{}: {e}", bin.display());
    }
}

//! The meta-plugin's Kubernetes mode through the built binary, as root in real network namespaces, against
//! the loopback HTTPS API server stand-in (`multus_testsupport::api_server`) reached through a kubeconfig: the
//! reference bridge plugin is the cluster network (eth0), NADs give reference macvlan interfaces.

mod support;

use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::*;

const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";
const NETWORK_STATUS: &str = "k8s.v1.cni.cncf.io/network-status";

struct Cluster {
    api: TestApiServer,
    ns: Netns,
    master: HostLink,
    _bridge: HostLink,
    dir: tempfile::TempDir,
    conf: Value,
    cid: String,
    pod_ns: String,
    pod: String,
    uid: String,
}

static SUBNET: AtomicU32 = AtomicU32::new(0);

/// A cluster network "podnet" (reference bridge, in confDir), the user's NAD `default/macvlan-conf`
/// (reference macvlan on a veth master, host-local 192.168.1.200-216, default route, gateway .1), and the
/// pod `default/sample-pod` annotated with `annotation`.
fn cluster(annotation: Option<&str>) -> Cluster {
    require_root();
    reference_dir();
    let api = TestApiServer::start().unwrap();
    let ns = Netns::new("k8");
    let master = HostLink::veth("kmv");
    let bridge = HostLink::bridge_name("kbr");
    let dir = tempfile::tempdir().unwrap();
    let kc = api
        .write_kubeconfig(&dir.path().join("kube"), KubeconfigAuth::Token)
        .unwrap();
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let octet = (std::process::id() % 100 + 100) as u32 + SUBNET.fetch_add(1, Ordering::SeqCst);
    std::fs::write(
        conf_dir.join("10-podnet.conf"),
        json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":bridge.0,"isGateway":true,
               "ipam":{"type":"host-local","subnet":format!("10.{}.{}.0/24", octet % 250, 7),
                       "routes":[{"dst":"0.0.0.0/0"}],"dataDir":dir.path().join("ipam")}})
        .to_string(),
    )
    .unwrap();
    api.add_nad(
        "default",
        "macvlan-conf",
        &macvlan_conf(&master.0, dir.path(), false),
        &[],
    );
    let pod_ns = "default".to_string();
    let pod = unique("sample-pod-");
    let uid = format!("uid-{pod}");
    let ann: Vec<(&str, &str)> = annotation.map(|a| vec![(NETWORKS, a)]).unwrap_or_default();
    api.add_pod(&pod_ns, &pod, &uid, &ann);
    let conf = json!({
        "cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "kubeconfig": kc, "clusterNetwork": "podnet", "confDir": conf_dir,
        "binDir": "/usr/lib/cni", "cniDir": dir.path().join("cache"), "logLevel": "debug",
        "apiRetryTimeout": 1, "apiRetryInterval": 0.1,
    });
    Cluster {
        api,
        ns,
        master,
        _bridge: bridge,
        dir,
        conf,
        cid: unique("k"),
        pod_ns,
        pod,
        uid,
    }
}

/// The user's `macvlan-conf` (optionally declaring the ips and mac capabilities).
fn macvlan_conf(master: &str, dir: &Path, caps: bool) -> String {
    let mut c = json!({"cniVersion":"0.3.0","type":"macvlan","master":master,"mode":"bridge",
        "ipam":{"type":"host-local","subnet":"192.168.1.0/24","rangeStart":"192.168.1.200","rangeEnd":"192.168.1.216",
                "routes":[{"dst":"0.0.0.0/0"}],"gateway":"192.168.1.1","dataDir":dir.join("ipam")}});
    if caps {
        c["capabilities"] = json!({"ips": true, "mac": true});
        c["cniVersion"] = json!("1.0.0");
    }
    c.to_string()
}

impl Cluster {
    fn args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.pod_ns, self.pod, self.cid, self.uid
        )
    }

    fn run(&self, command: &str, conf: &Value) -> Run {
        self.run_for(command, &self.cid, Some(&self.ns.path()), conf)
    }

    fn run_for(&self, command: &str, cid: &str, netns: Option<&Path>, conf: &Value) -> Run {
        let args = self.args();
        let netns = netns.map(|p| p.display().to_string());
        let mut vars = vec![
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", cid),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", args.as_str()),
        ];
        if let Some(n) = netns.as_deref() {
            vars.push(("CNI_NETNS", n));
        }
        run_plugin(&multus_bin(), &vars, conf.to_string().as_bytes())
    }

    fn add(&self) -> Run {
        self.run("ADD", &self.conf)
    }

    fn del(&self) -> Run {
        self.run("DEL", &self.conf)
    }

    fn cache_file(&self) -> PathBuf {
        self.dir
            .path()
            .join("cache")
            .join(format!("{}@eth0.json", self.cid))
    }

    fn reservations(&self) -> Vec<String> {
        reservations(&self.dir.path().join("ipam"))
    }

    fn status(&self) -> Vec<Value> {
        self.api
            .network_status(&self.pod_ns, &self.pod)
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// Nothing of the pod is left: only lo in the netns, no IP reserved, no cache.
    fn assert_clean(&self) {
        assert_eq!(self.ns.link_names(), ["lo"], "links left behind");
        assert!(
            self.reservations().is_empty(),
            "IPs left reserved: {:?}",
            self.reservations()
        );
        assert!(!self.cache_file().exists(), "cache left behind");
    }

    fn mac_of(&self, ifname: &str) -> String {
        self.ns
            .links()
            .into_iter()
            .find(|l| l["ifname"] == ifname)
            .and_then(|l| l["address"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

fn in_user_range(ip: &str) -> bool {
    let last: u32 = ip
        .trim_start_matches("192.168.1.")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    ip.starts_with("192.168.1.") && (200..=216).contains(&last)
}

#[test]
fn user_example_end_to_end() {
    let c = cluster(Some("macvlan-conf"));
    c.api.clear_log();
    let r = c.add().ok();
    // The default network's result.
    assert_eq!(r["cniVersion"], "1.0.0");
    assert!(
        r["ips"][0]["address"].as_str().unwrap().starts_with("10."),
        "{r}"
    );
    let mut names = c.ns.link_names();
    names.sort();
    assert_eq!(names, ["eth0", "lo", "net1"]);
    let net1 = c.ns.addrs("net1");
    assert_eq!(net1.len(), 1);
    assert!(in_user_range(&net1[0]), "{net1:?}");
    let st = c.status();
    assert_eq!(st.len(), 2, "{st:?}");
    assert_eq!(st[0]["name"], "podnet");
    assert_eq!(st[0]["interface"], "eth0");
    assert_eq!(st[0]["default"], true);
    assert_eq!(st[1]["name"], "default/macvlan-conf");
    assert_eq!(st[1]["interface"], "net1");
    assert_eq!(st[1]["default"], false);
    assert_eq!(
        st[1]["ips"][0].as_str().unwrap(),
        net1[0].split('/').next().unwrap()
    );
    assert_eq!(st[1]["mac"].as_str().unwrap(), c.mac_of("net1"));
    assert_eq!(st[0]["mac"].as_str().unwrap(), c.mac_of("eth0"));
    // One TLS connection for the pod GET, the NAD GET, the events and the status update.
    assert_eq!(c.api.connections(), 1, "{:?}", c.api.requests());
    assert_eq!(
        c.api.requests(),
        [
            format!("GET /api/v1/namespaces/default/pods/{} -> 200", c.pod),
            "GET /apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/macvlan-conf -> 200".to_string(),
            "POST /api/v1/namespaces/default/events -> 201".to_string(),
            "POST /api/v1/namespaces/default/events -> 201".to_string(),
            format!("GET /api/v1/namespaces/default/pods/{} -> 200", c.pod),
            format!("PUT /api/v1/namespaces/default/pods/{}/status -> 200", c.pod),
        ]
    );
    // What `kubectl describe pod` shows, worded as Go Multus words it.
    let events: Vec<(String, String, String)> = c
        .api
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e["involvedObject"]["name"], c.pod.as_str());
            assert_eq!(e["involvedObject"]["uid"], c.uid.as_str());
            let f = |k: &str| e[k].as_str().unwrap().to_string();
            (f("type"), f("reason"), f("message"))
        })
        .collect();
    let eth0_ip = st[0]["ips"][0].as_str().unwrap();
    assert_eq!(
        events,
        [
            (
                "Normal".into(),
                "AddedInterface".into(),
                format!("Add eth0 [{eth0_ip}/24] from podnet")
            ),
            (
                "Normal".into(),
                "AddedInterface".into(),
                format!("Add net1 [{}] from default/macvlan-conf", net1[0])
            ),
        ]
    );
    assert!(c.cache_file().exists());
    assert_eq!(c.reservations().len(), 2);
    c.run("CHECK", &c.conf).ok();
    c.api.clear_log();
    c.del().ok();
    // DEL works from the cache alone; it only clears network-status (the sandbox still exists).
    assert_eq!(
        c.api.requests(),
        [
            format!("GET /api/v1/namespaces/default/pods/{} -> 200", c.pod),
            format!(
                "PUT /api/v1/namespaces/default/pods/{}/status -> 200",
                c.pod
            ),
        ]
    );
    assert!(c.status().is_empty());
    assert_eq!(
        c.api.pod(&c.pod_ns, &c.pod).unwrap()["metadata"]["annotations"][NETWORK_STATUS],
        "[]"
    );
    c.assert_clean();
    // DEL again is fine (idempotent).
    c.del().ok();
}

/// A StatefulSet's pod is deleted and made again under the same name (a new UID) before the old sandbox's
/// DEL runs (the race for which Go Multus 4.1 stopped clearing network-status): that DEL undoes the old
/// attachments and leaves the new pod's network-status alone.
#[test]
fn del_of_a_replaced_pod_leaves_the_new_pods_status() {
    let ann = r#"[{"name":"macvlan-conf"}]"#;
    let c = cluster(Some(ann));
    c.add().ok();
    assert_eq!(c.status().len(), 2);
    let new_status = r#"[{"name":"podnet","interface":"eth0","ips":["10.0.0.9"],"default":true}]"#;
    c.api.add_pod(
        &c.pod_ns,
        &c.pod,
        "uid-of-the-new-pod",
        &[(NETWORKS, ann), (NETWORK_STATUS, new_status)],
    );
    c.del().ok();
    assert_eq!(
        c.api.pod(&c.pod_ns, &c.pod).unwrap()["metadata"]["annotations"][NETWORK_STATUS],
        new_status,
        "the old sandbox's DEL changed the new pod's network-status"
    );
    c.assert_clean();
}

#[test]
fn json_annotation_with_ips_mac_and_interface() {
    let c = cluster(Some(
        r#"[{"name":"mv-caps","interface":"mv7","ips":["192.168.1.205/24"],"mac":"c2:b0:57:49:47:f1"}]"#,
    ));
    c.api.add_nad(
        "default",
        "mv-caps",
        &macvlan_conf(&c.master.0, c.dir.path(), true),
        &[],
    );
    c.add().ok();
    assert_eq!(c.ns.addrs("mv7"), ["192.168.1.205/24"]);
    assert_eq!(c.mac_of("mv7"), "c2:b0:57:49:47:f1");
    let st = c.status();
    assert_eq!(st[1]["interface"], "mv7");
    assert_eq!(st[1]["ips"][0], "192.168.1.205");
    assert_eq!(st[1]["mac"], "c2:b0:57:49:47:f1");
    c.del().ok();
    c.assert_clean();

    // The same request on the user's NAD, whose plugins declare no capability: as with Go Multus, the
    // address and MAC reach host-local and macvlan as IP= and MAC= in CNI_ARGS.
    let c = cluster(Some(
        r#"[{"name":"macvlan-conf","ips":["192.168.1.206"],"mac":"c2:b0:57:49:47:f2"}]"#,
    ));
    c.add().ok();
    assert_eq!(c.ns.addrs("net1"), ["192.168.1.206/24"]);
    assert_eq!(c.status()[1]["ips"][0], "192.168.1.206");
    c.del().ok();
    c.assert_clean();
}

/// A static pod's mirror in the API has another UID than the runtime names: exempt, as Go Multus does.
#[test]
fn static_pods_are_attached() {
    let c = cluster(Some("macvlan-conf"));
    let ann = [
        (NETWORKS, "macvlan-conf"),
        ("kubernetes.io/config.source", "file"),
        ("kubernetes.io/config.mirror", "0123abcd"),
    ];
    c.api.add_pod(&c.pod_ns, &c.pod, "mirror-uid", &ann);
    c.add().ok();
    assert_eq!(c.status().len(), 2);
    c.del().ok();
    c.assert_clean();
    // A plain pod with another UID is still refused (a new pod of the same name).
    c.api.add_pod(
        &c.pod_ns,
        &c.pod,
        "other-uid",
        &[(NETWORKS, "macvlan-conf")],
    );
    assert_eq!(c.add().err()["code"], 11);
    c.assert_clean();
}

/// A pod deleted before its sandbox was set up: success with Go Multus' empty result, nothing attached.
#[test]
fn pod_deleted_before_add_gets_an_empty_result() {
    let c = cluster(Some("macvlan-conf"));
    c.api.delete_pod(&c.pod_ns, &c.pod);
    let t = Instant::now();
    let r = c.add().ok();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(r["interfaces"][0]["name"], "eth0");
    assert_eq!(r["ips"][0]["address"], "0.0.0.0/0");
    c.assert_clean();
    c.del().ok();
}

#[test]
fn two_nads_and_one_nad_twice() {
    let c = cluster(Some("macvlan-conf,other,macvlan-conf@extra0"));
    let m2 = HostLink::veth("kmw");
    let mut other: Value = serde_json::from_str(&macvlan_conf(&m2.0, c.dir.path(), false)).unwrap();
    other["ipam"] =
        json!({"type":"host-local","subnet":"172.30.9.0/24","dataDir":c.dir.path().join("ipam")});
    c.api.add_nad("default", "other", &other.to_string(), &[]);
    c.add().ok();
    let mut names = c.ns.link_names();
    names.sort();
    assert_eq!(names, ["eth0", "extra0", "lo", "net1", "net2"]);
    assert!(in_user_range(&c.ns.addrs("net1")[0]));
    assert!(c.ns.addrs("net2")[0].starts_with("172.30.9."));
    assert!(in_user_range(&c.ns.addrs("extra0")[0]));
    assert_ne!(c.ns.addrs("net1"), c.ns.addrs("extra0"));
    let st = c.status();
    let pairs: Vec<(String, String)> = st
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().into(),
                s["interface"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("podnet".into(), "eth0".into()),
            ("default/macvlan-conf".into(), "net1".into()),
            ("default/other".into(), "net2".into()),
            ("default/macvlan-conf".into(), "extra0".into()),
        ]
    );
    // The NAD was fetched once although used twice.
    let nad_gets = c
        .api
        .requests()
        .iter()
        .filter(|r| r.contains("macvlan-conf"))
        .count();
    assert_eq!(nad_gets, 1);
    assert_eq!(c.reservations().len(), 4);
    c.del().ok();
    c.assert_clean();
}

#[test]
fn refused_cross_namespace_forbidden_and_missing_nads() {
    // namespaceIsolation: a NAD of another namespace is refused before anything is attached.
    let c = cluster(Some("team-b/macvlan-conf"));
    let mut conf = c.conf.clone();
    conf["namespaceIsolation"] = json!(true);
    let e = c.run("ADD", &conf).err();
    assert_eq!(e["code"], 7);
    assert!(
        e["msg"].as_str().unwrap().contains("namespaceIsolation"),
        "{e}"
    );
    c.assert_clean();
    // RBAC refusal (403).
    c.api.add_nad("team-b", "macvlan-conf", "{}", &[]);
    c.api.forbid_nad("team-b", "macvlan-conf");
    let e = c.add().err();
    assert_eq!(e["code"], 7);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("team-b/macvlan-conf") && msg.contains("403"),
        "{msg}"
    );
    c.assert_clean();
    // A missing NAD (404).
    let c = cluster(Some("macvlan-conf,nope"));
    let e = c.add().err();
    assert_eq!(e["code"], 7);
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains("default/nope") && msg.contains("404"), "{msg}");
    c.assert_clean();
    // The user sees why in the pod's events, as Go Multus posts it.
    let ev = c.api.events();
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(ev[0]["type"], "Warning");
    assert_eq!(ev[0]["reason"], "NoNetworkFound");
    let m = ev[0]["message"].as_str().unwrap();
    assert!(
        m.starts_with("cannot find a network-attachment-definition (nope) in namespace (default)"),
        "{m}"
    );
}

#[test]
fn api_down_on_add_and_on_del() {
    let mut c = cluster(Some("macvlan-conf"));
    c.add().ok();
    c.api.stop();
    // DEL needs no API: it works from the cache.
    c.del().ok();
    c.assert_clean();
    // ADD with the API down fails within the configured bound, with "try again later", leaving nothing.
    let t = Instant::now();
    let e = c.add().err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("unreachable"), "{e}");
    c.assert_clean();
}

#[test]
fn pod_and_nad_deleted_before_del() {
    let c = cluster(Some("macvlan-conf"));
    c.add().ok();
    c.api.delete_pod(&c.pod_ns, &c.pod);
    c.api.delete_nad("default", "macvlan-conf");
    c.del().ok();
    c.assert_clean();
}

#[test]
fn status_conflict_is_retried() {
    let c = cluster(Some("macvlan-conf"));
    c.api.inject_conflicts(3);
    c.add().ok();
    let puts: Vec<_> = c
        .api
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT"))
        .collect();
    assert_eq!(puts.len(), 4, "{puts:?}");
    assert!(puts[3].ends_with("200"));
    assert_eq!(c.status().len(), 2);
    c.del().ok();
    c.assert_clean();
    // A status that cannot be written at all (conflicts beyond every retry): ADD fails and rolls back.
    c.api.inject_conflicts(1000);
    let e = c.add().err();
    assert!(e["msg"].as_str().unwrap().contains(&c.pod), "{e}");
    assert!(e["msg"].as_str().unwrap().contains("409"), "{e}");
    c.api.inject_conflicts(0);
    c.assert_clean();
}

#[test]
fn corrupt_cache_falls_back_to_the_api_and_never_lies() {
    let c = cluster(Some("macvlan-conf"));
    c.add().ok();
    std::fs::write(c.cache_file(), b"{ torn write").unwrap();
    // The API cannot tell either (the pod is gone): DEL fails, keeps the cache, deletes nothing.
    let pod = c.api.pod(&c.pod_ns, &c.pod).unwrap();
    c.api.delete_pod(&c.pod_ns, &c.pod);
    let e = c.del().err();
    assert_eq!(e["code"], 11, "{e}");
    assert!(e["msg"].as_str().unwrap().contains("corrupt"), "{e}");
    assert!(c.cache_file().exists());
    assert_eq!(c.reservations().len(), 2);
    // With the pod back, the API says what was attached: DEL succeeds and leaves nothing.
    let ann = pod["metadata"]["annotations"][NETWORKS]
        .as_str()
        .unwrap()
        .to_string();
    c.api
        .add_pod(&c.pod_ns, &c.pod, &c.uid, &[(NETWORKS, &ann)]);
    c.del().ok();
    c.assert_clean();
}

#[test]
fn gc_covers_every_network_of_every_cached_attachment() {
    let c = cluster(Some("macvlan-conf"));
    let ns2 = Netns::new("k8");
    let cid2 = unique("k");
    c.add().ok();
    c.run_for("ADD", &cid2, Some(&ns2.path()), &c.conf).ok();
    assert_eq!(c.reservations().len(), 4);
    let mut gc = c.conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": c.cid, "ifname": "eth0"}]);
    c.run_for("GC", &c.cid, None, &gc).ok();
    // The second pod's eth0 and net1 reservations are released, its cache gone; the first pod's kept.
    assert_eq!(c.reservations().len(), 2, "{:?}", c.reservations());
    assert!(c.cache_file().exists());
    assert!(!c
        .dir
        .path()
        .join("cache")
        .join(format!("{cid2}-eth0.json"))
        .exists());
    c.del().ok();
    c.assert_clean();
}

#[test]
fn readiness_indicator_file_is_waited_for_with_a_bound() {
    let c = cluster(Some("macvlan-conf"));
    let ready = c.dir.path().join("ready");
    let mut conf = c.conf.clone();
    conf["readinessindicatorfile"] = json!(ready);
    conf["readinessTimeout"] = json!(0.3);
    let t = Instant::now();
    let e = c.run("ADD", &conf).err();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert_eq!(e["code"], 11);
    assert!(e["msg"].as_str().unwrap().contains("readiness"), "{e}");
    c.assert_clean();
    let mut status = conf.clone();
    status["cniVersion"] = json!("1.1.0");
    assert_eq!(c.run_for("STATUS", &c.cid, None, &status).err()["code"], 50);
    // The file appears while ADD waits.
    conf["readinessTimeout"] = json!(10);
    let r2 = ready.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(r2, b"").unwrap();
    });
    c.run("ADD", &conf).ok();
    t.join().unwrap();
    c.run_for("STATUS", &c.cid, None, &status).ok();
    c.run("DEL", &conf).ok();
    c.assert_clean();
}

/// `ip -j route show default` (IPv4) inside the pod: (gateway, dev) of each default route.
fn default_routes(c: &Cluster) -> Vec<(String, String)> {
    let out = sh(&["ip", "-n", &c.ns.name, "-j", "route", "show", "default"]);
    let v: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
    v.iter()
        .map(|r| {
            (
                r["gateway"].as_str().unwrap_or_default().to_string(),
                r["dev"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn default_route_moves_to_the_requesting_network() {
    // Without the request, the default route is eth0's (bridge, isGateway); the reference macvlan's own
    // default route via .1 does not make it into the table beside it.
    let c = cluster(Some("macvlan-conf"));
    c.add().ok();
    let before = default_routes(&c);
    assert!(before.iter().any(|(_, d)| d == "eth0"), "{before:?}");
    assert!(
        !before.iter().any(|(g, _)| g == "192.168.1.254"),
        "{before:?}"
    );
    c.del().ok();
    c.assert_clean();

    // With it: exactly one default route, via the requested gateway (not the NAD's .1) on net1.
    let c = cluster(Some(
        r#"[{"name":"macvlan-conf","default-route":["192.168.1.254"]}]"#,
    ));
    c.add().ok();
    assert_eq!(
        default_routes(&c),
        [("192.168.1.254".to_string(), "net1".to_string())]
    );
    let st = c.status();
    assert_eq!(st.len(), 2, "{st:?}");
    // `default` stays on the cluster network (multi-net spec, Go Multus); the route is net1's.
    assert_eq!(st[0]["interface"], "eth0");
    assert_eq!(st[0]["default"], true, "{st:?}");
    assert!(st[0].get("gateway").is_none(), "{st:?}");
    assert_eq!(st[1]["interface"], "net1");
    assert_eq!(st[1]["default"], false, "{st:?}");
    assert_eq!(st[1]["gateway"], json!(["192.168.1.254"]), "{st:?}");
    // The cached results say the same (DEL and CHECK work from them).
    let cache = std::fs::read_to_string(c.cache_file()).unwrap();
    assert!(cache.contains("192.168.1.254"), "{cache}");
    c.del().ok();
    c.assert_clean();

    // A gateway in no subnet of net1: the ADD fails naming it and the attachment, and is rolled back.
    let c = cluster(Some(
        r#"[{"name":"macvlan-conf","default-route":["10.99.0.1"]}]"#,
    ));
    let e = c.add().err();
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("10.99.0.1") && msg.contains("default/macvlan-conf") && msg.contains("net1"),
        "{msg}"
    );
    c.assert_clean();
    assert!(c.status().is_empty(), "no network-status for a failed ADD");
}

/// A script delegate `devmacvlan` in `bin`: on ADD it records the `runtimeConfig.CNIDeviceInfoFile` it was
/// given (in `seen`) and that file's content at that moment (in `before`), then writes `info` to it, as a
/// device-info-aware CNI plugin does; every command is then the reference macvlan's.
fn device_info_writer(bin: &Path, info: &Value) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        r#"#!/bin/sh
conf=$(cat)
if [ "$CNI_COMMAND" = ADD ]; then
  f=$(printf '%s' "$conf" | /usr/bin/jq -r '.runtimeConfig.CNIDeviceInfoFile // ""')
  printf '%s' "$f" > {dir}/seen
  cat "$f" > {dir}/before 2>/dev/null
  [ -n "$f" ] && printf '%s' '{info}' > "$f"
fi
printf '%s' "$conf" | exec /usr/lib/cni/macvlan
"#,
        dir = bin.display(),
        info = info
    );
    let p = bin.join("devmacvlan");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn device_info_from_the_device_plugin_and_from_the_delegate() {
    // net1: reference macvlan, a device from the checkpoint, the device plugin's file -> its device-info.
    // net2: a delegate declaring CNIDeviceInfoFile, which gets the device plugin's file copied to its
    // CNIDeviceInfoFile and rewrites it -> the rewritten content wins. net3: no resource, no device-info.
    let c = cluster(Some("dev-a,dev-b,macvlan-conf"));
    let res = "example.com/dev";
    let dir = c.dir.path();
    let devinfo = dir.join("devinfo");
    let bin = dir.join("bin");
    let checkpoint = dir.join("kubelet_internal_checkpoint");
    std::fs::write(
        &checkpoint,
        json!({"Data":{"PodDeviceEntries":[{"PodUID":c.uid,"ContainerName":"app","ResourceName":res,
                "DeviceIDs":{"0":["0000:03:02.0","0000:03:02.1"]}}],"RegisteredDevices":{}},"Checksum":1})
        .to_string(),
    )
    .unwrap();
    std::fs::create_dir_all(devinfo.join("dp")).unwrap();
    let dp_a = json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.0","pf-pci-address":"0000:03:00.0"}});
    let dp_b = json!({"type":"pci","version":"1.1.0","pci":{"pci-address":"0000:03:02.1"}});
    std::fs::write(
        devinfo.join("dp/example.com-dev-0000:03:02.0-device.json"),
        dp_a.to_string(),
    )
    .unwrap();
    std::fs::write(
        devinfo.join("dp/example.com-dev-0000:03:02.1-device.json"),
        dp_b.to_string(),
    )
    .unwrap();
    let cni_info = json!({"type":"pci","version":"1.1.0",
        "pci":{"pci-address":"0000:03:02.1","representor-device":"eth3"}});
    device_info_writer(&bin, &cni_info);

    let mut a: Value = serde_json::from_str(&macvlan_conf(&c.master.0, dir, false)).unwrap();
    a["ipam"] = json!({"type":"host-local","subnet":"172.30.7.0/24","dataDir":dir.join("ipam")});
    let mut b = a.clone();
    b["ipam"]["subnet"] = json!("172.30.8.0/24");
    b["type"] = json!("devmacvlan");
    b["cniVersion"] = json!("1.0.0");
    b["capabilities"] = json!({"CNIDeviceInfoFile": true});
    let ann = [("k8s.v1.cni.cncf.io/resourceName", res)];
    c.api.add_nad("default", "dev-a", &a.to_string(), &ann);
    c.api.add_nad("default", "dev-b", &b.to_string(), &ann);
    let mut conf = c.conf.clone();
    conf["deviceCheckpoint"] = json!(checkpoint);
    conf["deviceInfoDir"] = json!(devinfo);
    conf["binDir"] = json!(bin);

    c.run("ADD", &conf).ok();
    let st = c.status();
    let by_if = |i: &str| st.iter().find(|s| s["interface"] == i).cloned().unwrap();
    assert_eq!(by_if("net1")["name"], "default/dev-a");
    assert_eq!(by_if("net1")["device-info"], dp_a, "{st:?}");
    assert_eq!(by_if("net2")["device-info"], cni_info, "{st:?}");
    assert!(by_if("net3").get("device-info").is_none(), "{st:?}");
    assert!(by_if("eth0").get("device-info").is_none(), "{st:?}");

    // The delegate was given <dir>/cni/<ns>-<nad>-<containerID>_<ifname>, holding the device plugin's
    // information when it ran.
    let cni_b = devinfo.join(format!("cni/default-dev-b-{}_net2", c.cid));
    let cni_a = devinfo.join(format!("cni/default-dev-a-{}_net1", c.cid));
    assert_eq!(
        std::fs::read_to_string(bin.join("seen")).unwrap(),
        cni_b.display().to_string()
    );
    let before: Value =
        serde_json::from_str(&std::fs::read_to_string(bin.join("before")).unwrap()).unwrap();
    assert_eq!(before, dp_b);
    assert!(cni_a.exists() && cni_b.exists());

    c.run("DEL", &conf).ok();
    c.assert_clean();
    assert!(
        !cni_a.exists() && !cni_b.exists(),
        "DEL removes the CNI files"
    );
    assert!(
        devinfo
            .join("dp/example.com-dev-0000:03:02.0-device.json")
            .exists(),
        "the device plugin's files are the device plugin's"
    );

    // A malformed device plugin file is ignored: the ADD succeeds without device-info.
    let c2 = cluster(Some("dev-a"));
    c2.api.add_nad("default", "dev-a", &a.to_string(), &ann);
    std::fs::write(
        &checkpoint,
        json!({"Data":{"PodDeviceEntries":[{"PodUID":c2.uid,"ContainerName":"app","ResourceName":res,
                "DeviceIDs":["0000:03:02.0"]}],"RegisteredDevices":{}},"Checksum":1})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        devinfo.join("dp/example.com-dev-0000:03:02.0-device.json"),
        b"{\"type\": 5",
    )
    .unwrap();
    let mut conf2 = c2.conf.clone();
    conf2["deviceCheckpoint"] = json!(checkpoint);
    conf2["deviceInfoDir"] = json!(devinfo);
    c2.run("ADD", &conf2).ok();
    let st = c2.status();
    assert_eq!(st[1]["name"], "default/dev-a");
    assert!(st[1].get("device-info").is_none(), "{st:?}");
    c2.run("DEL", &conf2).ok();
    c2.assert_clean();
}

/// `auxiliaryCNIChainName`: the plugin configs of that subdirectory beside the `clusterNetwork` file run
/// after the pod's networks, behind a `passthru`, as one more attachment (net2 here); DEL runs them too.
#[test]
fn auxiliary_cni_chain_runs_after_the_pods_networks() {
    let c = cluster(Some("macvlan-conf"));
    let bin = c.dir.path().join("auxbin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = c.dir.path().join("aux.log");
    let script = |name: &str| {
        format!(
            "#!/bin/sh\ncat >/dev/null\necho \"{name} $CNI_COMMAND $CNI_IFNAME\" >> {}\n\
             [ \"$CNI_COMMAND\" = ADD ] && echo '{{\"cniVersion\":\"1.0.0\"}}'\nexit 0\n",
            log.display()
        )
    };
    for name in ["passthru", "auxrec"] {
        std::fs::write(bin.join(name), script(name)).unwrap();
        sh(&["chmod", "755", &bin.join(name).display().to_string()]);
    }
    let conf_dir = PathBuf::from(c.conf["confDir"].as_str().unwrap());
    std::fs::create_dir_all(conf_dir.join("aux-chain")).unwrap();
    std::fs::write(
        conf_dir.join("aux-chain/10-rec.conf"),
        r#"{"type":"auxrec","name":"rec"}"#,
    )
    .unwrap();
    let mut conf = c.conf.clone();
    conf["clusterNetwork"] = json!(conf_dir.join("10-podnet.conf"));
    conf["auxiliaryCNIChainName"] = json!("aux-chain");
    conf["binDir"] = json!(format!("{}:/usr/lib/cni", bin.display()));
    c.run("ADD", &conf).ok();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "passthru ADD net2\nauxrec ADD net2\n"
    );
    assert_eq!(c.status().len(), 2, "the chain adds no interface");
    c.run("DEL", &conf).ok();
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.ends_with("auxrec DEL net2\npassthru DEL net2\n"),
        "{log}"
    );
    c.assert_clean();
    // clusterNetwork by name: refused, as Go Multus refuses it.
    conf["clusterNetwork"] = json!("podnet");
    let e = c.run("ADD", &conf).err();
    assert!(e["msg"].as_str().unwrap().contains("not a path"), "{e}");
    c.assert_clean();
}

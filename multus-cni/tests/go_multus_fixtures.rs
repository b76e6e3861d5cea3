//! A node switched from Go Multus: each recorded fixture of what Go Multus 4.2.2 leaves for a pod
//! (`tests/fixtures/go-multus-4.2.2/`, see its README) is replayed on a real node — its delegate configs
//! pointed at this test's bridge, master and IPAM store, its links and reservations recreated by the
//! reference plugins exactly as Go Multus made them (same container ID, interfaces, configs) — and our DEL,
//! with the fixture's own Multus config, must leave nothing: no link, no reservation, no Go Multus cache
//! file, no libcni result cache file. CHECK and GC read the same entries.

mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use support::*;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/go-multus-4.2.2"
);
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Replay {
    ns: Netns,
    _master: HostLink,
    _bridge: HostLink,
    dir: tempfile::TempDir,
    cid: String,
    /// The fixture's Multus config, pointed at this node.
    conf: Value,
}

/// A delegate config of the fixture pointed at this node: its bridge, master and host-local store.
fn localize(conf: &mut Value, bridge: &str, master: &str, ipam: &Path) {
    let plugins: Vec<&mut Value> = match conf.get_mut("plugins") {
        Some(Value::Array(p)) => p.iter_mut().collect(),
        _ => vec![conf],
    };
    for p in plugins {
        if p.get("bridge").is_some() {
            p["bridge"] = json!(bridge);
        }
        if p.get("master").is_some() {
            p["master"] = json!(master);
        }
        if p.get("ipam").is_some() {
            p["ipam"]["dataDir"] = json!(ipam);
        }
    }
}

fn localize_b64(b64: &str, bridge: &str, master: &str, ipam: &Path) -> (Value, String) {
    let mut v: Value = serde_json::from_slice(&B64.decode(b64).unwrap()).unwrap();
    localize(&mut v, bridge, master, ipam);
    let out = B64.encode(v.to_string());
    (v, out)
}

/// Copies a fixture's cniDir, points every config at this node, and recreates the pod's links and
/// reservations with the reference plugins.
fn replay(mode: &str) -> Replay {
    require_root();
    let fixture = PathBuf::from(FIXTURES).join(mode);
    let ns = Netns::new("gm");
    let master = HostLink::veth("gmm");
    let bridge = HostLink::bridge_name("gmbr");
    let dir = tempfile::tempdir().unwrap();
    let cni_dir = dir.path().join("cniDir");
    let ipam = dir.path().join("ipam");
    std::fs::create_dir_all(cni_dir.join("results")).unwrap();
    let entry_file = std::fs::read_dir(fixture.join("cniDir"))
        .unwrap()
        .flatten()
        .find(|e| e.path().is_file())
        .unwrap();
    let cid = entry_file.file_name().to_string_lossy().into_owned();
    let mut entry: Vec<Value> =
        serde_json::from_slice(&std::fs::read(entry_file.path()).unwrap()).unwrap();
    let mut results = std::collections::HashMap::new();
    for (i, d) in entry.iter_mut().enumerate() {
        let (net, b64) = localize_b64(d["Bytes"].as_str().unwrap(), &bridge.0, &master.0, &ipam);
        d["Bytes"] = json!(b64);
        let ifname = if i == 0 {
            "eth0".to_string()
        } else {
            format!("net{i}")
        };
        results.insert(ifname.clone(), recreate(&net, &cid, &ifname, &ns));
    }
    std::fs::write(cni_dir.join(&cid), serde_json::to_vec(&entry).unwrap()).unwrap();
    for r in std::fs::read_dir(fixture.join("cniDir/results"))
        .unwrap()
        .flatten()
    {
        let mut v: Value = serde_json::from_slice(&std::fs::read(r.path()).unwrap()).unwrap();
        let (_, b64) = localize_b64(v["config"].as_str().unwrap(), &bridge.0, &master.0, &ipam);
        v["config"] = json!(b64);
        v["netns"] = json!(ns.path());
        // The result of this node's ADD (the recorded one names another node's links).
        v["result"] = results[v["ifName"].as_str().unwrap()].clone();
        std::fs::write(cni_dir.join("results").join(r.file_name()), v.to_string()).unwrap();
    }
    let mut conf: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("00-multus.conf")).unwrap()).unwrap();
    conf["cniDir"] = json!(cni_dir);
    conf["binDir"] = json!("/usr/lib/cni");
    conf["logLevel"] = json!("debug");
    if conf.get("kubeconfig").is_some() {
        // The API is not needed to undo what the cache holds: a kubeconfig that cannot even be read.
        conf["kubeconfig"] = json!(dir.path().join("no-such-kubeconfig"));
    }
    for d in conf["delegates"].as_array_mut().unwrap() {
        localize(d, &bridge.0, &master.0, &ipam);
    }
    let r = Replay {
        ns,
        _master: master,
        _bridge: bridge,
        dir,
        cid,
        conf,
    };
    assert_eq!(r.reservations().len(), entry.len(), "{mode}: the pod's IPs");
    r
}

/// What Go Multus' ADD did for one delegate: the reference plugin(s) run as libcni would.
fn recreate(net: &Value, cid: &str, ifname: &str, ns: &Netns) -> Value {
    let mut plugins: Vec<Value> = match net.get("plugins") {
        Some(Value::Array(p)) => p.clone(),
        _ => vec![net.clone()],
    };
    let mut prev: Option<Value> = None;
    for p in &mut plugins {
        p["name"] = net["name"].clone();
        p["cniVersion"] = net["cniVersion"].clone();
        if let Some(r) = &prev {
            p["prevResult"] = r.clone();
        }
        let bin = reference_dir().join(p["type"].as_str().unwrap());
        let netns = ns.path().display().to_string();
        let vars = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", cid),
            ("CNI_IFNAME", ifname),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        prev = Some(run_plugin(&bin, &vars, p.to_string().as_bytes()).ok());
    }
    prev.unwrap()
}

impl Replay {
    fn run(&self, command: &str, conf: &Value) -> Run {
        let netns = self.ns.path().display().to_string();
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod;K8S_POD_INFRA_CONTAINER_ID={}",
            self.cid
        );
        let mut vars = vec![
            ("CNI_COMMAND", command),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", args.as_str()),
        ];
        if command != "GC" {
            vars.extend([
                ("CNI_CONTAINERID", self.cid.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_NETNS", netns.as_str()),
            ]);
        }
        run_plugin(&multus_bin(), &vars, conf.to_string().as_bytes())
    }

    fn reservations(&self) -> Vec<String> {
        reservations(&self.dir.path().join("ipam"))
    }

    fn cni_dir_files(&self) -> Vec<String> {
        let d = self.dir.path().join("cniDir");
        let mut out: Vec<String> = walk(&d)
            .into_iter()
            .map(|p| p.strip_prefix(&d).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    fn assert_nothing_left(&self, mode: &str) {
        assert_eq!(self.ns.link_names(), ["lo"], "{mode}: links left");
        assert!(
            self.reservations().is_empty(),
            "{mode}: {:?}",
            self.reservations()
        );
        assert!(
            self.cni_dir_files().is_empty(),
            "{mode}: {:?}",
            self.cni_dir_files()
        );
    }
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn del_undoes_what_go_multus_attached() {
    for mode in ["delegates-mode", "kubernetes-mode"] {
        let r = replay(mode);
        let mut names = r.ns.link_names();
        names.sort();
        assert_eq!(names, ["eth0", "lo", "net1"], "{mode}");
        // CHECK reads the same entry (and the cached results as prevResult).
        r.run("CHECK", &r.conf).ok();
        r.run("DEL", &r.conf).ok();
        r.assert_nothing_left(mode);
        // A second DEL (runtimes repeat them) converges.
        r.run("DEL", &r.conf).ok();
    }
}

#[test]
fn gc_undoes_go_multus_pods_that_are_gone() {
    let r = replay("delegates-mode");
    let mut gc = r.conf.clone();
    gc["cniVersion"] = json!("1.1.0");
    // Still valid: GC leaves it alone.
    gc["cni.dev/valid-attachments"] = json!([{"containerID": r.cid, "ifname": "eth0"}]);
    r.run("GC", &gc).ok();
    assert_eq!(r.reservations().len(), 2);
    assert!(!r.cni_dir_files().is_empty());
    // Gone: GC undoes it as the runtime's DEL would have.
    gc["cni.dev/valid-attachments"] = json!([]);
    r.run("GC", &gc).ok();
    assert!(r.reservations().is_empty(), "{:?}", r.reservations());
    assert!(r.cni_dir_files().is_empty(), "{:?}", r.cni_dir_files());
}

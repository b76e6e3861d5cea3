//! `multus demo`: the user guide's example on one machine as root, with no cluster.
//!
//! The pod and NetworkAttachmentDefinition manifests are read from files (built-in copies of
//! `deploy/examples/` by default) into a [`FileSource`]; a network namespace stands for the pod; `eth0`
//! comes from the demo's primary network (`bridge` with host-local, both run in-process by the built-in
//! delegates, as the meta-plugin runs them on a node) and `net1` from the NAD (macvlan on a veth the demo
//! makes as master). ADD, CHECK and DEL go through the meta-plugin's
//! own Kubernetes-mode code ([`crate::meta::Meta`] with the manifests as its
//! [`crate::meta::PodSource`]: plan, attachment cache, pipeline, network-status), with the files in
//! place of the API server. Then everything is taken down and checked gone, unless `--keep`.

use crate::meta::conf::MultusConf;
use crate::meta::{Meta, PodSource};
use clap::Args;
use multus_core::cni::{CniArgs, CniEnv, Command};
use multus_k8s::annotation::NETWORK_STATUS_ANNOTATION;
use multus_k8s::source::FileSource;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The network namespace standing for the pod.
pub const NETNS: &str = "multus-demo";
/// The bridge of the primary network (made by the bridge plugin, removed by the demo).
pub const BRIDGE: &str = "mdemo-br";
/// The demo's state: attachment cache, host-local store, log, the master's name.
pub const STATE_DIR: &str = "/run/multus-demo";
/// Where the reference plugins are (Debian's containernetworking-plugins).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";
/// The container ID the demo's "runtime" uses.
const CONTAINER_ID: &str = "multus-demo-sample-pod";

const NAD_YAML: &str = include_str!("../../deploy/examples/macvlan-conf.yaml");
const POD_YAML: &str = include_str!("../../deploy/examples/sample-pod.yaml");

/// Options of `multus demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoOpts {
    /// Leave the pod's namespace, links, cache and IP reservations for inspection; `multus demo --clean`
    /// removes them.
    #[arg(long, conflicts_with = "clean")]
    pub keep: bool,
    /// Remove what a `--keep` run left (a DEL from the attachment cache first, so IPs are released).
    #[arg(long)]
    pub clean: bool,
    /// The NetworkAttachmentDefinition manifest (default: the user guide's macvlan-conf, as in
    /// deploy/examples/macvlan-conf.yaml).
    #[arg(long)]
    pub nad: Option<PathBuf>,
    /// The pod manifest (default: the user guide's sample-pod, as in deploy/examples/sample-pod.yaml).
    #[arg(long)]
    pub pod: Option<PathBuf>,
    /// The veth the demo makes as the macvlan master; it replaces the NAD's `master` (the guide's `ens5`).
    #[arg(long, default_value = "mdemo0")]
    pub master: String,
}

fn say(s: &str) {
    println!("\n== {s}");
}

/// Runs `ip` with these arguments; its stdout, or what went wrong.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip (apt-get install iproute2): {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).is_ok()
}

fn netns_path() -> PathBuf {
    PathBuf::from(format!("/var/run/netns/{NETNS}"))
}

fn state(p: &str) -> PathBuf {
    Path::new(STATE_DIR).join(p)
}

/// The primary network (eth0): `bridge` with host-local (the built-in delegates; a key they do not implement
/// would run the reference binaries in [`REFERENCE_DIR`]). `isGateway` is false and there
/// are no routes: the user's NAD gives net1 the pod's default route (via 192.168.1.1), and a second default
/// route from eth0 would compete with it (in a cluster the primary CNI's eth0 holds the default route and
/// a NAD asking for another is resolved with the `default-route` selection element).
pub fn primary_config() -> Value {
    json!({"cniVersion": "1.0.0", "name": "pod-network", "type": "bridge", "bridge": BRIDGE,
           "isGateway": false,
           "ipam": {"type": "host-local", "subnet": "10.244.7.0/24", "dataDir": state("ipam")}})
}

/// The Multus config the demo runs with: the primary network as `delegates[0]`, no kubeconfig (the pod and
/// NADs come from the manifests), the cache and log in the demo's state directory.
pub fn multus_config() -> Value {
    json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
           "binDir": REFERENCE_DIR, "cniDir": state("cache"),
           "logLevel": "verbose", "logFile": state("multus.log"), "logToStderr": false,
           "delegates": [primary_config()]})
}

fn env(command: Command, pod: &(String, String)) -> Result<CniEnv, String> {
    let args = CniArgs::parse(&format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={CONTAINER_ID}",
        pod.0, pod.1
    ))
    .map_err(|e| e.msg)?;
    Ok(CniEnv {
        command,
        container_id: CONTAINER_ID.to_string(),
        netns: Some(netns_path()),
        ifname: "eth0".to_string(),
        args,
        path: vec![PathBuf::from(REFERENCE_DIR)],
    })
}

/// Reads the manifests and adapts the NADs to this machine: `master` becomes the demo's veth, host-local
/// stores its reservations in the demo's state directory. Says what it changed.
fn manifests(opts: &DemoOpts) -> Result<(FileSource, (String, String)), String> {
    let read = |p: &Option<PathBuf>, builtin: &'static str, what: &str| match p {
        Some(p) => {
            println!("{what}: {}", p.display());
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        }
        None => {
            println!("{what}: built in (deploy/examples/)");
            Ok(builtin.to_string())
        }
    };
    let nad = read(&opts.nad, NAD_YAML, "NetworkAttachmentDefinition manifest")?;
    let pod = read(&opts.pod, POD_YAML, "pod manifest")?;
    let mut src = FileSource::from_yaml(&[&nad, &pod]).map_err(|e| e.msg)?;
    let pod_key = src
        .pods()
        .next()
        .map(|p| {
            let m = &p["metadata"];
            (
                m["namespace"].as_str().unwrap_or("default").to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .ok_or("the pod manifest holds no Pod")?;
    let keys: Vec<(String, String)> = src
        .nads()
        .map(|n| {
            let m = &n["metadata"];
            (
                m["namespace"].as_str().unwrap_or("default").to_string(),
                m["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (ns, name) in keys {
        let Some(obj) = src.nad_object_mut(&ns, &name) else {
            continue;
        };
        let Some(text) = obj["spec"]["config"].as_str() else {
            continue;
        };
        let mut conf: Value = serde_json::from_str(text).map_err(|e| {
            format!("NetworkAttachmentDefinition {ns}/{name}: spec.config is not JSON: {e}")
        })?;
        let mut plugins: Vec<&mut Value> = match conf.get_mut("plugins") {
            Some(Value::Array(a)) => a.iter_mut().collect(),
            _ => vec![&mut conf],
        };
        for p in plugins.iter_mut() {
            if let Some(m) = p.get("master").and_then(Value::as_str) {
                println!(
                    "NAD {ns}/{name}: \"master\": {m:?} -> {:?}, the veth the demo makes (--master)",
                    opts.master
                );
                p["master"] = Value::String(opts.master.clone());
            }
            if p["ipam"]["type"] == "host-local" && p["ipam"].get("dataDir").is_none() {
                println!(
                    "NAD {ns}/{name}: host-local \"dataDir\" -> {} (the demo's own store)",
                    state("ipam").display()
                );
                p["ipam"]["dataDir"] = json!(state("ipam"));
            }
        }
        obj["spec"]["config"] = Value::String(conf.to_string());
    }
    Ok((src, pod_key))
}

/// The host-local reservations in the demo's store (files named after an IP).
pub fn reservations() -> Vec<String> {
    let mut out = Vec::new();
    for net in std::fs::read_dir(state("ipam"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(net.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = f.file_name().to_string_lossy().into_owned();
            if n.parse::<std::net::IpAddr>().is_ok() {
                out.push(format!("{}/{n}", net.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

/// What of the demo is still there.
fn leftovers(master: &str) -> Vec<String> {
    let mut left = Vec::new();
    if netns_path().exists() {
        left.push(format!("network namespace {NETNS}"));
    }
    for l in [master.to_string(), format!("{master}p"), BRIDGE.to_string()] {
        if link_exists(&l) {
            left.push(format!("link {l}"));
        }
    }
    for r in reservations() {
        left.push(format!("reservation {r}"));
    }
    if Path::new(STATE_DIR).exists() {
        left.push(format!("directory {STATE_DIR}"));
    }
    left
}

/// Removes the namespace, the links and the state directory (after the DEL).
fn remove_all(master: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if netns_path().exists() {
        if let Err(e) = ip(&["netns", "del", NETNS]) {
            errors.push(e);
        }
    }
    for l in [master, BRIDGE] {
        if link_exists(l) {
            if let Err(e) = ip(&["link", "del", "dev", l]) {
                errors.push(e);
            }
        }
    }
    if Path::new(STATE_DIR).exists() {
        if let Err(e) = std::fs::remove_dir_all(STATE_DIR) {
            errors.push(format!("cannot remove {STATE_DIR}: {e}"));
        }
    }
    errors
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn conf() -> Result<MultusConf, String> {
    MultusConf::parse(multus_config().to_string().as_bytes()).map_err(|e| e.msg)
}

/// DEL through the meta-plugin's path, from the attachment cache.
fn del(
    rt: &tokio::runtime::Runtime,
    pod: &(String, String),
    src: FileSource,
) -> Result<(), String> {
    let env = env(Command::Del, pod)?;
    let conf = conf()?;
    rt.block_on(Meta::new(&env, &conf, PodSource::Files(src)).run())
        .map(|_| ())
        .map_err(|e| format!("DEL: {}", e.msg))
}

/// Prints what is left; true when nothing is.
fn show_nothing_left(master: &str) -> bool {
    say("what is left");
    let left = leftovers(master);
    if left.is_empty() {
        println!(
            "nothing: no namespace {NETNS}, no link {master} / {master}p / {BRIDGE}, no IP reservation, no {STATE_DIR}"
        );
        true
    } else {
        for l in &left {
            println!("left: {l}");
        }
        false
    }
}

/// `multus demo --clean`: DEL what a kept demo attached (from its cache), then remove everything.
fn clean(opts: &DemoOpts) -> i32 {
    let master = std::fs::read_to_string(state("master"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| opts.master.clone());
    let mut errors = Vec::new();
    if state("cache").exists() {
        say("CNI DEL from the attachment cache");
        let pod = ("default".to_string(), "sample-pod".to_string());
        match runtime().and_then(|rt| del(&rt, &pod, FileSource::default())) {
            Ok(()) => println!("DEL: ok"),
            Err(e) => errors.push(e),
        }
    }
    errors.extend(remove_all(&master));
    for e in &errors {
        eprintln!("multus demo --clean: {e}");
    }
    if show_nothing_left(&master) && errors.is_empty() {
        0
    } else {
        1
    }
}

/// Prints the pod as `kubectl describe pod` shows its name, namespace and annotations.
fn describe(pod: &Value) {
    let m = &pod["metadata"];
    println!("Name:         {}", m["name"].as_str().unwrap_or_default());
    println!(
        "Namespace:    {}",
        m["namespace"].as_str().unwrap_or_default()
    );
    let pad = " ".repeat(14);
    let mut first = true;
    if let Some(a) = m["annotations"].as_object() {
        let mut keys: Vec<&String> = a.keys().collect();
        keys.sort();
        for k in keys {
            let v = a[k].as_str().unwrap_or_default();
            let lead = if first {
                "Annotations:  ".to_string()
            } else {
                pad.clone()
            };
            first = false;
            if v.contains('\n') {
                println!("{lead}{k}:");
                for line in v.lines() {
                    println!("{pad}  {line}");
                }
            } else {
                println!("{lead}{k}: {v}");
            }
        }
    }
    if first {
        println!("Annotations:  <none>");
    }
}

fn setup(master: &str) -> Result<(), String> {
    std::fs::create_dir_all(STATE_DIR).map_err(|e| format!("cannot create {STATE_DIR}: {e}"))?;
    std::fs::write(state("master"), master)
        .map_err(|e| format!("cannot write {}: {e}", state("master").display()))?;
    ip(&["netns", "add", NETNS])?;
    ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
    let peer = format!("{master}p");
    ip(&["link", "add", master, "type", "veth", "peer", "name", &peer])?;
    ip(&["link", "set", master, "up"])?;
    ip(&["link", "set", &peer, "up"])?;
    Ok(())
}

/// The demo after setup: ADD, show, CHECK, then (unless `keep`) DEL.
fn attach_show_detach(
    rt: &tokio::runtime::Runtime,
    src: FileSource,
    pod: &(String, String),
    keep: bool,
) -> Result<(), String> {
    let conf = conf()?;
    say("the Multus config (kubeconfig-less: the pod and NADs come from the manifests)");
    println!(
        "{}",
        serde_json::to_string_pretty(&multus_config()).unwrap_or_default()
    );
    println!(
        "(eth0's bridge has isGateway false and no routes: net1's NAD asks for the pod's default route via \
         192.168.1.1, and one default route is what the user's pod gets)"
    );
    say(&format!(
        "CNI ADD of pod {}/{} (netns {NETNS}) through the meta-plugin's Kubernetes-mode path",
        pod.0, pod.1
    ));
    let add_env = env(Command::Add, pod)?;
    let mut meta = Meta::new(&add_env, &conf, PodSource::Files(src));
    let result = rt
        .block_on(meta.run())
        .map_err(|e| format!("ADD: {}", e.msg))?;
    let PodSource::Files(src) = meta.into_source() else {
        return Err("the demo's manifests are gone".into());
    };
    println!("the result returned to the runtime (the default network's):");
    println!(
        "{}",
        serde_json::to_string_pretty(&result.unwrap_or(Value::Null)).unwrap_or_default()
    );
    say(&format!("kubectl describe pod {}", pod.1));
    let obj = src
        .pod_object(&pod.0, &pod.1)
        .cloned()
        .ok_or("the pod is gone from the manifests")?;
    describe(&obj);
    if obj["metadata"]["annotations"][NETWORK_STATUS_ANNOTATION].is_null() {
        return Err("no network-status was written".into());
    }
    say(&format!(
        "kubectl exec {} -- ip a show dev net1   (here: ip -n {NETNS} a show dev net1)",
        pod.1
    ));
    print!("{}", ip(&["-n", NETNS, "a", "show", "dev", "net1"])?);
    say(&format!("ip -n {NETNS} route"));
    print!("{}", ip(&["-n", NETNS, "route"])?);
    say("CNI CHECK");
    let check_env = env(Command::Check, pod)?;
    rt.block_on(Meta::new(&check_env, &conf, PodSource::None).run())
        .map_err(|e| format!("CHECK: {}", e.msg))?;
    println!("CHECK: ok");
    say("host-local reservations");
    for r in reservations() {
        println!("{}", state("ipam").join(r).display());
    }
    if keep {
        return Ok(());
    }
    say("CNI DEL (from the attachment cache, as the meta-plugin does)");
    del(rt, pod, src)?;
    println!("DEL: ok");
    say(&format!("interfaces in {NETNS} after DEL"));
    print!("{}", ip(&["-n", NETNS, "-br", "link"])?);
    let left = reservations();
    if !left.is_empty() {
        return Err(format!("reservations left after DEL: {left:?}"));
    }
    println!("host-local reservations after DEL: none");
    Ok(())
}

/// Why the demo cannot start (other than `--clean`), with its exit status: not root, a bad `--master`, no
/// reference plugins, or a demo still set up.
fn refusal(opts: &DemoOpts) -> Option<(i32, String)> {
    if !nix::unistd::geteuid().is_root() {
        return Some((
            1,
            "needs root (it makes a network namespace and links): run it as root, e.g. `sudo bash \
             scripts/demo.sh`"
                .into(),
        ));
    }
    if opts.clean {
        return None;
    }
    let master = opts.master.as_str();
    if master.is_empty() || master.len() > 14 || master.contains(['/', ' ']) {
        return Some((
            2,
            format!("--master {master:?}: give a link name of 1 to 14 characters (its veth peer is <name>p)"),
        ));
    }
    if !Path::new(REFERENCE_DIR).join("bridge").exists() {
        return Some((
            1,
            format!(
                "the reference CNI plugins are not in {REFERENCE_DIR}: apt-get install \
                 containernetworking-plugins (scripts/demo.sh does)"
            ),
        ));
    }
    if netns_path().exists() || Path::new(STATE_DIR).exists() || link_exists(master) {
        return Some((
            1,
            format!(
                "a demo is still set up (netns {NETNS}, {STATE_DIR} or link {master} exists; kept with \
                 --keep?): run `multus demo --clean` first"
            ),
        ));
    }
    None
}

/// `multus demo`; returns the exit status.
pub fn run(opts: &DemoOpts) -> i32 {
    if let Some((code, why)) = refusal(opts) {
        eprintln!("multus demo: {why}");
        return code;
    }
    if opts.clean {
        return clean(opts);
    }
    let master = opts.master.as_str();
    say("the user guide's example, on this machine");
    let (src, pod) = match manifests(opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("multus demo: {e}");
            return 1;
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("multus demo: {e}");
            return 1;
        }
    };
    say(&format!(
        "network namespace {NETNS} for the pod; veth {master} (peer {master}p) as the macvlan master"
    ));
    let outcome = setup(master).and_then(|()| {
        println!("made {NETNS}, {master}, {master}p");
        attach_show_detach(&rt, src, &pod, opts.keep)
    });
    if let Err(e) = &outcome {
        eprintln!("multus demo: {e}");
        // Undo what was attached (from the cache, if anything was) before the links go.
        if state("cache").exists() {
            let _ = del(&rt, &pod, FileSource::default());
        }
    } else if opts.keep {
        say("kept for inspection");
        println!(
            "ip netns exec {NETNS} ip a; cache in {}, log in {}; remove with: multus demo --clean \
             (or bash scripts/demo.sh --clean)",
            state("cache").display(),
            state("multus.log").display()
        );
        return 0;
    }
    let errors = remove_all(master);
    for e in &errors {
        eprintln!("multus demo: {e}");
    }
    let clean = show_nothing_left(master);
    if outcome.is_ok() && errors.is_empty() && clean {
        0
    } else {
        1
    }
}

//! Benchmark of the meta-plugin's Kubernetes mode (run as root):
//!
//! A pod with `eth0` (`bridge`: the reference binary, by `preferNodeBinary`, as in the figures recorded before
//! the built-in bridge; with `--builtin-bridge` the built-in one) + `net1` + `net2` (two NADs, built-in
//! macvlan, host-local IPAM), ADD then DEL, interleaved over the same number of runs in three rows:
//!
//! 1. `multus` in Kubernetes mode against the loopback HTTPS API server stand-in (pod GET, 2 NAD GETs, pod
//!    GET + status PUT, over one TLS connection; cache; network-status);
//! 2. `multus` in kubeconfig-less mode with the same three networks as `delegates` (no API);
//! 3. the same delegates alone, as a runtime would run them: `/usr/lib/cni/bridge` (with `--builtin-bridge`,
//!    `multus` started as `bridge`), then `multus` started as `macvlan` (the built-in delegate standalone)
//!    twice; DEL in reverse.
//!
//! Usage: `cargo run --release -p multus-cni --example k8s_meta_bench -- path/to/release/multus [runs]
//! [--builtin-bridge]`

use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    let st = Command::new(args[0]).args(&args[1..]).status().unwrap();
    assert!(st.success(), "{args:?}");
}

fn quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn run(bin: &Path, vars: &[(&str, &str)], stdin: &str) -> Duration {
    let t = Instant::now();
    let mut c = Command::new(bin);
    c.envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{} {:?} failed: {}\n{}",
        bin.display(),
        vars.first(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

/// One row of the table: its ADD and DEL times.
struct Row {
    name: &'static str,
    add: Vec<Duration>,
    del: Vec<Duration>,
}

fn stats(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (
        ms(v[v.len() / 2]),
        mean,
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
    )
}

const MASTER: &str = "kbm0";
const NETNS: [&str; 3] = ["kb-k8s", "kb-less", "kb-alone"];
const POD_ARGS: &str = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench-pod;K8S_POD_UID=uid-bench;K8S_POD_INFRA_CONTAINER_ID=benchc";

/// The node the three rows run on: the master link, a netns and a bridge per row, the API stand-in with the
/// pod and its NADs, and each row's config. Dropping it removes the links and namespaces.
struct Bench {
    multus: PathBuf,
    macvlan_alone: PathBuf,
    bridge_alone: PathBuf,
    api: TestApiServer,
    k8s_conf: Value,
    less_conf: Value,
    alone_nets: [Value; 3],
    _work: tempfile::TempDir,
}

fn bridge_net(w: &Path, i: usize) -> Value {
    json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":format!("kbbr{i}"),"isGateway":true,
           "ipam":{"type":"host-local","subnet":format!("10.77.{i}.0/24"),"routes":[{"dst":"0.0.0.0/0"}],
                   "dataDir":w.join(format!("ipam{i}"))}})
}

fn macvlan_net(w: &Path, i: usize, k: usize) -> Value {
    json!({"cniVersion":"1.0.0","name":format!("mv{k}"),"type":"macvlan","master":MASTER,"mode":"bridge",
           "ipam":{"type":"host-local","subnet":format!("10.78.{}.0/24", i * 10 + k),"dataDir":w.join(format!("ipam{i}"))}})
}

impl Bench {
    fn new(multus: PathBuf, builtin_bridge: bool) -> Bench {
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        // The built-in macvlan standalone: multus started under the name `macvlan`.
        let mvdir = w.join("bin");
        std::fs::create_dir_all(&mvdir).unwrap();
        std::os::unix::fs::symlink(&multus, mvdir.join("macvlan")).unwrap();
        std::os::unix::fs::symlink(&multus, mvdir.join("bridge")).unwrap();
        let prefer: &[&str] = if builtin_bridge { &[] } else { &["bridge"] };
        quiet(&["ip", "link", "del", MASTER]);
        sh(&[
            "ip", "link", "add", MASTER, "type", "veth", "peer", "name", "kbm0p",
        ]);
        sh(&["ip", "link", "set", MASTER, "up"]);
        sh(&["ip", "link", "set", "kbm0p", "up"]);
        for (i, n) in NETNS.iter().enumerate() {
            quiet(&["ip", "netns", "del", n]);
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
            quiet(&["ip", "link", "del", &format!("kbbr{i}")]);
        }
        // Row 1: Kubernetes mode.
        let api = TestApiServer::start().unwrap();
        let kc = api
            .write_kubeconfig(&w.join("kube"), KubeconfigAuth::Token)
            .unwrap();
        let conf_dir = w.join("net.d");
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::write(
            conf_dir.join("10-podnet.conf"),
            bridge_net(w, 0).to_string(),
        )
        .unwrap();
        for k in 1..=2 {
            let mut c = macvlan_net(w, 0, k);
            c.as_object_mut().unwrap().remove("name");
            api.add_nad("default", &format!("mv{k}"), &c.to_string(), &[]);
        }
        let annotations = [("k8s.v1.cni.cncf.io/networks", "mv1,mv2")];
        api.add_pod("default", "bench-pod", "uid-bench", &annotations);
        let k8s_conf = json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":kc,
            "clusterNetwork":"podnet","confDir":conf_dir,"binDir":"/usr/lib/cni","cniDir":w.join("cache0"),
            "preferNodeBinary":prefer});
        // Row 2: kubeconfig-less, same networks.
        let delegates = [bridge_net(w, 1), macvlan_net(w, 1, 1), macvlan_net(w, 1, 2)];
        let less_conf = json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus",
            "binDir":"/usr/lib/cni","cniDir":w.join("cache1"),"delegates":delegates,"preferNodeBinary":prefer});
        Bench {
            multus,
            macvlan_alone: mvdir.join("macvlan"),
            bridge_alone: match builtin_bridge {
                true => mvdir.join("bridge"),
                false => PathBuf::from("/usr/lib/cni/bridge"),
            },
            api,
            k8s_conf,
            less_conf,
            alone_nets: [bridge_net(w, 2), macvlan_net(w, 2, 1), macvlan_net(w, 2, 2)],
            _work: work,
        }
    }

    /// Runs `bin` for `cmd` on interface `ifname` of the pod in netns `ns`; its time.
    fn call(&self, bin: &Path, cmd: &str, ns: &str, ifname: &str, stdin: &Value) -> Duration {
        let netns = format!("/var/run/netns/{ns}");
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "benchc"),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", POD_ARGS),
        ];
        run(bin, &vars, &stdin.to_string())
    }

    /// Row 1 does the whole job: after its ADD, the pod's network-status names its three networks (DEL
    /// clears it again).
    fn check_network_status(&self) {
        self.call(&self.multus, "ADD", NETNS[0], "eth0", &self.k8s_conf);
        let st = self.api.network_status("default", "bench-pod");
        let st = st.unwrap_or_default();
        assert_eq!(st.as_array().map(Vec::len), Some(3), "network-status: {st}");
        self.call(&self.multus, "DEL", NETNS[0], "eth0", &self.k8s_conf);
    }

    /// One ADD and one DEL of each row: (ADD, DEL) per row.
    fn round(&self) -> [(Duration, Duration); 3] {
        let m = &self.multus;
        let k8s = (
            self.call(m, "ADD", NETNS[0], "eth0", &self.k8s_conf),
            self.call(m, "DEL", NETNS[0], "eth0", &self.k8s_conf),
        );
        let less = (
            self.call(m, "ADD", NETNS[1], "eth0", &self.less_conf),
            self.call(m, "DEL", NETNS[1], "eth0", &self.less_conf),
        );
        // Row 3: the delegates one by one, as a runtime would; DEL in reverse.
        let ifs = ["eth0", "net1", "net2"];
        let bin = |k: usize| match k {
            0 => self.bridge_alone.as_path(),
            _ => self.macvlan_alone.as_path(),
        };
        let nets = self.alone_nets.iter().enumerate();
        let add = nets
            .clone()
            .map(|(k, n)| self.call(bin(k), "ADD", NETNS[2], ifs[k], n));
        let add: Duration = add.sum();
        let del = nets
            .rev()
            .map(|(k, n)| self.call(bin(k), "DEL", NETNS[2], ifs[k], n));
        [k8s, less, (add, del.sum())]
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        for (i, n) in NETNS.iter().enumerate() {
            quiet(&["ip", "netns", "del", n]);
            quiet(&["ip", "link", "del", &format!("kbbr{i}")]);
        }
        quiet(&["ip", "link", "del", MASTER]);
    }
}

/// The table, and the Kubernetes layer's cost (row 1 against rows 2 and 3).
fn report(rows: &mut [Row; 3], runs: usize) {
    println!("| row | ADD median | ADD mean | ADD p90 | DEL median | DEL mean | DEL p90 |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut med = Vec::new();
    for r in rows.iter_mut() {
        let (am, aa, ap) = stats(&mut r.add);
        let (dm, da, dp) = stats(&mut r.del);
        med.push((am, dm));
        println!(
            "| {} | {am:.2} ms | {aa:.2} ms | {ap:.2} ms | {dm:.2} ms | {da:.2} ms | {dp:.2} ms |",
            r.name
        );
    }
    println!(
        "\nKubernetes layer (row 1 - row 2, medians): ADD {:+.2} ms, DEL {:+.2} ms; row 1 - row 3: ADD {:+.2} ms, DEL {:+.2} ms ({runs} runs)",
        med[0].0 - med[1].0,
        med[0].1 - med[1].1,
        med[0].0 - med[2].0,
        med[0].1 - med[2].1
    );
}

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    let builtin_bridge = all.iter().any(|a| a == "--builtin-bridge");
    let mut args = all.into_iter().filter(|a| a != "--builtin-bridge");
    let usage = "usage: k8s_meta_bench MULTUS_BIN [runs] [--builtin-bridge]";
    let multus = PathBuf::from(args.next().expect(usage))
        .canonicalize()
        .unwrap();
    let runs: usize = args.next().map(|s| s.parse().expect(usage)).unwrap_or(50);
    assert!(nix::unistd::geteuid().is_root(), "run as root");
    let bench = Bench::new(multus, builtin_bridge);
    let row = |name| Row {
        name,
        add: vec![],
        del: vec![],
    };
    let mut rows = [
        row("multus, Kubernetes mode (loopback API server)"),
        row("multus, kubeconfig-less (same delegates)"),
        row("the delegates alone (bridge + macvlan x2)"),
    ];
    bench.check_network_status();
    for i in 0..runs + 3 {
        let times = bench.round();
        if i >= 3 {
            for (r, (add, del)) in rows.iter_mut().zip(times) {
                r.add.push(add);
                r.del.push(del);
            }
        }
    }
    report(&mut rows, runs);
}

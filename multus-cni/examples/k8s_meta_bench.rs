//! Benchmark of the meta-plugin's Kubernetes mode (run as root):
//!
//! A pod with `eth0` (reference bridge, an external binary) + `net1` + `net2` (two NADs, built-in macvlan,
//! host-local IPAM), ADD then DEL, interleaved over the same number of runs in three rows:
//!
//! 1. `multus` in Kubernetes mode against the loopback HTTPS API server stand-in (pod GET, 2 NAD GETs, pod
//!    GET + status PUT, over one TLS connection; cache; network-status);
//! 2. `multus` in kubeconfig-less mode with the same three networks as `delegates` (no API);
//! 3. the same delegates alone, as a runtime would run them: `/usr/lib/cni/bridge`, then `multus` started as
//!    `macvlan` (the built-in delegate standalone) twice; DEL in reverse.
//!
//! Usage: `cargo run --release -p multus-cni --example k8s_meta_bench -- path/to/release/multus [runs]`

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

fn main() {
    let mut args = std::env::args().skip(1);
    let multus = PathBuf::from(
        args.next()
            .expect("usage: k8s_meta_bench MULTUS_BIN [runs]"),
    )
    .canonicalize()
    .unwrap();
    let runs: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(50);
    assert!(nix_root(), "run as root");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // The built-in macvlan standalone: multus started under the name `macvlan`.
    let mvdir = w.join("bin");
    std::fs::create_dir_all(&mvdir).unwrap();
    std::os::unix::fs::symlink(&multus, mvdir.join("macvlan")).unwrap();
    let macvlan_alone = mvdir.join("macvlan");

    let master = "kbm0";
    quiet(&["ip", "link", "del", master]);
    sh(&[
        "ip", "link", "add", master, "type", "veth", "peer", "name", "kbm0p",
    ]);
    sh(&["ip", "link", "set", master, "up"]);
    sh(&["ip", "link", "set", "kbm0p", "up"]);
    let nets = ["kb-k8s", "kb-less", "kb-alone"];
    for (i, n) in nets.iter().enumerate() {
        quiet(&["ip", "netns", "del", n]);
        sh(&["ip", "netns", "add", n]);
        sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        quiet(&["ip", "link", "del", &format!("kbbr{i}")]);
    }
    let bridge = |i: usize| {
        json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":format!("kbbr{i}"),"isGateway":true,
               "ipam":{"type":"host-local","subnet":format!("10.77.{i}.0/24"),"routes":[{"dst":"0.0.0.0/0"}],
                       "dataDir":w.join(format!("ipam{i}"))}})
    };
    let mv = |i: usize, k: usize| {
        json!({"cniVersion":"1.0.0","name":format!("mv{k}"),"type":"macvlan","master":master,"mode":"bridge",
               "ipam":{"type":"host-local","subnet":format!("10.78.{}.0/24", i * 10 + k),"dataDir":w.join(format!("ipam{i}"))}})
    };

    // Row 1: Kubernetes mode.
    let api = TestApiServer::start().unwrap();
    let kc = api
        .write_kubeconfig(&w.join("kube"), KubeconfigAuth::Token)
        .unwrap();
    let conf_dir = w.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("10-podnet.conf"), bridge(0).to_string()).unwrap();
    for k in 1..=2 {
        let mut c = mv(0, k);
        c.as_object_mut().unwrap().remove("name");
        api.add_nad("default", &format!("mv{k}"), &c.to_string(), &[]);
    }
    api.add_pod(
        "default",
        "bench-pod",
        "uid-bench",
        &[("k8s.v1.cni.cncf.io/networks", "mv1,mv2")],
    );
    let k8s_conf = json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":kc,
        "clusterNetwork":"podnet","confDir":conf_dir,"binDir":"/usr/lib/cni","cniDir":w.join("cache0")});
    // Row 2: kubeconfig-less, same networks.
    let less_conf = json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus",
        "binDir":"/usr/lib/cni","cniDir":w.join("cache1"),"delegates":[bridge(1), mv(1, 1), mv(1, 2)]});

    let args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=bench-pod;K8S_POD_UID=uid-bench;K8S_POD_INFRA_CONTAINER_ID=benchc";
    let vars = |cmd: &'static str, ns: &str, ifname: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("CNI_COMMAND", cmd.into()),
            ("CNI_CONTAINERID", "benchc".into()),
            ("CNI_NETNS", format!("/var/run/netns/{ns}")),
            ("CNI_IFNAME", ifname.into()),
            ("CNI_PATH", "/usr/lib/cni".into()),
            ("CNI_ARGS", args.into()),
        ]
    };
    let go = |bin: &Path, v: &[(&'static str, String)], stdin: &Value| {
        let v: Vec<(&str, &str)> = v.iter().map(|(k, s)| (*k, s.as_str())).collect();
        run(bin, &v, &stdin.to_string())
    };
    let mut rows = [
        Row {
            name: "multus, Kubernetes mode (loopback API server)",
            add: vec![],
            del: vec![],
        },
        Row {
            name: "multus, kubeconfig-less (same delegates)",
            add: vec![],
            del: vec![],
        },
        Row {
            name: "the delegates alone (bridge + macvlan x2)",
            add: vec![],
            del: vec![],
        },
    ];
    let bridge_bin = Path::new("/usr/lib/cni/bridge");
    let alone_nets = [bridge(2), mv(2, 1), mv(2, 2)];
    for i in 0..runs + 3 {
        let warm = i < 3;
        // 1
        let a = go(&multus, &vars("ADD", nets[0], "eth0"), &k8s_conf);
        let d = go(&multus, &vars("DEL", nets[0], "eth0"), &k8s_conf);
        if !warm {
            rows[0].add.push(a);
            rows[0].del.push(d);
        }
        // 2
        let a = go(&multus, &vars("ADD", nets[1], "eth0"), &less_conf);
        let d = go(&multus, &vars("DEL", nets[1], "eth0"), &less_conf);
        if !warm {
            rows[1].add.push(a);
            rows[1].del.push(d);
        }
        // 3
        let ifs = ["eth0", "net1", "net2"];
        let mut a = Duration::ZERO;
        for (k, net) in alone_nets.iter().enumerate() {
            let bin = if k == 0 {
                bridge_bin
            } else {
                macvlan_alone.as_path()
            };
            a += go(bin, &vars("ADD", nets[2], ifs[k]), net);
        }
        let mut d = Duration::ZERO;
        for (k, net) in alone_nets.iter().enumerate().rev() {
            let bin = if k == 0 {
                bridge_bin
            } else {
                macvlan_alone.as_path()
            };
            d += go(bin, &vars("DEL", nets[2], ifs[k]), net);
        }
        if !warm {
            rows[2].add.push(a);
            rows[2].del.push(d);
        }
    }
    let st = api
        .network_status("default", "bench-pod")
        .unwrap_or_default();
    assert_eq!(st.as_array().map(Vec::len), Some(3), "network-status: {st}");

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

    for (i, n) in nets.iter().enumerate() {
        quiet(&["ip", "netns", "del", n]);
        quiet(&["ip", "link", "del", &format!("kbbr{i}")]);
    }
    quiet(&["ip", "link", "del", master]);
}

fn nix_root() -> bool {
    nix::unistd::geteuid().is_root()
}

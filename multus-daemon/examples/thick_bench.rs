//! Benchmarks of the thick plugin (run as root; figures in BENCHMARKS.md):
//!
//! - `seed RUNS`: the user guide's pod (eth0 from the reference bridge, net1 from the `macvlan-conf` NAD) in
//!   Kubernetes mode against the loopback HTTPS API stand-in, ADD then DEL, interleaved run by run: through
//!   `multus-shim` to a warm `multus-daemon`, and the thin `multus` on the same pod; with the API requests of
//!   each ADD and DEL.
//! - `concurrent N`: N pods ADDed at once through the shim: p50 / p99 of the ADDs, the daemon's CPU time and
//!   peak RSS over the burst; then all DELs.
//! - `rss RUNS`: peak RSS (GNU time's `%M`) of one ADD of the seed's pod through the shim, and through the
//!   thin `multus`.
//! - `idle PODS NADS`: the API holds PODS pods on this node and NADS NADs; the daemon's time from start to
//!   ready (`/readyz`), then its RSS idle.
//!
//! `cargo build --release -p multus-cni --bin multus && cargo build --release -p multus-daemon --example thick_bench`
//! then `thick_bench --multus target/release/multus --daemon target/release/multus-daemon seed 40`.
//! `--node-bridge` (before the mode): the primary network's `bridge` from the reference binary
//! (`preferNodeBinary: ["bridge"]`, in both modes) instead of the built-in one.

use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer, TEST_NODE};
use multus_testsupport::{HostLink, Netns};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Bench {
    api: TestApiServer,
    dir: tempfile::TempDir,
    multus: PathBuf,
    daemon_bin: PathBuf,
    daemon: Option<Child>,
    _master: HostLink,
    _bridge: HostLink,
    kubeconfig: PathBuf,
    metrics_port: u16,
    /// `preferNodeBinary` of both modes.
    prefer: Vec<String>,
}

fn call(bin: &Path, vars: &[(&str, &str)], stdin: &str) -> (Duration, bool, String) {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    let d = t.elapsed();
    (
        d,
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

impl Bench {
    fn new(multus: PathBuf, daemon_bin: PathBuf) -> Bench {
        let api = TestApiServer::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let master = HostLink::veth("bmv");
        let bridge = HostLink::bridge_name("bbr");
        let kubeconfig = api
            .write_kubeconfig(&dir.path().join("kube"), KubeconfigAuth::Token)
            .unwrap();
        let net_d = dir.path().join("net.d");
        std::fs::create_dir_all(&net_d).unwrap();
        std::fs::write(
            net_d.join("10-podnet.conf"),
            json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":bridge.0,"isGateway":true,
                   "ipam":{"type":"host-local","subnet":"10.77.0.0/16","routes":[{"dst":"0.0.0.0/0"}],
                           "dataDir":dir.path().join("ipam")}})
            .to_string(),
        )
        .unwrap();
        api.add_nad(
            "default",
            "macvlan-conf",
            &json!({"cniVersion":"0.3.1","type":"macvlan","master":master.0,"mode":"bridge",
                    "ipam":{"type":"host-local","subnet":"192.168.0.0/16","rangeStart":"192.168.1.200",
                            "rangeEnd":"192.168.9.250","gateway":"192.168.1.1","dataDir":dir.path().join("ipam")}})
            .to_string(),
            &[],
        );
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Bench {
            api,
            dir,
            multus,
            daemon_bin,
            daemon: None,
            _master: master,
            _bridge: bridge,
            kubeconfig,
            metrics_port,
            prefer: Vec::new(),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Starts the daemon; the time until `/readyz` answers 200.
    fn start_daemon(&mut self) -> Duration {
        let net_d = self.path("net.d");
        let cfg = json!({"cniVersion":"1.0.0","logLevel":"error","logFile":self.path("daemon.log"),
            "logToStderr":false,"socketDir":self.path("run"),"daemonSocketDir":self.path("run"),
            "cniConfigDir":net_d,"multusAutoconfigDir":net_d,"kubeconfig":self.kubeconfig,
            "nodeName":TEST_NODE,"binDir":"/usr/lib/cni","cniDir":self.path("cache"),
            "metricsPort":self.metrics_port,"metricsBindAddress":"127.0.0.1",
            "preferNodeBinary":self.prefer});
        std::fs::write(self.path("daemon.json"), cfg.to_string()).unwrap();
        let t = Instant::now();
        let child = Command::new(&self.daemon_bin)
            .arg("-config")
            .arg(self.path("daemon.json"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        while self.readyz() != Some(200) {
            assert!(t.elapsed() < Duration::from_secs(60), "daemon not ready");
            std::thread::sleep(Duration::from_micros(500));
        }
        let ready = t.elapsed();
        while !self.path("net.d/00-multus.conf").exists() {
            std::thread::sleep(Duration::from_millis(1));
        }
        ready
    }

    fn readyz(&self) -> Option<u16> {
        let mut s = std::os::unix::net::UnixStream::connect(self.path("run/multus.sock")).ok()?;
        s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        buf.split(' ').nth(1)?.parse().ok()
    }

    /// Mean time of each delegate type's ADD in the daemon (its histogram's sum / count).
    fn delegate_means(&self) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let get = |l: &str, suffix: &str| -> Option<(String, f64)> {
            let rest = l
                .strip_prefix("multus_delegate_duration_seconds")?
                .strip_prefix(suffix)?;
            let (labels, v) = rest.rsplit_once(' ')?;
            labels
                .contains("verb=\"ADD\"")
                .then(|| (labels.to_string(), v.parse().unwrap_or(0.0)))
        };
        let sums: Vec<(String, f64)> = text.lines().filter_map(|l| get(l, "_sum")).collect();
        let counts: Vec<(String, f64)> = text.lines().filter_map(|l| get(l, "_count")).collect();
        sums.iter()
            .zip(&counts)
            .map(|((l, s), (_, c))| format!("{l} {:.2} ms", s / c * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn pid(&self) -> u32 {
        self.daemon.as_ref().unwrap().id()
    }

    fn shim_conf(&self) -> String {
        std::fs::read_to_string(self.path("net.d/00-multus.conf")).unwrap()
    }

    fn thin_conf(&self) -> String {
        json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":self.kubeconfig,
               "clusterNetwork":self.path("net.d/10-podnet.conf"),"binDir":"/usr/lib/cni",
               "cniDir":self.path("thin-cache"),"preferNodeBinary":self.prefer})
        .to_string()
    }

    fn shim_bin(&self) -> PathBuf {
        let l = self.path("multus-shim");
        if !l.exists() {
            std::os::unix::fs::symlink(&self.multus, &l).unwrap();
        }
        l
    }

    fn cni(&self, bin: &Path, cmd: &str, pod: &Pod, conf: &str) -> (Duration, bool, String) {
        let netns = pod.ns.path().display().to_string();
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID=u-{}",
            pod.name, pod.cid, pod.name
        );
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", pod.cid.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", args.as_str()),
        ];
        call(bin, &vars, conf)
    }

    fn pod(&self, i: usize) -> Pod {
        let name = format!("bench-{i}");
        self.api.add_pod(
            "default",
            &name,
            &format!("u-{name}"),
            &[("k8s.v1.cni.cncf.io/networks", "macvlan-conf")],
        );
        Pod {
            ns: Netns::new("bn"),
            cid: format!("c{i:05}"),
            name,
        }
    }

    fn api_requests(&self) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| !r.contains('?'))
            .count()
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

struct Pod {
    ns: Netns,
    cid: String,
    name: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    ms(v[((v.len() as f64 - 1.0) * p).round() as usize])
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// (utime + stime in ms, VmHWM KiB, VmRSS KiB) of a process.
fn proc_stats(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks = 100.0;
    let cpu = (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / ticks * 1000.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k)?.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kib("VmHWM:"), kib("VmRSS:"))
}

/// One row of the seed table: name, ADD and DEL times, API requests per ADD and per DEL.
type Row = (
    &'static str,
    Vec<Duration>,
    Vec<Duration>,
    Vec<usize>,
    Vec<usize>,
);

fn seed(b: &mut Bench, runs: usize) {
    b.start_daemon();
    let shim = b.shim_bin();
    let (shim_conf, thin_conf) = (b.shim_conf(), b.thin_conf());
    let pod = b.pod(0);
    std::thread::sleep(Duration::from_millis(200));
    let mut rows: Vec<Row> = vec![
        ("thick (shim + daemon)", vec![], vec![], vec![], vec![]),
        ("thin (multus)", vec![], vec![], vec![], vec![]),
    ];
    println!("load before: {}", load());
    for i in 0..runs + 3 {
        for (r, row) in rows.iter_mut().enumerate() {
            let (bin, conf) = if r == 0 {
                (shim.as_path(), shim_conf.as_str())
            } else {
                (b.multus.as_path(), thin_conf.as_str())
            };
            let before = b.api_requests();
            let (add, ok, out) = b.cni(bin, "ADD", &pod, conf);
            assert!(ok, "{} ADD: {out}", row.0);
            let mid = b.api_requests();
            let (del, ok, out) = b.cni(bin, "DEL", &pod, conf);
            assert!(ok, "{} DEL: {out}", row.0);
            if i >= 3 {
                row.1.push(add);
                row.2.push(del);
                row.3.push(mid - before);
                row.4.push(b.api_requests() - mid);
            }
        }
    }
    println!("load after: {}", load());
    println!(
        "in the daemon, mean ADD per delegate: {}",
        b.delegate_means()
    );
    println!("| row ({runs} interleaved runs) | ADD median | ADD p90 | DEL median | DEL p90 | API requests per ADD / DEL |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, add, del, ra, rd) in &mut rows {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {} / {} |",
            pct(add, 0.5),
            pct(add, 0.9),
            pct(del, 0.5),
            pct(del, 0.9),
            ra[ra.len() / 2],
            rd[rd.len() / 2]
        );
    }
}

/// Peak RSS in KiB of one call under GNU time.
fn peak_rss(bin: &Path, vars: &[(&str, &str)], stdin: &str) -> u64 {
    let mut child = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg(bin)
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn rss(b: &mut Bench, runs: usize) {
    b.start_daemon();
    let shim = b.shim_bin();
    let (shim_conf, thin_conf) = (b.shim_conf(), b.thin_conf());
    let pod = b.pod(0);
    std::thread::sleep(Duration::from_millis(200));
    let (mut thick, mut thin) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (bin, conf, out) in [
            (&shim, &shim_conf, &mut thick),
            (&b.multus, &thin_conf, &mut thin),
        ] {
            let netns = pod.ns.path().display().to_string();
            let args = format!(
                "K8S_POD_NAMESPACE=default;K8S_POD_NAME={};K8S_POD_UID=u-{}",
                pod.name, pod.name
            );
            let vars = [
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", pod.cid.as_str()),
                ("CNI_NETNS", netns.as_str()),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                ("CNI_ARGS", args.as_str()),
            ];
            out.push(peak_rss(bin, &vars, conf));
            assert!(b.cni(bin, "DEL", &pod, conf).1);
        }
    }
    thick.sort();
    thin.sort();
    println!(
        "peak RSS of the seed pod's ADD ({runs} runs, median (min-max)): shim {:.2} MiB ({:.2}-{:.2}), thin multus {:.2} MiB ({:.2}-{:.2}); load {}",
        thick[runs / 2] as f64 / 1024.0, thick[0] as f64 / 1024.0, thick[runs - 1] as f64 / 1024.0,
        thin[runs / 2] as f64 / 1024.0, thin[0] as f64 / 1024.0, thin[runs - 1] as f64 / 1024.0, load()
    );
}

fn concurrent(b: &mut Bench, n: usize) {
    b.start_daemon();
    let shim = b.shim_bin();
    let conf = b.shim_conf();
    let pods: Vec<Pod> = (0..n).map(|i| b.pod(i)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, _, rss0) = proc_stats(b.pid());
    println!(
        "load before: {}; daemon RSS before the burst: {:.1} MiB",
        load(),
        rss0 as f64 / 1024.0
    );
    let t = Instant::now();
    let mut adds: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = pods
            .iter()
            .map(|p| s.spawn(|| b.cni(&shim, "ADD", p, &conf)))
            .collect();
        hs.into_iter()
            .map(|h| {
                let (d, ok, out) = h.join().unwrap();
                assert!(ok, "{out}");
                d
            })
            .collect()
    });
    let wall = t.elapsed();
    let (cpu1, hwm, _) = proc_stats(b.pid());
    println!("load after: {}", load());
    println!(
        "{n} ADDs at once: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, all done in {:.1} ms; daemon CPU {:.0} ms ({:.2} ms per ADD), peak RSS {:.1} MiB",
        pct(&mut adds, 0.5), pct(&mut adds, 0.99), pct(&mut adds, 1.0), ms(wall), cpu1 - cpu0, (cpu1 - cpu0) / n as f64, hwm as f64 / 1024.0
    );
    std::thread::scope(|s| {
        for p in &pods {
            s.spawn(|| assert!(b.cni(&shim, "DEL", p, &conf).1));
        }
    });
}

fn idle(b: &mut Bench, pods: usize, nads: usize) {
    let ann = serde_json::to_string(&json!([{"name":"macvlan-conf","interface":"net1"}])).unwrap();
    for i in 0..pods {
        b.api.add_pod(
            "default",
            &format!("idle-{i}"),
            &format!("uid-{i}"),
            &[
                ("k8s.v1.cni.cncf.io/networks", ann.as_str()),
                (
                    "kubectl.kubernetes.io/last-applied-configuration",
                    "{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}",
                ),
            ],
        );
    }
    for i in 0..nads {
        b.api.add_nad("default", &format!("nad-{i}"), r#"{"cniVersion":"0.3.1","type":"macvlan","master":"eth0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}"#, &[]);
    }
    println!("load before: {}", load());
    let ready = b.start_daemon();
    std::thread::sleep(Duration::from_secs(3));
    let (_, hwm, rss) = proc_stats(b.pid());
    let log = std::fs::read_to_string(b.path("daemon.log")).unwrap_or_default();
    let _: Value = json!(log.len());
    println!(
        "{pods} pods + {nads} NADs: ready {:.1} ms after spawn; RSS idle {:.1} MiB (peak {:.1} MiB); load after: {}",
        ms(ready), rss as f64 / 1024.0, hwm as f64 / 1024.0, load()
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut take = |flag: &str| -> PathBuf {
        let i = args
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("{flag} PATH"));
        args.remove(i);
        PathBuf::from(args.remove(i))
    };
    let multus = std::fs::canonicalize(take("--multus")).unwrap();
    let daemon = std::fs::canonicalize(take("--daemon")).unwrap();
    let node_bridge = args
        .iter()
        .position(|a| a == "--node-bridge")
        .map(|i| args.remove(i));
    let n = |i: usize, d: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let mut b = Bench::new(multus, daemon);
    if node_bridge.is_some() {
        b.prefer = vec!["bridge".into()];
    }
    match args.first().map(String::as_str) {
        Some("seed") => seed(&mut b, n(1, 40)),
        Some("concurrent") => concurrent(&mut b, n(1, 100)),
        Some("rss") => rss(&mut b, n(1, 9)),
        Some("idle") => idle(&mut b, n(1, 1000), n(2, 200)),
        _ => eprintln!("usage: thick_bench --multus BIN --daemon BIN seed [RUNS] | concurrent [N] | idle [PODS NADS]"),
    }
}

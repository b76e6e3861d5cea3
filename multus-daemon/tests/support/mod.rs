//! A node for the thick plugin's tests: the HTTPS API stand-in with the user guide's NAD, a primary network
//! (reference bridge) in the node's CNI config directory, `multus-daemon` started as a process on a daemon
//! config, and the `multus` binary started as `multus-shim` as a runtime runs it, in real network
//! namespaces.
#![allow(dead_code)]

pub mod go;

use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
pub use multus_testsupport::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const NETWORKS: &str = "k8s.v1.cni.cncf.io/networks";

/// The `multus` binary: beside `multus-daemon` in the same target directory, built once by this test
/// process (a no-op when it is up to date; `cargo test --workspace` has built it already).
pub fn multus_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let daemon = PathBuf::from(env!("CARGO_BIN_EXE_multus-daemon"));
        let profile_dir = daemon.parent().unwrap().to_path_buf();
        let target = profile_dir.parent().unwrap();
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-q",
            "-p",
            "multus-cni",
            "--bin",
            "multus",
            "--target-dir",
        ])
        .arg(target);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("cargo build of the multus binary");
        assert!(st.success(), "building the multus binary failed");
        profile_dir.join("multus")
    })
    .clone()
}

pub fn daemon_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multus-daemon"))
}

static N: AtomicU32 = AtomicU32::new(0);

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node: API stand-in, directories, links, the daemon.
pub struct Node {
    pub api: TestApiServer,
    pub dir: tempfile::TempDir,
    pub master: HostLink,
    pub bridge: HostLink,
    pub daemon: Option<Child>,
    pub daemon_config: Value,
    pub metrics_port: u16,
    pub subnet: u32,
    /// The daemon's own view of the files, when it is to differ from the host's (see [`ContainerView`]).
    pub daemon_view: Option<ContainerView>,
}

/// What a daemon container sees, made in the daemon's own mount namespace: the host's root (mounts
/// received from the host, as a HostToContainer volume) at `hostroot`, and a directory of the host hidden
/// under an empty tmpfs, so that a file written there by the daemon itself never reaches the host.
pub struct ContainerView {
    pub hostroot: PathBuf,
    pub hidden: PathBuf,
}

impl ContainerView {
    /// Enters a new mount namespace as the daemon starts (between fork and exec).
    fn apply(&self, cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        let c =
            |p: &std::path::Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        let (root, hostroot, hidden, tmpfs) = (
            c("/".as_ref()),
            c(&self.hostroot),
            c(&self.hidden),
            c("tmpfs".as_ref()),
        );
        let check = |r: i32| {
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        // SAFETY: only unshare and mount between fork and exec, on strings made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let (null, no_data) = (std::ptr::null(), std::ptr::null());
                check(libc::unshare(libc::CLONE_NEWNS))?;
                check(libc::mount(
                    null,
                    root.as_ptr(),
                    null,
                    libc::MS_REC | libc::MS_SLAVE,
                    no_data,
                ))?;
                check(libc::mount(
                    root.as_ptr(),
                    hostroot.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    no_data,
                ))?;
                check(libc::mount(
                    tmpfs.as_ptr(),
                    hidden.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    no_data,
                ))
            });
        }
    }
}

impl Node {
    /// The API with the guide's NAD `default/macvlan-conf` (master: a veth), the primary network
    /// `podnet` (reference bridge) in the node's config directory; no daemon yet.
    pub fn new() -> Node {
        require_root();
        reference_dir();
        let api = TestApiServer::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let master = HostLink::veth("tmv");
        let bridge = HostLink::bridge_name("tbr");
        let kc = api
            .write_kubeconfig(&dir.path().join("kube"), KubeconfigAuth::Token)
            .unwrap();
        let subnet = (std::process::id() % 50) * 4 + N.fetch_add(1, Ordering::SeqCst) % 4 + 20;
        let net_d = dir.path().join("net.d");
        std::fs::create_dir_all(&net_d).unwrap();
        std::fs::write(
            net_d.join("10-podnet.conf"),
            json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge","bridge":bridge.0,"isGateway":true,
                   "ipam":{"type":"host-local","subnet":format!("10.{subnet}.0.0/16"),
                           "routes":[{"dst":"0.0.0.0/0"}],"dataDir":dir.path().join("ipam")}})
            .to_string(),
        )
        .unwrap();
        let node = Node {
            api,
            master,
            bridge,
            daemon: None,
            metrics_port: free_port(),
            subnet,
            daemon_config: Value::Null,
            daemon_view: None,
            dir,
        };
        node.api.add_nad(
            "default",
            "macvlan-conf",
            &node.macvlan_conf("192.168.1.200", "192.168.1.216"),
            &[],
        );
        let mut node = node;
        node.daemon_config = json!({
            "cniVersion": "1.0.0", "logLevel": "debug", "logFile": node.path("daemon.log"), "logToStderr": false,
            "socketDir": node.path("run"), "daemonSocketDir": node.path("run"),
            "cniConfigDir": net_d, "multusAutoconfigDir": net_d,
            "kubeconfig": kc, "nodeName": multus_testsupport::api_server::TEST_NODE,
            "metricsPort": node.metrics_port, "metricsBindAddress": "127.0.0.1",
            "binDir": format!("{}:/usr/lib/cni", node.path("bin").display()), "cniDir": node.path("cache"),
            "daemonConnectTimeout": 3, "cleanupConfigOnExit": true, "drainTimeout": 20,
        });
        std::fs::create_dir_all(node.path("bin")).unwrap();
        node
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The user's macvlan NAD config (reference macvlan + host-local over a range of 192.168.1.0/24).
    pub fn macvlan_conf(&self, start: &str, end: &str) -> String {
        json!({"cniVersion":"0.3.1","type":"macvlan","master":self.master.0,"mode":"bridge",
               "ipam":{"type":"host-local","subnet":"192.168.1.0/24","rangeStart":start,"rangeEnd":end,
                       "gateway":"192.168.1.1","dataDir":self.path("ipam")}})
        .to_string()
    }

    /// Starts the daemon and waits until it is ready (`/readyz` on the socket).
    pub fn start_daemon(&mut self) {
        // The shim binary first: building it must not count against any bound below.
        self.shim_bin();
        let cfg = self.path("daemon-config.json");
        std::fs::write(&cfg, self.daemon_config.to_string()).unwrap();
        let mut cmd = Command::new(daemon_bin());
        cmd.arg("-config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(view) = &self.daemon_view {
            view.apply(&mut cmd);
        }
        let child = cmd.spawn().unwrap();
        self.daemon = Some(child);
        let t = Instant::now();
        while self.socket_get("/readyz").map(|(s, _)| s) != Some(200) {
            if let Some(st) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited with {st}: {}", self.log());
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the daemon is not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait_for("00-multus.conf", || {
            self.path("net.d/00-multus.conf").exists()
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// SIGTERM to the daemon; its exit status.
    pub fn stop_daemon(&mut self) -> i32 {
        let mut child = self.daemon.take().expect("a daemon");
        signal(&child, libc::SIGTERM);
        child.wait().unwrap().code().unwrap_or(-1)
    }

    /// SIGKILL to the daemon.
    pub fn kill_daemon(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The node's generated Multus config, as the runtime passes it to the shim.
    pub fn multus_conf(&self) -> Value {
        let text = std::fs::read_to_string(self.path("net.d/00-multus.conf"))
            .expect("00-multus.conf written by the daemon");
        serde_json::from_str(&text).unwrap()
    }

    /// `/bin/multus-shim` -> the multus binary.
    pub fn shim_bin(&self) -> PathBuf {
        let link = self.path("shim/multus-shim");
        if !link.exists() {
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(multus_bin(), &link).unwrap();
        }
        link
    }

    /// Runs the shim for `pod` as the runtime does.
    pub fn shim(&self, command: &str, pod: &TestPod, conf: &Value) -> Run {
        let netns = pod.ns.path().display().to_string();
        let args = pod.args();
        let vars = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", pod.cid.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/usr/lib/cni"),
            ("CNI_ARGS", args.as_str()),
            ("CNI_NETNS", netns.as_str()),
        ];
        run_plugin(&self.shim_bin(), &vars, conf.to_string().as_bytes())
    }

    /// GET on the daemon's socket: status and body (None: no answer).
    pub fn socket_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = std::os::unix::net::UnixStream::connect(self.path("run/multus.sock")).ok()?;
        http_get(&mut s, path)
    }

    /// GET on the metrics port.
    pub fn metrics_get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).ok()?;
        http_get(&mut s, path)
    }

    /// The value of one sample of `/metrics` (0 when absent).
    pub fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.metrics_get("/metrics").expect("metrics");
        text.lines()
            .find_map(|l| {
                l.strip_prefix(sample)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// The pods in the daemon's watch cache (its `multus_watch_cache_objects` gauge).
    pub fn cached_pods(&self) -> f64 {
        self.metric("multus_watch_cache_objects{resource=\"pods\"}")
    }

    /// Waits (bounded) until at least `n` pods are in the daemon's watch cache.
    pub fn wait_pods_cached(&self, n: u32) {
        self.wait_for(&format!("{n} pod(s) in the cache"), || {
            self.cached_pods() >= f64::from(n)
        });
    }

    /// Waits until `f` holds (bounded).
    pub fn wait_for(&self, what: &str, f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "timed out waiting for {what}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// API requests the flow made (LIST and WATCH left out).
    pub fn flow_requests(&self) -> Vec<String> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| !r.contains("?"))
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our child's pid.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

fn http_get<S: Read + Write>(s: &mut S, path: &str) -> Option<(u16, String)> {
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// A pod: its netns, container ID, API object.
pub struct TestPod {
    pub ns: Netns,
    pub cid: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl TestPod {
    /// A pod in the API (`annotation`: its networks) with a fresh netns.
    pub fn new(node: &Node, annotation: Option<&str>) -> TestPod {
        let p = Self::unlisted(annotation);
        let ann: Vec<(&str, &str)> = annotation.map(|a| vec![(NETWORKS, a)]).unwrap_or_default();
        node.api.add_pod(&p.namespace, &p.name, &p.uid, &ann);
        p
    }

    /// A pod not (yet) in the API.
    pub fn unlisted(_annotation: Option<&str>) -> TestPod {
        let name = unique("pod-");
        TestPod {
            ns: Netns::new("th"),
            cid: unique("c"),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            name,
        }
    }

    pub fn args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.cid, self.uid
        )
    }
}

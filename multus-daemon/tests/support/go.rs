//! Upstream Go Multus v4.2.2's thick binaries on a test node (feature `go-interop`): its `multus-daemon`
//! started as its DaemonSet starts it (in-cluster API settings, in a mount namespace of its own) and its
//! `multus-shim` run as a runtime runs a plugin. Used by `tests/go_interop.rs` and the side-by-side bench
//! `benches/go_side_by_side.rs`.

use super::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CNI call through a shim: longer than anything a working call takes, short of a hang.
pub const CALL_BOUND: Duration = Duration::from_secs(100);

/// An upstream binary named by the environment; a clear panic when it is not (never a silent skip).
pub fn go_bin(var: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!(
            "{var} is not set: these tests run upstream's Go Multus v4.2.2 binaries; \
             run `bash tests/interop/go-multus.sh`, which builds them and names them in \
             GO_MULTUS_SHIM, GO_MULTUS_DAEMON and GO_MULTUS_APIPROXY"
        )
    });
    assert!(
        path.is_file(),
        "{var}={} is not a file: run `bash tests/interop/go-multus.sh`",
        path.display()
    );
    path
}

/// The runtime's CNI variables for `pod`.
pub fn cni_vars(command: &str, pod: &TestPod) -> Vec<(&'static str, String)> {
    vec![
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", pod.cid.clone()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", "/usr/lib/cni".to_string()),
        ("CNI_ARGS", pod.args()),
        ("CNI_NETNS", pod.ns.path().display().to_string()),
    ]
}

/// Runs a shim binary for `pod` as the runtime does (bounded: a hang panics).
pub fn run_shim(bin: &Path, command: &str, pod: &TestPod, conf: &Value) -> Run {
    let vars = cni_vars(command, pod);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_plugin_within(bin, &vars, conf.to_string().as_bytes(), CALL_BOUND)
}

/// A child process of the test that dies with it (`PR_SET_PDEATHSIG`), killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn spawn(cmd: &mut Command) -> Proc {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl(2) only, between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Proc(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program())),
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Upstream's `multus-daemon`, started as its DaemonSet starts it, on this node: its API client from the
/// in-cluster settings, seen only in a mount namespace of its own. The API is the HTTPS stand-in behind
/// `interop-apiproxy` (tests/interop/apiproxy): upstream's client-go writes protobuf bodies
/// (pkg/k8sclient/kubeconfig.go, `GetK8sClient`), which the proxy turns into the JSON the stand-in reads.
pub struct GoDaemon {
    pub daemon: Proc,
    _proxy: Proc,
    log: PathBuf,
    stderr: PathBuf,
    proxy_log: PathBuf,
}

impl GoDaemon {
    /// Upstream's daemon-config.json (deployments/multus-daemonset-thick.yml, without `chrootDir`), pointed
    /// at the node's directories; started in `unshare -m` where a temporary directory holding `netns/` and
    /// `secrets/kubernetes.io/serviceaccount/{token,ca.crt}` is bind-mounted over /run (the host's netns
    /// mounts bound back into it), so that in-cluster config finds the stand-in and the host's /run stays
    /// untouched. Waits until `/healthz` answers on the socket and `00-multus.conf` is written.
    pub fn start(node: &Node) -> GoDaemon {
        Self::start_logging(node, "debug")
    }

    /// As [`GoDaemon::start`], logging at `level`.
    pub fn start_logging(node: &Node, level: &str) -> GoDaemon {
        let bin = go_bin("GO_MULTUS_DAEMON");
        let root = node.path("go-root");
        let run = root.join("run");
        let sa = run.join("secrets/kubernetes.io/serviceaccount");
        std::fs::create_dir_all(&sa).unwrap();
        std::fs::create_dir_all(run.join("netns")).unwrap();
        std::fs::create_dir_all(root.join("hostnetns")).unwrap();
        std::fs::write(sa.join("token"), node.api.token()).unwrap();
        std::fs::write(sa.join("namespace"), "kube-system").unwrap();

        let proxy_log = node.path("go-apiproxy.log");
        let proxy = Proc::spawn(
            Command::new(go_bin("GO_MULTUS_APIPROXY"))
                .arg("-upstream")
                .arg(node.api.url())
                .arg("-upstream-ca")
                .arg(node.path("kube/ca.pem"))
                .arg("-ca-out")
                .arg(sa.join("ca.crt"))
                .arg("-addr-out")
                .arg(root.join("proxy-addr"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&proxy_log).unwrap()),
        );
        let t = Instant::now();
        let addr = loop {
            if let Ok(a) = std::fs::read_to_string(root.join("proxy-addr")) {
                break a;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "interop-apiproxy did not start: {}",
                std::fs::read_to_string(&proxy_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let (host, port) = addr.trim().rsplit_once(':').expect("host:port");

        let log = node.path("go-daemon.log");
        let config = json!({
            "cniVersion": "1.0.0",
            "logLevel": level,
            "logFile": log,
            "logToStderr": false,
            "cniConfigDir": node.path("net.d"),
            "multusAutoconfigDir": node.path("net.d"),
            "multusConfigFile": "auto",
            "socketDir": node.path("run"),
            "daemonSocketDir": node.path("run"),
            "binDir": "/usr/lib/cni",
            "cniDir": node.path("go-cache"),
        });
        let cfg = node.path("go-daemon-config.json");
        std::fs::write(&cfg, config.to_string()).unwrap();
        let script = r#"set -e
            [ -d /run/netns ] && mount --rbind /run/netns "$ROOT/hostnetns"
            mount --bind "$ROOT/run" /run
            mount --rbind "$ROOT/hostnetns" /run/netns
            exec "$BIN" -config "$CFG""#;
        let stderr = node.path("go-daemon.stderr");
        let daemon = Proc::spawn(
            Command::new("unshare")
                .args(["-m", "--propagation", "slave", "sh", "-c", script])
                .env("ROOT", &root)
                .env("BIN", &bin)
                .env("CFG", &cfg)
                .env("KUBERNETES_SERVICE_HOST", host)
                .env("KUBERNETES_SERVICE_PORT", port)
                .env(
                    "MULTUS_NODE_NAME",
                    multus_testsupport::api_server::TEST_NODE,
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr).unwrap()),
        );
        let mut d = GoDaemon {
            daemon,
            _proxy: proxy,
            log,
            stderr,
            proxy_log,
        };
        let t = Instant::now();
        while node.socket_get("/healthz").map(|(s, _)| s) != Some(200)
            || !node.path("net.d/00-multus.conf").exists()
        {
            if let Some(st) = d.daemon.0.try_wait().unwrap() {
                panic!("upstream's daemon exited with {st}: {}", d.output());
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "upstream's daemon is not ready after 60 s: {}",
                d.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn output(&self) -> String {
        format!(
            "\n--- its log:\n{}\n--- its stderr:\n{}\n--- interop-apiproxy:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
            self.proxy_log()
        )
    }

    pub fn proxy_log(&self) -> String {
        std::fs::read_to_string(&self.proxy_log).unwrap_or_default()
    }
}

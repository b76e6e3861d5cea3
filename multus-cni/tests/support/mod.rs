//! Helpers shared by the binary's integration tests: real network namespaces, veth pairs, running the
//! built `multus` binary as a runtime would.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Panics (never skips) when the test is not run as root: these tests need real namespaces.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (network namespaces, links): run the suite as root, as CI does"
        );
    }
}

/// A name unique to this process and call, at most `max` bytes (for links: 15).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let s = format!("{prefix}{:x}{n:x}", std::process::id() & 0xffff);
    s.chars().take(15).collect()
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, ignoring failure.
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        require_root();
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// `ip -j link show` inside, as JSON.
    pub fn links(&self) -> Vec<Value> {
        serde_json::from_str(&sh(&["ip", "-n", &self.name, "-j", "-d", "link", "show"]))
            .unwrap_or_default()
    }

    pub fn link_names(&self) -> Vec<String> {
        self.links()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .collect()
    }

    /// IPv4/IPv6 addresses of a link inside, as `addr/prefix`.
    pub fn addrs(&self, ifname: &str) -> Vec<String> {
        let out = sh(&["ip", "-n", &self.name, "-j", "addr", "show", "dev", ifname]);
        let v: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
        v.iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["scope"] != "link" && a["scope"] != "host")
            .map(|a| {
                format!(
                    "{}/{}",
                    a["local"].as_str().unwrap_or_default(),
                    a["prefixlen"]
                )
            })
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        sh_quiet(&["ip", "netns", "del", &self.name]);
    }
}

/// A host link deleted on drop (a veth pair, a bridge).
pub struct HostLink(pub String);

impl HostLink {
    /// A veth pair `name` / `name`+"p" in the host namespace, both up.
    pub fn veth(prefix: &str) -> Self {
        require_root();
        let name = unique(prefix);
        let peer: String = format!("{}p", &name[..name.len().min(14)]);
        sh(&[
            "ip", "link", "add", &name, "type", "veth", "peer", "name", &peer,
        ]);
        sh(&["ip", "link", "set", &name, "up"]);
        sh(&["ip", "link", "set", &peer, "up"]);
        HostLink(name)
    }

    /// A name for a bridge the test's plugin will create; deleted on drop.
    pub fn bridge_name(prefix: &str) -> Self {
        HostLink(unique(prefix))
    }
}

impl Drop for HostLink {
    fn drop(&mut self) {
        sh_quiet(&["ip", "link", "del", &self.0]);
    }
}

/// Whether a host link exists.
pub fn host_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The reference plugins' directory (Debian's containernetworking-plugins).
pub fn reference_dir() -> PathBuf {
    let p = PathBuf::from("/usr/lib/cni");
    assert!(
        p.join("bridge").exists(),
        "the reference CNI plugins are missing: apt-get install containernetworking-plugins (the test command does)"
    );
    p
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {:?}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts success and returns the JSON body (Null when empty).
    pub fn ok(&self) -> Value {
        assert_eq!(
            self.status, 0,
            "expected success, got {}: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        );
        if self.stdout.trim().is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts a CNI error (exit 1, JSON with `code` and `msg`) and returns it.
    pub fn err(&self) -> Value {
        assert_eq!(
            self.status, 1,
            "expected exit 1, got {}: {}\nstderr: {}",
            self.status, self.stdout, self.stderr
        );
        let v = self.json();
        assert!(v["code"].is_u64(), "no code: {v}");
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.is_empty()),
            "no msg: {v}"
        );
        v
    }
}

/// The built binary.
pub fn multus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multus"))
}

/// Runs `bin` with exactly these CNI variables (others cleared) and `stdin`.
pub fn run_plugin(bin: &Path, vars: &[(&str, &str)], stdin: &[u8]) -> Run {
    let mut cmd = Command::new(bin);
    for k in [
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_NETNS",
        "CNI_IFNAME",
        "CNI_ARGS",
        "CNI_PATH",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin);
    }
    let out = child.wait_with_output().expect("wait");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the multus binary for a verb on one container.
pub fn cni(
    command: &str,
    container: &str,
    netns: Option<&Path>,
    ifname: &str,
    conf: &Value,
) -> Run {
    let ns = netns.map(|p| p.to_string_lossy().into_owned());
    let mut vars: Vec<(&str, &str)> = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    if let Some(ns) = ns.as_deref() {
        vars.push(("CNI_NETNS", ns));
    }
    run_plugin(&multus_bin(), &vars, conf.to_string().as_bytes())
}

/// The reservations in a host-local store directory (files named after IPs).
pub fn reservations(data_dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(data_dir) {
        for net in rd.flatten() {
            if let Ok(files) = std::fs::read_dir(net.path()) {
                for f in files.flatten() {
                    let n = f.file_name().to_string_lossy().into_owned();
                    if n.parse::<std::net::IpAddr>().is_ok() {
                        out.push(n);
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// A map of env for quick building.
pub fn env_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

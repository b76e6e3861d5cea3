//! Shared helpers of the macvlan / ipvlan tests: root check, network namespaces and veth masters made with
//! `ip` (removed on drop), `ip -j` queries, and a registry with the built-ins and the reference plugins.
#![allow(dead_code)]

use multus_core::cni::{CniArgs, CniError, CniResult, Command, PluginConf};
use multus_core::delegate::{Context, Delegate, ExternalPlugin, Registry};
use multus_core::plugins::{Ipvlan, Macvlan};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command as Proc;
use std::sync::Arc;
use std::time::Duration;

/// Where Debian's containernetworking-plugins are.
pub const REF_DIR: &str = "/usr/lib/cni";

/// Panics (never skips) when not root.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("");
    assert_eq!(
        euid, "0",
        "these tests create network namespaces and links: run them as root"
    );
}

/// Runs a command, panicking with its stderr on failure; returns stdout.
pub fn sh(args: &[&str]) -> String {
    let out = Proc::new(args[0])
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

/// Runs a command and reports whether it succeeded (no panic).
pub fn try_sh(args: &[&str]) -> bool {
    Proc::new(args[0])
        .args(&args[1..])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `ip -j ...` parsed.
pub fn ip_json(args: &[&str]) -> Value {
    let mut full = vec!["ip", "-j"];
    full.extend_from_slice(args);
    let out = sh(&full);
    if out.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{full:?}: {e}: {out}"))
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        let _ = try_sh(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name]);
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Netns {
            name: name.to_string(),
        }
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.name))
    }

    /// `ip -j -n NS args...`
    pub fn ip(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip_json(&full)
    }

    /// The link `name` (`ip -d -j link show`), or `None`.
    pub fn link(&self, name: &str) -> Option<Value> {
        let out = Proc::new("ip")
            .args(["-d", "-j", "-n", &self.name, "link", "show", "dev", name])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        v.as_array().and_then(|a| a.first().cloned())
    }

    /// The names of every link but `lo`.
    pub fn link_names(&self) -> Vec<String> {
        self.ip(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["ifname"].as_str().map(str::to_string))
            .filter(|n| n != "lo")
            .collect()
    }

    /// The global addresses of `dev` as `a.b.c.d/len`.
    pub fn addrs(&self, dev: &str) -> Vec<String> {
        let v = self.ip(&["addr", "show", "dev", dev]);
        v[0]["addr_info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|x| x["scope"] == "global")
                    .map(|x| format!("{}/{}", x["local"].as_str().unwrap(), x["prefixlen"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A sysctl inside the namespace.
    pub fn sysctl(&self, key: &str) -> String {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "cat",
            &format!("/proc/sys/{key}"),
        ])
        .trim()
        .to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = try_sh(&["ip", "netns", "del", &self.name]);
    }
}

/// A veth pair in the host namespace, both ends up; `a` is the master used by the tests. Deleted on drop.
pub struct Veth {
    pub a: String,
    pub b: String,
}

impl Veth {
    pub fn new(a: &str, b: &str) -> Self {
        let _ = try_sh(&["ip", "link", "del", a]);
        sh(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
        sh(&["ip", "link", "set", a, "up"]);
        sh(&["ip", "link", "set", b, "up"]);
        Veth {
            a: a.to_string(),
            b: b.to_string(),
        }
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = try_sh(&["ip", "link", "del", &self.a]);
    }
}

/// Host links stacked on `master` (what a failed ADD must not leave behind).
pub fn host_links_on(master: &str) -> Vec<String> {
    let links = ip_json(&["-d", "link", "show"]);
    let idx = links
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == master)
        .map(|l| l["ifindex"].clone());
    links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            idx.is_some() && l.get("link_index") == idx.as_ref() && l.get("link_netnsid").is_none()
        })
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// A registry with the built-in macvlan and ipvlan; every other type (host-local) is the reference binary.
pub fn registry() -> Arc<Registry> {
    let mut r = Registry::new();
    r.register("macvlan", Arc::new(Macvlan))
        .register("ipvlan", Arc::new(Ipvlan))
        .set_timeout(Duration::from_secs(30));
    Arc::new(r)
}

/// A context for one verb.
pub fn ctx(command: Command, id: &str, netns: Option<&Path>, ifname: &str, args: &str) -> Context {
    let mut c = Context::new(
        command,
        id,
        netns.map(Path::to_path_buf),
        ifname,
        registry(),
    );
    c.args = CniArgs::parse(args).unwrap();
    c.cni_path = vec![PathBuf::from(REF_DIR)];
    c
}

/// A plugin config from JSON.
pub fn conf(v: Value) -> PluginConf {
    PluginConf::from_value(v).unwrap()
}

/// The same config with `prevResult` set (for CHECK / DEL).
pub fn with_prev(c: &PluginConf, prev: &CniResult) -> PluginConf {
    let mut c = c.clone();
    let version = c.cni_version().unwrap_or("1.0.0").to_string();
    c.set("prevResult", prev.to_value(&version).unwrap());
    c
}

/// The built-in delegate or the reference binary of `type`.
pub fn delegate(kind: &str, reference: bool) -> Arc<dyn Delegate> {
    if reference {
        Arc::new(ExternalPlugin::new(
            Path::new(REF_DIR).join(kind),
            Duration::from_secs(30),
        ))
    } else {
        registry().resolve(kind, &[]).unwrap()
    }
}

/// Runs one verb through a delegate.
pub async fn run(
    d: &Arc<dyn Delegate>,
    command: Command,
    id: &str,
    ns: Option<&Path>,
    ifname: &str,
    args: &str,
    c: &PluginConf,
) -> Result<Option<CniResult>, CniError> {
    let cx = ctx(command, id, ns, ifname, args);
    match command {
        Command::Add => d.add(&cx, c).await.map(Some),
        Command::Check => d.check(&cx, c).await.map(|_| None),
        Command::Del => d.del(&cx, c).await.map(|_| None),
        Command::Status => d.status(&cx, c).await.map(|_| None),
        Command::Gc => d.gc(&cx, c).await.map(|_| None),
        Command::Version => Ok(None),
    }
}

/// The IPs host-local holds reserved for network `net` under `data_dir`.
pub fn reserved(data_dir: &Path, net: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data_dir.join(net))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lock" && !n.starts_with("last_reserved_ip"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

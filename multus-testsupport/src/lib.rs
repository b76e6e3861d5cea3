//! What the tests of every multus crate share (a dev-dependency only): the root check, real network
//! namespaces and links that clean up after themselves, running a CNI plugin binary exactly as a
//! container runtime does, and [`api_server`], an HTTPS stand-in for the Kubernetes API server. One copy
//! for the whole workspace. (The fake sysfs trees stay in `multus-sriov`, feature `fake-sysfs`: they are
//! built on that crate's `Sysfs` and `PciAddress` and serve its own unit tests, which a dev crate depending
//! on it could not.)
//!
//! ```no_run
//! use multus_testsupport::{HostLink, Netns};
//! let ns = Netns::new("ex");          // `ip netns add`, deleted on drop; panics when not root
//! let master = HostLink::veth("exm"); // a veth pair in the host, both up, deleted on drop
//! assert!(ns.link_names().contains(&"lo".to_string()));
//! # let _ = master;
//! ```

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod api_server;
mod netns;
mod plugin;

pub use netns::{host_link, host_link_exists, host_links_on, HostLink, Netns};
pub use plugin::{
    env_map, plugin_command, reference_dir, reservations, run_plugin, run_plugin_within, Run,
};

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

/// Runs a command, its output discarded; whether it succeeded (never a panic).
pub fn sh_quiet(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `ip -j <args>`, parsed (an empty answer is `[]`).
pub fn ip_json(args: &[&str]) -> serde_json::Value {
    let mut full = vec!["ip", "-j"];
    full.extend_from_slice(args);
    let out = sh(&full);
    if out.trim().is_empty() {
        return serde_json::json!([]);
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{full:?}: {e}: {out}"))
}

/// The `keys` of a JSON object (those it has).
pub fn pick(v: &serde_json::Value, keys: &[&str]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for k in keys {
        if let Some(x) = v.get(*k) {
            out.insert(k.to_string(), x.clone());
        }
    }
    serde_json::Value::Object(out)
}

/// The addresses of `ip -j addr show dev X` but IPv6 link-local ones, without lifetimes and label (the
/// interface's name).
pub fn global_addrs(v: &serde_json::Value) -> serde_json::Value {
    let infos: Vec<serde_json::Value> = v[0]["addr_info"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| !(a["family"] == "inet6" && a["scope"] == "link"))
        .map(|mut a| {
            if let Some(o) = a.as_object_mut() {
                for k in ["valid_life_time", "preferred_life_time", "label"] {
                    o.remove(k);
                }
            }
            a
        })
        .collect();
    serde_json::Value::Array(infos)
}

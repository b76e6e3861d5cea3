//! Network namespaces and host links made for a test, removed when dropped.

use crate::{ip_json, require_root, sh, sh_quiet, unique};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace with a name unique to this process and call, starting with `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self::named(&unique(prefix))
    }

    /// A namespace of exactly this name (a leftover of an interrupted run is replaced).
    pub fn named(name: &str) -> Self {
        require_root();
        sh_quiet(&["ip", "netns", "del", name]);
        sh(&["ip", "netns", "add", name]);
        sh(&["ip", "-n", name, "link", "set", "lo", "up"]);
        Netns {
            name: name.to_string(),
        }
    }

    /// `ip -j -n <ns> <args>`, parsed.
    pub fn ip(&self, args: &[&str]) -> Value {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        ip_json(&full)
    }

    /// The link `name` inside (`ip -d -j link show`), or `None`.
    pub fn link(&self, name: &str) -> Option<Value> {
        link_in(&["-n", &self.name], name)
    }

    /// The names of the links inside but `lo`.
    pub fn interfaces(&self) -> Vec<String> {
        self.link_names()
            .into_iter()
            .filter(|n| n != "lo")
            .collect()
    }

    /// A sysctl inside (`key` as under /proc/sys, with `/`).
    pub fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{key}");
        sh(&["ip", "netns", "exec", &self.name, "cat", &path])
            .trim()
            .to_string()
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

    /// The other end of a veth made by [`HostLink::veth`].
    pub fn peer(&self) -> String {
        format!("{}p", &self.0[..self.0.len().min(14)])
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

/// `ip -d -j <ns_args> link show dev name`, or `None`.
fn link_in(ns_args: &[&str], name: &str) -> Option<Value> {
    let out = Command::new("ip")
        .args(["-d", "-j"])
        .args(ns_args)
        .args(["link", "show", "dev", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array().and_then(|a| a.first().cloned())
}

/// The host link `name` (`ip -d -j link show`), or `None`.
pub fn host_link(name: &str) -> Option<Value> {
    link_in(&[], name)
}

/// Whether a host link exists.
pub fn host_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Host links stacked on `master` in the host namespace (what a failed ADD must not leave behind).
pub fn host_links_on(master: &str) -> Vec<String> {
    let links = ip_json(&["-d", "link", "show"]);
    let list = links.as_array().cloned().unwrap_or_default();
    let idx = list
        .iter()
        .find(|l| l["ifname"] == master)
        .map(|l| l["ifindex"].clone());
    list.iter()
        .filter(|l| {
            idx.is_some() && l.get("link_index") == idx.as_ref() && l.get("link_netnsid").is_none()
        })
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

//! A built-in macvlan/ipvlan ADD killed between creating its link under the temporary name and renaming it
//! (issue 16 item 5), through the built binary as root. The kill point is simulated by creating the link as
//! ADD does (`multus_core::plugins::sublink::temp_name_for`, a macvlan on the master, in the pod; or left in
//! the host), then running the runtime's DEL, or ADD again: nothing may be left. Before the temporary name
//! was derived from the attachment, DEL removed only `CNI_IFNAME` and the link stayed; a retried ADD made a
//! second one next to it.

mod support;

use multus_core::plugins::sublink::temp_name_for;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use support::*;

struct Setup {
    master: HostLink,
    ns: Netns,
    dir: tempfile::TempDir,
    macvlan: PathBuf,
}

fn setup(prefix: &str) -> Setup {
    let master = HostLink::veth(prefix);
    let ns = Netns::new(prefix);
    let dir = tempfile::tempdir().unwrap();
    let macvlan = dir.path().join("macvlan");
    std::os::unix::fs::symlink(multus_bin(), &macvlan).unwrap();
    Setup {
        master,
        ns,
        dir,
        macvlan,
    }
}

impl Setup {
    fn data(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn macvlan_conf(&self, subnet: &str) -> Value {
        json!({"cniVersion": "1.0.0", "name": "leftover", "type": "macvlan", "master": self.master.0,
               "ipam": {"type": "host-local", "subnet": subnet, "dataDir": self.data()}})
    }

    /// What a killed ADD leaves: the attachment's link under its temporary name, in the pod (`in_pod`) or
    /// in the host.
    fn leave_temp_link(&self, cid: &str, ifname: &str, in_pod: bool) -> String {
        let tmp = temp_name_for(cid, ifname);
        let mut args = vec!["ip", "link", "add", "link", &self.master.0, "name", &tmp];
        if in_pod {
            args.extend(["netns", &self.ns.name]);
        }
        args.extend(["type", "macvlan", "mode", "bridge"]);
        sh(&args);
        tmp
    }

    fn run(&self, bin: &Path, cmd: &str, cid: &str, ifname: &str, conf: &Value) -> Run {
        let ns = self.ns.path().to_string_lossy().into_owned();
        let vars = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid),
            ("CNI_NETNS", ns.as_str()),
            ("CNI_IFNAME", ifname),
            ("CNI_PATH", "/usr/lib/cni"),
        ];
        run_plugin(bin, &vars, conf.to_string().as_bytes())
    }
}

#[test]
fn del_removes_the_temporary_link_in_the_pod_and_in_the_host() {
    let s = setup("tl");
    let conf = s.macvlan_conf("10.252.1.0/24");
    // Killed before the rename: the link in the pod under its temporary name. DEL, twice.
    let tmp = s.leave_temp_link("tl1", "net1", true);
    assert_eq!(s.ns.link_names(), ["lo", &tmp]);
    s.run(&s.macvlan, "DEL", "tl1", "net1", &conf).ok();
    assert_eq!(s.ns.link_names(), ["lo"]);
    s.run(&s.macvlan, "DEL", "tl1", "net1", &conf).ok();
    // The same, left in the host.
    let tmp = s.leave_temp_link("tl2", "net1", false);
    assert!(host_link_exists(&tmp));
    s.run(&s.macvlan, "DEL", "tl2", "net1", &conf).ok();
    assert!(!host_link_exists(&tmp), "{tmp} left in the host");
    // Another attachment's temporary link is not this DEL's to remove.
    let other = s.leave_temp_link("tl3", "net1", false);
    s.run(&s.macvlan, "DEL", "tl4", "net1", &conf).ok();
    assert!(host_link_exists(&other));
    sh(&["ip", "link", "del", &other]);
    assert!(reservations(&s.data()).is_empty());
}

#[test]
fn a_retried_add_replaces_the_temporary_link() {
    let s = setup("tr");
    let conf = s.macvlan_conf("10.252.2.0/24");
    s.leave_temp_link("tr1", "net1", true);
    let r = s.run(&s.macvlan, "ADD", "tr1", "net1", &conf).ok();
    assert_eq!(r["interfaces"][0]["name"], "net1", "{r}");
    assert_eq!(s.ns.link_names(), ["lo", "net1"]);
    s.run(&s.macvlan, "DEL", "tr1", "net1", &conf).ok();
    assert_eq!(s.ns.link_names(), ["lo"]);
    assert!(reservations(&s.data()).is_empty());
}

/// Through `multus`: its DEL, with nothing cached (the kill came before the cache was written, or the cache
/// was lost), undoes what the config says; the built-in macvlan DEL removes the temporary link too.
#[test]
fn multus_del_removes_a_built_in_delegates_temporary_link() {
    let s = setup("tm");
    let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "binDir": "/usr/lib/cni", "cniDir": s.dir.path().join("cache"),
        "delegates": [s.macvlan_conf("10.252.3.0/24"),
                      {"cniVersion": "1.0.0", "name": "second", "type": "macvlan", "master": s.master.0}]});
    let tmp0 = s.leave_temp_link("tm1", "eth0", true);
    let tmp1 = s.leave_temp_link("tm1", "net1", true);
    assert_eq!(s.ns.link_names().len(), 3, "{tmp0} {tmp1}");
    cni("DEL", "tm1", Some(&s.ns.path()), "eth0", &conf).ok();
    assert_eq!(s.ns.link_names(), ["lo"]);
    // And a retried ADD after such a kill attaches both.
    s.leave_temp_link("tm2", "net1", true);
    let r = cni("ADD", "tm2", Some(&s.ns.path()), "eth0", &conf).ok();
    assert_eq!(r["interfaces"][0]["name"], "eth0", "{r}");
    let mut names = s.ns.link_names();
    names.sort();
    assert_eq!(names, ["eth0", "lo", "net1"]);
    cni("DEL", "tm2", Some(&s.ns.path()), "eth0", &conf).ok();
    assert_eq!(s.ns.link_names(), ["lo"]);
    assert!(reservations(&s.data()).is_empty());
}

//! The attachment cache under faults and hostile names, through the built binary as root (issue 16 items
//! 2, 3, 6, 7): attachments whose IDs once joined to one file name, a GC that meets an unreadable entry,
//! temp files of a killed writer, and a DEL with nothing to remove on a read-only cniDir or with a
//! directory in the cache file's place. Kubeconfig-less mode: eth0 from the reference bridge with
//! host-local.

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use support::*;

struct Node {
    _bridge: HostLink,
    dir: tempfile::TempDir,
    conf: Value,
}

fn node() -> Node {
    require_root();
    reference_dir();
    let bridge = HostLink::bridge_name("cfbr");
    let dir = tempfile::tempdir().unwrap();
    let octet = std::process::id() % 200 + 20;
    let conf = json!({
        "cniVersion": "1.1.0", "name": "multus-cni-network", "type": "multus", "binDir": "/usr/lib/cni",
        "cniDir": dir.path().join("cache"), "logLevel": "debug",
        "delegates": [{"cniVersion": "1.0.0", "name": "podnet", "type": "bridge", "bridge": bridge.0,
            "ipam": {"type": "host-local", "subnet": format!("10.{octet}.3.0/24"), "dataDir": dir.path().join("ipam")}}]
    });
    Node {
        _bridge: bridge,
        dir,
        conf,
    }
}

impl Node {
    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    fn reservations(&self) -> Vec<String> {
        reservations(&self.dir.path().join("ipam"))
    }
    fn holders(&self) -> Vec<String> {
        let d = self.dir.path().join("ipam/podnet");
        let mut v: Vec<String> = std::fs::read_dir(&d)
            .map(|rd| {
                rd.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                    .map(|e| {
                        std::fs::read_to_string(e.path())
                            .unwrap()
                            .replace("\r\n", " ")
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
    fn gc(&self, valid: Value) -> Run {
        let mut c = self.conf.clone();
        c["cni.dev/valid-attachments"] = valid;
        run_plugin(
            &multus_bin(),
            &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
            c.to_string().as_bytes(),
        )
    }
}

/// (`a-b`, `c`) and (`a`, `b-c`) once shared `a-b-c.json`: now two records, and each DEL undoes its own.
#[test]
fn ids_that_joined_alike_keep_their_own_entries() {
    let n = node();
    let (ns1, ns2) = (Netns::new("cfa"), Netns::new("cfb"));
    let (p1, p2) = (ns1.path(), ns2.path());
    cni("ADD", "a-b", Some(&p1), "c", &n.conf).ok();
    cni("ADD", "a", Some(&p2), "b-c", &n.conf).ok();
    assert_eq!(n.holders(), ["a b-c", "a-b c"]);
    cni("DEL", "a-b", Some(&p1), "c", &n.conf).ok();
    assert_eq!(n.holders(), ["a b-c"], "the other pod's IP was released");
    assert_eq!(ns1.link_names(), ["lo"]);
    assert_eq!(
        ns2.link_names().len(),
        2,
        "the other pod's interface was removed"
    );
    cni("DEL", "a", Some(&p2), "b-c", &n.conf).ok();
    assert!(n.reservations().is_empty());
    assert_eq!(std::fs::read_dir(n.cache_dir()).unwrap().count(), 0);
}

/// One unreadable entry never stops GC: the stale attachments behind it are still undone; the temp files
/// of a killed writer are removed.
#[test]
fn gc_goes_on_past_an_unreadable_entry_and_removes_dead_temp_files() {
    let n = node();
    let (ns1, ns2) = (Netns::new("cfg"), Netns::new("cfh"));
    cni("ADD", "g1", Some(&ns1.path()), "eth0", &n.conf).ok();
    cni("ADD", "g2", Some(&ns2.path()), "eth0", &n.conf).ok();
    // Sorted first, so a GC that stopped at it would undo nothing.
    std::fs::write(n.cache_dir().join("a0@eth0.json"), b"{ torn").unwrap();
    let tmp = n.cache_dir().join(".multus-tmp-4194305-0");
    std::fs::write(&tmp, b"{\"kind\"").unwrap();
    n.gc(json!([])).ok();
    assert!(n.reservations().is_empty(), "{:?}", n.reservations());
    assert_eq!(ns1.link_names(), ["lo"]);
    assert_eq!(ns2.link_names(), ["lo"]);
    assert!(!tmp.exists(), "a dead writer's temp file stays");
    let left: Vec<String> = std::fs::read_dir(n.cache_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["a0@eth0.json"], "only the unreadable entry is kept");
}

/// DEL converges when there is nothing to remove, even on a read-only cniDir, and with a directory where
/// the cache file would be.
#[test]
fn del_with_nothing_to_remove_converges() {
    let n = node();
    let ns = Netns::new("cfr");
    // A directory in the cache file's place.
    std::fs::create_dir_all(n.cache_dir().join("d1@eth0.json")).unwrap();
    cni("DEL", "d1", Some(&ns.path()), "eth0", &n.conf).ok();
    assert!(n.cache_dir().join("d1@eth0.json").is_dir());
    // A read-only cniDir.
    let ro = n.dir.path().join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "ro,size=1m",
        "tmpfs",
        ro.to_str().unwrap(),
    ]);
    let mut conf = n.conf.clone();
    conf["cniDir"] = json!(ro);
    let r = cni("DEL", "d2", Some(&ns.path()), "eth0", &conf);
    sh(&["umount", ro.to_str().unwrap()]);
    r.ok();
}

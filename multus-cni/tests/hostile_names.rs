//! Interface names built to break netlink (issue 16 item 1), through the built binary as root: a `master`
//! (or `pfName`, `CNI_IFNAME`) of 65,480 bytes and more once hung the built-in macvlan/ipvlan forever (the
//! kernel's error answer, echoing the request, no longer fit the 64 KiB receive buffer) or panicked inside
//! netlink-packet-core / -route (65,531 bytes and more), standalone and through `multus`, where
//! `delegateTimeout` does not apply to built-ins. Now every such name is a code-7 error naming its key (code
//! 4 for `CNI_IFNAME`), given before anything is created; the only time bound asserted is "finished, not
//! hung".

mod support;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::*;

/// Far above any honest run: only tells "finished" from "hung".
const NOT_HUNG: Duration = Duration::from_secs(60);

/// The sizes of the report (65,480-65,530 hung, 65,531 and more panicked), one just over IFNAMSIZ, 1 MiB.
const SIZES: [usize; 7] = [16, 65_480, 65_500, 65_530, 65_531, 70_000, 1 << 20];

fn link_as(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(multus_bin(), &p).unwrap();
    p
}

fn run(bin: &Path, cmd: &str, ns: &Path, ifname: &str, conf: &Value) -> Run {
    let ns = ns.to_string_lossy();
    let vars = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "hostile1"),
        ("CNI_NETNS", ns.as_ref()),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    run_plugin_within(bin, &vars, conf.to_string().as_bytes(), NOT_HUNG)
}

/// A clean CNI error of `code` whose message names `key` and stays short, whatever the name's size.
fn assert_refused(r: &Run, code: u64, key: &str, what: &str) {
    let e = r.err();
    assert_eq!(e["code"], code, "{what}: {e}");
    let msg = e["msg"].as_str().unwrap();
    assert!(msg.contains(key), "{what}: {msg}");
    assert!(r.stdout.len() < 2048, "{what}: {} bytes", r.stdout.len());
    assert!(!r.stderr.contains("panicked"), "{what}: {}", r.stderr);
}

#[test]
fn huge_master_names_are_config_errors_of_every_built_in() {
    let ns = Netns::new("hn");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ipam");
    for n in SIZES {
        let name = "x".repeat(n);
        let cases = [
            ("macvlan", json!({"master": name})),
            ("ipvlan", json!({"master": name})),
            ("sriov", json!({"master": name})),
            ("sriov", json!({"pfName": name})),
            ("dpdk", json!({"master": name})),
        ];
        for (plugin, extra) in cases {
            let key = extra.as_object().unwrap().keys().next().unwrap().clone();
            let bin = dir.path().join(plugin);
            if !bin.exists() {
                link_as(dir.path(), plugin);
            }
            let mut conf = json!({"cniVersion": "1.0.0", "name": "hostile", "type": plugin,
                "dataDir": dir.path().join("state"),
                "ipam": {"type": "host-local", "subnet": "10.250.0.0/24", "dataDir": data}});
            conf.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let what = format!("{plugin} {key} of {n} bytes");
            let r = run(&bin, "ADD", &ns.path(), "net1", &conf);
            assert_refused(&r, 7, &format!("\"{key}\""), &what);
            if plugin != "sriov" && plugin != "dpdk" {
                // CHECK reads the same key; sriov/dpdk's CHECK go by their record first.
                let mut c = conf.clone();
                c["prevResult"] = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "net1"}]});
                let r = run(&bin, "CHECK", &ns.path(), "net1", &c);
                assert_refused(&r, 7, &format!("\"{key}\""), &format!("{what}, CHECK"));
            }
        }
    }
    assert_eq!(ns.link_names(), ["lo"]);
    assert!(reservations(&data).is_empty());
}

#[test]
fn huge_names_through_multus_are_refused_and_leave_nothing() {
    let ns = Netns::new("hm");
    let dir = tempfile::tempdir().unwrap();
    let (cache, data) = (dir.path().join("cache"), dir.path().join("ipam"));
    for n in SIZES {
        let name = "x".repeat(n);
        for plugin in ["macvlan", "ipvlan"] {
            let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
                "binDir": "/usr/lib/cni", "cniDir": cache, "delegates": [
                    {"cniVersion": "1.0.0", "name": "hostile", "type": plugin, "master": name,
                     "ipam": {"type": "host-local", "subnet": "10.251.0.0/24", "dataDir": data}}]});
            let what = format!("multus with {plugin} master of {n} bytes");
            let r = run(&multus_bin(), "ADD", &ns.path(), "eth0", &conf);
            assert_refused(&r, 7, "\"master\"", &what);
            run(&multus_bin(), "DEL", &ns.path(), "eth0", &conf).ok();
        }
        // The runtime's own interface name: an environment error (code 4).
        let conf = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
            "binDir": "/usr/lib/cni", "cniDir": cache, "delegates": [
                {"cniVersion": "1.0.0", "name": "l2", "type": "macvlan", "master": "lo"}]});
        if n < 100_000 {
            let r = run(&multus_bin(), "ADD", &ns.path(), &name, &conf);
            assert_refused(&r, 4, "interface name", &format!("CNI_IFNAME of {n} bytes"));
        }
    }
    assert_eq!(ns.link_names(), ["lo"]);
    assert!(reservations(&data).is_empty());
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "cache left: {left:?}");
}

/// Paths are input too: a FIFO as `CNI_NETNS` (standalone and through `multus`), as Multus' `logFile` or
/// as a file the config names once blocked the plugin in `open(2)` until someone wrote to it (forever).
/// Now: code 3 for the netns, the log falls back to stderr, the named file is an I/O error.
#[test]
fn a_fifo_as_netns_or_log_file_never_blocks() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let macvlan = link_as(dir.path(), "macvlan");
    let conf = json!({"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "master": "lo"});
    let r = run(&macvlan, "ADD", &fifo, "net1", &conf);
    assert_eq!(r.err()["code"], 3, "{}", r.stdout);
    let multus = json!({"cniVersion": "1.0.0", "name": "multus-cni-network", "type": "multus",
        "binDir": "/usr/lib/cni", "cniDir": dir.path().join("cache"), "delegates": [conf]});
    let r = run(&multus_bin(), "ADD", &fifo, "eth0", &multus);
    assert_eq!(r.err()["code"], 3, "{}", r.stdout);
    let mut logged = multus.clone();
    logged["logFile"] = json!(fifo);
    logged["logLevel"] = json!("debug");
    run(&multus_bin(), "DEL", &fifo, "eth0", &logged).ok();
    // A file a config names (clusterNetwork): a FIFO blocked the read, /dev/zero never ended (and grew
    // until memory ran out). Now: a clean I/O error.
    let ns = Netns::new("hf");
    for named in [fifo.display().to_string(), "/dev/zero".into()] {
        let mut c = multus.clone();
        c["clusterNetwork"] = json!(named);
        let r = run(&multus_bin(), "ADD", &ns.path(), "eth0", &c);
        let e = r.err();
        assert_eq!(e["code"], 5, "{named}: {e}");
        assert!(e["msg"].as_str().unwrap().contains(&named), "{e}");
    }
}

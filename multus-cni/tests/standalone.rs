//! The binary started under a built-in plugin's name is that plugin alone, a drop-in for the reference binary
//! in /opt/cni/bin: here `host-local`, mixed on one store with the reference host-local from Debian's package.

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use support::*;

fn link_as(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::os::unix::fs::symlink(multus_bin(), &p).unwrap();
    p
}

fn vars<'a>(cmd: &'a str, cid: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", "/proc/self/ns/net"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
}

#[test]
fn host_local_standalone_is_a_drop_in_for_the_reference() {
    let reference = reference_dir().join("host-local");
    let dir = tempfile::tempdir().unwrap();
    let ours = link_as(dir.path(), "host-local");
    let data = dir.path().join("store");
    let conf = json!({"cniVersion": "0.3.1", "name": "mixed", "type": "bridge",
                      "ipam": {"type": "host-local", "subnet": "10.66.0.0/29", "dataDir": data}})
    .to_string();
    // Alternate ADDs between ours and the reference: one sequence, no address twice.
    let mut got = Vec::new();
    for i in 0..4 {
        let bin = if i % 2 == 0 { &ours } else { &reference };
        let cid = format!("c{i}");
        let r = run_plugin(bin, &vars("ADD", &cid), conf.as_bytes()).ok();
        assert_eq!(r["cniVersion"], "0.3.1");
        assert_eq!(r["ips"][0]["version"], "4", "{r}");
        got.push(r["ips"][0]["address"].as_str().unwrap().to_string());
    }
    assert_eq!(
        got,
        [
            "10.66.0.2/29",
            "10.66.0.3/29",
            "10.66.0.4/29",
            "10.66.0.5/29"
        ]
    );
    // The reservation file ours wrote is the reference's format, byte for byte.
    assert_eq!(
        std::fs::read(data.join("mixed/10.66.0.2")).unwrap(),
        b"c0\r\neth0"
    );
    // Each DELs what the other added.
    run_plugin(&reference, &vars("DEL", "c0"), conf.as_bytes()).ok();
    run_plugin(&ours, &vars("DEL", "c1"), conf.as_bytes()).ok();
    run_plugin(&ours, &vars("DEL", "c1"), conf.as_bytes()).ok();
    assert_eq!(
        reservations(&data),
        vec!["10.66.0.4".to_string(), "10.66.0.5".to_string()]
    );
    // The range is /29: .2 to .6 usable; after .6 it wraps to the freed .2.
    let r = run_plugin(&ours, &vars("ADD", "c5"), conf.as_bytes()).ok();
    assert_eq!(r["ips"][0]["address"], "10.66.0.6/29");
    let r = run_plugin(&ours, &vars("ADD", "c6"), conf.as_bytes()).ok();
    assert_eq!(r["ips"][0]["address"], "10.66.0.2/29");
    // VERSION as a standalone plugin.
    let v = run_plugin(&ours, &[("CNI_COMMAND", "VERSION")], b"").ok();
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
    // Bad input as a standalone plugin: a CNI error, not a panic.
    let e = run_plugin(&ours, &vars("ADD", "c7"), br#"{"cniVersion":"0.3.1","name":"x","type":"b","ipam":{"type":"host-local","subnet":"10.0.0.1/33"}}"#).err();
    assert!(e["msg"].as_str().unwrap().contains("10.0.0.1/33"), "{e}");
}

#[test]
fn builtins_are_listed() {
    let out = std::process::Command::new(multus_bin())
        .arg("builtins")
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for t in ["host-local", "macvlan", "ipvlan"] {
        assert!(text.lines().any(|l| l == t), "{t} not in {text}");
    }
}

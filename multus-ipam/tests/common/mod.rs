//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

pub const REFERENCE: &str = "/usr/lib/cni/host-local";

/// The CNI error code an error gets (through the one mapping, `ErrorCode::from`).
pub fn code_of(e: &multus_ipam::IpamError) -> u32 {
    multus_core::cni::ErrorCode::from(e).code()
}

/// Panics with instructions when the reference plugin is missing (never skips silently).
pub fn require_reference() {
    assert!(
        Path::new(REFERENCE).exists(),
        "{REFERENCE} is missing: apt-get install -y containernetworking-plugins"
    );
}

/// Runs the reference host-local; returns (success, stdout JSON).
pub fn reference(
    cmd: &str,
    container_id: &str,
    ifname: &str,
    conf: &str,
    cni_args: &str,
) -> (bool, Value) {
    require_reference();
    let mut child = Command::new(REFERENCE)
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn reference host-local");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "reference output {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    };
    (out.status.success(), v)
}

/// The addresses (without prefix) of a reference ADD result.
pub fn result_ips(v: &Value) -> Vec<String> {
    v["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips in {v}"))
        .iter()
        .map(|i| {
            let a = i["address"].as_str().unwrap();
            a.split('/').next().unwrap().to_string()
        })
        .collect()
}

/// Name -> (content, mode) of every entry of a directory (directories get content `<dir>`).
pub fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        let content = if md.is_dir() {
            b"<dir>".to_vec()
        } else {
            std::fs::read(e.path()).unwrap()
        };
        m.insert(
            e.file_name().to_string_lossy().into_owned(),
            (content, md.permissions().mode() & 0o7777),
        );
    }
    m
}

/// The reservation files (names that are addresses) of a network directory: ip -> content.
pub fn reservations(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    snapshot(dir)
        .into_iter()
        .filter(|(n, _)| n.parse::<std::net::IpAddr>().is_ok())
        .map(|(n, (c, _))| (n, c))
        .collect()
}

/// A host-local network configuration.
pub fn conf(name: &str, data_dir: &Path, ipam_extra: &str) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge","ipam":{{"type":"host-local","dataDir":"{}"{ipam_extra}}}}}"#,
        data_dir.display()
    )
}

/// Whether the network's lock can be taken right now (it must be free when nobody runs).
pub fn lock_is_free(net_dir: &Path) -> bool {
    let f = std::fs::File::open(net_dir.join("lock")).unwrap();
    match f.try_lock() {
        Ok(()) => {
            f.unlock().unwrap();
            true
        }
        Err(_) => false,
    }
}

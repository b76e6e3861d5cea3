//! External delegates and conflist chains against the real reference plugins (Debian's
//! containernetworking-plugins in /usr/lib/cni), as root in real network namespaces.

use multus_core::cni::{Command, NetworkConfig};
use multus_core::delegate::{chain, Context, Registry};
use multus_core::pipeline::{self, Attachment, Attachments, Pod};
use multus_testsupport::Netns;
use serde_json::{json, Map};
use std::path::PathBuf;
use std::sync::Arc;

/// A namespace for these tests; the reference plugins must be installed.
fn ns(tag: &str) -> Netns {
    assert!(
        PathBuf::from("/usr/lib/cni/ptp").exists(),
        "reference plugins missing: apt-get install containernetworking-plugins"
    );
    Netns::new(&format!("xc{tag}"))
}

fn ctx(command: Command, ns: &Netns, ifname: &str) -> Context {
    let mut r = Registry::new();
    r.set_bin_dirs(vec![PathBuf::from("/usr/lib/cni")]);
    Context::new(
        command,
        &format!("cid{}", std::process::id()),
        Some(ns.path()),
        ifname,
        Arc::new(r),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// ptp then tuning: tuning only works on the previous plugin's result, so a passing ADD proves `prevResult`
/// was handed down the chain; the sysctl it sets proves it ran in the right namespace.
#[test]
fn conflist_chain_passes_prev_result_and_dels_in_reverse() {
    let ns = ns("a");
    let data = tempfile::tempdir().unwrap();
    let octet = (std::process::id() % 200) + 20;
    let net = NetworkConfig::from_value(json!({
        "cniVersion": "1.0.0", "name": "chain",
        "plugins": [
            {"type": "ptp", "ipam": {"type": "host-local", "subnet": format!("10.{octet}.9.0/24"), "dataDir": data.path()}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_filter": "1"}, "mtu": 1400}
        ]
    }))
    .unwrap();
    let rt = rt();
    let add = ctx(Command::Add, &ns, "eth0");
    let result = rt.block_on(chain::add(&add, &net, &Map::new())).unwrap();
    assert_eq!(result.cni_version, "1.0.0");
    assert!(result.ips[0]
        .address
        .to_string()
        .starts_with(&format!("10.{octet}.9.")));
    assert_eq!(ns.link("eth0").unwrap()["mtu"], 1400);
    assert_eq!(ns.sysctl("net/ipv4/conf/eth0/arp_filter"), "1");

    rt.block_on(chain::check(
        &ctx(Command::Check, &ns, "eth0"),
        &net,
        &Map::new(),
        &result,
    ))
    .unwrap();

    rt.block_on(chain::del(
        &ctx(Command::Del, &ns, "eth0"),
        &net,
        &Map::new(),
        Some(&result),
    ))
    .unwrap();
    assert!(ns.link("eth0").is_none());
    let left: Vec<_> = std::fs::read_dir(data.path().join("chain"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().starts_with("10.")),
        "{left:?}"
    );
}

/// An error from a real plugin keeps its code and message; the pipeline rolls back what came before it.
#[test]
fn pipeline_rolls_back_in_reverse_and_keeps_the_original_error() {
    let ns = ns("b");
    let data = tempfile::tempdir().unwrap();
    let octet = (std::process::id() % 200) + 20;
    let good = NetworkConfig::from_value(json!({
        "cniVersion": "0.4.0", "name": "good", "type": "ptp",
        "ipam": {"type": "host-local", "subnet": format!("10.{octet}.10.0/24"), "dataDir": data.path()}
    }))
    .unwrap();
    let bad = NetworkConfig::from_value(json!({
        "cniVersion": "0.4.0", "name": "bad", "type": "macvlan", "master": "nosuchdev0",
        "ipam": {"type": "host-local", "subnet": format!("10.{octet}.11.0/24"), "dataDir": data.path()}
    }))
    .unwrap();
    let atts = Attachments::new(vec![
        Attachment::new(good, "eth0"),
        Attachment::new(bad, "net1"),
    ])
    .unwrap();
    let rt = rt();
    let c = ctx(Command::Add, &ns, "eth0");
    let pod = Pod::new(&c.container_id, c.netns.clone(), c.registry.clone());
    let err = rt.block_on(pipeline::add(&pod, &atts)).unwrap_err();
    assert!(err.msg.contains("\"bad\" as net1"), "{err}");
    // The reference plugin's own error code and text come through.
    assert_eq!(err.code.code(), 999, "{err}");
    assert!(err.msg.contains("Link not found"), "{err}");
    assert!(ns.interfaces().is_empty(), "{:?}", ns.interfaces());
    for n in ["good", "bad"] {
        if let Ok(rd) = std::fs::read_dir(data.path().join(n)) {
            let ips: Vec<_> = rd
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .collect();
            assert!(ips.is_empty(), "{n}: {ips:?}");
        }
    }
}

/// A plugin's VERSION answer through the external runner, and a missing binary as a config error.
#[test]
fn resolves_binaries_and_reports_missing_ones() {
    let r = Registry::new();
    let e = r
        .resolve("bridge", &[PathBuf::from("/nonexistent")])
        .err()
        .unwrap();
    assert_eq!(e.code.code(), 7);
    assert!(
        e.msg.contains("bridge") && e.msg.contains("/nonexistent"),
        "{e}"
    );
    let d = r
        .resolve("bridge", &[PathBuf::from("/usr/lib/cni")])
        .unwrap();
    assert_eq!(d.describe(), "/usr/lib/cni/bridge");
}

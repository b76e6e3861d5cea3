//! `multus demo` through the built binary, as root on this machine: the user guide's example attached
//! through the meta-plugin's path with the manifests from deploy/examples/, and nothing left afterwards;
//! `--keep` leaves it, `--clean` removes it. One test function: the demo's names are fixed.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples")
}

fn demo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(multus_bin())
        .arg("demo")
        .args(args)
        .env_remove("CNI_COMMAND")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The network-status annotation as `kubectl describe pod` printed it.
fn printed_status(stdout: &str) -> Vec<Value> {
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Annotations:  k8s.v1.cni.cncf.io/network-status:"))
        .unwrap_or_else(|| panic!("no network-status annotation printed:\n{stdout}"));
    let body: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("                "))
        .copied()
        .collect();
    serde_json::from_str(&body.join("\n")).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

fn in_user_range(ip: &str) -> bool {
    ip.strip_prefix("192.168.1.")
        .and_then(|l| l.parse::<u32>().ok())
        .is_some_and(|l| (200..=216).contains(&l))
}

fn assert_nothing_left() {
    assert!(
        !Path::new("/var/run/netns/multus-demo").exists(),
        "netns left"
    );
    for l in ["mdemo0", "mdemo0p", "mdemo-br"] {
        assert!(!host_link_exists(l), "link {l} left");
    }
    assert!(
        !Path::new("/run/multus-demo").exists(),
        "state (cache, reservations) left"
    );
    assert!(
        reservations(Path::new("/var/lib/cni/networks"))
            .iter()
            .all(|ip| !in_user_range(ip)),
        "a reservation of the user's range in the default store"
    );
}

#[test]
fn demo_attaches_the_user_example_and_leaves_nothing_then_keep_and_clean() {
    require_root();
    reference_dir();
    // A leftover from an interrupted earlier run would make the demo refuse to start.
    let _ = demo(&["--clean"]);
    let nad = examples().join("macvlan-conf.yaml");
    let pod = examples().join("sample-pod.yaml");
    let (nad, pod) = (nad.to_str().unwrap(), pod.to_str().unwrap());

    let (code, out, err) = demo(&["--nad", nad, "--pod", pod]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("\"master\": \"ens5\" -> \"mdemo0\""), "{out}");
    let st = printed_status(&out);
    assert_eq!(st.len(), 2, "{st:?}");
    assert_eq!(st[0]["interface"], "eth0");
    assert_eq!(st[0]["default"], true);
    assert!(st[0]["ips"][0].as_str().unwrap().starts_with("10.244.7."));
    assert_eq!(st[1]["name"], "default/macvlan-conf");
    assert_eq!(st[1]["interface"], "net1");
    assert_ne!(st[1]["default"], true);
    let ip = st[1]["ips"][0].as_str().unwrap();
    assert!(in_user_range(ip), "{ip}");
    // `ip a show dev net1` from inside: up, with that address and the MAC of the status.
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    assert!(
        out.contains(&format!("link/ether {}", st[1]["mac"].as_str().unwrap())),
        "{out}"
    );
    assert!(out.contains("default via 192.168.1.1 dev net1"), "{out}");
    assert!(
        out.contains("CHECK: ok") && out.contains("DEL: ok"),
        "{out}"
    );
    assert!(out.contains("nothing: no namespace multus-demo"), "{out}");
    assert_nothing_left();

    // --keep: everything stays for inspection, with the built-in copies of the manifests.
    let (code, out, err) = demo(&["--keep"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let st = printed_status(&out);
    let kept_ip = st[1]["ips"][0].as_str().unwrap().to_string();
    let links = sh(&["ip", "-n", "multus-demo", "-br", "link"]);
    assert!(links.contains("eth0") && links.contains("net1"), "{links}");
    assert!(host_link_exists("mdemo0") && host_link_exists("mdemo-br"));
    assert!(reservations(Path::new("/run/multus-demo/ipam")).contains(&kept_ip));
    // A second demo refuses to run over the kept one, and says what to do.
    let (code, _, err) = demo(&[]);
    assert_eq!(code, 1);
    assert!(err.contains("multus demo --clean"), "{err}");

    // --clean: DEL from the cache (IPs released), then everything removed.
    let (code, out, err) = demo(&["--clean"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("DEL: ok"), "{out}");
    assert_nothing_left();
}

//! Side by side with upstream Go Multus v4.2.2 thick on this machine (feature `go-interop`; upstream's
//! binaries as `tests/interop/go-multus.sh` builds and names them): the user guide's pod (eth0 from the
//! node's `bridge` network + host-local, net1 from the `macvlan-conf` NAD) ADDed then DELed through each
//! plugin's shim to its own warm daemon, against the same HTTPS API stand-in, in alternating blocks (Go, ours,
//! Go, ours). Each runs its own delegates as it would on a node: upstream's execs the reference `bridge`,
//! `macvlan` and `host-local`; ours runs its built-ins in-process. Upstream's API client speaks protobuf, so
//! its requests pass `interop-apiproxy` (protobuf -> JSON, one more loopback hop); both daemons log at
//! `error`. Prints medians and p90s (ms) and the load average. Not a test: nothing is asserted but that
//! every call succeeded.
//!
//! ```text
//! bash tests/interop/go-multus.sh            # builds upstream's binaries (and runs the interop tests)
//! B=/var/cache/multus-go-interop/v4.2.2/bin
//! GO_MULTUS_SHIM=$B/multus-shim GO_MULTUS_DAEMON=$B/multus-daemon GO_MULTUS_APIPROXY=$B/interop-apiproxy \
//!   RUNS=30 cargo bench -p multus-daemon --features go-interop --bench go_side_by_side
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::go::*;
use support::*;

/// One CNI call through `shim` as the runtime makes it (no polling: the wait ends when the shim exits); its
/// duration and exit status.
fn call(
    shim: &Path,
    command: &str,
    pod: &TestPod,
    conf: &Value,
) -> (Duration, Option<i32>, String) {
    let t = Instant::now();
    let mut child = Command::new(shim)
        .env_clear()
        .envs(cni_vars(command, pod))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", shim.display()));
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let took = t.elapsed();
    (
        took,
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// ADD then DEL of fresh pods through `shim` (the node's daemon already running): the durations.
fn block(
    node: &Node,
    shim: &Path,
    pods: &[TestPod],
    conf: &Value,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for (i, pod) in pods.iter().enumerate() {
        let (took, st, out) = call(shim, "ADD", pod, conf);
        assert_eq!(st, Some(0), "ADD through {}: {out}", shim.display());
        let (took_del, st, out) = call(shim, "DEL", pod, conf);
        assert_eq!(st, Some(0), "DEL through {}: {out}", shim.display());
        // The first two of a block warm the daemon up (connections, page cache).
        if i >= 2 {
            add.push(took);
            del.push(took_del);
        }
    }
    assert!(reservations(&node.path("ipam")).is_empty());
    (add, del)
}

/// A node with `n` pods in the API, their netns made before any daemon starts.
fn node_with_pods(n: usize) -> (Node, Vec<TestPod>) {
    let mut node = Node::new();
    node.daemon_config["logLevel"] = "error".into();
    let pods = (0..n)
        .map(|_| TestPod::new(&node, Some("macvlan-conf")))
        .collect();
    (node, pods)
}

fn go_block(runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (node, pods) = node_with_pods(runs + 2);
    let go = GoDaemon::start_logging(&node, "error");
    let conf = node.multus_conf();
    let r = block(&node, &go_bin("GO_MULTUS_SHIM"), &pods, &conf);
    drop(go);
    r
}

fn our_block(runs: usize) -> (Vec<Duration>, Vec<Duration>) {
    let (mut node, pods) = node_with_pods(runs + 2);
    node.start_daemon();
    let conf = node.multus_conf();
    let r = block(&node, &node.shim_bin(), &pods, &conf);
    node.stop_daemon();
    r
}

fn ms(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!("load before: {}", load());
    let (mut go_add, mut go_del, mut our_add, mut our_del) = (vec![], vec![], vec![], vec![]);
    for _ in 0..2 {
        let (a, d) = go_block(runs);
        go_add.extend(a);
        go_del.extend(d);
        let (a, d) = our_block(runs);
        our_add.extend(a);
        our_del.extend(d);
    }
    println!("load after: {}", load());
    println!(
        "| row ({} runs each, 2 blocks) | ADD median | ADD p90 | DEL median | DEL p90 |",
        go_add.len()
    );
    println!("| --- | --- | --- | --- | --- |");
    for (name, add, del) in [
        (
            "Go Multus 4.2.2 thick (its shim -> its daemon)",
            &mut go_add,
            &mut go_del,
        ),
        (
            "ours (multus-shim -> multus-daemon)",
            &mut our_add,
            &mut our_del,
        ),
    ] {
        println!(
            "| {name} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms |",
            ms(add, 0.5),
            ms(add, 0.9),
            ms(del, 0.5),
            ms(del, 0.9)
        );
    }
    let ratio = ms(&mut our_add, 0.5) / ms(&mut go_add, 0.5);
    println!("ADD median, ours / Go thick: {ratio:.2}x");
}

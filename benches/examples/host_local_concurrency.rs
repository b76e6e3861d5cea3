//! host-local allocations per second with N allocators at once on one store (BENCHMARKS.md, "Concurrency").
//!
//! ```text
//! host_local_concurrency <plugin binary | in-process> <N> <allocations each> <data dir>
//! ```
//!
//! With a plugin binary (the reference `/usr/lib/cni/host-local`, or `multus` started as `host-local`),
//! N threads each run K ADDs one after the other, one process per ADD as a runtime runs them, all on one
//! /16 of one store. `in-process`: N threads each with its own `multus_ipam::Network` handle (what an
//! embedder holds) allocating K times. Prints the allocations per second, and checks that every
//! allocation succeeded and holds its own address (one reservation file per attachment).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const NETWORK: &str = "conc";
const SUBNET: &str = "10.201.0.0/16";

fn conf(dir: &Path) -> String {
    format!(
        r#"{{"cniVersion":"1.0.0","name":"{NETWORK}","type":"bridge","ipam":{{"type":"host-local","subnet":"{SUBNET}","dataDir":"{}"}}}}"#,
        dir.display()
    )
}

/// One ADD as a process; true when it succeeded.
fn add_process(bin: &Path, conf: &str, cid: &str) -> bool {
    let child = Command::new(bin)
        .env("CNI_COMMAND", "ADD")
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(conf.as_bytes());
    }
    child.wait().is_ok_and(|s| s.success())
}

fn add_in_process(dir: &Path, t: usize, k: usize) -> usize {
    let spec = multus_ipam::RangeSpec::subnet(SUBNET.parse().expect("subnet"));
    let Ok(mut net) = multus_ipam::Network::from_specs(dir, NETWORK, &[vec![spec]]) else {
        return 0;
    };
    (0..k)
        .filter(|i| net.allocate(&format!("p{t}-{i}"), "eth0", &[]).is_ok())
        .count()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, n, k, dir] = args.as_slice() else {
        eprintln!("usage: host_local_concurrency <plugin binary | in-process> <N> <K> <data dir>");
        std::process::exit(2);
    };
    let (n, k): (usize, usize) = (n.parse().expect("N"), k.parse().expect("K"));
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).expect("data dir");
    let conf = conf(&dir);
    let start = Instant::now();
    let ok: usize = std::thread::scope(|s| {
        let workers: Vec<_> = (0..n)
            .map(|t| {
                let (mode, conf, dir) = (mode.as_str(), &conf, &dir);
                s.spawn(move || {
                    if mode == "in-process" {
                        add_in_process(dir, t, k)
                    } else {
                        (0..k)
                            .filter(|i| add_process(Path::new(mode), conf, &format!("p{t}-{i}")))
                            .count()
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    let files: Vec<String> = std::fs::read_dir(dir.join(NETWORK))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|f| f.to_str())
                        .is_some_and(|f| f.parse::<std::net::IpAddr>().is_ok())
                })
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect()
        })
        .unwrap_or_default();
    let holders: std::collections::HashSet<&String> = files.iter().collect();
    println!(
        "{mode}: {n} x {k} = {} allocations ({ok} ok) in {secs:.2} s: {:.0}/s; {} reservations, {} distinct holders",
        n * k,
        ok as f64 / secs,
        files.len(),
        holders.len()
    );
    if ok != n * k || files.len() != ok || holders.len() != ok {
        eprintln!("allocations failed or were shared");
        std::process::exit(1);
    }
}

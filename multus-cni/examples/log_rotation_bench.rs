//! Benchmark of the log rotation's cost per CNI call (BENCHMARKS.md, "Log rotation"): what one meta-plugin
//! process does with its log file (open it, write 5 lines), with the rotating writer and with a plain
//! append, interleaved; then one rotation of a full 100 MB file with compression.
//!
//! Usage: `cargo run --release -p multus-cni --example log_rotation_bench`

use multus_cni::logging::{LogOptions, RotatingFile};
use std::io::Write;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The cost a call pays for the rotation: what one meta-plugin process does with its log file (open it,
/// write 5 lines), with the rotating writer and with the plain append it replaced.
fn main() {
    let d = tempfile::tempdir().unwrap();
    let line = format!(
        "2026-01-01T00:00:00Z [verbose] Add: default:sample-pod:uid:macvlan-conf(macvlan-conf):net1 {}\n",
        "r".repeat(60)
    );
    let (calls, per_call) = (3000, 5);
    let plain_path = d.path().join("plain.log");
    let rot_path = d.path().join("rotating.log");
    let mut plain = Vec::new();
    let mut rotating = Vec::new();
    for round in 0..calls * 2 {
        // Interleaved, so that both see the same machine load.
        let t = Instant::now();
        if round % 2 == 0 {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&plain_path)
                .unwrap();
            for _ in 0..per_call {
                f.write_all(line.as_bytes()).unwrap();
            }
            plain.push(t.elapsed());
        } else {
            let f = RotatingFile::open(&rot_path, LogOptions::default()).unwrap();
            for _ in 0..per_call {
                f.append(line.as_bytes()).unwrap();
            }
            rotating.push(t.elapsed());
        }
    }
    let (p, r) = (median(plain), median(rotating));
    println!(
        "one call (open + {per_call} lines), median of {calls}: plain append {p:?}, rotating {r:?}, extra {:?}",
        r.saturating_sub(p)
    );
    // One rotation of a full 100 MB file with compression: how long the other writers wait.
    let big = d.path().join("big.log");
    let chunk = line.repeat(1000);
    {
        let mut f = std::fs::File::create(&big).unwrap();
        while f.metadata().unwrap().len() < 100 * 1024 * 1024 - chunk.len() as u64 {
            f.write_all(chunk.as_bytes()).unwrap();
        }
    }
    let f = RotatingFile::open(&big, LogOptions::default()).unwrap();
    let t = Instant::now();
    f.append(chunk.as_bytes()).unwrap();
    println!(
        "rotating and compressing a full 100 MB file (default logOptions): {:?}",
        t.elapsed()
    );
}

//! host-local allocations per second in a /16 that is empty, 50 % and 99 % full (in-process,
//! on the disk store, with the reference's durability: no fsync; and with fsync).
//!
//! The fill is random (every address reserved with probability 50 % / 99 %), the adversarial
//! case for "the next free address after the last reserved one". Each measured allocation is
//! released outside the timed region, so the fill stays constant.
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use multus_ipam::{Durability, Network, RangeSpec};

const SUBNET: &str = "10.200.0.0/16";

fn open(dir: &Path) -> Network {
    let subnet = SUBNET.parse().unwrap_or_else(|_| panic!("bad subnet"));
    Network::from_specs(dir, "bench", &[vec![RangeSpec::subnet(subnet)]])
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// Reserves each address of 10.200.0.2 - 10.200.255.254 with probability `fill`, by writing the
/// reservation files directly (as another plugin would have).
fn fill(dir: &Path, fill: f64) -> usize {
    let net_dir = dir.join("bench");
    std::fs::create_dir_all(&net_dir).unwrap_or_else(|e| panic!("{e}"));
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut n = 0;
    for host in 2u32..65535 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 10_000) as f64 / 10_000.0 < fill {
            let ip = std::net::Ipv4Addr::from(0x0ac8_0000u32 | host);
            std::fs::write(net_dir.join(ip.to_string()), format!("fill{host}\r\neth0"))
                .unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("host_local_alloc_slash16");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    for (label, frac, durability) in [
        ("empty", 0.0, Durability::Reference),
        ("50pct", 0.5, Durability::Reference),
        ("99pct", 0.99, Durability::Reference),
        ("empty_fsync", 0.0, Durability::Fsync),
    ] {
        // HOST_LOCAL_BENCH_DIR picks the file system (default: the system temp dir).
        let tmp = match std::env::var_os("HOST_LOCAL_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let filled = fill(tmp.path(), frac);
        let mut net = open(tmp.path());
        net.set_durability(durability);
        let mut seq = 0u64;
        eprintln!("{label}: {filled} of 65533 reserved");
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    seq += 1;
                    let cid = format!("bench{seq}");
                    let t = Instant::now();
                    let r = net.allocate(&cid, "eth0", &[]);
                    total += t.elapsed();
                    black_box(r.unwrap_or_else(|e| panic!("allocate: {e}")));
                    net.release(&cid, "eth0")
                        .unwrap_or_else(|e| panic!("release: {e}"));
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! host-local allocations per second in a /16 that is empty, 50 % and 99 % full (in-process,
//! on the disk store, with the reference's durability: no fsync; and with fsync).
//!
//! The fill is random (every address reserved with probability 50 % / 99 %), the adversarial
//! case for "the next free address after the last reserved one". Each measured allocation is
//! released outside the timed region, so the fill stays constant.
//!
//! Rows: one long-lived handle (`empty`, `50pct`, `99pct`, `empty_fsync`); a fresh handle per
//! operation, as one CNI process per ADD / DEL has (`*_fresh`: the persisted index is loaded,
//! not the directory); the same with a whole index snapshot written after every change instead
//! of a journal record (`99pct_fresh_rewrite`); and a fresh handle after something else (the
//! reference plugin) changed the directory since the index was saved (`*_fresh_after_foreign`:
//! the directory is listed and every known file `lstat`ed, only new ones read).
#![allow(missing_docs)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use multus_ipam::{Durability, IndexMode, Network, RangeSpec};

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

#[derive(Clone, Copy, PartialEq)]
enum Handle {
    /// One handle for every operation.
    LongLived,
    /// A new handle per operation.
    Fresh,
    /// A new handle per operation, and the directory changed by someone else before each.
    FreshAfterForeign,
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("host_local_alloc_slash16");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));
    use Handle::*;
    let rows = [
        (
            "empty",
            0.0,
            Durability::Reference,
            LongLived,
            IndexMode::Journal,
        ),
        (
            "50pct",
            0.5,
            Durability::Reference,
            LongLived,
            IndexMode::Journal,
        ),
        (
            "99pct",
            0.99,
            Durability::Reference,
            LongLived,
            IndexMode::Journal,
        ),
        (
            "empty_fsync",
            0.0,
            Durability::Fsync,
            LongLived,
            IndexMode::Journal,
        ),
        (
            "empty_fresh",
            0.0,
            Durability::Reference,
            Fresh,
            IndexMode::Journal,
        ),
        (
            "50pct_fresh",
            0.5,
            Durability::Reference,
            Fresh,
            IndexMode::Journal,
        ),
        (
            "99pct_fresh",
            0.99,
            Durability::Reference,
            Fresh,
            IndexMode::Journal,
        ),
        (
            "99pct_fresh_rewrite",
            0.99,
            Durability::Reference,
            Fresh,
            IndexMode::Rewrite,
        ),
        (
            "empty_fresh_after_foreign",
            0.0,
            Durability::Reference,
            FreshAfterForeign,
            IndexMode::Journal,
        ),
        (
            "99pct_fresh_after_foreign",
            0.99,
            Durability::Reference,
            FreshAfterForeign,
            IndexMode::Journal,
        ),
    ];
    let only = std::env::var("HOST_LOCAL_BENCH_ROWS").ok();
    // Every store is kept until the end: on ext4 without a journal (this project's VM), creating
    // a file costs a walk over the inodes freed in the last 5 minutes, so deleting a filled /16
    // between rows would slow the file creations of the next rows, ours and the reference's.
    let mut stores = Vec::new();
    for (label, frac, durability, handle, mode) in rows {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|r| r == label))
        {
            continue;
        }
        // HOST_LOCAL_BENCH_DIR picks the file system (default: the system temp dir).
        let tmp = match std::env::var_os("HOST_LOCAL_BENCH_DIR") {
            Some(d) => tempfile::tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .unwrap_or_else(|e| panic!("{e}"));
        let filled = fill(tmp.path(), frac);
        let open_with = |dir: &Path| {
            let mut n = open(dir);
            n.set_durability(durability);
            n.set_index_mode(mode);
            n
        };
        let mut net = open_with(tmp.path());
        // The first operation builds the index (a full read of the directory), as the first
        // ADD on a node does; it is not measured.
        net.list().unwrap_or_else(|e| panic!("list: {e}"));
        let foreign = tmp.path().join("bench").join("foreign-change");
        let mut seq = 0u64;
        eprintln!("{label}: {filled} of 65533 reserved");
        g.sample_size(if handle == FreshAfterForeign && frac > 0.0 {
            10
        } else {
            30
        });
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    seq += 1;
                    let cid = format!("bench{seq}");
                    if handle == FreshAfterForeign {
                        std::fs::write(&foreign, b"").unwrap_or_else(|e| panic!("{e}"));
                        std::fs::remove_file(&foreign).unwrap_or_else(|e| panic!("{e}"));
                    }
                    let t = Instant::now();
                    let r = if handle == LongLived {
                        net.allocate(&cid, "eth0", &[])
                    } else {
                        open_with(tmp.path()).allocate(&cid, "eth0", &[])
                    };
                    total += t.elapsed();
                    black_box(r.unwrap_or_else(|e| panic!("allocate: {e}")));
                    let r = if handle == LongLived {
                        net.release(&cid, "eth0")
                    } else {
                        open_with(tmp.path()).release(&cid, "eth0")
                    };
                    r.unwrap_or_else(|e| panic!("release: {e}"));
                }
                total
            })
        });
        stores.push(tmp);
    }
    g.finish();
}

/// A fresh handle's read-only operation (CHECK of an attachment that holds nothing: load the
/// index, two holder lookups) against the length of the journal it must read, at 99 % full; and
/// the cost of writing a whole snapshot (what each compaction costs). What the journal limit was
/// chosen from.
fn journal(c: &mut Criterion) {
    let mut g = c.benchmark_group("host_local_index_journal");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    if std::env::var("HOST_LOCAL_BENCH_ROWS").is_ok() {
        return;
    }
    let tmp = match std::env::var_os("HOST_LOCAL_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .unwrap_or_else(|e| panic!("{e}"));
    fill(tmp.path(), 0.99);
    let idx = tmp.path().join(".multus-index").join("bench.idx");
    let len = || std::fs::metadata(&idx).map(|m| m.len()).unwrap_or(0);
    let mut long = open(tmp.path());
    long.set_journal_limit(Some(u64::MAX));
    long.list().unwrap_or_else(|e| panic!("list: {e}"));
    let snapshot = len();
    let mut seq = 0u64;
    for kib in [0u64, 16, 64, 256] {
        while len() - snapshot < kib * 1024 {
            seq += 1;
            let cid = format!("j{seq}");
            long.allocate(&cid, "eth0", &[])
                .unwrap_or_else(|e| panic!("{e}"));
            long.release(&cid, "eth0").unwrap_or_else(|e| panic!("{e}"));
        }
        eprintln!(
            "journal {} bytes after a {snapshot}-byte snapshot",
            len() - snapshot
        );
        g.bench_function(format!("99pct_fresh_check_journal_{kib}KiB"), |b| {
            b.iter(|| black_box(open(tmp.path()).check("nobody", "eth0").is_err()))
        });
    }
    g.bench_function("99pct_write_snapshot", |b| {
        let mut n = open(tmp.path());
        n.set_index_mode(IndexMode::Rewrite);
        // A change that is undone: each iteration writes two whole snapshots.
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                seq += 1;
                let cid = format!("w{seq}");
                n.allocate(&cid, "eth0", &[])
                    .unwrap_or_else(|e| panic!("{e}"));
                n.release(&cid, "eth0").unwrap_or_else(|e| panic!("{e}"));
            }
            t.elapsed() / 2
        })
    });
    g.finish();
}

criterion_group!(benches, bench, journal);
criterion_main!(benches);

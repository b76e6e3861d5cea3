//! Several processes at once, and processes killed with SIGKILL at random points.
//!
//! Child processes are this test binary re-executed with `MULTUS_IPAM_TEST_CHILD` set: the test
//! `child_entry` then runs the requested workload (and does nothing in a normal run).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use multus_ipam::{Attachment, Holder, Network, RangeSpec};

const CHILD_ENV: &str = "MULTUS_IPAM_TEST_CHILD";

fn open(data_dir: &Path, name: &str, subnet: &str) -> Network {
    Network::from_specs(
        data_dir,
        name,
        &[vec![RangeSpec::subnet(subnet.parse().unwrap())]],
    )
    .unwrap()
}

/// The child workload: `data_dir|network|subnet|id prefix|count (0 = forever)|fresh(0/1)`.
/// Prints `ALLOC <container id> <ip>` after each allocation.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let p: Vec<&str> = spec.split('|').collect();
    let (dir, name, subnet, prefix) = (Path::new(p[0]), p[1], p[2], p[3]);
    let count: u64 = p[4].parse().unwrap();
    let fresh = p[5] == "1";
    let mut net = open(dir, name, subnet);
    let mut i = 0u64;
    while count == 0 || i < count {
        if fresh {
            net = open(dir, name, subnet);
        }
        let cid = format!("{prefix}-{i}");
        match net.allocate(&cid, "eth0", &[]) {
            Ok(ips) => println!("ALLOC {cid} {}", ips[0].address.addr()),
            Err(e) if code_of(&e) == 105 => {
                println!("FULL {cid}");
                if count == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(e) => panic!("child allocation failed: {e}"),
        }
        i += 1;
    }
}

fn spawn_child(
    dir: &Path,
    name: &str,
    subnet: &str,
    prefix: &str,
    count: u64,
    fresh: bool,
) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(
            CHILD_ENV,
            format!(
                "{}|{name}|{subnet}|{prefix}|{count}|{}",
                dir.display(),
                if fresh { 1 } else { 0 }
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn allocations(out: &[u8]) -> Vec<(String, String)> {
    out.lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("ALLOC"))
                .then(|| (w.next().unwrap().to_string(), w.next().unwrap().to_string()))
        })
        .collect()
}

#[test]
fn eight_processes_and_the_reference_at_once_never_hand_out_an_address_twice() {
    require_reference();
    let tmp = tempfile::tempdir().unwrap();
    let subnet = "10.60.0.0/22";
    let children: Vec<Child> = (0..8)
        .map(|k| spawn_child(tmp.path(), "par", subnet, &format!("p{k}"), 60, k % 2 == 0))
        .collect();
    let conf = conf("par", tmp.path(), &format!(r#","subnet":"{subnet}""#));
    let refs: Vec<_> = (0..2)
        .map(|t| {
            let conf = conf.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let cid = format!("ref{t}-{i}");
                        let (ok, v) = reference("ADD", &cid, "eth0", &conf, "");
                        assert!(ok, "{v}");
                        (cid, result_ips(&v)[0].clone())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(String, String)> = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        let a = allocations(&out.stdout);
        assert_eq!(a.len(), 60);
        all.extend(a);
    }
    for r in refs {
        all.extend(r.join().unwrap());
    }
    assert_eq!(all.len(), 8 * 60 + 50);
    let ips: BTreeSet<&String> = all.iter().map(|(_, ip)| ip).collect();
    assert_eq!(ips.len(), all.len(), "an address was handed out twice");
    // The store holds exactly these, each with its holder.
    let files = reservations(&tmp.path().join("par"));
    assert_eq!(files.len(), all.len());
    for (cid, ip) in &all {
        assert_eq!(files[ip], format!("{cid}\r\neth0").into_bytes(), "{ip}");
    }
    assert!(lock_is_free(&tmp.path().join("par")));
}

/// A tiny deterministic PRNG (xorshift) for kill delays.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_at_random_points_leaves_no_duplicate_no_held_lock_and_gc_reclaims_leaks() {
    let tmp = tempfile::tempdir().unwrap();
    let subnet = "10.70.0.0/24";
    let dir = tmp.path().join("kill");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut handed_out: BTreeMap<String, String> = BTreeMap::new(); // ip -> container
    let mut unknown_seen = 0;
    let mut reported = 0;
    let mut torn_seen = 0;
    for round in 0..40 {
        // Two processes compete for the lock; both are killed at random points.
        let mut a = spawn_child(
            tmp.path(),
            "kill",
            subnet,
            &format!("k{round}a"),
            0,
            round % 2 == 0,
        );
        let mut b = spawn_child(tmp.path(), "kill", subnet, &format!("k{round}b"), 0, true);
        std::thread::sleep(Duration::from_micros(5_000 + rng.next() % 30_000));
        a.kill().unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % 3_000));
        b.kill().unwrap();
        for c in [a, b] {
            let out = c.wait_with_output().unwrap();
            for (cid, ip) in allocations(&out.stdout) {
                reported += 1;
                // Never an address someone else already got.
                if let Some(prev) = handed_out.insert(ip.clone(), cid.clone()) {
                    panic!("{ip} handed to {prev} and to {cid}");
                }
            }
        }
        assert!(lock_is_free(&dir), "lock still held after round {round}");
        // Every reported allocation is on disk with its holder.
        let files = reservations(&dir);
        for (ip, cid) in &handed_out {
            assert_eq!(files.get(ip), Some(&format!("{cid}\r\neth0").into_bytes()));
        }
        // last_reserved_ip is only a hint, rewritten in place: a torn one is tolerated (the next
        // walk starts at the range start) and counted.
        let lr = std::fs::read(dir.join("last_reserved_ip.0")).unwrap_or_default();
        let parses = std::str::from_utf8(&lr)
            .ok()
            .and_then(|s| s.parse::<std::net::IpAddr>().ok())
            .is_some();
        if dir.join("last_reserved_ip.0").exists() && !parses {
            torn_seen += 1;
        }
        unknown_seen += files
            .values()
            .filter(|c| Holder::parse(c) == Holder::Unknown)
            .count();
        // Release half of what was handed out, so the range keeps churning and wraps.
        if round % 4 == 3 {
            let mut net = open(tmp.path(), "kill", subnet);
            let ips: Vec<String> = handed_out.keys().cloned().collect();
            for ip in ips.iter().step_by(2) {
                let cid = handed_out.remove(ip).unwrap();
                assert_eq!(net.release(&cid, "eth0").unwrap().len(), 1);
            }
        }
    }
    assert!(
        reported > 100,
        "children made too little progress: {reported}"
    );
    // Reservation files appear whole (O_TMPFILE + linkat): a kill never leaves an empty one that a DEL
    // could not match to its container.
    assert_eq!(
        unknown_seen, 0,
        "a reservation file without its holder was seen after a kill"
    );
    let leaked = reservations(&dir).len() - handed_out.len();
    eprintln!(
        "{reported} allocations reported; {leaked} reservations leaked by kills; \
         unknown (empty) holders seen {unknown_seen} times; torn last_reserved_ip seen {torn_seen} times"
    );

    // Leaks (reserved on disk but never reported: killed between reserve and report) are
    // reclaimed by GC with the reported attachments as the valid list.
    let valid: Vec<Attachment> = handed_out
        .values()
        .map(|cid| Attachment::new(cid.clone(), "eth0"))
        .collect();
    let mut net = open(tmp.path(), "kill", subnet);
    net.gc(&valid).unwrap();
    let files = reservations(&dir);
    let expect: BTreeSet<&String> = handed_out.keys().collect();
    let got: BTreeSet<&String> = files.keys().collect();
    assert_eq!(got, expect);
    // And the store still works for both plugins, never returning a held address.
    let conf = conf("kill", tmp.path(), &format!(r#","subnet":"{subnet}""#));
    let (ok, v) = reference("ADD", "after-ref", "eth0", &conf, "");
    assert!(ok, "{v}");
    assert!(!handed_out.contains_key(&result_ips(&v)[0]));
    let ours = net.allocate("after-ours", "eth0", &[]).unwrap();
    assert!(!handed_out.contains_key(&ours[0].address.addr().to_string()));
}

//! The persisted index (`<dataDir>/.multus-index/<network>.idx`): reused by fresh store handles
//! (one per CNI invocation) with the same answers as a full scan of the directory, rebuilt when
//! corrupt, truncated or of another version, and never trusted after a process was killed while
//! writing it.
//!
//! "Processes" are separate store opens ([`Network`] handles) on one directory, except in the
//! SIGKILL test, whose children are this test binary re-executed (as in `concurrency.rs`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use multus_ipam::{Attachment, Holder, IndexMode, IndexStats, IpamError, Network, RangeSpec};

const NET: &str = "ix";

fn sets() -> Vec<Vec<RangeSpec>> {
    vec![
        vec![RangeSpec::subnet("10.77.0.0/24".parse().unwrap())],
        vec![RangeSpec::subnet("fd00:77::/120".parse().unwrap())],
    ]
}

fn open_mode(data: &Path, mode: IndexMode) -> Network {
    let mut n = Network::from_specs(data, NET, &sets()).unwrap();
    n.set_index_mode(mode);
    n
}

fn open(data: &Path) -> Network {
    open_mode(data, IndexMode::Journal)
}

fn index_file(data: &Path) -> PathBuf {
    data.join(".multus-index").join(format!("{NET}.idx"))
}

/// Every reservation, and what each attachment holds.
type Answers = (
    Vec<(IpAddr, Holder)>,
    BTreeMap<(String, String), Vec<IpAddr>>,
);

/// What a handle answers about the store: every reservation, and what each holder holds.
fn answers(n: &mut Network) -> Answers {
    let list: Vec<(IpAddr, Holder)> = n
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, r.holder))
        .collect();
    let mut held = BTreeMap::new();
    for (_, h) in &list {
        if let Holder::Attachment {
            container_id,
            ifname,
        } = h
        {
            let ips = n.check(container_id, ifname).unwrap();
            held.insert((container_id.clone(), ifname.clone()), ips);
        }
    }
    (list, held)
}

/// The answers of a handle that reads the whole directory (no persisted index).
fn full_scan_answers(data: &Path) -> Answers {
    let mut n = open_mode(data, IndexMode::Off);
    let a = answers(&mut n);
    assert_eq!(n.index_stats().scans, 1);
    a
}

/// A copy of the network directory (reservations and last_reserved_ip records) in a new data
/// directory, without any index: what a full scan would allocate next.
fn copy_store(data: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    std::fs::create_dir(to.path().join(NET)).unwrap();
    for e in std::fs::read_dir(data.join(NET)).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.path().join(NET).join(e.file_name())).unwrap();
        }
    }
    to
}

fn stats(n: &Network) -> IndexStats {
    n.index_stats()
}

#[test]
fn fresh_opens_reuse_the_index_and_answer_like_a_full_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mut live: Vec<String> = Vec::new();
    for i in 0..90u32 {
        let mut n = open(data);
        let cid = format!("c{i}");
        if i % 5 == 4 && !live.is_empty() {
            let gone = live.remove((i as usize * 7) % live.len());
            assert_eq!(n.release(&gone, "eth0").unwrap().len(), 2);
        } else if i % 11 == 10 {
            let taken: BTreeSet<IpAddr> = full_scan_answers(data)
                .0
                .into_iter()
                .map(|(ip, _)| ip)
                .collect();
            let want = (2..255u8)
                .rev()
                .map(|h| IpAddr::from([10, 77, 0, h]))
                .find(|ip| !taken.contains(ip))
                .unwrap();
            n.allocate(&cid, "eth0", &[want]).unwrap();
            live.push(cid);
        } else {
            // What a full scan of the same store would hand out.
            let copy = copy_store(data);
            let mut reference = Network::from_specs(copy.path(), NET, &sets()).unwrap();
            reference.set_index_mode(IndexMode::Off);
            let expect = reference.allocate(&cid, "eth0", &[]).unwrap();
            let got = n.allocate(&cid, "eth0", &[]).unwrap();
            assert_eq!(got, expect, "allocation {i}");
            live.push(cid);
        }
        let s = stats(&n);
        if i == 0 {
            assert_eq!((s.loaded, s.scans), (0, 1), "{s:?}");
        } else {
            // Every later fresh handle trusts the index its predecessor saved.
            assert_eq!(
                (s.loaded, s.scans, s.files_read),
                (1, 0, 0),
                "op {i}: {s:?}"
            );
        }
        if i % 15 == 0 {
            let mut fresh = open(data);
            assert_eq!(answers(&mut fresh), full_scan_answers(data), "after op {i}");
        }
    }
    assert!(index_file(data).exists());
    // The network directory holds only the reference's files.
    for name in snapshot(&data.join(NET)).keys() {
        assert!(
            name == "lock"
                || name.starts_with("last_reserved_ip.")
                || name.parse::<IpAddr>().is_ok(),
            "{name}"
        );
    }
    // GC and STATUS through a fresh handle, against a full scan.
    let mut n = open(data);
    n.status().unwrap();
    let keep: Vec<Attachment> = live
        .iter()
        .step_by(2)
        .map(|c| Attachment::new(c.clone(), "eth0"))
        .collect();
    let released = n.gc(&keep).unwrap();
    assert_eq!(released.len(), 2 * (live.len() - keep.len()));
    let mut fresh = open(data);
    let a = answers(&mut fresh);
    assert_eq!(stats(&fresh).scans, 0);
    assert_eq!(a, full_scan_answers(data));
    assert_eq!(a.1.len(), keep.len());
}

#[test]
fn long_lived_and_fresh_handles_interleave() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mut long = open(data);
    for i in 0..40 {
        if i % 2 == 0 {
            long.allocate(&format!("l{i}"), "eth0", &[]).unwrap();
        } else {
            open(data).allocate(&format!("f{i}"), "eth0", &[]).unwrap();
        }
        assert_eq!(answers(&mut long), full_scan_answers(data));
    }
    // The long-lived handle never had to read a file again: each change by a fresh handle was
    // picked up from the index file.
    let s = stats(&long);
    assert_eq!(s.scans, 1, "{s:?}");
    assert!(s.loaded >= 20, "{s:?}");
}

#[test]
fn journal_compaction_keeps_answers() {
    // Enough changes to pass the journal limit several times.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mut n = open(data);
    let mut fresh_checks = 0;
    for i in 0..5000u32 {
        let cid = format!("c{}", i % 200);
        if n.allocate(&cid, "eth0", &[]).is_err() {
            n.release(&cid, "eth0").unwrap();
        }
        if i % 1000 == 999 {
            let mut f = open(data);
            assert_eq!(answers(&mut f), full_scan_answers(data));
            assert_eq!(stats(&f).scans, 0);
            fresh_checks += 1;
        }
    }
    let s = stats(&n);
    assert!(s.snapshots_written >= 3, "{s:?}");
    assert!(s.records_appended > 4000, "{s:?}");
    assert_eq!(fresh_checks, 5);
    assert!(std::fs::metadata(index_file(data)).unwrap().len() < 64 * 1024);
}

/// A store with reservations of every kind, and its index saved by a fresh handle.
fn populated(data: &Path) {
    for i in 0..30 {
        open(data)
            .allocate(
                &format!("p{i}"),
                if i % 3 == 0 { "net1" } else { "eth0" },
                &[],
            )
            .unwrap();
    }
    // Legacy and garbage files, learned by a scan.
    std::fs::write(data.join(NET).join("10.77.0.250"), "legacy-ctr").unwrap();
    std::fs::write(data.join(NET).join("10.77.0.251"), b"\xff\x00").unwrap();
    let mut n = open(data);
    n.check("p1", "eth0").unwrap();
    assert_eq!(stats(&n).scans, 1);
    assert_eq!(stats(&open(data)).scans, 0);
}

#[test]
fn corrupt_truncated_foreign_or_unreadable_index_is_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    populated(data);
    let file = index_file(data);
    let good = std::fs::read(&file).unwrap();
    assert!(good.len() > 3 * 4096);
    type Damage = Box<dyn Fn(&Path)>;
    let flip = |at: usize| -> Damage {
        Box::new(move |p: &Path| {
            let mut b = std::fs::read(p).unwrap();
            b[at] ^= 0x40;
            std::fs::write(p, b).unwrap();
        })
    };
    let cases: Vec<(&str, Damage)> = vec![
        ("header byte", flip(20)),
        ("other version", flip(8)),
        ("first data page (addresses)", flip(4096)),
        ("last byte", flip(good.len() - 1)),
        (
            "truncated to half",
            Box::new(|p: &Path| {
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len / 2).unwrap();
            }),
        ),
        (
            "empty",
            Box::new(|p: &Path| std::fs::write(p, b"").unwrap()),
        ),
        (
            "zeros",
            Box::new(|p: &Path| {
                let len = std::fs::metadata(p).unwrap().len() as usize;
                std::fs::write(p, vec![0u8; len]).unwrap();
            }),
        ),
        (
            "garbage of the same length",
            Box::new(|p: &Path| {
                let len = std::fs::metadata(p).unwrap().len() as usize;
                let mut x = 0x1234_5678_9abc_def1u64;
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                std::fs::write(p, b).unwrap();
            }),
        ),
        (
            "torn journal record",
            Box::new(|p: &Path| {
                let f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_at(&[40, 0, 0, 0, 1, 2, 3], f.metadata().unwrap().len())
                    .unwrap();
            }),
        ),
        (
            "another network's index",
            Box::new(|p: &Path| {
                let data = p.parent().unwrap().parent().unwrap();
                let mut other = Network::from_specs(data, "other", &sets()).unwrap();
                other.allocate("o1", "eth0", &[]).unwrap();
                std::fs::copy(p.with_file_name("other.idx"), p).unwrap();
            }),
        ),
    ];
    let expect = full_scan_answers(data);
    for (what, damage) in cases {
        // The good index again (the directory has not changed since it was saved: rebuilding
        // it only wrote the index), then the damage.
        std::fs::write(&file, &good).unwrap();
        assert_eq!(stats(&open(data)).scans, 0, "{what}");
        damage(&file);
        let mut n = open(data);
        assert_eq!(answers(&mut n), expect, "{what}");
        let s = stats(&n);
        assert_eq!(s.scans, 1, "{what}: {s:?}");
        // Rebuilt: the next handle trusts the new index.
        let mut again = open(data);
        assert_eq!(answers(&mut again), expect, "{what}");
        assert_eq!(
            (stats(&again).loaded, stats(&again).scans),
            (1, 0),
            "{what}"
        );
    }

    // A directory where the index should be: never an error, only no index.
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    for i in 0..3 {
        let mut n = open(data);
        n.allocate(&format!("d{i}"), "eth0", &[]).unwrap();
        assert_eq!(stats(&n).scans, 1);
        assert_eq!(answers(&mut n), full_scan_answers(data));
    }
    std::fs::remove_dir(&file).unwrap();
    open(data).check("d0", "eth0").unwrap();
    assert_eq!(stats(&open(data)).scans, 0);
    assert!(open(data).check("d2", "eth0").is_ok());
}

#[test]
fn corrupt_data_page_found_mid_operation_rebuilds_and_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    populated(data);
    let file = index_file(data);
    // Damage every data page (after the header): the first lookup of an ADD finds it.
    let mut b = std::fs::read(&file).unwrap();
    let pages = b.len() / 4096;
    for p in 1..pages {
        b[p * 4096 + 1] ^= 1;
    }
    std::fs::write(&file, &b).unwrap();
    let mut n = open(data);
    let before = full_scan_answers(data);
    let ips = n.allocate("mid", "eth0", &[]).unwrap();
    assert_eq!(stats(&n).scans, 1);
    let after = full_scan_answers(data);
    assert_eq!(after.0.len(), before.0.len() + 2);
    assert_eq!(
        after.1[&("mid".to_string(), "eth0".to_string())].len(),
        ips.len()
    );
    let mut again = open(data);
    assert_eq!(answers(&mut again), after);
    assert_eq!(stats(&again).scans, 0);
}

#[test]
fn a_network_named_like_the_index_directory_works_without_an_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    populated(data);
    let spec = || vec![vec![RangeSpec::subnet("10.78.0.0/24".parse().unwrap())]];
    for i in 0..3 {
        let mut n = Network::from_specs(data, ".multus-index", &spec()).unwrap();
        n.allocate(&format!("x{i}"), "eth0", &[]).unwrap();
        assert_eq!(n.list().unwrap().len(), i + 1);
    }
    // The reference refuses the name (libcni's rule: an alphanumeric first character), so it
    // never uses the index directory as a network directory.
    let conf = conf(".multus-index", data, r#","subnet":"10.78.0.0/24""#);
    for cmd in ["ADD", "DEL"] {
        let (ok, v) = reference(cmd, "r1", "eth0", &conf, "");
        assert!(!ok);
        assert_eq!(v["code"], 7, "{v}");
        assert_eq!(v["msg"], "invalid characters found in network name", "{v}");
    }
    assert!(index_file(data).exists());
    // ... and the other network's index is still trusted.
    let mut n = open(data);
    assert_eq!(answers(&mut n), full_scan_answers(data));
    assert_eq!(stats(&n).scans, 0);
}

// ---------------------------------------------------------------------------------------------
// SIGKILL while writing the index.

const CHILD_ENV: &str = "MULTUS_IPAM_INDEX_TEST_CHILD";
const KILL_SUBNET: &str = "10.79.0.0/20";

fn open_kill(data: &Path, mode: IndexMode) -> Network {
    let mut n = Network::from_specs(
        data,
        "kill",
        &[vec![RangeSpec::subnet(KILL_SUBNET.parse().unwrap())]],
    )
    .unwrap();
    n.set_index_mode(mode);
    n
}

/// Child: `data_dir|id prefix|mode (journal/rewrite)`: allocates forever, a fresh handle per
/// allocation, printing `ALLOC <container id> <ip>` after each.
#[test]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let p: Vec<&str> = spec.split('|').collect();
    let (dir, prefix) = (Path::new(p[0]), p[1]);
    let mode = if p[2] == "rewrite" {
        IndexMode::Rewrite
    } else {
        IndexMode::Journal
    };
    for i in 0u64.. {
        let cid = format!("{prefix}-{i}");
        match open_kill(dir, mode).allocate(&cid, "eth0", &[]) {
            Ok(ips) => println!("ALLOC {cid} {}", ips[0].address.addr()),
            Err(IpamError::Exhausted { .. }) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("child allocation failed: {e}"),
        }
    }
}

fn spawn_child(dir: &Path, prefix: &str, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_entry",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, format!("{}|{prefix}|{mode}", dir.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

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
fn sigkill_while_writing_the_index_leaves_no_duplicate_and_no_trusted_stale_index() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let dir = data.join("kill");
    // 2,000 reservations already: a snapshot is ~100 KiB, so kills land in snapshot writes too.
    std::fs::create_dir_all(&dir).unwrap();
    for h in 0..2000u32 {
        let ip = std::net::Ipv4Addr::from(0x0a4f_0000u32 + 2 + h * 2);
        std::fs::write(dir.join(ip.to_string()), format!("pre{h}\r\neth0")).unwrap();
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut handed: BTreeMap<String, String> = BTreeMap::new(); // ip -> container
    let mut reported = 0;
    for round in 0..30 {
        // One child rewrites a whole snapshot per allocation, the other appends to the journal.
        let mut a = spawn_child(data, &format!("k{round}a"), "rewrite");
        let mut b = spawn_child(data, &format!("k{round}b"), "journal");
        std::thread::sleep(Duration::from_micros(20_000 + rng.next() % 60_000));
        a.kill().unwrap();
        std::thread::sleep(Duration::from_micros(rng.next() % 5_000));
        b.kill().unwrap();
        for c in [a, b] {
            let out = c.wait_with_output().unwrap();
            for line in out.stdout.lines().map_while(Result::ok) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if w.first() == Some(&"ALLOC") {
                    reported += 1;
                    if let Some(prev) = handed.insert(w[2].to_string(), w[1].to_string()) {
                        panic!("{} handed to {prev} and to {}", w[2], w[1]);
                    }
                }
            }
        }
        assert!(lock_is_free(&dir), "lock held after round {round}");
        // Whatever the kill left (old index, torn record, half-written temporary file, no
        // index), a fresh handle answers as a full scan does.
        let mut n = open_kill(data, IndexMode::Journal);
        let got: Vec<(IpAddr, Holder)> = n
            .list()
            .unwrap()
            .into_iter()
            .map(|r| (r.ip, r.holder))
            .collect();
        let mut full = open_kill(data, IndexMode::Off);
        let want: Vec<(IpAddr, Holder)> = full
            .list()
            .unwrap()
            .into_iter()
            .map(|r| (r.ip, r.holder))
            .collect();
        assert_eq!(got, want, "round {round}");
        for (ip, cid) in &handed {
            let held = n.check(cid, "eth0").unwrap();
            assert_eq!(held, vec![ip.parse::<IpAddr>().unwrap()], "round {round}");
        }
        // Release some, so addresses are reused by later rounds.
        if round % 3 == 2 {
            let ips: Vec<String> = handed.keys().cloned().collect();
            for ip in ips.iter().step_by(2) {
                let cid = handed.remove(ip).unwrap();
                assert_eq!(
                    open_kill(data, IndexMode::Journal)
                        .release(&cid, "eth0")
                        .unwrap()
                        .len(),
                    1
                );
            }
        }
    }
    assert!(
        reported > 100,
        "children made too little progress: {reported}"
    );
    // Leaks (killed between reservation and report) go with GC; the rest is exactly what was
    // reported, and a fresh handle agrees.
    let mut valid: Vec<Attachment> = handed
        .values()
        .map(|c| Attachment::new(c.clone(), "eth0"))
        .collect();
    valid.extend((0..2000).map(|h| Attachment::new(format!("pre{h}"), "eth0")));
    open_kill(data, IndexMode::Journal).gc(&valid).unwrap();
    let files: BTreeSet<String> = reservations(&dir).into_keys().collect();
    assert_eq!(files.len(), handed.len() + 2000);
    for ip in handed.keys() {
        assert!(files.contains(ip));
    }
    let mut n = open_kill(data, IndexMode::Journal);
    assert_eq!(n.list().unwrap().len(), files.len());
    let next = n.allocate("after", "eth0", &[]).unwrap();
    assert!(!files.contains(&next[0].address.addr().to_string()));
}

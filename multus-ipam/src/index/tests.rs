//! Tests of the index's snapshots and of the index in memory, and helpers the submodules' tests
//! share.

use super::columns::Columns;
use super::layout::PAGE;
use super::snapshot::{Data, Snapshot};
use super::*;
use std::io;

pub(crate) fn stamp() -> Stamp {
    Stamp {
        dev: 1,
        ino: 2,
        mtime: (3, 4),
        ctime: (3, 5),
        size: 4096,
    }
}

pub(crate) fn entry(i: u64, key: u32) -> Entry {
    Entry {
        ino: 1000 + i,
        ctime: i as i64 * 7,
        mtime: i as i64 * 5,
        size: 15,
        key,
    }
}

fn pages_read(ix: &Index) -> usize {
    match &ix.base.data {
        Data::Paged { pages, .. } => pages.iter().flatten().count(),
        Data::Image(_) => usize::MAX,
    }
}

pub(crate) fn paths(d: &Path) -> IndexPaths {
    IndexPaths::new(d, "net").unwrap()
}

pub(crate) fn write_snapshot(
    p: &IndexPaths,
    net: &str,
    stamp: Stamp,
    entries: &[(IpAddr, Entry)],
) -> io::Result<IndexFile> {
    Snapshot::build(net, stamp, entries)?.write(p)
}

pub(crate) fn sample(n: u32) -> Vec<(IpAddr, Entry)> {
    let mut v: Vec<(IpAddr, Entry)> = (0..n)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 3));
            (
                ip,
                entry(u64::from(i), key_hash(&format!("c{}\r\neth0", i % 97))),
            )
        })
        .collect();
    for i in 0..(n / 10) {
        let ip = IpAddr::V6(Ipv6Addr::from(
            (0x2001_0db8_u128 << 96) | (u128::from(i) * 5),
        ));
        v.push((
            ip,
            entry(
                u64::from(i) + 1_000_000,
                if i % 3 == 0 { 0 } else { 77 | 1 },
            ),
        ));
    }
    v
}

/// The addresses of `entries` whose holder hash is `k` (none for 0: no holder).
fn holders_of(entries: &[(IpAddr, Entry)], k: u32) -> Vec<IpAddr> {
    entries
        .iter()
        .filter(|(_, e)| e.key == k && k != 0)
        .map(|(ip, _)| *ip)
        .collect()
}

/// Every address of `entries` is found with its entry, and the address after each is found exactly
/// when it is one of them.
fn every_address_and_its_neighbour(ix: &mut Index, entries: &[(IpAddr, Entry)]) {
    let present: BTreeSet<IpAddr> = entries.iter().map(|(ip, _)| *ip).collect();
    for (ip, e) in entries {
        assert!(ix.contains(*ip).unwrap());
        assert_eq!(ix.get(*ip).unwrap(), Some(*e));
        let next = match ip {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(u32::from(*v) + 1)),
            IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(u128::from(*v) + 1)),
        };
        assert_eq!(
            ix.contains(next).unwrap(),
            present.contains(&next),
            "{next}"
        );
    }
}

#[test]
fn snapshot_round_trip_and_lookups() {
    let tmp = tempfile::tempdir().unwrap();
    let p = paths(tmp.path());
    let entries = sample(5000);
    let f = write_snapshot(&p, "net", stamp(), &entries).unwrap();
    let (mut ix, f2, complete) = Index::load(&p, "net").unwrap();
    assert!(complete);
    assert_eq!(f, f2);
    assert_eq!(ix.stamp, stamp());
    // One lookup reads one page of addresses (the fences say which).
    assert!(ix.contains(entries[2500].0).unwrap());
    assert_eq!(pages_read(&ix), 1);
    let k = key_hash("c5\r\neth0");
    assert_eq!(ix.with_key(k).unwrap(), holders_of(&entries, k));
    let read = pages_read(&ix);
    assert!(read < 12, "{read} pages read");
    // Every address and its absent neighbours, every key and absent ones.
    every_address_and_its_neighbour(&mut ix, &entries);
    assert!(!ix.contains("10.0.0.1".parse().unwrap()).unwrap());
    assert!(!ix.contains("255.0.0.1".parse().unwrap()).unwrap());
    assert!(!ix.contains("2001:db8::1".parse().unwrap()).unwrap());
    assert!(!ix.contains("::1".parse().unwrap()).unwrap());
    let mut keys: Vec<u32> = entries.iter().map(|(_, e)| e.key).collect();
    keys.extend([1, 3, u32::MAX, key_hash("absent")]);
    for k in keys {
        assert_eq!(ix.with_key(k).unwrap(), holders_of(&entries, k), "{k}");
    }
    assert_eq!(ix.all().unwrap(), entries);
    // Now whole in memory: the same answers without pages.
    assert!(matches!(ix.base.data, Data::Image(_)));
    every_address_and_its_neighbour(&mut ix, &entries);
    assert!(!ix.contains("255.0.0.1".parse().unwrap()).unwrap());
    assert!(!ix.contains("::1".parse().unwrap()).unwrap());
    // Wrong network name: not this index.
    assert!(Index::load(&p, "other").is_none());
}

#[test]
fn merge_equals_a_rebuild() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut r = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for round in 0..40 {
        let n = (r() % 3000) as u32;
        let mut base: Vec<(IpAddr, Entry)> = Vec::new();
        for i in 0..n {
            if r() % 3 != 0 {
                let e = entry(u64::from(i), (r() % 7) as u32 * 2 + 1);
                base.push((IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), e));
            }
        }
        for i in 0..n / 5 {
            if r() % 2 == 0 {
                let ip = IpAddr::V6(Ipv6Addr::from((0xfd00_u128 << 112) | u128::from(i)));
                base.push((ip, entry(u64::from(i) + 9, (r() % 3) as u32)));
            }
        }
        let snap = Snapshot::build("net", stamp(), &base).unwrap();
        let mut ix = Index::new(snap, stamp());
        for _ in 0..(r() % 200) {
            let v6 = r() % 4 == 0;
            let ip = if v6 {
                IpAddr::V6(Ipv6Addr::from(
                    0xfd00_u128 << 112 | u128::from(r() % u64::from(n + 10)),
                ))
            } else {
                IpAddr::V4(Ipv4Addr::from(
                    0x0a00_0000 + (r() % u64::from(n + 10)) as u32,
                ))
            };
            if r() % 3 == 0 {
                ix.remove(ip);
            } else {
                ix.put(ip, entry(r() % 1000, (r() % 9) as u32));
            }
        }
        let want = Columns::from_entries(&ix.all().unwrap()).unwrap();
        let got = ix.base.merged(&ix.overlay).unwrap();
        assert_eq!(
            (got.v4, got.v6, got.cold, got.keys),
            (want.v4, want.v6, want.cold, want.keys),
            "round {round}"
        );
    }
}

#[test]
fn one_key_over_many_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let p = paths(tmp.path());
    let entries: Vec<(IpAddr, Entry)> = (0..3000u32)
        .map(|i| {
            (
                IpAddr::V4(Ipv4Addr::from(i * 2)),
                entry(u64::from(i), if i % 3 == 0 { 5 } else { 7 }),
            )
        })
        .collect();
    write_snapshot(&p, "net", stamp(), &entries).unwrap();
    let (mut ix, _, _) = Index::load(&p, "net").unwrap();
    for k in [5u32, 7] {
        assert_eq!(ix.with_key(k).unwrap(), holders_of(&entries, k));
    }
    assert!(ix.with_key(6).unwrap().is_empty());
    assert!(ix.with_key(9).unwrap().is_empty());
}

#[test]
fn corrupt_or_foreign_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = paths(tmp.path());
    let entries = sample(3000);
    write_snapshot(&p, "net", stamp(), &entries).unwrap();
    let good = fs::read(&p.file).unwrap();
    // Header, checksum table, truncation, other version: refused at load.
    for (at, what) in [
        (3usize, "magic"),
        (8, "version"),
        (30, "count"),
        (PAGE + 5, "data"),
    ] {
        let mut b = good.clone();
        b[at] ^= 1;
        fs::write(&p.file, &b).unwrap();
        match Index::load(&p, "net") {
            None => assert_ne!(what, "data"),
            Some((mut ix, _, _)) => {
                assert_eq!(what, "data");
                // A corrupt data page is found when read.
                assert_eq!(ix.all(), Err(Corrupt));
            }
        }
    }
    fs::write(&p.file, &good[..good.len() - 1]).unwrap();
    assert!(Index::load(&p, "net").is_none());
    fs::write(&p.file, b"").unwrap();
    assert!(Index::load(&p, "net").is_none());
    fs::write(&p.file, vec![0u8; good.len()]).unwrap();
    assert!(Index::load(&p, "net").is_none());
}

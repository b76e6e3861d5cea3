//! Tests of the index's snapshots and of the index in memory, and helpers the submodules' tests
//! share.

use super::columns::Columns;
use super::layout::{Header, Layout, PAGE};
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

/// An index file whose every checksum verifies around arbitrary content: a header for `layout`,
/// data pages and fences cut from `fill`, and journal records with the given payloads.
fn forge(net: &str, layout: Layout, fill: &[u8], payloads: &[Vec<u8>]) -> Vec<u8> {
    use super::codec::{mix, page_seed, sum64, Le};
    use super::layout::{FENCES_SEED, SUMS_SEED};
    let nonce = 0x5eed;
    let at = |page: u64| page as usize * PAGE;
    let mut buf = vec![0u8; layout.body_end() as usize];
    for (i, b) in buf[PAGE..].iter_mut().enumerate() {
        *b = fill.get(i % fill.len().max(1)).copied().unwrap_or(0);
    }
    let mut table = Vec::new();
    for p in 1..=layout.data_pages() {
        sum64(page_seed(nonce, p), &buf[at(p)..at(p + 1)]).put(&mut table);
    }
    buf[at(layout.sums_start())..at(layout.sums_start()) + table.len()].copy_from_slice(&table);
    let fences =
        at(layout.fences_start())..at(layout.fences_start()) + layout.fences_len() as usize;
    let header = Header {
        nonce,
        layout,
        stamp: stamp(),
        sums_sum: sum64(nonce ^ SUMS_SEED, &table),
        fences_sum: sum64(nonce ^ FENCES_SEED, &buf[fences]),
    };
    buf[..PAGE].copy_from_slice(&header.encode(net).unwrap());
    for payload in payloads {
        let offset = buf.len() as u64;
        (payload.len() as u32).put(&mut buf);
        sum64(nonce ^ mix(offset), payload).put(&mut buf);
        buf.extend_from_slice(payload);
    }
    buf
}

/// A journal payload: a stamp, a count, then ops of the right kinds with arbitrary bytes (and
/// sometimes a wrong count or kind, or trailing bytes).
fn payload() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let op = (
        proptest::sample::select(vec![4u8, 6, 0x84, 0x86, 0, 0xff]),
        proptest::collection::vec(any::<u8>(), 48),
    )
        .prop_map(|(kind, bytes)| {
            let len = match kind & 0x7f {
                4 => 4,
                6 => 16,
                _ => 0,
            } + if kind & 0x80 == 0 { 32 } else { 0 };
            let mut v = vec![kind];
            v.extend_from_slice(&bytes[..len.min(48)]);
            v
        });
    (
        proptest::collection::vec(any::<u8>(), 56),
        proptest::collection::vec(op, 0..6),
        0u32..8,
        proptest::collection::vec(any::<u8>(), 0..3),
    )
        .prop_map(|(stamp, ops, n, tail)| {
            let mut v = stamp;
            v.extend_from_slice(&n.to_le_bytes());
            ops.iter().for_each(|o| v.extend_from_slice(o));
            v.extend_from_slice(&tail);
            v
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Behind checksums that verify, arbitrary sections and journal records never panic a lookup,
    /// a listing, a compaction or a scan: at worst they are `Corrupt` (then the store rebuilds).
    #[test]
    fn arbitrary_content_behind_valid_checksums_never_panics(
        n4 in 0u64..1500,
        n6 in 0u64..300,
        nkeys in 0u64..1500,
        fill in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..600),
        payloads in proptest::collection::vec(payload(), 0..4),
        probes in proptest::collection::vec(proptest::prelude::any::<(u32, u128, u32)>(), 1..24),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let p = paths(tmp.path());
        std::fs::create_dir_all(&p.dir).unwrap();
        let layout = Layout { n4, n6, nkeys };
        std::fs::write(&p.file, forge("net", layout, &fill, &payloads)).unwrap();
        let Some((mut ix, f, _)) = Index::load(&p, "net") else {
            return Err(proptest::test_runner::TestCaseError::fail("a forged index must load"));
        };
        for (v4, v6, key) in probes {
            let _ = ix.get(IpAddr::V4(Ipv4Addr::from(v4)));
            let _ = ix.get(IpAddr::V6(Ipv6Addr::from(v6)));
            let _ = ix.with_key(key);
        }
        let _ = ix.all();
        let how = SaveHow { rewrite: true, limit: None };
        let _ = ix.save(&p, "net", Some(f), stamp(), how, &mut IndexStats::default());
        if let Some((mut again, _, _)) = Index::load(&p, "net") {
            let empty = tmp.path().join("empty");
            std::fs::create_dir(&empty).unwrap();
            let _ = Index::scan(&empty, "net", Some(&mut again), stamp());
        }
    }
}

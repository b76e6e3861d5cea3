//! Fuzz-style properties of every parser of this crate that reads input, bounded to a few seconds of
//! `cargo test`: the host-local configuration (and `CNI_ARGS`), the store's reservation files and
//! `last_reserved_ip` records, and the persisted index. Arbitrary bytes never panic, and never
//! corrupt the store: no holder's file is lost or changed, no address is handed out over a
//! holder, and a damaged index is never believed over the directory.
//! (The index's decoders behind valid checksums are fuzzed in `src/index/tests.rs`.)

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use common::*;
use multus_ipam::{config, Attachment, Holder, IndexMode, Network, RangeSpec};
use proptest::prelude::*;
use serde_json::Value;

/// Words the configuration parser looks for, so that generated objects reach its deeper checks.
const KEYS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "ranges",
    "routes",
    "dst",
    "gw",
    "dataDir",
    "resolvConf",
    "args",
    "cni",
    "ips",
    "runtimeConfig",
    "ipRanges",
    "SUBNET",
    "Ranges",
];
const STRINGS: &[&str] = &[
    "10.0.0.0/24",
    "10.0.0.5/24",
    "10.0.0.1",
    "10.0.0.200",
    "10.0.1.0/31",
    "2001:db8::/64",
    "2001:db8::5",
    "::ffff:10.0.0.9",
    "0.0.0.0/0",
    "1.1.1.1/33",
    "",
    "x",
    "1.0.0",
    "0.2.0",
    "0.4.0",
    "host-local",
    "net",
    "../x",
    "10.0.0.0/8",
    "300.1.1.1",
    "fe80::1%eth0",
];

fn json(depth: u32) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        proptest::sample::select(STRINGS).prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(depth, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..6).prop_map(
                |kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            ),
        ]
    })
    .boxed()
}

/// `Some` of a plausible value (from `good`) `present` times in 40, else mostly `None` (absent),
/// sometimes any value.
fn field(good: BoxedStrategy<Value>, present: u32) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        39 - present => Just(None),
        present => good.prop_map(Some),
        1 => json(2).prop_map(Some),
    ]
    .boxed()
}

fn word() -> BoxedStrategy<Value> {
    proptest::sample::select(STRINGS)
        .prop_map(Value::from)
        .boxed()
}

fn pick(words: &'static [&'static str]) -> BoxedStrategy<Value> {
    proptest::sample::select(words)
        .prop_map(Value::from)
        .boxed()
}

const CIDRS: &[&str] = &[
    "10.0.0.0/24",
    "10.0.0.0/30",
    "10.0.0.0/29",
    "2001:db8::/120",
    "10.0.1.0/24",
    "10.0.0.5/24",
    "0.0.0.0/0",
    "10.0.0.0/31",
];
const IPS: &[&str] = &[
    "10.0.0.1",
    "10.0.0.9",
    "10.0.0.200",
    "2001:db8::5",
    "10.0.1.3",
    "10.0.0.2",
];

/// An object of the given keys, each from [`field`] (key, values, how often present in 40).
fn object(keys: Vec<(&'static str, BoxedStrategy<Value>, u32)>) -> BoxedStrategy<Value> {
    let (names, values): (Vec<_>, Vec<_>) =
        keys.into_iter().map(|(k, v, p)| (k, field(v, p))).unzip();
    values
        .prop_map(move |vs| {
            let m = names
                .iter()
                .zip(vs)
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect();
            Value::Object(m)
        })
        .boxed()
}

fn list(v: BoxedStrategy<Value>, n: usize) -> BoxedStrategy<Value> {
    proptest::collection::vec(v, 0..n)
        .prop_map(Value::Array)
        .boxed()
}

fn range() -> BoxedStrategy<Value> {
    object(vec![
        ("subnet", pick(CIDRS), 36),
        ("rangeStart", pick(IPS), 6),
        ("rangeEnd", pick(IPS), 6),
        ("gateway", pick(IPS), 6),
    ])
}

/// A configuration-shaped object: every key the parser reads, each plausible, absent or anything,
/// so that many parse and reach the store; or any JSON value.
fn config_json() -> BoxedStrategy<Value> {
    let route = object(vec![("dst", pick(CIDRS), 38), ("gw", pick(IPS), 10)]);
    let ipam = object(vec![
        ("type", word(), 30),
        ("subnet", pick(CIDRS), 24),
        ("rangeStart", pick(IPS), 4),
        ("rangeEnd", pick(IPS), 4),
        ("gateway", pick(IPS), 4),
        ("ranges", list(list(range(), 3), 3), 16),
        ("routes", list(route, 3), 10),
    ]);
    let args = object(vec![(
        "cni",
        object(vec![("ips", list(pick(IPS), 3), 30)]),
        30,
    )]);
    let rc = object(vec![
        ("ips", list(pick(IPS), 3), 10),
        ("ipRanges", list(list(range(), 2), 2), 10),
    ]);
    let version = pick(&["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.2.0", "x"]);
    let top = object(vec![
        ("cniVersion", version, 36),
        (
            "name",
            pick(&["net", "n-1", "../x", "", ".multus-index"]),
            36,
        ),
        ("ipam", ipam, 37),
        ("args", args, 8),
        ("runtimeConfig", rc, 8),
    ]);
    prop_oneof![8 => top, 1 => json(5)].boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_config_bytes_and_args_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), args in ".{0,40}") {
        let _ = config::parse(&bytes, &args);
    }

    /// A configuration that parses opens a store (in a temporary data directory) and serves an
    /// ADD and a DEL, or refuses with an error; never a panic.
    #[test]
    fn config_shaped_json_never_panics(v in config_json(), args in prop_oneof![3 => Just(String::new()), 1 => "IP=10\\.0\\.0\\.[0-9]{1,3}(;IgnoreUnknown=1)?", 1 => ".{0,24}"]) {
        let bytes = serde_json::to_vec(&v).unwrap();
        if let Ok(mut cfg) = config::parse(&bytes, &args) {
            let tmp = tempfile::tempdir().unwrap();
            cfg.data_dir = tmp.path().to_path_buf();
            if let Ok(mut n) = Network::from_config(&cfg) {
                if n.allocate("c", "eth0", &cfg.requested_ips).is_ok() {
                    prop_assert!(!n.release("c", "eth0").unwrap().is_empty());
                }
            }
        }
    }
}

const SUBNET: &str = "10.70.0.0/28"; // .2 - .14

fn open(data: &Path, mode: IndexMode) -> Network {
    let mut n = Network::from_specs(
        data,
        "fz",
        &[vec![RangeSpec::subnet(SUBNET.parse().unwrap())]],
    )
    .unwrap();
    n.set_index_mode(mode);
    n
}

fn ip(host: u8) -> IpAddr {
    IpAddr::from([10, 70, 0, host])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Reservation files and the `last_reserved_ip` record with arbitrary content, beside two real
    /// holders: every operation answers, the holders keep their files, an ADD takes only a free
    /// address or an orphan (an empty file), and its DEL gives back exactly that.
    #[test]
    fn arbitrary_reservation_files_never_panic_nor_touch_a_holder(
        files in proptest::collection::vec((4u8..15, proptest::collection::vec(any::<u8>(), 0..24)), 0..12),
        last in proptest::collection::vec(any::<u8>(), 0..20),
        off in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mode = if off { IndexMode::Off } else { IndexMode::Journal };
        open(tmp.path(), mode).allocate("a0", "eth0", &[]).unwrap();
        open(tmp.path(), mode).allocate("a1", "eth0", &[]).unwrap();
        let dir = tmp.path().join("fz");
        for (host, content) in &files {
            std::fs::write(dir.join(ip(*host).to_string()), content).unwrap();
        }
        std::fs::write(dir.join("last_reserved_ip.0"), &last).unwrap();
        let before = reservations(&dir);
        let mut n = open(tmp.path(), mode);
        prop_assert_eq!(n.list().unwrap().len(), before.len());
        prop_assert_eq!(n.check("a0", "eth0").unwrap(), vec![ip(2)]);
        prop_assert_eq!(n.check("a1", "eth0").unwrap(), vec![ip(3)]);
        let _ = n.status();
        match open(tmp.path(), mode).allocate("n", "eth0", &[]) {
            Ok(got) => {
                let got = got[0].address.addr();
                let was = before.get(&got.to_string());
                prop_assert!(was.is_none_or(|c| c.is_empty()), "{} had {:?}", got, was);
                prop_assert_eq!(open(tmp.path(), mode).release("n", "eth0").unwrap(), vec![got]);
                let mut expect = before.clone();
                expect.remove(&got.to_string());
                prop_assert_eq!(reservations(&dir), expect);
            }
            Err(e) => {
                prop_assert!(matches!(code_of(&e), 105 | 109), "{}", e);
                prop_assert_eq!(reservations(&dir), before);
            }
        }
        let valid = [Attachment::new("a0", "eth0"), Attachment::new("a1", "eth0")];
        open(tmp.path(), mode).gc(&valid).unwrap();
        let left = reservations(&dir);
        prop_assert_eq!(left.get("10.70.0.2").map(Vec::as_slice), Some(&b"a0\r\neth0"[..]));
        prop_assert_eq!(left.get("10.70.0.3").map(Vec::as_slice), Some(&b"a1\r\neth0"[..]));
    }

    /// The persisted index damaged in any way (bytes flipped, cut, appended, or replaced whole):
    /// a fresh handle still answers exactly what the directory says, and hands out a free address.
    #[test]
    fn a_damaged_index_is_never_believed_over_the_directory(
        flips in proptest::collection::vec((any::<u32>(), 1u8..=255), 0..6),
        cut in proptest::option::of(any::<u32>()),
        tail in proptest::collection::vec(any::<u8>(), 0..64),
        whole in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..9000)),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..8 {
            open(tmp.path(), IndexMode::Journal).allocate(&format!("c{i}"), "eth0", &[]).unwrap();
        }
        open(tmp.path(), IndexMode::Journal).release("c3", "eth0").unwrap();
        let path = tmp.path().join(".multus-index/fz.idx");
        let mut b = std::fs::read(&path).unwrap();
        for (at, x) in &flips {
            let n = b.len();
            b[*at as usize % n] ^= x;
        }
        if let Some(c) = cut {
            b.truncate(c as usize % (b.len() + 1));
        }
        b.extend_from_slice(&tail);
        std::fs::write(&path, whole.unwrap_or(b)).unwrap();
        let dir = tmp.path().join("fz");
        let files = reservations(&dir);
        let truth: BTreeMap<IpAddr, Holder> = open(tmp.path(), IndexMode::Off)
            .list().unwrap().into_iter().map(|r| (r.ip, r.holder)).collect();
        let mut n = open(tmp.path(), IndexMode::Journal);
        let seen: BTreeMap<IpAddr, Holder> =
            n.list().unwrap().into_iter().map(|r| (r.ip, r.holder)).collect();
        prop_assert_eq!(&seen, &truth);
        for i in [0, 1, 2, 4, 5, 6, 7] {
            prop_assert_eq!(open(tmp.path(), IndexMode::Journal).check(&format!("c{i}"), "eth0").unwrap().len(), 1);
        }
        prop_assert_eq!(reservations(&dir), files);
        let got = open(tmp.path(), IndexMode::Journal).allocate("new", "eth0", &[]).unwrap();
        prop_assert!(!truth.contains_key(&got[0].address.addr()));
    }
}

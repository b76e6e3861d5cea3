//! Random allocate / release / GC sequences, through two store handles on one directory (as two
//! processes would), checked against a model: no address twice, nothing leaked, nothing lost.
//! Between steps, handles are reopened with any index mode, another plugin changes the directory
//! behind the index's back (creates and deletes reservation files directly, as the reference
//! does), and the persisted index gets corrupted; after every step a fresh handle (a new process)
//! must see the model too.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use multus_ipam::{Attachment, Holder, IndexMode, Network, RangeSpec};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        h: usize,
        c: u8,
        i: u8,
    },
    AllocRequested {
        h: usize,
        c: u8,
        i: u8,
        host: u8,
    },
    Release {
        h: usize,
        c: u8,
        i: u8,
    },
    Gc {
        h: usize,
        keep_mask: u16,
    },
    Reopen {
        h: usize,
        mode: u8,
    },
    /// Another plugin reserves `host` for (c, i) by creating the file itself.
    Foreign {
        c: u8,
        i: u8,
        host: u8,
    },
    /// Another plugin releases what (c, i) holds by deleting the file itself.
    ForeignRelease {
        c: u8,
        i: u8,
    },
    /// Another plugin re-creates what (c, i) holds for (c2, i2), keeping the inode (as a file
    /// system that reuses inode numbers would), then changes the directory.
    ForeignMove {
        c: u8,
        i: u8,
        c2: u8,
        i2: u8,
    },
    /// A byte of the persisted index is flipped.
    CorruptIndex {
        at: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let h = 0..2usize;
    prop_oneof![
        5 => (h.clone(), 0..8u8, 0..2u8).prop_map(|(h, c, i)| Op::Alloc { h, c, i }),
        1 => (h.clone(), 0..8u8, 0..2u8, 0..16u8).prop_map(|(h, c, i, host)| Op::AllocRequested { h, c, i, host }),
        3 => (h.clone(), 0..8u8, 0..2u8).prop_map(|(h, c, i)| Op::Release { h, c, i }),
        1 => (h.clone(), any::<u16>()).prop_map(|(h, keep_mask)| Op::Gc { h, keep_mask }),
        1 => (h, 0..3u8).prop_map(|(h, mode)| Op::Reopen { h, mode }),
        2 => (0..8u8, 0..2u8, 2..15u8).prop_map(|(c, i, host)| Op::Foreign { c, i, host }),
        1 => (0..8u8, 0..2u8).prop_map(|(c, i)| Op::ForeignRelease { c, i }),
        1 => (0..8u8, 0..2u8, 0..8u8, 0..2u8).prop_map(|(c, i, c2, i2)| Op::ForeignMove { c, i, c2, i2 }),
        1 => any::<u32>().prop_map(|at| Op::CorruptIndex { at }),
    ]
}

const SUBNET: &str = "10.90.0.0/28"; // .1 gateway, .2 - .14 allocatable: 13 addresses

fn open(dir: &std::path::Path) -> Network {
    open_mode(dir, IndexMode::Journal)
}

fn open_mode(dir: &std::path::Path, mode: IndexMode) -> Network {
    let mut n = Network::from_specs(
        dir,
        "prop",
        &[vec![RangeSpec::subnet(SUBNET.parse().unwrap())]],
    )
    .unwrap();
    n.set_index_mode(mode);
    n
}

fn key(c: u8, i: u8) -> (String, String) {
    (format!("c{c}"), format!("eth{i}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
    #[test]
    fn random_sequences_keep_store_and_model_equal(ops in proptest::collection::vec(op(), 1..60)) {
        let tmp = tempfile::tempdir().unwrap();
        let mut nets = [open(tmp.path()), open(tmp.path())];
        let mut model: BTreeMap<(String, String), IpAddr> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Alloc { h, c, i } => {
                    let (cid, ifn) = key(c, i);
                    let r = nets[h].allocate(&cid, &ifn, &[]);
                    if model.contains_key(&(cid.clone(), ifn.clone())) {
                        prop_assert_eq!(common::code_of(&r.unwrap_err()), 109);
                    } else if model.len() == 13 {
                        prop_assert_eq!(common::code_of(&r.unwrap_err()), 105);
                    } else {
                        let ip = r.unwrap()[0].address.addr();
                        prop_assert!(!model.values().any(|v| *v == ip), "{} handed out twice", ip);
                        model.insert((cid, ifn), ip);
                    }
                }
                Op::AllocRequested { h, c, i, host } => {
                    let (cid, ifn) = key(c, i);
                    let ip: IpAddr = format!("10.90.0.{host}").parse().unwrap();
                    let r = nets[h].allocate(&cid, &ifn, &[ip]);
                    let code = r.as_ref().err().map(common::code_of);
                    if host == 0 || host == 15 {
                        prop_assert_eq!(code, Some(108));
                    } else if host == 1 {
                        prop_assert_eq!(code, Some(107));
                    } else if model.values().any(|v| *v == ip) {
                        prop_assert_eq!(code, Some(106));
                    } else {
                        // A requested address skips the duplicate check, as in the reference.
                        prop_assert_eq!(code, None);
                        if let Some(old) = model.insert((cid.clone(), ifn.clone()), ip) {
                            // The attachment now holds two addresses; keep both in the model by
                            // releasing the older through the store, as a runtime's DEL would
                            // release both anyway.
                            let rel = nets[h].release(&cid, &ifn).unwrap();
                            prop_assert_eq!(rel.len(), 2);
                            prop_assert!(rel.contains(&old) && rel.contains(&ip));
                            model.remove(&(cid, ifn));
                        }
                    }
                }
                Op::Release { h, c, i } => {
                    let (cid, ifn) = key(c, i);
                    let rel = nets[h].release(&cid, &ifn).unwrap();
                    match model.remove(&(cid, ifn)) {
                        Some(ip) => prop_assert_eq!(rel, vec![ip]),
                        None => prop_assert!(rel.is_empty()),
                    }
                }
                Op::Gc { h, keep_mask } => {
                    let valid: Vec<Attachment> = (0..16u8)
                        .filter(|b| keep_mask & (1 << b) != 0)
                        .map(|b| { let (c, i) = key(b / 2, b % 2); Attachment::new(c, i) })
                        .collect();
                    let released = nets[h].gc(&valid).unwrap();
                    let before = model.len();
                    model.retain(|(c, i), _| valid.iter().any(|a| &a.container_id == c && &a.ifname == i));
                    prop_assert_eq!(released.len(), before - model.len());
                }
                Op::Reopen { h, mode } => {
                    let mode = [IndexMode::Journal, IndexMode::Rewrite, IndexMode::Off][usize::from(mode)];
                    nets[h] = open_mode(tmp.path(), mode);
                }
                Op::Foreign { c, i, host } => {
                    let (cid, ifn) = key(c, i);
                    let ip: IpAddr = format!("10.90.0.{host}").parse().unwrap();
                    if !model.contains_key(&(cid.clone(), ifn.clone())) && !model.values().any(|v| *v == ip) {
                        let path = tmp.path().join("prop").join(ip.to_string());
                        std::fs::write(path, format!("{cid}\r\n{ifn}")).unwrap();
                        model.insert((cid, ifn), ip);
                    }
                }
                Op::ForeignRelease { c, i } => {
                    if let Some(ip) = model.remove(&key(c, i)) {
                        std::fs::remove_file(tmp.path().join("prop").join(ip.to_string())).unwrap();
                    }
                }
                Op::ForeignMove { c, i, c2, i2 } => {
                    let (to_c, to_i) = key(c2, i2);
                    if !model.contains_key(&(to_c.clone(), to_i.clone())) {
                        if let Some(ip) = model.remove(&key(c, i)) {
                            let dir = tmp.path().join("prop");
                            let mut f = std::fs::OpenOptions::new()
                                .write(true)
                                .truncate(true)
                                .open(dir.join(ip.to_string()))
                                .unwrap();
                            std::io::Write::write_all(&mut f, format!("{to_c}\r\n{to_i}").as_bytes()).unwrap();
                            std::fs::write(dir.join("touched"), b"").unwrap();
                            std::fs::remove_file(dir.join("touched")).unwrap();
                            model.insert((to_c, to_i), ip);
                        }
                    }
                }
                Op::CorruptIndex { at } => {
                    let path = tmp.path().join(".multus-index/prop.idx");
                    if let Ok(mut b) = std::fs::read(&path) {
                        if !b.is_empty() {
                            let n = b.len();
                            b[at as usize % n] ^= 0x20;
                            std::fs::write(&path, b).unwrap();
                        }
                    }
                }
            }
            // The store (seen by either handle, by a fresh one, and on disk) equals the model.
            let mut fresh = open(tmp.path());
            for (k, ip) in &model {
                prop_assert_eq!(fresh.check(&k.0, &k.1).unwrap(), vec![*ip]);
            }
            for n in nets.iter_mut().chain(std::iter::once(&mut fresh)) {
                let listed: BTreeMap<(String, String), IpAddr> = n
                    .list()
                    .unwrap()
                    .into_iter()
                    .map(|r| match r.holder {
                        Holder::Attachment { container_id, ifname } => ((container_id, ifname), r.ip),
                        h => panic!("unexpected holder {h:?}"),
                    })
                    .collect();
                prop_assert_eq!(&listed, &model);
            }
            let files = common::reservations(&tmp.path().join("prop"));
            prop_assert_eq!(files.len(), model.len());
        }
    }
}

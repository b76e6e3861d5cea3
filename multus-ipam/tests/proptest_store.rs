//! Random allocate / release / GC sequences, through two store handles on one directory (as two
//! processes would), checked against a model: no address twice, nothing leaked, nothing lost.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use multus_ipam::{Attachment, Holder, Network, RangeSpec};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { h: usize, c: u8, i: u8 },
    AllocRequested { h: usize, c: u8, i: u8, host: u8 },
    Release { h: usize, c: u8, i: u8 },
    Gc { h: usize, keep_mask: u16 },
    Reopen { h: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let h = 0..2usize;
    prop_oneof![
        5 => (h.clone(), 0..8u8, 0..2u8).prop_map(|(h, c, i)| Op::Alloc { h, c, i }),
        1 => (h.clone(), 0..8u8, 0..2u8, 0..16u8).prop_map(|(h, c, i, host)| Op::AllocRequested { h, c, i, host }),
        3 => (h.clone(), 0..8u8, 0..2u8).prop_map(|(h, c, i)| Op::Release { h, c, i }),
        1 => (h.clone(), any::<u16>()).prop_map(|(h, keep_mask)| Op::Gc { h, keep_mask }),
        1 => h.prop_map(|h| Op::Reopen { h }),
    ]
}

const SUBNET: &str = "10.90.0.0/28"; // .1 gateway, .2 - .14 allocatable: 13 addresses

fn open(dir: &std::path::Path) -> Network {
    Network::from_specs(
        dir,
        "prop",
        &[vec![RangeSpec::subnet(SUBNET.parse().unwrap())]],
    )
    .unwrap()
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
                        prop_assert_eq!(r.unwrap_err().cni_code(), 104);
                    } else if model.len() == 13 {
                        prop_assert_eq!(r.unwrap_err().cni_code(), 100);
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
                    let code = r.as_ref().err().map(|e| e.cni_code());
                    if host == 0 || host == 15 {
                        prop_assert_eq!(code, Some(103));
                    } else if host == 1 {
                        prop_assert_eq!(code, Some(102));
                    } else if model.values().any(|v| *v == ip) {
                        prop_assert_eq!(code, Some(101));
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
                Op::Reopen { h } => nets[h] = open(tmp.path()),
            }
            // The store (seen by either handle, and on disk) equals the model.
            for n in nets.iter_mut() {
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

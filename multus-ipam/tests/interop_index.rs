//! The persisted index against the reference plugin (Debian's containernetworking-plugins 1.1.1)
//! changing the directory between two of our runs: the change is seen, only what changed is
//! read, and a same-name file re-created for another container is never released or reported as
//! the old holder's.

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use multus_ipam::{config, Holder, IndexMode, IndexStats, Network};

const NET: &str = "ri";

fn conf_of(data: &Path) -> String {
    conf(NET, data, r#","subnet":"10.88.0.0/24""#)
}

fn open(data: &Path) -> Network {
    let cfg = config::parse(conf_of(data).as_bytes(), "").unwrap();
    Network::from_config(&cfg).unwrap()
}

fn full_scan(data: &Path) -> Vec<(IpAddr, Holder)> {
    let mut n = open(data);
    n.set_index_mode(IndexMode::Off);
    n.list()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, r.holder))
        .collect()
}

fn listed(n: &mut Network) -> Vec<(IpAddr, Holder)> {
    n.list()
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, r.holder))
        .collect()
}

fn ours_add(data: &Path, cid: &str) -> (IpAddr, IndexStats) {
    let mut n = open(data);
    let ips = n.allocate(cid, "eth0", &[]).unwrap();
    (ips[0].address.addr(), n.index_stats())
}

fn theirs(cmd: &str, data: &Path, cid: &str, args: &str) -> Option<IpAddr> {
    let (ok, v) = reference(cmd, cid, "eth0", &conf_of(data), args);
    assert!(ok, "reference {cmd} {cid}: {v}");
    (cmd == "ADD").then(|| result_ips(&v)[0].parse().unwrap())
}

#[test]
fn reference_changes_between_two_runs_are_seen_and_only_what_changed_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let mut ours = BTreeMap::new();
    for i in 0..20 {
        let (ip, s) = ours_add(data, &format!("a{i}"));
        ours.insert(format!("a{i}"), ip);
        if i > 0 {
            assert_eq!((s.loaded, s.scans), (1, 0), "{s:?}");
        }
    }
    // The reference adds two and deletes one of ours.
    let r1 = theirs("ADD", data, "r1", "").unwrap();
    let r2 = theirs("ADD", data, "r2", "").unwrap();
    theirs("DEL", data, "a3", "");
    let mut n = open(data);
    assert_eq!(n.check("r1", "eth0").unwrap(), vec![r1]);
    let s = n.index_stats();
    assert_eq!((s.loaded, s.scans, s.incremental_scans), (0, 1, 1), "{s:?}");
    // Only the two new files were read; the other 19 were only lstat'ed.
    assert_eq!((s.files_read, s.files_statted), (2, 19), "{s:?}");
    assert_eq!(n.check("r2", "eth0").unwrap(), vec![r2]);
    assert_eq!(code_of(&n.check("a3", "eth0").unwrap_err()), 3);
    assert_eq!(listed(&mut n), full_scan(data));
    // The next run trusts the rebuilt index again, and continues the reference's order.
    let (next, s) = ours_add(data, "a20");
    assert_eq!((s.loaded, s.scans), (1, 0), "{s:?}");
    assert_eq!(
        next,
        IpAddr::from([10, 88, 0, 24]),
        "after .21 (a19) and .22 .23 (r1 r2)"
    );
    // Deletions of ours by the reference and of the reference's by us, alternating, with a
    // fresh handle every time: always what a full scan says.
    for (i, cid) in ["a0", "r1", "a5", "r2", "a7"].iter().enumerate() {
        if i % 2 == 0 {
            theirs("DEL", data, cid, "");
        } else {
            assert_eq!(open(data).release(cid, "eth0").unwrap().len(), 1);
        }
        let mut n = open(data);
        assert_eq!(listed(&mut n), full_scan(data), "after DEL {cid}");
        assert_eq!(code_of(&n.check(cid, "eth0").unwrap_err()), 3);
    }
    assert!(lock_is_free(&data.join(NET)));
}

#[test]
fn same_name_recreated_by_the_reference_for_another_container_is_not_ours_to_release() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    for i in 0..5 {
        ours_add(data, &format!("x{i}"));
    }
    let (x, _) = ours_add(data, "a");
    let path = data.join(NET).join(x.to_string());
    let ino_a = std::fs::metadata(&path).unwrap().ino();
    // Between two of our runs the reference releases it and hands the same address to b (on
    // ext4 the new file usually gets the same inode number back).
    theirs("DEL", data, "a", "");
    assert_eq!(theirs("ADD", data, "b", &format!("IP={x}")), Some(x));
    let reused = std::fs::metadata(&path).unwrap().ino() == ino_a;
    eprintln!("inode reused by the re-created file: {reused}");
    // Our DEL of a releases nothing; b holds it, for us too.
    let mut n = open(data);
    assert!(n.release("a", "eth0").unwrap().is_empty());
    assert_eq!(std::fs::read(&path).unwrap(), b"b\r\neth0");
    assert_eq!(open(data).check("b", "eth0").unwrap(), vec![x]);
    // ADD a again is no duplicate (a holds nothing) and gets another address.
    let (again, _) = ours_add(data, "a");
    assert_ne!(again, x);
    assert_eq!(open(data).release("b", "eth0").unwrap(), vec![x]);
    assert_eq!(listed(&mut open(data)), full_scan(data));
}

#[test]
fn same_inode_new_holder_is_read_before_release_and_seen_after_a_directory_change() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    let (x, _) = ours_add(data, "a");
    let (y, _) = ours_add(data, "c");
    // 1. The directory changes (the reference adds one) and x now holds b, same inode, same
    //    size: the scan must not trust name + inode, it compares the file's stamp.
    rewrite_in_place(&data.join(NET).join(x.to_string()), "b\r\neth0");
    theirs("ADD", data, "r", "");
    let mut n = open(data);
    assert_eq!(n.check("b", "eth0").unwrap(), vec![x]);
    assert_eq!(code_of(&n.check("a", "eth0").unwrap_err()), 3);
    let s = n.index_stats();
    assert_eq!(
        (s.scans, s.files_read),
        (1, 2),
        "x and the reference's new file: {s:?}"
    );
    // 2. The directory does not change (a rewrite in place leaves its stamp alone): the index
    //    is trusted, and still c's DEL reads y before removing it, and finds d.
    rewrite_in_place(&data.join(NET).join(y.to_string()), "d\r\neth0");
    let mut n = open(data);
    assert!(n.release("c", "eth0").unwrap().is_empty());
    assert!(data.join(NET).join(y.to_string()).exists());
    assert_eq!(n.index_stats().scans, 0);
    // Having read it, the index now knows y's holder.
    assert_eq!(open(data).check("d", "eth0").unwrap(), vec![y]);
    assert_eq!(open(data).release("d", "eth0").unwrap(), vec![y]);
    assert_eq!(listed(&mut open(data)), full_scan(data));
}

#[test]
fn byte_for_byte_store_with_the_index_in_use() {
    // The same operations through ours (fresh handles, index in use) and the reference give
    // the same network directory; the index lives outside it.
    let ours_dir = tempfile::tempdir().unwrap();
    let theirs_dir = tempfile::tempdir().unwrap();
    for i in 0..12 {
        let cid = format!("k{i}");
        let (ip, _) = ours_add(ours_dir.path(), &cid);
        assert_eq!(theirs("ADD", theirs_dir.path(), &cid, ""), Some(ip));
        if i % 4 == 3 {
            let gone = format!("k{}", i - 2);
            open(ours_dir.path()).release(&gone, "eth0").unwrap();
            theirs("DEL", theirs_dir.path(), &gone, "");
        }
    }
    assert_eq!(
        snapshot(&ours_dir.path().join(NET)),
        snapshot(&theirs_dir.path().join(NET))
    );
    assert!(ours_dir
        .path()
        .join(".multus-index")
        .join(format!("{NET}.idx"))
        .exists());
    let top: Vec<String> = std::fs::read_dir(ours_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top.len(), 2, "{top:?}");
}

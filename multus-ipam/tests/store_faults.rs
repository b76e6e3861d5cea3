//! What others leave in the store, against the reference plugin (Debian's containernetworking-plugins
//! 1.1.1): an empty reservation file left by a writer killed between creating and writing it (an
//! orphan, which no DEL matches), and a reservation file rewritten in place (which leaves the
//! directory's stamp alone, so the index does not see it).

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Barrier};

use common::*;
use multus_ipam::{config, network, Attachment, Holder, Network};

const NET: &str = "faults";

fn conf_of(data: &Path, ipam: &str) -> String {
    conf(NET, data, ipam)
}

fn open(c: &str) -> Network {
    Network::from_config(&config::parse(c.as_bytes(), "").unwrap()).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn theirs_add(c: &str, cid: &str) -> Option<IpAddr> {
    let (ok, v) = reference("ADD", cid, "eth0", c, "");
    ok.then(|| result_ips(&v)[0].parse().unwrap())
}

const SLASH29: &str = r#","subnet":"10.60.0.0/29""#; // .1 gateway, .2 - .6 allocatable

#[test]
fn an_orphan_left_by_the_killed_reference_is_reclaimed_by_our_allocator() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf_of(tmp.path(), SLASH29);
    assert_eq!(theirs_add(&c, "r1"), Some(ip("10.60.0.2")));
    assert_eq!(theirs_add(&c, "r2"), Some(ip("10.60.0.3")));
    // Killed between creating .4 and writing it.
    let status = reference_add_killed_before_write("orphan-killed-7", "eth0", &c);
    assert!(!status.success(), "{status:?}");
    let orphan = tmp.path().join(NET).join("10.60.0.4");
    assert_eq!(std::fs::read(&orphan).unwrap(), b"", "the orphan");
    // The reference can never release it (its DEL matches no empty file) and walks past it.
    assert!(reference("DEL", "orphan-killed-7", "eth0", &c, "").0);
    assert!(orphan.exists());
    assert_eq!(theirs_add(&c, "r3"), Some(ip("10.60.0.5")));
    assert_eq!(theirs_add(&c, "r4"), Some(ip("10.60.0.6")));
    assert_eq!(
        theirs_add(&c, "r5"),
        None,
        "the reference finds the range full"
    );
    // Our allocator's walk (after .6, from .2) reaches it: an empty file seen under the lock is
    // a dead writer's, so it is taken.
    let cfg = config::parse(c.as_bytes(), "").unwrap();
    let r = network::add(&cfg, "o1", "eth0").unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.60.0.4/29");
    assert_eq!(std::fs::read(&orphan).unwrap(), b"o1\r\neth0");
    assert_eq!(code_of(&network::add(&cfg, "o2", "eth0").unwrap_err()), 105);
    // It is an ordinary reservation of ours now: the reference's DEL releases it.
    assert!(reference("DEL", "o1", "eth0", &c, "").0);
    assert!(!orphan.exists());
    assert!(lock_is_free(&tmp.path().join(NET)));
}

#[test]
fn an_orphan_known_to_the_persisted_index_is_free_for_status_and_a_request_and_gc_removes_one() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf_of(tmp.path(), SLASH29);
    for i in 0..4 {
        open(&c).allocate(&format!("a{i}"), "eth0", &[]).unwrap();
    }
    let status = reference_add_killed_before_write("orphan-killed-8", "eth0", &c);
    assert!(!status.success(), "{status:?}");
    let orphan = tmp.path().join(NET).join("10.60.0.6");
    assert_eq!(std::fs::read(&orphan).unwrap(), b"");
    // A scan puts the orphan into the persisted index (an entry of size 0 without a holder).
    let listed = open(&c).list().unwrap();
    assert_eq!(listed.last().map(|r| &r.holder), Some(&Holder::Unknown));
    // STATUS counts it free: an ADD would get it.
    open(&c).status().unwrap();
    // A request for it, by a fresh handle that trusts the index, takes it.
    let mut n = open(&c);
    n.allocate("req", "eth0", &[ip("10.60.0.6")]).unwrap();
    let s = n.index_stats();
    assert_eq!((s.loaded, s.scans), (1, 0), "{s:?}");
    assert_eq!(std::fs::read(&orphan).unwrap(), b"req\r\neth0");
    // GC removes orphans (and whatever else no valid attachment holds).
    open(&c).release("a3", "eth0").unwrap();
    let status = reference_add_killed_before_write("orphan-killed-9", "eth0", &c);
    assert!(!status.success(), "{status:?}");
    let valid: Vec<Attachment> = ["a0", "a1", "a2", "req"]
        .iter()
        .map(|cid| Attachment::new(*cid, "eth0"))
        .collect();
    let released = open(&c).gc(&valid).unwrap();
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0].holder, Holder::Unknown);
    assert_eq!(open(&c).list().unwrap().len(), 4);
}

/// Our allocator reclaims orphans while reference ADDs run at the same time: an empty file it takes
/// is never one a reference process is about to write (the reference writes it under the lock it
/// created it under), so every address the reference reports holds the reference's attachment.
#[test]
fn reclaiming_orphans_beside_a_running_reference_never_takes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    // .2 - .30: 29 addresses, 20 of them orphans, 9 free: our 16 ADDs reclaim at least 7 orphans,
    // while the reference's (which never reclaim) get what is free, or fail when nothing is.
    let c = conf_of(tmp.path(), r#","subnet":"10.61.0.0/27""#);
    let dir = tmp.path().join(NET);
    open(&c).list().unwrap();
    let orphans: Vec<IpAddr> = (2..31u8)
        .filter(|h| h % 3 != 1)
        .map(|h| IpAddr::from([10, 61, 0, h]))
        .collect();
    assert_eq!(orphans.len(), 20);
    for ip in &orphans {
        std::fs::write(dir.join(ip.to_string()), b"").unwrap();
    }
    let start = Arc::new(Barrier::new(2));
    let (c2, b2) = (c.clone(), start.clone());
    let theirs = std::thread::spawn(move || {
        b2.wait();
        (0..8)
            .filter_map(|i| theirs_add(&c2, &format!("r{i}")).map(|ip| (format!("r{i}"), ip)))
            .collect::<Vec<_>>()
    });
    start.wait();
    let mut ours = Vec::new();
    for i in 0..16 {
        let cid = format!("o{i}");
        let ips = open(&c).allocate(&cid, "eth0", &[]).unwrap();
        ours.push((cid, ips[0].address.addr()));
    }
    let reclaimed = ours.iter().filter(|(_, ip)| orphans.contains(ip)).count();
    assert!(reclaimed >= 7, "{ours:?}");
    let mut all = theirs.join().unwrap();
    assert!(all.iter().all(|(_, ip)| !orphans.contains(ip)), "{all:?}");
    let n = all.len() + ours.len();
    all.extend(ours);
    for (cid, ip) in &all {
        let held = std::fs::read(dir.join(ip.to_string())).unwrap();
        assert_eq!(held, format!("{cid}\r\neth0").as_bytes(), "{ip}");
    }
    let mut ips: Vec<IpAddr> = all.iter().map(|(_, ip)| *ip).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), n);
    assert!(lock_is_free(&dir));
}

#[test]
fn a_file_rewritten_in_place_is_released_by_its_new_holders_del_as_by_the_reference() {
    // The reference, for comparison: its DEL reads every file.
    let theirs_dir = tempfile::tempdir().unwrap();
    let tc = conf_of(theirs_dir.path(), SLASH29);
    let t = theirs_add(&tc, "a").unwrap();
    let t_path = theirs_dir.path().join(NET).join(t.to_string());
    rewrite_in_place(&t_path, "b\r\neth0");
    assert!(reference("DEL", "b", "eth0", &tc, "").0);
    assert!(!t_path.exists(), "the reference releases it");

    let tmp = tempfile::tempdir().unwrap();
    let c = conf_of(tmp.path(), SLASH29);
    let x = open(&c).allocate("a", "eth0", &[]).unwrap()[0]
        .address
        .addr();
    let path = tmp.path().join(NET).join(x.to_string());
    rewrite_in_place(&path, "b\r\neth0");
    // CHECK and DEL of b find it: the index's answer (nothing) was short of the one address per
    // range set an attachment holds, so every file's stamp was checked.
    let mut n = open(&c);
    assert_eq!(n.check("b", "eth0").unwrap(), vec![x]);
    assert_eq!(n.index_stats().verifications, 1);
    let mut n = open(&c);
    assert_eq!(n.release("b", "eth0").unwrap(), vec![x]);
    assert!(!path.exists());
    // a holds nothing now, whichever way it is asked.
    assert_eq!(code_of(&open(&c).check("a", "eth0").unwrap_err()), 3);
    // A DEL that finds its address by the index checks nothing else.
    let y = open(&c).allocate("d", "eth0", &[]).unwrap()[0]
        .address
        .addr();
    let mut n = open(&c);
    assert_eq!(n.release("d", "eth0").unwrap(), vec![y]);
    let s = n.index_stats();
    assert_eq!(
        (s.loaded, s.verifications, s.files_statted),
        (1, 0, 0),
        "{s:?}"
    );
}

#[test]
fn a_del_that_finds_fewer_addresses_than_range_sets_finds_a_rewritten_one() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf_of(
        tmp.path(),
        r#","ranges":[[{"subnet":"10.62.0.0/24"}],[{"subnet":"2001:db8:62::/64"}]]"#,
    );
    let a = open(&c).allocate("a", "eth0", &[]).unwrap();
    let b = open(&c).allocate("b", "eth0", &[]).unwrap();
    let dir = tmp.path().join(NET);
    // a's IPv6 file now names z, and b's IPv6 file names a: by its files, a holds its IPv4 address
    // and b's IPv6 one.
    rewrite_in_place(&dir.join(a[1].address.addr().to_string()), "z\r\neth0");
    rewrite_in_place(&dir.join(b[1].address.addr().to_string()), "a\r\neth0");
    let mut released = open(&c).release("a", "eth0").unwrap();
    released.sort();
    assert_eq!(released, vec![a[0].address.addr(), b[1].address.addr()]);
    assert_eq!(
        open(&c).check("z", "eth0").unwrap(),
        vec![a[1].address.addr()]
    );
    assert_eq!(
        open(&c).check("b", "eth0").unwrap(),
        vec![b[0].address.addr()]
    );
}

#[test]
fn a_del_after_a_foreign_change_looks_at_every_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf_of(tmp.path(), SLASH29);
    open(&c).allocate("a", "eth0", &[]).unwrap();
    open(&c).allocate("b", "eth0", &[]).unwrap();
    theirs_add(&c, "r").unwrap();
    // The directory changed: the scan already looked at every file; the DEL that finds nothing
    // does not look again.
    let mut n = open(&c);
    assert!(n.release("zz", "eth0").unwrap().is_empty());
    let s = n.index_stats();
    assert_eq!((s.scans, s.verifications), (1, 0), "{s:?}");
    assert_eq!((s.files_read, s.files_statted), (1, 2), "{s:?}");
    // With the index valid again, the same DEL verifies, and finds nothing changed.
    let mut n = open(&c);
    assert!(n.release("zz", "eth0").unwrap().is_empty());
    let s = n.index_stats();
    assert_eq!((s.loaded, s.scans, s.verifications), (1, 0, 1), "{s:?}");
    assert_eq!((s.files_read, s.files_statted), (0, 3), "{s:?}");
}

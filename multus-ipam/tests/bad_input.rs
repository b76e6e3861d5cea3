//! Bad input: each case gets a precise CNI error code and leaves the store unchanged.

mod common;

use std::path::Path;

use common::*;
use multus_ipam::{config, network, Attachment, Network, RangeSpec};

/// A store with a few reservations made by both plugins.
fn populated(tmp: &Path, extra: &str) -> String {
    let c = conf("bad", tmp, extra);
    let cfg = config::parse(c.as_bytes(), "").unwrap();
    network::add(&cfg, "a1", "eth0").unwrap();
    assert!(reference("ADD", "a2", "eth0", &c, "").0);
    network::add(&cfg, "a3", "net1").unwrap();
    c
}

/// Runs `f`, asserts its error code and that the network directory did not change.
fn unchanged(dir: &Path, code: u32, f: impl FnOnce() -> multus_ipam::Result<()>) -> String {
    let before = snapshot(dir);
    let e = f().expect_err("expected an error");
    assert_eq!(code_of(&e), code, "{e}");
    assert_eq!(
        snapshot(dir),
        before,
        "store changed by a failed operation: {e}"
    );
    e.to_string()
}

fn add(c: &str, args: &str, cid: &str, ifname: &str) -> multus_ipam::Result<()> {
    let cfg = config::parse(c.as_bytes(), args)?;
    network::add(&cfg, cid, ifname).map(|_| ())
}

#[test]
fn config_errors_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = r#","subnet":"10.80.0.0/24""#;
    populated(tmp.path(), extra);
    let dir = tmp.path().join("bad");
    let cases: &[(&str, u32, &str)] = &[
        (r#","subnet":"10.80.0.5/24""#, 7, "host bits set"),
        (r#","subnet":"10.80.0.0/31""#, 7, "too small"),
        (
            r#","subnet":"10.80.0.0/24","gateway":"10.81.0.1""#,
            7,
            "gateway 10.81.0.1 not in network",
        ),
        (
            r#","subnet":"10.80.0.0/24","rangeStart":"10.80.0.50","rangeEnd":"10.80.0.40""#,
            7,
            "before start",
        ),
        (
            r#","ranges":[[{"subnet":"10.80.0.0/24"}],[{"subnet":"10.80.0.0/25"}]]"#,
            7,
            "range set 0 overlaps with 1",
        ),
        (
            r#","ranges":[[{"subnet":"10.80.0.0/24"},{"subnet":"10.80.0.128/25"}]]"#,
            7,
            "overlap",
        ),
        (
            r#","ranges":[[{"subnet":"10.80.0.0/24"},{"subnet":"2001:db8::/64"}]]"#,
            7,
            "mixed address families",
        ),
        (r#","ranges":[[]]"#, 7, "empty range set"),
        (r#","subnet":"10.80.0.0""#, 6, "invalid CIDR"),
        (r#","subnet":17"#, 6, "cannot unmarshal"),
    ];
    for (extra, code, msg) in cases {
        let c = conf("bad", tmp.path(), extra);
        let m = unchanged(&dir, *code, || add(&c, "", "n1", "eth0"));
        assert!(m.contains(msg), "{extra}: {m}");
    }
}

#[test]
fn requested_address_errors_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // Two range sets so that a failure in the second must roll back the first.
    let extra = r#","ranges":[[{"subnet":"10.81.0.0/24"}],[{"subnet":"2001:db8:81::/64"}]]"#;
    let c = populated(tmp.path(), extra);
    let dir = tmp.path().join("bad");
    let taken4 = "10.81.0.2"; // a1's
    let taken6 = "2001:db8:81::3"; // a2's (the reference's)
    assert!(dir.join(taken6).exists());
    let m = unchanged(&dir, 108, || add(&c, "IP=10.99.0.1", "n1", "eth0"));
    assert_eq!(m, "failed to allocate all requested IPs: 10.99.0.1");
    let m = unchanged(&dir, 106, || add(&c, &format!("IP={taken4}"), "n1", "eth0"));
    assert!(m.contains("is not available in range set"), "{m}");
    // The IPv4 one is free and gets reserved first, then the IPv6 one is taken: rolled back.
    let both = format!(
        r#"{{"cniVersion":"1.0.0","name":"bad","args":{{"cni":{{"ips":["10.81.0.200","{taken6}"]}}}},"ipam":{{"type":"host-local","dataDir":"{}"{extra}}}}}"#,
        tmp.path().display()
    );
    let m = unchanged(&dir, 106, || add(&both, "", "n1", "eth0"));
    assert!(m.starts_with("failed to allocate for range 1"), "{m}");
    let m = unchanged(&dir, 107, || add(&c, "IP=10.81.0.1", "n1", "eth0"));
    assert_eq!(
        m,
        "failed to allocate for range 0: requested ip 10.81.0.1 is subnet's gateway"
    );
    // Two requested in one set: one cannot be fulfilled.
    let m = unchanged(&dir, 108, || {
        let cfg = config::parse(c.as_bytes(), "")?;
        let mut net = Network::from_config(&cfg)?;
        net.allocate(
            "n1",
            "eth0",
            &["10.81.0.50".parse().unwrap(), "10.81.0.51".parse().unwrap()],
        )
        .map(|_| ())
    });
    assert_eq!(m, "failed to allocate all requested IPs: 10.81.0.51");
    // Duplicate allocation for one attachment.
    let m = unchanged(&dir, 109, || add(&c, "", "a1", "eth0"));
    assert!(m.contains("duplicate allocation is not allowed"), "{m}");
    // CNI_ARGS with an unknown key.
    unchanged(&dir, 4, || add(&c, "IP=10.81.0.9;POD=x", "n1", "eth0"));
}

#[test]
fn exhausted_second_set_rolls_back_the_first_and_status_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    let extra = r#","ranges":[[{"subnet":"10.82.0.0/24"}],[{"subnet":"10.83.0.0/30"}]]"#;
    let c = populated(tmp.path(), &extra.replace("10.83.0.0/30", "10.83.0.0/29"));
    // Fill the small set (/29 -> .2 .. .6 = 5 addresses; 3 used by populated()).
    let c29 = conf(
        "bad",
        tmp.path(),
        &extra.replace("10.83.0.0/30", "10.83.0.0/29"),
    );
    assert_eq!(c29, c);
    add(&c, "", "f1", "eth0").unwrap();
    add(&c, "", "f2", "eth0").unwrap();
    let dir = tmp.path().join("bad");
    let m = unchanged(&dir, 105, || add(&c, "", "f3", "eth0"));
    assert_eq!(
        m,
        "failed to allocate for range 1: no IP addresses available in range set: 10.83.0.1-10.83.0.6"
    );
    let cfg = config::parse(c.as_bytes(), "").unwrap();
    let e = network::status(&cfg).unwrap_err();
    assert_eq!(code_of(&e), 50);
    assert!(e.to_string().contains("range set 1"), "{e}");
    // Free one: STATUS is fine again, and ADD works.
    network::del(&cfg, "f1", "eth0").unwrap();
    network::status(&cfg).unwrap();
    add(&c, "", "f3", "eth0").unwrap();
}

#[test]
fn unwritable_data_dir_is_an_io_error_and_status_50() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    // Tests run as root: permissions do not stop root, so use paths no one can create.
    for data_dir in [
        file.join("sub"),
        Path::new("/proc/self/no-such-dir").to_path_buf(),
    ] {
        let c = conf("net", &data_dir, r#","subnet":"10.84.0.0/24""#);
        let e = add(&c, "", "c1", "eth0").unwrap_err();
        assert_eq!(code_of(&e), 5, "{e}");
        let cfg = config::parse(c.as_bytes(), "").unwrap();
        assert_eq!(code_of(&network::status(&cfg).unwrap_err()), 50);
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

#[test]
fn escaping_names_are_refused_before_touching_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for name in ["", ".", "..", "../escape", "a/b", "/abs", "nul\u{0}x"] {
        let r = Network::from_specs(
            &data,
            name,
            &[vec![RangeSpec::subnet("10.85.0.0/24".parse().unwrap())]],
        );
        assert_eq!(code_of(&r.unwrap_err()), 7, "{name:?}");
    }
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    let c = populated(&data, r#","subnet":"10.85.0.0/24""#);
    let dir = data.join("bad");
    for cid in [
        "",
        "../../etc/passwd",
        "a/b",
        "x\0y",
        "-x",
        "a b",
        "c\r\neth0",
    ] {
        unchanged(&dir, 4, || add(&c, "", cid, "eth0"));
        unchanged(&dir, 4, || {
            let cfg = config::parse(c.as_bytes(), "")?;
            network::del(&cfg, cid, "eth0").map(|_| ())
        });
    }
    for ifname in ["", "..", "a/b", "eth0\r\nx", "averyveryverylongname"] {
        unchanged(&dir, 4, || add(&c, "", "ok", ifname));
    }
}

#[test]
fn garbage_in_store_files_is_never_a_duplicate_and_gc_reclaims_it() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf("bad", tmp.path(), r#","subnet":"10.86.0.0/29""#);
    let dir = tmp.path().join("bad");
    let cfg = config::parse(c.as_bytes(), "").unwrap();
    network::add(&cfg, "g0", "eth0").unwrap(); // .2
                                               // Garbage: binary content, a directory named like an address, a torn last_reserved_ip; and
                                               // an empty file, an orphan (a writer killed between create and write: see multus_ipam::store).
    std::fs::write(dir.join("10.86.0.3"), b"\xff\xfe\x00garbage").unwrap();
    std::fs::write(dir.join("10.86.0.4"), b"").unwrap();
    std::fs::create_dir(dir.join("10.86.0.5")).unwrap();
    std::fs::write(dir.join("last_reserved_ip.0"), b"10.86.0.").unwrap();
    // The walk restarts from the beginning and skips the garbage; with nothing else free, the
    // next one takes the orphan's address.
    let r = network::add(&cfg, "g1", "eth0").unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.86.0.6/29");
    let r = network::add(&cfg, "g2", "eth0").unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.86.0.4/29");
    let e = network::add(&cfg, "g3", "eth0").unwrap_err();
    assert_eq!(code_of(&e), 105);
    // The reference agrees nothing is free.
    assert!(!reference("ADD", "g4", "eth0", &c, "").0);
    // DEL of a real attachment leaves garbage alone; GC reclaims the file (not the directory,
    // which is reported as an error rather than removed).
    network::del(&cfg, "g0", "eth0").unwrap();
    assert!(dir.join("10.86.0.3").exists());
    let mut net = Network::from_config(&cfg).unwrap();
    let valid = [Attachment::new("g1", "eth0"), Attachment::new("g2", "eth0")];
    // GC is best effort: the file goes, the directory is reported.
    let e = net.gc(&valid).unwrap_err();
    assert_eq!(code_of(&e), 5, "{e}");
    assert!(!dir.join("10.86.0.3").exists());
    std::fs::remove_dir(dir.join("10.86.0.5")).unwrap();
    assert!(net.gc(&valid).unwrap().is_empty());
    let left: Vec<String> = reservations(&dir).into_keys().collect();
    assert_eq!(left, ["10.86.0.4", "10.86.0.6"]);
}

#[test]
fn del_is_idempotent_and_check_reports_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = conf("bad", tmp.path(), r#","subnet":"10.87.0.0/24""#);
    let cfg = config::parse(c.as_bytes(), "").unwrap();
    network::add(&cfg, "d1", "eth0").unwrap();
    network::add(&cfg, "d1", "net1").unwrap();
    assert_eq!(network::del(&cfg, "d1", "eth0").unwrap().len(), 1);
    assert!(network::del(&cfg, "d1", "eth0").unwrap().is_empty());
    assert!(network::del(&cfg, "never", "eth0").unwrap().is_empty());
    assert_eq!(code_of(&network::check(&cfg, "d1", "eth0").unwrap_err()), 3);
    assert_eq!(network::check(&cfg, "d1", "net1").unwrap().len(), 1);
}

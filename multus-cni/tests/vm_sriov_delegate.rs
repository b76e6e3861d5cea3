//! VM test (tests/vm/run.sh): the built-in `sriov` delegate (netdev mode) on the emulated igb's VFs, through the
//! `multus` binary run standalone as `sriov` and as the meta-plugin.
//!
//! - Two pods (netns) with different settings (MAC, VLAN, QoS, spoofchk, trust, max_tx_rate, host-local IPAM),
//!   one VF by deviceID, one a free VF of the PF: each VF checked with `ip -d link show <pf>` and inside its
//!   netns (name, MAC, address, up); the result's `pciID`; the device-info file.
//! - A third ADD with no VF free fails cleanly (code 11, nothing changed); settings the igb refuses (802.1ad,
//!   link_state) fail the ADD half-way and leave the VF exactly as it was.
//! - CHECK passes, and detects a changed MAC (in prevResult, and on the PF).
//! - DEL restores the exact original state (netlink `read_vf_state` and `ip`, the netdev's name, MAC and MTU);
//!   DEL again succeeds; a pod whose netns was deleted before DEL is restored all the same.
//! - Through the meta-plugin: an ADD failing after the VF moved into the pod (the interface name is taken
//!   there) undoes everything; then ADD, CHECK and DEL; GC (valid attachment kept, others given back) and STATUS.
//! - A pod whose netns died without a DEL: its stale VF is taken over by the next pod, after its settings are
//!   put back from its cache, so the next pod's DEL restores the true original (with the PF renamed since
//!   ADD); the late DEL is a no-op.

#[allow(dead_code)]
mod vm_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use multus_core::netlink::Netlink;
use multus_sriov::config::{VlanConf, VlanProto};
use multus_sriov::vf_netlink::{read_vf_state, VfSettings};
use serde_json::{json, Value};
use vm_common::{
    addrs_in, clean_command, igb_pf, ip_json, ip_vf, link_exists, link_in, multus_bin, plugin_link,
    read_attr, require_vm, reserved_ips, run_cni, run_ok, show, wait_for, Netns, NumVfs, CNI_PATH,
};

/// The test bed: the PF with 2 VFs.
struct Bed {
    pf: String,
    pf_index: u32,
    vfs: Vec<String>,
    _guard: NumVfs,
}

fn bed() -> Bed {
    require_vm();
    let pf = igb_pf();
    let dev = fs::canonicalize(format!("/sys/class/net/{pf}/device")).expect("PF device dir");
    let pf_index: u32 = read_attr(format!("/sys/class/net/{pf}/ifindex"))
        .parse()
        .expect("ifindex");
    let guard = NumVfs::set(&dev, 2);
    let mut vfs = Vec::new();
    for i in 0..2 {
        let virtfn = dev.join(format!("virtfn{i}"));
        assert!(
            wait_for(Duration::from_secs(20), || fs::read_dir(virtfn.join("net"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)),
            "VF {i} netdev did not appear"
        );
        vfs.push(
            fs::canonicalize(&virtfn)
                .expect("virtfn")
                .file_name()
                .expect("bdf")
                .to_string_lossy()
                .into_owned(),
        );
    }
    println!("PF {pf} (ifindex {pf_index}), VFs {vfs:?}");
    Bed {
        pf,
        pf_index,
        vfs,
        _guard: guard,
    }
}

/// The netdev names of a PCI function in the host namespace.
fn netdevs(pci: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/sys/bus/pci/devices/{pci}/net"))
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn netlink_vf(pf_index: u32, vf: u32) -> VfSettings {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let nl = Netlink::current().expect("netlink");
        read_vf_state(&nl, pf_index, vf)
            .await
            .expect("read_vf_state")
    })
}

/// Everything DEL must put back for one VF: its PF-side settings (by ip and by netlink), and its netdev in the
/// host (name, MAC, MTU, up).
#[derive(Debug, Clone, PartialEq)]
struct VfSnap {
    ip: VfSettings,
    netlink: VfSettings,
    netdev: String,
    mac: String,
    mtu: String,
    up: bool,
}

fn snap(b: &Bed, i: usize) -> VfSnap {
    let names = netdevs(&b.vfs[i]);
    assert_eq!(
        names.len(),
        1,
        "VF {} netdevs in the host: {names:?}",
        b.vfs[i]
    );
    let n = &names[0];
    let link = &ip_json(&["link", "show", n])[0];
    VfSnap {
        ip: ip_vf(&b.pf, i as u64),
        netlink: netlink_vf(b.pf_index, i as u32),
        netdev: n.clone(),
        mac: read_attr(format!("/sys/class/net/{n}/address")),
        mtu: read_attr(format!("/sys/class/net/{n}/mtu")),
        up: link["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "UP")),
    }
}

fn sriov_exe(dir: &Path) -> PathBuf {
    plugin_link(dir, "sriov")
}

/// Runs a CNI command; returns (exit code, stdout JSON or Null).
fn cni(
    exe: &Path,
    command: &str,
    cid: &str,
    netns: impl AsRef<std::ffi::OsStr>,
    ifname: &str,
    conf: &Value,
) -> (Option<i32>, Value) {
    let c = run_cni(clean_command(exe), command, cid, netns, ifname, conf);
    (c.code, c.json())
}

fn ok(r: (Option<i32>, Value), what: &str) -> Value {
    assert_eq!(r.0, Some(0), "{what} failed: {}", r.1);
    r.1
}

fn failed(r: (Option<i32>, Value), what: &str, code: u64, needle: &str) {
    assert_eq!(r.0, Some(1), "{what} should fail: {}", r.1);
    assert_eq!(r.1["code"].as_u64(), Some(code), "{what}: {}", r.1);
    let msg = format!("{} {}", r.1["msg"], r.1["details"]);
    assert!(
        msg.contains(needle),
        "{what}: {msg:?} does not name {needle:?}"
    );
}

/// The files under a directory (recursively), for "nothing left behind".
fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("prefix").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Only the lock files: no allocation record, no cache.
fn assert_no_state(state: &Path) {
    let left: Vec<String> = files(state)
        .into_iter()
        .filter(|f| !f.ends_with("lock"))
        .collect();
    assert!(
        left.is_empty(),
        "state left in {}: {left:?}",
        state.display()
    );
}

fn conf(name: &str, state: &Path, ipam_dir: &Path, extra: Value) -> Value {
    let mut v = json!({
        "cniVersion": "1.1.0",
        "name": name,
        "type": "sriov",
        "dataDir": state,
        "ipam": {"type": "host-local", "subnet": "10.66.0.0/24", "dataDir": ipam_dir,
                 "routes": [{"dst": "10.67.0.0/16", "gw": "10.66.0.254"}]},
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

#[test]
fn vm_sriov_delegate_two_pods_check_del_and_dead_netns() {
    let b = bed();
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = sriov_exe(tmp.path());
    let state = tmp.path().join("state");
    let ipam = tmp.path().join("ipam");
    let orig0 = snap(&b, 0);
    let orig1 = snap(&b, 1);
    println!("original VF 0: {orig0:?}\noriginal VF 1: {orig1:?}");
    assert_eq!(orig0.ip, orig0.netlink, "read_vf_state agrees with ip");
    show(&["-d", "link", "show", &b.pf]);

    // Settings the emulated igb refuses fail the ADD half-way (the MAC is applied first): the VF is put back.
    let na = Netns::named("vm-sriov-x");
    for (extra, needle) in [
        (json!({"vlan": 100, "vlanProto": "802.1ad"}), "vlan"),
        (json!({"link_state": "disable"}), "link_state"),
    ] {
        let mut e = json!({"deviceID": b.vfs[0], "mac": "02:11:22:33:44:55"});
        if let (Some(o), Value::Object(x)) = (e.as_object_mut(), extra) {
            o.extend(x);
        }
        let c = conf("sriov-a", &state, &ipam, e);
        failed(
            cni(&exe, "ADD", "cx", na.path(), "net1", &c),
            "ADD with a setting igb refuses",
            103,
            needle,
        );
        assert_eq!(snap(&b, 0), orig0, "VF 0 untouched after the failed ADD");
        assert!(!link_exists(&na, "net1"));
        assert_no_state(&state);
        assert!(reserved_ips(&ipam, "sriov-a").is_empty());
    }
    drop(na);

    // Pod A: VF 0 by deviceID, every setting igb takes, and a device-info file.
    let a = Netns::named("vm-sriov-a");
    let devinfo = tmp.path().join("devinfo/cni/sriov-a-ca_net1");
    let conf_a = conf(
        "sriov-a",
        &state,
        &ipam,
        json!({"deviceID": b.vfs[0], "mac": "02:11:22:33:44:55", "vlan": 100, "vlanQoS": 3,
               "spoofchk": "off", "trust": "on", "max_tx_rate": 100,
               "runtimeConfig": {"CNIDeviceInfoFile": devinfo}}),
    );
    let ra = ok(cni(&exe, "ADD", "ca", a.path(), "net1", &conf_a), "ADD a");
    // Pod B: a free VF of the PF (so VF 1), other settings.
    let bns = Netns::named("vm-sriov-b");
    let conf_b = conf(
        "sriov-b",
        &state,
        &ipam,
        json!({"master": b.pf, "vlan": 200, "vlanQoS": 5, "trust": "on"}),
    );
    let rb = ok(cni(&exe, "ADD", "cb", bns.path(), "net1", &conf_b), "ADD b");
    show(&["-d", "link", "show", &b.pf]);
    show(&["-n", &a.name, "-d", "addr", "show"]);
    show(&["-n", &bns.name, "-d", "addr", "show"]);

    // Results: CNI 1.1 with pciID, the pod's MAC and the IPAM address.
    for (r, ns, vf, mac) in [
        (&ra, &a, &b.vfs[0], Some("02:11:22:33:44:55")),
        (&rb, &bns, &b.vfs[1], None),
    ] {
        assert_eq!(r["cniVersion"], "1.1.0");
        let i = &r["interfaces"][0];
        assert_eq!(i["name"], "net1", "{r}");
        assert_eq!(i["pciID"], vf.as_str(), "{r}");
        assert_eq!(i["sandbox"], ns.path().to_str().unwrap(), "{r}");
        let l = link_in(ns, "net1");
        assert_eq!(i["mac"], l["address"], "result MAC is the pod's: {r}");
        if let Some(m) = mac {
            assert_eq!(l["address"], m);
        }
        assert!(
            l["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
            "net1 up in {}: {l}",
            ns.name
        );
        let addr = r["ips"][0]["address"]
            .as_str()
            .expect("address")
            .to_string();
        assert!(addr.starts_with("10.66.0."), "{r}");
        assert_eq!(addrs_in(ns, "net1"), [addr]);
        let routes = ip_json(&["-n", &ns.name, "route", "show", "10.67.0.0/16"]);
        assert_eq!(routes[0]["gateway"], "10.66.0.254", "{routes}");
        // The VF's netdev left the host.
        assert!(
            netdevs(vf).is_empty(),
            "{vf} still has a netdev in the host"
        );
    }
    // The PF carries each pod's settings.
    let s0 = ip_vf(&b.pf, 0);
    assert_eq!(s0.mac.to_string(), "02:11:22:33:44:55");
    assert_eq!(
        s0.vlan,
        VlanConf {
            id: 100,
            qos: 3,
            proto: VlanProto::Dot1Q
        }
    );
    assert_eq!((s0.spoofchk, s0.trust, s0.max_tx_rate), (false, true, 100));
    let s1 = ip_vf(&b.pf, 1);
    assert_eq!((s1.vlan.id, s1.vlan.qos), (200, 5));
    assert_eq!((s1.spoofchk, s1.trust, s1.max_tx_rate), (true, true, 0));
    assert_eq!(s1.mac, orig1.ip.mac, "no MAC configured for b");
    // Device-info for pod A.
    let info: Value =
        serde_json::from_slice(&fs::read(&devinfo).expect("device-info file")).expect("JSON");
    assert_eq!(
        info,
        json!({"type": "pci", "version": "1.1.0",
               "pci": {"pci-address": b.vfs[0], "pf-pci-address":
                   fs::canonicalize(format!("/sys/class/net/{}/device", b.pf)).unwrap()
                       .file_name().unwrap().to_string_lossy()}})
    );

    // A third pod: no VF free, by PF or by deviceID. Nothing changes.
    let c = Netns::named("vm-sriov-c");
    let before = (
        ip_vf(&b.pf, 0),
        ip_vf(&b.pf, 1),
        reserved_ips(&ipam, "sriov-c"),
    );
    let conf_c = conf(
        "sriov-c",
        &state,
        &ipam,
        json!({"pfName": b.pf, "vlan": 300}),
    );
    failed(
        cni(&exe, "ADD", "cc", c.path(), "net1", &conf_c),
        "ADD c",
        11,
        "no free VF",
    );
    let conf_c2 = conf("sriov-c", &state, &ipam, json!({"deviceID": b.vfs[0]}));
    failed(
        cni(&exe, "ADD", "cc", c.path(), "net1", &conf_c2),
        "ADD c by deviceID",
        11,
        "already allocated to container ca",
    );
    assert_eq!(
        (
            ip_vf(&b.pf, 0),
            ip_vf(&b.pf, 1),
            reserved_ips(&ipam, "sriov-c")
        ),
        before
    );
    assert!(!link_exists(&c, "net1"));
    assert!(!state.join("cc@net1.json").exists());
    ok(
        cni(&exe, "DEL", "cc", c.path(), "net1", &conf_c),
        "DEL c (nothing attached)",
    );
    drop(c);

    // CHECK: passes; a prevResult with another MAC fails; a MAC changed on the PF fails.
    let mut ca = conf_a.clone();
    ca["prevResult"] = ra.clone();
    ok(cni(&exe, "CHECK", "ca", a.path(), "net1", &ca), "CHECK a");
    let mut wrong = ca.clone();
    wrong["prevResult"]["interfaces"][0]["mac"] = json!("02:00:00:00:00:99");
    failed(
        cni(&exe, "CHECK", "ca", a.path(), "net1", &wrong),
        "CHECK a, other MAC",
        103,
        "MAC",
    );
    run_ok(
        "ip",
        &["link", "set", &b.pf, "vf", "0", "mac", "02:11:22:33:44:66"],
    );
    failed(
        cni(&exe, "CHECK", "ca", a.path(), "net1", &ca),
        "CHECK a, PF MAC changed",
        103,
        "mac is 02:11:22:33:44:66",
    );

    // DEL a: everything back exactly; again: fine.
    ok(cni(&exe, "DEL", "ca", a.path(), "net1", &conf_a), "DEL a");
    show(&["-d", "link", "show", &b.pf]);
    assert_eq!(snap(&b, 0), orig0, "VF 0 restored exactly");
    assert!(!link_exists(&a, "net1"));
    assert!(!devinfo.exists(), "device-info file removed");
    assert!(reserved_ips(&ipam, "sriov-a").is_empty());
    ok(
        cni(&exe, "DEL", "ca", a.path(), "net1", &conf_a),
        "DEL a again",
    );
    assert_eq!(snap(&b, 0), orig0);

    // Pod B's netns dies first (the kernel returns the VF to the host, under the pod's name): DEL restores it.
    drop(bns);
    ok(
        cni(
            &exe,
            "DEL",
            "cb",
            "/var/run/netns/vm-sriov-b",
            "net1",
            &conf_b,
        ),
        "DEL b, netns gone",
    );
    assert_eq!(snap(&b, 1), orig1, "VF 1 restored exactly");
    ok(
        cni(&exe, "DEL", "cb", "", "net1", &conf_b),
        "DEL b again, no netns",
    );
    assert!(reserved_ips(&ipam, "sriov-b").is_empty());
    assert_no_state(&state);
}

#[test]
fn vm_sriov_delegate_meta_plugin_undo_and_gc() {
    let b = bed();
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let ipam = tmp.path().join("ipam");
    let multus = multus_bin();
    let orig0 = snap(&b, 0);
    let meta = |delegate: Value| {
        json!({"cniVersion": "1.1.0", "name": "multus-vm", "type": "multus", "binDir": CNI_PATH,
               "delegates": [delegate]})
    };
    let delegate = conf(
        "sriov-m",
        &state,
        &ipam,
        json!({"deviceID": b.vfs[0], "mac": "02:22:33:44:55:66", "vlan": 10, "spoofchk": "off"}),
    );

    // eth0 is taken in the pod: the ADD fails after the VF moved in and the PF settings changed; all undone.
    let p = Netns::named("vm-sriov-m");
    run_ok(
        "ip",
        &["-n", &p.name, "link", "add", "eth0", "type", "dummy"],
    );
    failed(
        cni(
            &multus,
            "ADD",
            "cm",
            p.path(),
            "eth0",
            &meta(delegate.clone()),
        ),
        "meta ADD with eth0 taken",
        103,
        "already exists",
    );
    assert_eq!(snap(&b, 0), orig0, "VF 0 untouched after the failed ADD");
    assert_no_state(&state);
    assert!(reserved_ips(&ipam, "sriov-m").is_empty());
    run_ok("ip", &["-n", &p.name, "link", "del", "eth0"]);

    // ADD, CHECK, DEL through the meta-plugin.
    let r = ok(
        cni(
            &multus,
            "ADD",
            "cm",
            p.path(),
            "eth0",
            &meta(delegate.clone()),
        ),
        "meta ADD",
    );
    let i = &r["interfaces"][0];
    assert_eq!(
        (i["name"].as_str(), i["pciID"].as_str()),
        (Some("eth0"), Some(b.vfs[0].as_str())),
        "{r}"
    );
    let l = link_in(&p, "eth0");
    assert_eq!(l["address"], "02:22:33:44:55:66");
    let s0 = ip_vf(&b.pf, 0);
    assert_eq!((s0.vlan.id, s0.spoofchk), (10, false));
    let mut chk = meta(delegate.clone());
    chk["prevResult"] = r.clone();
    ok(
        cni(&multus, "CHECK", "cm", p.path(), "eth0", &chk),
        "meta CHECK",
    );

    // GC with the attachment valid keeps it; without, gives the VF back (as DEL).
    let standalone = sriov_exe(tmp.path());
    let mut gc = delegate.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "cm", "ifname": "eth0"}]);
    ok(
        cni(&standalone, "GC", "", "", "", &gc),
        "GC, attachment valid",
    );
    assert!(link_exists(&p, "eth0"));
    let mut status = delegate.clone();
    status.as_object_mut().expect("object").remove("deviceID");
    status["master"] = json!(b.pf);
    ok(cni(&standalone, "STATUS", "", "", "", &status), "STATUS");
    ok(
        cni(
            &multus,
            "DEL",
            "cm",
            p.path(),
            "eth0",
            &meta(delegate.clone()),
        ),
        "meta DEL",
    );
    assert_eq!(snap(&b, 0), orig0, "VF 0 restored exactly");
    assert!(reserved_ips(&ipam, "sriov-m").is_empty());

    let r = ok(
        cni(&standalone, "ADD", "cg", p.path(), "net1", &delegate),
        "ADD for GC",
    );
    assert_eq!(r["interfaces"][0]["pciID"], b.vfs[0].as_str());
    gc["cni.dev/valid-attachments"] = json!([]);
    ok(
        cni(&standalone, "GC", "", "", "", &gc),
        "GC, attachment not valid",
    );
    assert!(!link_exists(&p, "net1"));
    assert_eq!(snap(&b, 0), orig0, "VF 0 restored by GC");
    assert_no_state(&state);
    // GC'd IPAM: the reservation too.
    assert!(reserved_ips(&ipam, "sriov-m").is_empty());
    ok(
        cni(&standalone, "DEL", "cg", p.path(), "net1", &delegate),
        "DEL after GC",
    );

    // STATUS with SR-IOV off: code 50.
    drop(b);
    let err = cni(&standalone, "STATUS", "", "", "", &status);
    failed(err, "STATUS, SR-IOV off", 50, "sriov_numvfs is 0");
}

#[test]
fn vm_sriov_delegate_stale_holder_taken_over() {
    let b = bed();
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = sriov_exe(tmp.path());
    let state = tmp.path().join("state");
    let ipam = tmp.path().join("ipam");
    let orig0 = snap(&b, 0);

    // Pod A takes VF 0, then its netns dies without a DEL: its allocation record is stale.
    let a = Netns::named("vm-sriov-s1");
    let conf_a = conf(
        "sriov-s",
        &state,
        &ipam,
        json!({"deviceID": b.vfs[0], "mac": "02:33:44:55:66:77", "vlan": 100, "trust": "on"}),
    );
    ok(cni(&exe, "ADD", "sa", a.path(), "net1", &conf_a), "ADD a");
    drop(a);

    // Pod C takes the VF over: A's settings are put back first, so C's DEL restores the true original.
    let c = Netns::named("vm-sriov-s2");
    let conf_c = conf(
        "sriov-s",
        &state,
        &ipam,
        json!({"deviceID": b.vfs[0], "vlan": 300}),
    );
    let rc = ok(
        cni(&exe, "ADD", "sc", c.path(), "net1", &conf_c),
        "ADD c over a's stale record",
    );
    show(&["-d", "link", "show", &b.pf]);
    let s0 = ip_vf(&b.pf, 0);
    assert_eq!(
        (s0.mac, s0.vlan.id, s0.trust),
        (orig0.ip.mac, 300, orig0.ip.trust),
        "a's MAC and trust put back, c's VLAN applied"
    );
    assert_eq!(
        link_in(&c, "net1")["address"].as_str(),
        Some(orig0.mac.as_str())
    );
    assert_eq!(
        rc["interfaces"][0]["mac"].as_str(),
        Some(orig0.mac.as_str())
    );
    assert!(!state.join("sa@net1.json").exists(), "a's cache consumed");

    // A's late DEL touches nothing of C's.
    ok(
        cni(
            &exe,
            "DEL",
            "sa",
            "/var/run/netns/vm-sriov-s1",
            "net1",
            &conf_a,
        ),
        "DEL a (late)",
    );
    assert!(link_exists(&c, "net1"));
    assert_eq!(ip_vf(&b.pf, 0).vlan.id, 300);
    // The PF renamed since ADD: DEL finds it by its PCI address.
    run_ok("ip", &["link", "set", &b.pf, "down"]);
    run_ok("ip", &["link", "set", &b.pf, "name", "pfrenamed"]);
    let del = cni(&exe, "DEL", "sc", c.path(), "net1", &conf_c);
    run_ok("ip", &["link", "set", "pfrenamed", "name", &b.pf]);
    run_ok("ip", &["link", "set", &b.pf, "up"]);
    ok(del, "DEL c, PF renamed");
    assert_eq!(snap(&b, 0), orig0, "VF 0 restored exactly");
    assert!(reserved_ips(&ipam, "sriov-s").is_empty());
    assert_no_state(&state);
}

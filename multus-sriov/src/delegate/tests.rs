//! Unit tests of the `sriov` delegate on fake sysfs trees: refusals that change nothing, DEL without state,
//! STATUS codes, GC of stale allocations, the userspace mode's ADD refusals, DEL and CHECK.

use super::*;
use crate::cache::{VfKeeper, VfRecord};
use crate::PciAddress;
use multus_core::cni::{AttachmentRef, Command};
use std::path::PathBuf;

fn c1() -> AttachmentRef {
    AttachmentRef {
        container_id: "c1".into(),
        ifname: "net1".into(),
    }
}
use crate::fake::{FakePf, FakeSysfs};
use multus_core::delegate::Registry;
use serde_json::{json, Value};
use std::sync::Arc;

struct Env {
    dir: tempfile::TempDir,
    fake: FakeSysfs,
    sriov: Sriov,
}

fn env(num_vfs: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path().join("root")).unwrap();
    fake.add_pf(&FakePf::igb("ens1", 1, num_vfs)).unwrap();
    let sriov = Sriov::new(SriovEnv::new(fake.sysfs(), dir.path().join("state")));
    Env { dir, fake, sriov }
}

impl Env {
    fn ctx(&self, cmd: Command, cid: &str) -> Context {
        Context::new(
            cmd,
            cid,
            Some(PathBuf::from("/proc/self/ns/net")),
            "net1",
            Arc::new(Registry::new()),
        )
    }

    fn conf(&self, extra: Value) -> PluginConf {
        let mut v = json!({"cniVersion": "1.1.0", "name": "sriov-net", "type": "sriov"});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        PluginConf::from_value(v).unwrap()
    }

    fn state(&self) -> SriovEnv {
        self.sriov.env.clone()
    }

    /// Every file under the state dir and the fake sysfs tree, with its content or link target.
    fn snapshot(&self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                let md = std::fs::symlink_metadata(&p).unwrap();
                if md.file_type().is_symlink() {
                    out.push((
                        p.clone(),
                        std::fs::read_link(&p).unwrap().display().to_string(),
                    ));
                } else if md.is_dir() {
                    out.push((p.clone(), "dir".into()));
                    stack.push(p);
                } else {
                    out.push((p.clone(), std::fs::read_to_string(&p).unwrap_or_default()));
                }
            }
        }
        out.sort();
        out
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// ADD fails with `code`, naming `needle`, and changes nothing on the fake host or in the state dir
/// (beyond the state dir's own skeleton).
fn refused(e: &Env, cid: &str, extra: Value, code: u32, needle: &str) {
    let before = e.snapshot();
    let err = rt()
        .block_on(
            e.sriov
                .add(&e.ctx(Command::Add, cid), &e.conf(extra.clone())),
        )
        .expect_err(&format!("ADD accepted {extra}"));
    assert_eq!(err.code.code(), code, "{err} for {extra}");
    assert!(
        err.to_string().contains(needle),
        "{err} does not name {needle:?}"
    );
    let skeleton = |p: &Path| {
        let n = p.file_name().unwrap().to_string_lossy();
        n == "state" || n == "pci" || n == "lock"
    };
    let after: Vec<_> = e
        .snapshot()
        .into_iter()
        .filter(|(p, _)| !skeleton(p) || before.iter().any(|(q, _)| q == p))
        .collect();
    assert_eq!(before, after, "ADD of {extra} left something");
}

#[test]
fn bad_config_refused_before_any_effect() {
    let e = env(2);
    let vf = json!("0000:01:10.0");
    for (extra, needle) in [
        (json!({"deviceID": vf, "vlan": 4095}), "\"vlan\" value 4095"),
        (
            json!({"deviceID": vf, "vlan": 10, "vlanQoS": 8}),
            "\"vlanQoS\" value 8",
        ),
        (json!({"deviceID": vf, "vlanQoS": 3}), "\"vlanQoS\" value 3"),
        (
            json!({"deviceID": vf, "vlan": 0, "vlanProto": "802.1ad"}),
            "802.1ad",
        ),
        (
            json!({"deviceID": vf, "max_tx_rate": -1}),
            "\"max_tx_rate\"",
        ),
        (
            json!({"deviceID": vf, "min_tx_rate": 200, "max_tx_rate": 100}),
            "\"min_tx_rate\"",
        ),
        (
            json!({"deviceID": vf, "mac": "ff:ff:ff:ff:ff:ff"}),
            "\"mac\"",
        ),
        (json!({"deviceID": "03:00.1"}), "\"deviceID\""),
        (
            json!({"deviceID": vf, "dataDir": "relative"}),
            "\"dataDir\"",
        ),
        (json!({}), "no VF given"),
    ] {
        refused(&e, "c1", extra, 7, needle);
    }
}

#[test]
fn unknown_or_non_vf_device_and_sriov_off() {
    let e = env(2);
    refused(
        &e,
        "c1",
        json!({"deviceID": "0000:07:00.0"}),
        7,
        "0000:07:00.0: no such PCI device",
    );
    refused(
        &e,
        "c1",
        json!({"deviceID": "0000:01:00.0"}),
        7,
        "0000:01:00.0 is not an SR-IOV VF",
    );
    refused(
        &e,
        "c1",
        json!({"master": "nosuch0"}),
        7,
        "PF \"nosuch0\" not found",
    );
    let off = env(0);
    refused(&off, "c1", json!({"master": "ens1"}), 7, "SR-IOV off");
    // A PCI netdev without SR-IOV at all.
    let pci: PciAddress = "0000:02:00.0".parse().unwrap();
    off.fake
        .add_function(pci, 0x8086, 0x10d3, Some("e1000e"), None)
        .unwrap();
    off.fake.add_netdev(pci, "eno1").unwrap();
    refused(
        &off,
        "c1",
        json!({"pfName": "eno1"}),
        7,
        "does not support SR-IOV",
    );
}

#[test]
fn taken_vf_refused_and_left_to_its_holder() {
    let e = env(1);
    let vf: PciAddress = "0000:01:10.0".parse().unwrap();
    let holder = crate::Holder {
        container_id: "other".into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
    };
    e.state().allocator().allocate_device(vf, &holder).unwrap();
    refused(
        &e,
        "c1",
        json!({"deviceID": "0000:01:10.0"}),
        11,
        "already allocated to container other",
    );
    refused(&e, "c1", json!({"master": "ens1"}), 11, "no free VF");
    assert_eq!(e.state().allocator().holder(vf).unwrap(), Some(holder));
}

#[test]
fn existing_attachment_refused() {
    let e = env(1);
    let st = e.state();
    std::fs::create_dir_all(st.data_dir()).unwrap();
    std::fs::write(st.cache().path(&c1()).unwrap(), "{}").unwrap();
    refused(
        &e,
        "c1",
        json!({"deviceID": "0000:01:10.0"}),
        4,
        "already has an SR-IOV attachment",
    );
}

#[test]
fn missing_netns_and_bad_env() {
    let e = env(1);
    let conf = e.conf(json!({"deviceID": "0000:01:10.0"}));
    let mut ctx = e.ctx(Command::Add, "c1");
    ctx.netns = Some(PathBuf::from("/nonexistent/netns"));
    assert_eq!(
        rt().block_on(e.sriov.add(&ctx, &conf))
            .unwrap_err()
            .code
            .code(),
        3
    );
    ctx.netns = None;
    assert_eq!(
        rt().block_on(e.sriov.add(&ctx, &conf))
            .unwrap_err()
            .code
            .code(),
        4
    );
    let mut ctx = e.ctx(Command::Add, "c/1");
    assert_eq!(
        rt().block_on(e.sriov.add(&ctx, &conf))
            .unwrap_err()
            .code
            .code(),
        4
    );
    ctx.container_id = "c1".into();
    ctx.ifname = "a/b".into();
    assert_eq!(
        rt().block_on(e.sriov.add(&ctx, &conf))
            .unwrap_err()
            .code
            .code(),
        4
    );
    assert!(e.state().allocator().list().unwrap_or_default().is_empty());
}

#[test]
fn del_without_state_is_a_no_op_and_frees_a_dead_adds_allocation() {
    let e = env(2);
    let conf = e.conf(json!({"deviceID": "0000:01:10.0"}));
    let ctx = e.ctx(Command::Del, "c1");
    rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
    rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
    // An allocation whose ADD died before caching anything.
    let alloc = e.state().allocator();
    let h = crate::Holder {
        container_id: "c1".into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
    };
    alloc
        .allocate_device("0000:01:10.2".parse().unwrap(), &h)
        .unwrap();
    rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
    assert!(alloc.list().unwrap().is_empty());
    // The device-info file named by the runtime config goes too.
    let f = e.dir.path().join("devinfo/cni/x");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, "{}").unwrap();
    let conf = e.conf(json!({"runtimeConfig": {"CNIDeviceInfoFile": f}}));
    rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
    assert!(!f.exists());
    // A DEL without any device key (as after a bad ADD) is fine too.
    rt().block_on(e.sriov.del(&ctx, &e.conf(json!({"vlan": 99999}))))
        .unwrap();
}

#[test]
fn status_codes() {
    let e = env(2);
    let ctx = e.ctx(Command::Status, "");
    let st = |extra: Value| rt().block_on(e.sriov.status(&ctx, &e.conf(extra)));
    st(json!({})).unwrap();
    st(json!({"master": "ens1"})).unwrap();
    st(json!({"deviceID": "0000:01:10.2"})).unwrap();
    for (extra, needle) in [
        (json!({"master": "nosuch0"}), "not found"),
        (json!({"deviceID": "0000:01:00.0"}), "not an SR-IOV VF"),
        (json!({"deviceID": "0000:09:00.0"}), "no such PCI device"),
    ] {
        let err = st(extra.clone()).unwrap_err();
        assert_eq!(err.code.code(), 50, "{err} for {extra}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    let off = env(0);
    let err = rt()
        .block_on(off.sriov.status(&ctx, &off.conf(json!({"pfName": "ens1"}))))
        .unwrap_err();
    assert_eq!(err.code.code(), 50);
    assert!(err.to_string().contains("sriov_numvfs is 0"), "{err}");
}

#[test]
fn gc_frees_stale_records_without_state_only() {
    let e = env(3);
    let alloc = e.state().allocator();
    let gone = crate::Holder {
        container_id: "dead".into(),
        ifname: "net1".into(),
        netns: "/nonexistent/netns".into(),
    };
    let live = crate::Holder {
        container_id: "live".into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
    };
    alloc
        .allocate_device("0000:01:10.0".parse().unwrap(), &gone)
        .unwrap();
    alloc
        .allocate_device("0000:01:10.2".parse().unwrap(), &live)
        .unwrap();
    let conf = e.conf(json!({"cni.dev/valid-attachments": []}));
    rt().block_on(e.sriov.gc(&e.ctx(Command::Gc, ""), &conf))
        .unwrap();
    assert_eq!(
        alloc.list().unwrap(),
        [("0000:01:10.2".parse().unwrap(), live)]
    );
}

/// A host whose VF 1 (`0000:01:10.2`, IOMMU group 9) is bound to vfio-pci, as the device plugin leaves it.
fn vfio_env() -> (Env, PciAddress) {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path().join("root")).unwrap();
    let mut pf = FakePf::igb("ens1", 1, 3);
    pf.vfs[1].driver = Some("vfio-pci".into());
    pf.vfs[1].netdev = None;
    fake.add_pf(&pf).unwrap();
    let sriov = Sriov::new(SriovEnv::new(fake.sysfs(), dir.path().join("state")));
    (Env { dir, fake, sriov }, "0000:01:10.2".parse().unwrap())
}

/// The cached record of a userspace-mode attachment of `vf` (no netdev; no settings changed).
fn userspace_record(e: &Env, vf: PciAddress, devinfo: Option<&Path>) -> VfRecord {
    let rec = VfRecord {
        network: "sriov-net".into(),
        container_id: "c1".into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
        vf,
        vf_index: 1,
        pf: "0000:01:00.0".parse().unwrap(),
        pf_name: "ens1".into(),
        original: Default::default(),
        changes: vec![],
        netdev: None,
        device_info_file: devinfo.map(|p| p.display().to_string()),
    };
    let st = e.state();
    st.allocator()
        .allocate_device(
            vf,
            &crate::Holder {
                container_id: "c1".into(),
                ifname: "net1".into(),
                netns: "/proc/self/ns/net".into(),
            },
        )
        .unwrap();
    std::fs::create_dir_all(st.data_dir()).unwrap();
    st.cache().save_vf(&rec).unwrap();
    rec
}

#[test]
fn userspace_vf_refusals_touch_nothing() {
    let (e, vf) = vfio_env();
    // On vfio-pci without an IOMMU group: refused before the allocation.
    e.fake.unlink(vf, "iommu_group").unwrap();
    refused(
        &e,
        "c1",
        json!({"deviceID": vf.to_string(), "vlan": 100}),
        11,
        "has no IOMMU group",
    );
    let (e, vf) = vfio_env();
    // Held by another attachment.
    let other = crate::Holder {
        container_id: "other".into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
    };
    e.state().allocator().allocate_device(vf, &other).unwrap();
    refused(
        &e,
        "c1",
        json!({"deviceID": vf.to_string(), "vlan": 100}),
        11,
        "already allocated to container other",
    );
    assert_eq!(e.state().allocator().holder(vf).unwrap(), Some(other));
    // A bad setting is refused before the userspace path is even looked at.
    let (e, vf) = vfio_env();
    refused(
        &e,
        "c1",
        json!({"deviceID": vf.to_string(), "vlan": 4095}),
        7,
        "\"vlan\" value 4095",
    );
    // An unbound VF is neither mode: refused, naming both and the dpdk type (its PF is not on this host, so
    // the ADD stops at reading the PF; either way nothing is left).
    let (e, _) = vfio_env();
    let unbound: PciAddress = "0000:01:10.4".parse().unwrap();
    e.fake.unlink(unbound, "driver").unwrap();
    e.fake.remove_netdev(unbound, "ens1v2").unwrap();
    let before = e.snapshot();
    let err = rt()
        .block_on(e.sriov.add(
            &e.ctx(Command::Add, "c1"),
            &e.conf(json!({"deviceID": unbound.to_string()})),
        ))
        .unwrap_err();
    assert_ne!(err.code.code(), 0, "{err}");
    assert!(e.state().allocator().list().unwrap().is_empty());
    assert_eq!(e.state().cache().load_vf(&c1()).unwrap(), None);
    assert_eq!(
        e.fake.sysfs().driver(vf).unwrap().as_deref(),
        Some("vfio-pci")
    );
    assert!(before.iter().all(|b| e.snapshot().contains(b)));
}

#[test]
fn userspace_del_frees_and_leaves_the_vf_on_vfio_pci() {
    let (e, vf) = vfio_env();
    let f = e.dir.path().join("devinfo/cni/x");
    std::fs::create_dir_all(f.parent().unwrap()).unwrap();
    std::fs::write(&f, "{}").unwrap();
    userspace_record(&e, vf, Some(&f));
    let conf = e.conf(json!({"deviceID": vf.to_string(), "vlan": 100}));
    let ctx = e.ctx(Command::Del, "c1");
    rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
    assert!(e.state().allocator().list().unwrap().is_empty());
    assert_eq!(e.state().cache().load_vf(&c1()).unwrap(), None);
    assert!(!f.exists());
    assert_eq!(
        e.fake.sysfs().driver(vf).unwrap().as_deref(),
        Some("vfio-pci")
    );
    // Idempotent.
    rt().block_on(e.sriov.del(&ctx, &conf)).unwrap();
}

#[test]
fn userspace_check() {
    let (e, vf) = vfio_env();
    userspace_record(&e, vf, None);
    let conf = |pci: &str| {
        e.conf(json!({"deviceID": vf.to_string(), "prevResult": {
            "cniVersion": "1.1.0",
            "interfaces": [{"name": "net1", "sandbox": "/proc/self/ns/net", "pciID": pci}],
        }}))
    };
    let ctx = e.ctx(Command::Check, "c1");
    rt().block_on(e.sriov.check(&ctx, &conf(&vf.to_string())))
        .unwrap();
    let err = rt()
        .block_on(e.sriov.check(&ctx, &conf("0000:01:10.4")))
        .unwrap_err();
    assert!(err.to_string().contains("is not the VF"), "{err}");
    // Someone rebinds it to its kernel driver: CHECK says so.
    e.fake
        .relink(vf, "driver", "../../../../bus/pci/drivers/igbvf")
        .unwrap();
    let err = rt()
        .block_on(e.sriov.check(&ctx, &conf(&vf.to_string())))
        .unwrap_err();
    assert!(err.to_string().contains("is on driver igbvf now"), "{err}");
    // Freed behind its back: CHECK says so.
    e.fake
        .relink(vf, "driver", "../../../../bus/pci/drivers/vfio-pci")
        .unwrap();
    e.state().allocator().release(vf).unwrap();
    let other = crate::Holder {
        container_id: "other".into(),
        ifname: "net1".into(),
        netns: "/proc/self/ns/net".into(),
    };
    e.state().allocator().allocate_device(vf, &other).unwrap();
    let err = rt()
        .block_on(e.sriov.check(&ctx, &conf(&vf.to_string())))
        .unwrap_err();
    assert!(err.to_string().contains("no longer allocated"), "{err}");
}

//! Unit tests of the `dpdk` delegate on a simulated kernel (fake sysfs, `crate::sim`): ADD/CHECK/DEL,
//! failed and interrupted ADDs, STATUS and GC.

use super::*;
use crate::sim::{igb_host, pci, Fault, Sim};
use crate::state::Store;
use multus_core::cni::Command;
use multus_core::delegate::Registry;
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::sync::Arc;

struct T {
    _d: tempfile::TempDir,
    sim: Sim,
    dpdk: Dpdk,
    state: PathBuf,
    devinfo: PathBuf,
}

fn setup() -> T {
    let d = tempfile::tempdir().unwrap();
    let sim = igb_host(d.path(), 2);
    let state = d.path().join("state");
    let devinfo = d.path().join("devinfo/cni/net-c1_net1");
    let dpdk = Dpdk::new(sim.binder(), &state).without_netlink();
    T {
        _d: d,
        sim,
        dpdk,
        state,
        devinfo,
    }
}

fn ctx(cmd: Command, cid: &str, ifname: &str) -> Context {
    Context::new(
        cmd,
        cid,
        Some("/var/run/netns/p1".into()),
        ifname,
        Arc::new(Registry::new()),
    )
}

fn conf(t: &T, extra: Value) -> PluginConf {
    let mut v = json!({"cniVersion": "1.1.0", "name": "net", "type": "dpdk", "deviceID": "0000:01:10.0",
        "runtimeConfig": {"CNIDeviceInfoFile": t.devinfo}});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    PluginConf::from_value(v).unwrap()
}

fn driver(t: &T, p: &str) -> Option<String> {
    t.sim.fake.sysfs().driver(pci(p)).unwrap()
}

#[test]
fn config_keys() {
    let t = setup();
    let c = DpdkConf::parse(&conf(&t, json!({"allowNoIommu": true, "dataDir": "/s"}))).unwrap();
    assert_eq!(c.device, Some(pci("0000:01:10.0")));
    assert!(c.allow_no_iommu);
    assert_eq!(c.state_dir.as_deref(), Some(Path::new("/s")));
    assert_eq!(c.device_info_file.as_deref(), Some(t.devinfo.as_path()));
    let c = DpdkConf::parse(&conf(
        &t,
        json!({"deviceID": "", "pciBusID": "0000:01:10.2",
        "runtimeConfig": {"deviceID": "0000:01:10.4"}}),
    ))
    .unwrap();
    assert_eq!(c.device, Some(pci("0000:01:10.2")));
    let c = DpdkConf::parse(&conf(
        &t,
        json!({"deviceID": null, "runtimeConfig": {"deviceID": "0000:01:10.4"}}),
    ))
    .unwrap();
    assert_eq!(c.device, Some(pci("0000:01:10.4")));
    for (bad, what) in [
        (
            json!({"deviceID": "01:10.0"}),
            "dpdk: invalid \"deviceID\" value \"01:10.0\": must be a PCI address",
        ),
        (
            json!({"deviceID": 3}),
            "invalid \"deviceID\" value 3: must be a string",
        ),
        (
            json!({"allowNoIommu": "yes"}),
            "invalid \"allowNoIommu\" value \"yes\": must be a boolean",
        ),
        (
            json!({"runtimeConfig": []}),
            "invalid \"runtimeConfig\" value []: must be an object",
        ),
    ] {
        let e = DpdkConf::parse(&conf(&t, bad)).unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(e.msg.contains(what), "{e}");
    }
}

#[tokio::test]
async fn add_check_del() {
    let t = setup();
    let c = conf(&t, json!({}));
    let r = t
        .dpdk
        .add(&ctx(Command::Add, "c1", "net1"), &c)
        .await
        .unwrap();
    let v = r.to_value("1.1.0").unwrap();
    assert_eq!(
        v["interfaces"],
        json!([{"name": "net1", "sandbox": "/var/run/netns/p1", "pciID": "0000:01:10.0"}])
    );
    assert!(v.get("ips").is_none());
    assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("vfio-pci"));
    assert!(t.sim.dev_vfio.join("8").exists());
    let info: Value = serde_json::from_slice(&fs::read(&t.devinfo).unwrap()).unwrap();
    assert_eq!(
        info,
        json!({"type": "pci", "version": "1.1.0",
            "pci": {"pci-address": "0000:01:10.0", "pf-pci-address": "0000:01:00.0",
                "vfio-device": t.sim.dev_vfio.join("8")}})
    );
    let rec: Value =
        serde_json::from_slice::<Value>(&fs::read(t.state.join("c1@net1.json")).unwrap()).unwrap()
            ["record"]
            .take();
    assert_eq!(rec["phase"], "bound");
    assert_eq!(
        rec["original"],
        json!({"driver": "igbvf", "netdev": "ens1v0", "mac": "02:00:00:00:01:00", "up": true})
    );
    assert_eq!(
        rec["vfioDevice"],
        t.sim.dev_vfio.join("8").to_string_lossy().as_ref()
    );
    t.dpdk
        .check(&ctx(Command::Check, "c1", "net1"), &c)
        .await
        .unwrap();

    // ADD again: the same answer, nothing done.
    let n = t.sim.log().len();
    let r2 = t
        .dpdk
        .add(&ctx(Command::Add, "c1", "net1"), &c)
        .await
        .unwrap();
    assert_eq!(r2, r);
    assert_eq!(t.sim.log().len(), n);
    // Another attachment cannot take the same device; this one cannot switch devices.
    let e = t
        .dpdk
        .add(&ctx(Command::Add, "c2", "net1"), &c)
        .await
        .unwrap_err();
    assert!(
        e.msg
            .contains("0000:01:10.0 is already bound for container c1 ifname net1"),
        "{e}"
    );
    let e = t
        .dpdk
        .add(
            &ctx(Command::Add, "c1", "net1"),
            &conf(&t, json!({"deviceID": "0000:01:10.2"})),
        )
        .await
        .unwrap_err();
    assert!(e.msg.contains("already holds 0000:01:10.0"), "{e}");
    // A CHECK of an attachment with nothing bound fails.
    let e = t
        .dpdk
        .check(&ctx(Command::Check, "c9", "net1"), &c)
        .await
        .unwrap_err();
    assert!(
        e.msg
            .contains("no device is bound for container c9 ifname net1"),
        "{e}"
    );

    // DEL: back on igbvf, record and device-info gone; again: nothing to do.
    t.dpdk
        .del(&ctx(Command::Del, "c1", "net1"), &c)
        .await
        .unwrap();
    assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
    assert!(!t.devinfo.exists());
    assert!(!t.state.join("c1@net1.json").exists());
    let n = t.sim.log().len();
    t.dpdk
        .del(&ctx(Command::Del, "c1", "net1"), &c)
        .await
        .unwrap();
    // DEL with a config that has no device at all still works.
    t.dpdk
        .del(
            &ctx(Command::Del, "c1", "net1"),
            &conf(&t, json!({"deviceID": "junk"})),
        )
        .await
        .unwrap();
    assert_eq!(t.sim.log().len(), n);
    let e = t
        .dpdk
        .check(&ctx(Command::Check, "c1", "net1"), &c)
        .await
        .unwrap_err();
    assert!(e.msg.contains("no device is bound"), "{e}");
}

#[tokio::test]
async fn a_failed_add_leaves_the_device_and_no_record() {
    let t = setup();
    t.sim.fail(Fault::Probe, 0);
    let e = t
        .dpdk
        .add(&ctx(Command::Add, "c1", "net1"), &conf(&t, json!({})))
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 103);
    assert!(
        e.msg
            .contains("rolled back: 0000:01:10.0 is bound to igbvf again"),
        "{e}"
    );
    assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
    assert!(!t.state.join("c1@net1.json").exists());
    assert!(!t.devinfo.exists());
    // No device: a config error.
    let e = t
        .dpdk
        .add(
            &ctx(Command::Add, "c1", "net1"),
            &conf(&t, json!({"deviceID": null})),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 7);
    assert!(e.msg.contains("no device given"), "{e}");
    // The device-info file cannot be written: the bind is undone.
    let blocker = t.state.parent().unwrap().join("file");
    fs::write(&blocker, "").unwrap();
    let e = t
        .dpdk
        .add(
            &ctx(Command::Add, "c1", "net1"),
            &conf(
                &t,
                json!({"runtimeConfig": {"CNIDeviceInfoFile": blocker.join("x")}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 5);
    assert!(e.msg.contains("device-info file"), "{e}");
    assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
    assert!(!t.state.join("c1@net1.json").exists());
}

#[tokio::test]
async fn an_interrupted_add_is_undone_by_del() {
    let t = setup();
    // The rollback fails too: the device is left unbound, the record (phase binding) stays for DEL.
    t.sim.fail(Fault::Probe, 0);
    t.sim.fail(Fault::SetOverride, 1);
    let c = conf(&t, json!({}));
    let e = t
        .dpdk
        .add(&ctx(Command::Add, "c1", "net1"), &c)
        .await
        .unwrap_err();
    assert!(e.msg.contains("ROLLBACK FAILED"), "{e}");
    assert_eq!(driver(&t, "0000:01:10.0"), None);
    let rec: Value =
        serde_json::from_slice::<Value>(&fs::read(t.state.join("c1@net1.json")).unwrap()).unwrap()
            ["record"]
            .take();
    assert_eq!(rec["phase"], "binding");
    assert_eq!(rec["original"]["driver"], "igbvf");
    // A retried ADD keeps the true original (igbvf), not "unbound".
    t.dpdk
        .add(&ctx(Command::Add, "c1", "net1"), &c)
        .await
        .unwrap();
    let rec: Value =
        serde_json::from_slice::<Value>(&fs::read(t.state.join("c1@net1.json")).unwrap()).unwrap()
            ["record"]
            .take();
    assert_eq!(rec["original"]["driver"], "igbvf");
    t.dpdk
        .del(&ctx(Command::Del, "c1", "net1"), &c)
        .await
        .unwrap();
    assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
}

#[tokio::test]
async fn status_and_gc() {
    let t = setup();
    let c = conf(&t, json!({}));
    t.dpdk
        .status(&ctx(Command::Status, "", ""), &c)
        .await
        .unwrap();
    t.dpdk
        .add(&ctx(Command::Add, "c1", "net1"), &c)
        .await
        .unwrap();
    t.dpdk
        .add(
            &ctx(Command::Add, "c2", "net1"),
            &conf(&t, json!({"deviceID": "0000:01:10.2"})),
        )
        .await
        .unwrap();
    let mut gc = conf(&t, json!({}));
    gc.set_valid_attachments(&[multus_core::cni::AttachmentRef {
        container_id: "c2".into(),
        ifname: "net1".into(),
    }]);
    t.dpdk.gc(&ctx(Command::Gc, "", ""), &gc).await.unwrap();
    assert_eq!(driver(&t, "0000:01:10.0").as_deref(), Some("igbvf"));
    assert_eq!(driver(&t, "0000:01:10.2").as_deref(), Some("vfio-pci"));
    assert_eq!(Store::new(&t.state).list().records.len(), 1);
    fs::remove_dir(t.sim.fake.root().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let e = t
        .dpdk
        .status(&ctx(Command::Status, "", ""), &c)
        .await
        .unwrap_err();
    assert_eq!(e.code.code(), 50);
    assert!(e.msg.contains("vfio-pci driver is not loaded"), "{e}");
}

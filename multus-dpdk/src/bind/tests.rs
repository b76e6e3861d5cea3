//! Binding and restoring on fake sysfs trees with a simulated kernel (`crate::sim`).

use super::*;
use crate::sim::{igb_host, pci, Fault, Sim};
use multus_core::cni::CniError;

const VF0: &str = "0000:01:10.0";
const VF1: &str = "0000:01:10.2";

fn host(n: u32) -> (tempfile::TempDir, Sim) {
    let dir = tempfile::tempdir().unwrap();
    let sim = igb_host(dir.path(), n);
    (dir, sim)
}

fn driver(sim: &Sim, p: &str) -> Option<String> {
    sim.fake.sysfs().driver(pci(p)).unwrap()
}

fn override_file(sim: &Sim, p: &str) -> String {
    fs::read_to_string(sim.fake.device_dir(pci(p)).join("driver_override"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn plan_records_the_device_as_it_is() {
    let (_d, sim) = host(2);
    let plan = sim.binder().plan(pci(VF0), false).unwrap();
    assert_eq!(plan.pf, Some(pci("0000:01:00.0")));
    assert_eq!(plan.group, Some(8));
    assert!(!plan.noiommu && !plan.already_bound());
    assert_eq!(
        plan.original,
        Original {
            driver: Some("igbvf".into()),
            netdev: Some("ens1v0".into()),
            mac: Some("02:00:00:00:01:00".parse().unwrap()),
            up: true,
        }
    );
    assert!(sim.log().is_empty(), "planning changes nothing");
    // The PF is no VF.
    assert_eq!(
        sim.binder().plan(pci("0000:01:00.0"), false).unwrap().pf,
        None
    );
}

#[test]
fn bind_then_restore() {
    let (_d, sim) = host(2);
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    let bound = b.bind(&plan).unwrap();
    assert_eq!(
        bound.group,
        VfioGroup {
            number: 8,
            noiommu: false
        }
    );
    assert_eq!(bound.dev, sim.dev_vfio.join("8"));
    assert!(bound.dev.exists());
    assert_eq!(driver(&sim, VF0).as_deref(), Some("vfio-pci"));
    assert!(b.sysfs().netdevs(pci(VF0)).unwrap().is_empty());
    assert_eq!(override_file(&sim, VF0), "", "override cleared");
    assert_eq!(
        sim.log(),
        [
            "unbind 0000:01:10.0 igbvf",
            "override 0000:01:10.0 vfio-pci",
            "probe 0000:01:10.0",
            "override 0000:01:10.0 (clear)"
        ]
    );
    assert_eq!(b.verify(pci(VF0), &bound.group).unwrap(), bound.dev);
    // The other VF is untouched.
    assert_eq!(driver(&sim, VF1).as_deref(), Some("igbvf"));

    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(r.outcome, RestoreOutcome::Restored);
    // The kernel names the new netdev; the delegate renames it.
    assert_eq!(r.netdev.as_deref(), Some("eth10"));
    assert_eq!(driver(&sim, VF0).as_deref(), Some("igbvf"));
    assert!(!bound.dev.exists());
    assert_eq!(override_file(&sim, VF0), "");
    assert_eq!(
        sim.log()[4..],
        [
            "unbind 0000:01:10.0 vfio-pci",
            "override 0000:01:10.0 igbvf",
            "probe 0000:01:10.0",
            "override 0000:01:10.0 (clear)"
        ]
    );
    assert!(b.verify(pci(VF0), &bound.group).is_err());

    // Idempotent: again, nothing is done and the netdev is reported.
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(r.outcome, RestoreOutcome::AlreadyRestored);
    assert_eq!(r.netdev.as_deref(), Some("eth10"));
    assert_eq!(sim.log().len(), 8);
}

/// A record's driver name is checked before the device leaves vfio-pci: a tampered or torn record
/// never makes a write of its text, and the device stays where it is.
#[test]
fn a_bad_driver_name_from_a_record_changes_nothing() {
    let (_d, sim) = host(1);
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    b.bind(&plan).unwrap();
    let n = sim.log().len();
    for bad in ["../../../x", "igbvf\nvfio", "", "a b", &"x".repeat(300)] {
        let original = Original {
            driver: Some(bad.to_string()),
            ..plan.original.clone()
        };
        let e = b.restore(pci(VF0), &original).unwrap_err();
        assert!(e.to_string().contains("not a driver name"), "{e}");
        assert!(e.to_string().len() < 200, "{e}");
    }
    assert_eq!(sim.log().len(), n, "nothing written");
    assert_eq!(driver(&sim, VF0).as_deref(), Some("vfio-pci"));
}

#[test]
fn no_iommu_is_refused_unless_allowed_and_the_kernel_agrees() {
    let (_d, sim) = host(1);
    let root = sim.fake.root().to_path_buf();
    fs::remove_dir(root.join("sys/class/iommu/dmar0")).unwrap();
    let b = sim.binder();
    let e = b.plan(pci(VF0), false).unwrap_err();
    assert!(matches!(e, BindError::NoIommu(_)), "{e}");
    assert!(e.to_string().contains("allowNoIommu"), "{e}");
    let e = b.plan(pci(VF0), true).unwrap_err();
    assert!(matches!(e, BindError::NoIommuModeOff { .. }), "{e}");
    assert!(e.to_string().contains("enable_unsafe_noiommu_mode"), "{e}");
    let param = root.join(NOIOMMU_PARAM);
    fs::create_dir_all(param.parent().unwrap()).unwrap();
    fs::write(&param, "N\n").unwrap();
    assert!(matches!(
        b.plan(pci(VF0), true).unwrap_err(),
        BindError::NoIommuModeOff { .. }
    ));
    fs::write(&param, "Y\n").unwrap();
    // No group before the bind in no-IOMMU mode: vfio-pci makes one.
    sim.fake.unlink(pci(VF0), "iommu_group").unwrap();
    let plan = b.plan(pci(VF0), true).unwrap();
    assert!(plan.noiommu);
    assert_eq!(plan.group, None);
    assert_eq!(
        VfioGroup {
            number: 3,
            noiommu: true
        }
        .dev_name(),
        "noiommu-3"
    );
    assert!(sim.log().is_empty());
    // With an IOMMU but no group, the device cannot be bound.
    fs::create_dir(root.join("sys/class/iommu/dmar0")).unwrap();
    assert!(matches!(
        b.plan(pci(VF0), false).unwrap_err(),
        BindError::NoIommuGroup(_)
    ));
}

#[test]
fn vfio_pci_must_be_loaded() {
    let (_d, sim) = host(1);
    fs::remove_dir(sim.fake.root().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let e = sim.binder().plan(pci(VF0), false).unwrap_err();
    assert!(matches!(e, BindError::NoVfioPci(_)), "{e}");
    assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
    let cni: CniError = e.into();
    assert_eq!(cni.code.code(), 103);
    assert!(sim.log().is_empty());
    let e: CniError = sim
        .binder()
        .plan(pci("0000:01:11.0"), false)
        .unwrap_err()
        .into();
    assert_eq!(e.code.code(), 7, "{e}");
    assert!(e.msg.contains("0000:01:11.0 does not exist"), "{e}");
}

/// Puts VF1 into VF0's IOMMU group 8.
fn share_group(sim: &Sim) {
    sim.fake
        .relink(pci(VF1), "iommu_group", "../../../../kernel/iommu_groups/8")
        .unwrap();
    fs::remove_dir_all(sim.fake.root().join("sys/kernel/iommu_groups/9")).unwrap();
    sim.link_groups();
}

#[test]
fn a_group_is_usable_only_whole() {
    let (_d, sim) = host(2);
    share_group(&sim);
    let b = sim.binder();
    assert_eq!(b.group_devices(8).unwrap(), [VF0, VF1]);
    let e = b.plan(pci(VF0), false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "IOMMU group 8 of 0000:01:10.0 is not usable whole: 0000:01:10.2 in the same group is bound to \
         igbvf (every device of the group must be unbound or bound to vfio-pci)"
    );
    // Unbound, on vfio-pci, on pci-stub: all fine.
    sim.detach(pci(VF1));
    b.plan(pci(VF0), false).unwrap();
    sim.attach(pci(VF1), "vfio-pci");
    b.plan(pci(VF0), false).unwrap();
    sim.detach(pci(VF1));
    sim.attach(pci(VF1), "pci-stub");
    let plan = b.plan(pci(VF0), false).unwrap();
    b.bind(&plan).unwrap();
    // The group's device list unreadable: an error naming it.
    fs::remove_dir_all(sim.fake.root().join("sys/kernel/iommu_groups/8/devices")).unwrap();
    let e = b.plan(pci(VF0), false).unwrap_err();
    assert!(e.to_string().contains("iommu_groups/8/devices"), "{e}");
}

fn assert_back_on_igbvf(sim: &Sim, e: &BindError) {
    assert!(matches!(e, BindError::RolledBack { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("rolled back: 0000:01:10.0 is bound to igbvf again"),
        "{e}"
    );
    assert_eq!(driver(sim, VF0).as_deref(), Some("igbvf"));
    assert_eq!(override_file(sim, VF0), "");
    assert_eq!(sim.fake.sysfs().netdevs(pci(VF0)).unwrap().len(), 1);
    assert!(fs::read_dir(&sim.dev_vfio).unwrap().next().is_none());
}

#[test]
fn a_failed_probe_rolls_back() {
    let (_d, sim) = host(1);
    sim.fail(Fault::Probe, 0);
    let b = sim.binder();
    let e = b.bind(&b.plan(pci(VF0), false).unwrap()).unwrap_err();
    assert!(
        e.to_string()
            .contains("probing vfio-pci for 0000:01:10.0: injected"),
        "{e}"
    );
    assert_back_on_igbvf(&sim, &e);
    assert_eq!(
        sim.log(),
        [
            "unbind 0000:01:10.0 igbvf",
            "override 0000:01:10.0 vfio-pci",
            "probe 0000:01:10.0",
            "Probe FAILED",
            "override 0000:01:10.0 (clear)",
            "override 0000:01:10.0 igbvf",
            "probe 0000:01:10.0",
            "override 0000:01:10.0 (clear)"
        ]
    );
}

#[test]
fn vfio_pci_gone_half_way_rolls_back() {
    // vfio-pci unloaded between the check and the probe: the probe matches nothing, the device stays unbound.
    let (_d, sim) = host(1);
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    fs::remove_dir(sim.fake.root().join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let e = b.bind(&plan).unwrap_err();
    assert!(
        e.to_string()
            .contains("0000:01:10.0 is not bound to vfio-pci after the probe (driver: none)"),
        "{e}"
    );
    assert_back_on_igbvf(&sim, &e);
}

#[test]
fn a_failed_override_or_missing_group_device_rolls_back() {
    let (_d, sim) = host(1);
    sim.fail(Fault::SetOverride, 0);
    let b = sim.binder();
    let e = b.bind(&b.plan(pci(VF0), false).unwrap()).unwrap_err();
    assert_back_on_igbvf(&sim, &e);

    let (_d, sim) = host(1);
    sim.no_group_dev();
    let b = sim.binder();
    let e = b.bind(&b.plan(pci(VF0), false).unwrap()).unwrap_err();
    assert!(e.to_string().contains("is bound to vfio-pci but"), "{e}");
    assert!(
        e.to_string()
            .contains("dev/vfio/8 did not appear within 200ms"),
        "{e}"
    );
    assert_back_on_igbvf(&sim, &e);
    assert!(sim
        .log()
        .contains(&"unbind 0000:01:10.0 vfio-pci".to_string()));
}

#[test]
fn a_failed_unbind_changes_nothing() {
    let (_d, sim) = host(1);
    sim.fail(Fault::Unbind, 0);
    let b = sim.binder();
    let e = b.bind(&b.plan(pci(VF0), false).unwrap()).unwrap_err();
    assert!(
        e.to_string().contains("unbinding from igbvf 0000:01:10.0"),
        "{e}"
    );
    assert_back_on_igbvf(&sim, &e);
    assert_eq!(sim.log(), ["unbind 0000:01:10.0 igbvf", "Unbind FAILED"]);
}

#[test]
fn a_failed_rollback_says_so() {
    let (_d, sim) = host(1);
    sim.fail(Fault::Probe, 0);
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    // The bind's probe fails, then the rollback's override.
    sim.fail(Fault::SetOverride, 1);
    let e = b.bind(&plan).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("ROLLBACK FAILED, 0000:01:10.0 may be left without a driver"),
        "{msg}"
    );
    assert_eq!(driver(&sim, VF0), None);
    // DEL's restore finishes the job.
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(r.outcome, RestoreOutcome::Restored);
    assert_eq!(driver(&sim, VF0).as_deref(), Some("igbvf"));
    assert!(r.netdev.is_some());
}

#[test]
fn a_device_already_on_vfio_pci_is_taken_as_it_is() {
    let (_d, sim) = host(1);
    sim.detach(pci(VF0));
    sim.attach(pci(VF0), "vfio-pci");
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    assert!(plan.already_bound());
    assert_eq!(plan.original.netdev, None);
    let bound = b.bind(&plan).unwrap();
    assert_eq!(bound.dev, sim.dev_vfio.join("8"));
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(
        r,
        Restored {
            outcome: RestoreOutcome::LeftOnVfio,
            netdev: None
        }
    );
    assert!(sim.log().is_empty());
    assert_eq!(driver(&sim, VF0).as_deref(), Some("vfio-pci"));
}

#[test]
fn restore_leaves_alone_what_someone_else_changed() {
    let (_d, sim) = host(1);
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    b.bind(&plan).unwrap();
    // Someone bound it to another driver.
    sim.detach(pci(VF0));
    sim.attach(pci(VF0), "uio_pci_generic");
    let n = sim.log().len();
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(
        r.outcome,
        RestoreOutcome::TakenOver("uio_pci_generic".into())
    );
    assert_eq!(sim.log().len(), n, "nothing done");
    // Left unbound by someone: bound to the original.
    sim.detach(pci(VF0));
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(r.outcome, RestoreOutcome::Restored);
    assert_eq!(driver(&sim, VF0).as_deref(), Some("igbvf"));
    // The VF is gone (sriov_numvfs went to 0).
    fs::remove_file(sim.fake.root().join("sys/bus/pci/devices").join(VF0)).unwrap();
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(
        r,
        Restored {
            outcome: RestoreOutcome::Gone,
            netdev: None
        }
    );
}

#[test]
fn an_unbound_device_goes_back_to_unbound() {
    let (_d, sim) = host(1);
    sim.detach(pci(VF0));
    let b = sim.binder();
    let plan = b.plan(pci(VF0), false).unwrap();
    assert_eq!(plan.original, Original::default());
    b.bind(&plan).unwrap();
    assert_eq!(sim.log()[0], "override 0000:01:10.0 vfio-pci");
    let r = b.restore(pci(VF0), &plan.original).unwrap();
    assert_eq!(
        r,
        Restored {
            outcome: RestoreOutcome::Restored,
            netdev: None
        }
    );
    assert_eq!(driver(&sim, VF0), None);
    assert_eq!(override_file(&sim, VF0), "");
}

#[test]
fn real_ops_write_the_kernel_files_and_never_create_them() {
    let dir = tempfile::tempdir().unwrap();
    let ops = SysfsDriverOps::new(dir.path());
    let p = pci(VF0);
    let e = ops.probe(p).unwrap_err();
    assert!(e.to_string().contains("sys/bus/pci/drivers_probe"), "{e}");
    let devdir = dir.path().join("sys/bus/pci/devices").join(VF0);
    fs::create_dir_all(&devdir).unwrap();
    fs::create_dir_all(dir.path().join("sys/bus/pci/drivers/igbvf")).unwrap();
    for f in [
        "sys/bus/pci/drivers_probe",
        "sys/bus/pci/drivers/igbvf/unbind",
    ] {
        fs::write(dir.path().join(f), "").unwrap();
    }
    fs::write(devdir.join("driver_override"), "").unwrap();
    ops.probe(p).unwrap();
    ops.unbind(p, "igbvf").unwrap();
    ops.set_override(p, Some("vfio-pci")).unwrap();
    let read = |f: &str| fs::read_to_string(dir.path().join(f)).unwrap();
    assert_eq!(read("sys/bus/pci/drivers_probe"), VF0);
    assert_eq!(read("sys/bus/pci/drivers/igbvf/unbind"), VF0);
    assert_eq!(
        read(&format!("sys/bus/pci/devices/{VF0}/driver_override")),
        "vfio-pci"
    );
    ops.set_override(p, None).unwrap();
    assert_eq!(
        read(&format!("sys/bus/pci/devices/{VF0}/driver_override")),
        "\n"
    );
}

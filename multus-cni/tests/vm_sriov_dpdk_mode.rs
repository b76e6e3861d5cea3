//! VM test (tests/vm/run.sh) of the `sriov` delegate's userspace (DPDK) mode, as sriov-cni's: a VF bound to
//! vfio-pci by hand (as the SR-IOV device plugin's `drivers: [vfio-pci]` pools hand them out) is added with `type:
//! sriov` and VF settings, through the meta-plugin and through the binary started as `sriov`. The PF's `ip -d link
//! show` carries the settings, the VF stays on vfio-pci with no netdev anywhere, the result has its `pciID`, IPAM's
//! address (host-local) is reported (not applied: the pod has only `lo`), the device-info names `/dev/vfio/<group>`; CHECK passes;
//! DEL puts the settings back, frees the VF and leaves it on vfio-pci. The VF goes back to igbvf at the end.

#[allow(dead_code)]
mod vm_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use vm_common::{
    clean_command, igb_pf, link_name, multus_bin, netdev_of, require_vm, reserved_ips, run_cni,
    run_ok, show, vfinfo, wait_for, Cni, Netns, NumVfs, CNI_PATH,
};

fn driver(pci: &str) -> Option<String> {
    link_name(format!("/sys/bus/pci/devices/{pci}/driver"))
}

/// Moves `pci` to `to` by hand, as an operator or the device plugin's setup does: `driver_override`, unbind,
/// `drivers_probe`, override cleared.
fn rebind(pci: &str, to: &str) {
    let dev = PathBuf::from("/sys/bus/pci/devices").join(pci);
    fs::write(dev.join("driver_override"), to).expect("driver_override");
    if driver(pci).is_some() {
        fs::write(dev.join("driver/unbind"), pci).expect("unbind");
    }
    fs::write("/sys/bus/pci/drivers_probe", pci).expect("drivers_probe");
    fs::write(dev.join("driver_override"), "\n").expect("clear driver_override");
    assert!(
        wait_for(Duration::from_secs(10), || driver(pci).as_deref()
            == Some(to)),
        "{pci} did not bind to {to} (driver {:?})",
        driver(pci)
    );
    println!("{pci} bound to {to} by hand");
}

/// Runs one CNI command of `exe` with `conf` on stdin.
fn cni(exe: &Path, command: &str, cid: &str, ns: &Netns, conf: &Value) -> Cni {
    let mut cmd = clean_command(exe);
    cmd.env("MULTUS_LOG_LEVEL", "info");
    run_cni(cmd, command, cid, ns.path(), "net1", conf)
}

/// Only `lo` in the pod: no netdev entered it.
fn assert_pod_has_only_lo(ns: &Netns) {
    let links = vm_common::ip_json(&["-n", &ns.name, "link", "show"]);
    let names: Vec<&str> = links
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["ifname"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["lo"], "links in {}", ns.name);
}

/// On vfio-pci, no netdev, its group device there.
fn assert_on_vfio(pci: &str, group: &str) {
    assert_eq!(driver(pci).as_deref(), Some("vfio-pci"), "{pci} driver");
    assert_eq!(
        netdev_of(pci, Duration::ZERO),
        None,
        "no netdev on vfio-pci"
    );
    assert!(
        Path::new("/dev/vfio").join(group).exists(),
        "/dev/vfio/{group}"
    );
    println!("{pci} still on vfio-pci, /dev/vfio/{group} there");
}

#[test]
fn vm_sriov_dpdk_mode_vfio_bound_vf() {
    require_vm();
    let pf = igb_pf();
    let dev = fs::canonicalize(format!("/sys/class/net/{pf}/device")).expect("PF device dir");
    let _vfs = NumVfs::set(&dev, 2);
    let pci = fs::canonicalize(dev.join("virtfn0"))
        .expect("virtfn0")
        .file_name()
        .expect("bdf")
        .to_string_lossy()
        .into_owned();
    netdev_of(&pci, Duration::from_secs(20)).expect("VF 0 netdev did not appear");
    let group = link_name(format!("/sys/bus/pci/devices/{pci}/iommu_group")).expect("IOMMU group");
    rebind(&pci, "vfio-pci");
    assert_on_vfio(&pci, &group);

    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let ipam = tmp.path().join("ipam");
    let ns = Netns::named("sriovdpdk");
    let multus = multus_bin();
    let delegate = json!({"cniVersion": "1.1.0", "name": "sriov-dpdk", "type": "sriov", "deviceID": pci,
        "dataDir": state, "mac": "02:11:22:33:44:55", "vlan": 100, "spoofchk": "off", "trust": "on",
        "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": ipam}});
    let alloc = state.join("pci").join(&pci);
    let before = vfinfo(&pf, 0);

    // Through the meta-plugin.
    let conf = json!({"cniVersion": "1.1.0", "name": "multus-vm", "type": "multus", "binDir": CNI_PATH,
        "delegates": [delegate]});
    let r = cni(&multus, "ADD", "c1", &ns, &conf).ok("ADD");
    let ifaces = r["interfaces"].as_array().expect("interfaces");
    let iface = ifaces
        .iter()
        .find(|i| i["pciID"] == pci.as_str())
        .unwrap_or_else(|| panic!("no interface with pciID {pci}: {r}"));
    assert_eq!(iface["name"], "net1");
    assert_eq!(iface["sandbox"], ns.path().to_str().unwrap());
    assert_eq!(iface["mac"], "02:11:22:33:44:55");
    let ip = r["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ip.starts_with("10.77.0."), "IPAM's address reported: {r}");
    assert_eq!(r["ips"][0]["interface"], 0, "{r}");
    assert_eq!(
        reserved_ips(&ipam, "sriov-dpdk").len(),
        1,
        "host-local reservation"
    );
    assert_eq!(
        vfinfo(&pf, 0),
        ("02:11:22:33:44:55".to_string(), 100, false, true),
        "VF settings on the PF"
    );
    show(&["-d", "link", "show", &pf]);
    assert_on_vfio(&pci, &group);
    assert_pod_has_only_lo(&ns);
    assert!(alloc.exists(), "allocation record {}", alloc.display());
    // A second attachment cannot take the same VF.
    let ns2 = Netns::named("sriovdpdk2");
    let e = cni(&multus, "ADD", "c2", &ns2, &conf);
    assert_eq!(e.code, Some(1), "second ADD of the same VF: {e:?}");
    assert!(e.stdout.contains("already allocated"), "{e:?}");
    cni(&multus, "DEL", "c1", &ns, &conf).ok("DEL");
    assert!(
        reserved_ips(&ipam, "sriov-dpdk").is_empty(),
        "IPAM released"
    );
    assert_eq!(vfinfo(&pf, 0), before, "VF settings put back");
    assert!(!alloc.exists(), "VF freed");
    assert_on_vfio(&pci, &group);
    cni(&multus, "DEL", "c1", &ns, &conf).ok("second DEL");
    cni(&multus, "DEL", "c2", &ns2, &conf).ok("DEL of the refused ADD");

    // Standalone, as `sriov`, with the device-info file and CHECK.
    let bin = tmp.path().join("sriov");
    std::os::unix::fs::symlink(&multus, &bin).expect("symlink sriov");
    let devinfo = tmp.path().join("devinfo/sriov-dpdk-c3-net1.json");
    let mut conf = delegate.clone();
    if let Some(o) = conf.as_object_mut() {
        o.remove("ipam");
    }
    conf["runtimeConfig"] = json!({"CNIDeviceInfoFile": devinfo});
    let r = cni(&bin, "ADD", "c3", &ns, &conf).ok("standalone ADD");
    assert_eq!(r["interfaces"][0]["pciID"], pci.as_str(), "{r}");
    let info: Value = serde_json::from_slice(&fs::read(&devinfo).expect("device-info written"))
        .expect("device-info JSON");
    println!("device-info {info}");
    assert_eq!(info["type"], "pci");
    assert_eq!(info["pci"]["pci-address"], pci.as_str());
    assert_eq!(
        info["pci"]["pf-pci-address"],
        dev.file_name().expect("bdf").to_string_lossy().as_ref()
    );
    assert_eq!(
        info["pci"]["vfio-device"],
        format!("/dev/vfio/{group}").as_str()
    );
    assert_eq!(vfinfo(&pf, 0).1, 100, "VLAN on the PF");
    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    cni(&bin, "CHECK", "c3", &ns, &check).ok("CHECK");
    // CHECK sees a VLAN changed behind its back.
    run_ok("ip", &["link", "set", "dev", &pf, "vf", "0", "vlan", "7"]);
    let c = cni(&bin, "CHECK", "c3", &ns, &check);
    assert_eq!(c.code, Some(1), "CHECK after the VLAN changed: {c:?}");
    assert!(c.stdout.contains("vlan"), "{c:?}");
    run_ok("ip", &["link", "set", "dev", &pf, "vf", "0", "vlan", "100"]);
    cni(&bin, "DEL", "c3", &ns, &conf).ok("standalone DEL");
    assert!(!devinfo.exists(), "device-info removed");
    assert_eq!(vfinfo(&pf, 0), before, "VF settings put back");
    assert!(!alloc.exists(), "VF freed");
    assert_on_vfio(&pci, &group);

    // Back to igbvf, as it was.
    rebind(&pci, "igbvf");
    let n = netdev_of(&pci, Duration::from_secs(20)).expect("netdev back on igbvf");
    println!("{pci} back on igbvf as {n}");
}

//! VM test (tests/vm/run.sh): SR-IOV VF discovery through sysfs on the emulated igb PF, as a smoke test for the
//! SR-IOV work. Sets `sriov_numvfs`, checks the VF PCI functions, their igbvf netdevs, `physfn` and IOMMU groups.

#[allow(dead_code)]
mod vm_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vm_common::{igb_pf, ip_json, link_name, read_attr, require_vm, show, wait_for};

/// Writes `sriov_numvfs`; puts it back to 0 on drop, so a failed assertion leaves no VFs for the next test.
struct NumVfs(PathBuf);

impl NumVfs {
    fn set(dev: &Path, n: u32) -> Self {
        let attr = dev.join("sriov_numvfs");
        fs::write(&attr, n.to_string())
            .unwrap_or_else(|e| panic!("write {n} to {}: {e}", attr.display()));
        NumVfs(attr)
    }
}

impl Drop for NumVfs {
    fn drop(&mut self) {
        let _ = fs::write(&self.0, "0");
    }
}

#[test]
fn vm_sriov_smoke_vfs_appear_and_go() {
    require_vm();
    let pf = igb_pf();
    let dev = fs::canonicalize(format!("/sys/class/net/{pf}/device")).expect("PF device dir");
    let total: u32 = read_attr(dev.join("sriov_totalvfs"))
        .parse()
        .expect("sriov_totalvfs");
    println!(
        "PF {pf} at {} (driver igb), sriov_totalvfs={total}",
        dev.display()
    );
    assert!(
        total >= 2,
        "igb PF must offer at least 2 VFs, offers {total}"
    );
    if read_attr(dev.join("sriov_numvfs")) != "0" {
        fs::write(dev.join("sriov_numvfs"), "0").expect("reset sriov_numvfs");
    }
    assert!(
        !dev.join("virtfn0").exists(),
        "no VF before sriov_numvfs is set"
    );
    let pf_group = link_name(dev.join("iommu_group")).expect("PF has an IOMMU group (intel-iommu)");

    let guard = NumVfs::set(&dev, 2);
    assert_eq!(read_attr(dev.join("sriov_numvfs")), "2");
    let mut vf_netdevs = Vec::new();
    for i in 0..2 {
        let virtfn = dev.join(format!("virtfn{i}"));
        // The VF's netdev appears when igbvf probes it; under emulation that may take a moment.
        let appeared = wait_for(Duration::from_secs(20), || {
            fs::read_dir(virtfn.join("net"))
                .map(|mut d| d.next().is_some())
                .unwrap_or(false)
        });
        assert!(
            appeared,
            "{} has no net/ entry after 20 s",
            virtfn.display()
        );
        let vf_dev = fs::canonicalize(&virtfn).expect("virtfn link resolves");
        assert_eq!(
            link_name(vf_dev.join("driver")).as_deref(),
            Some("igbvf"),
            "VF {i} driver"
        );
        let physfn = fs::canonicalize(vf_dev.join("physfn")).expect("VF has physfn");
        assert_eq!(physfn, dev, "VF {i} physfn points back to the PF");
        let nets: Vec<String> = fs::read_dir(vf_dev.join("net"))
            .expect("VF net dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(nets.len(), 1, "VF {i} has one netdev: {nets:?}");
        let group = link_name(vf_dev.join("iommu_group")).expect("VF has an IOMMU group");
        println!(
            "VF {i}: {} netdev {} driver igbvf iommu_group {group} (PF group {pf_group})",
            vf_dev.file_name().expect("bdf").to_string_lossy(),
            nets[0]
        );
        // The netdev is a real link in the kernel.
        let link = ip_json(&["-d", "link", "show", &nets[0]]);
        assert_eq!(link[0]["ifname"], nets[0].as_str());
        vf_netdevs.push(nets[0].clone());
    }
    assert_ne!(vf_netdevs[0], vf_netdevs[1]);
    assert!(!dev.join("virtfn2").exists(), "only 2 VFs were asked for");

    // The PF lists its VFs over netlink too.
    let pf_link = ip_json(&["link", "show", &pf]);
    let vfs = pf_link[0]["vfinfo_list"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert_eq!(vfs, 2, "PF vfinfo_list: {pf_link}");
    show(&["-d", "link", "show", &pf]);
    for vf in &vf_netdevs {
        show(&["-d", "link", "show", vf]);
    }

    drop(guard);
    assert_eq!(read_attr(dev.join("sriov_numvfs")), "0");
    let gone = wait_for(Duration::from_secs(20), || !dev.join("virtfn0").exists());
    assert!(gone, "virtfn0 still there after sriov_numvfs=0");
    for vf in &vf_netdevs {
        assert!(
            !Path::new("/sys/class/net").join(vf).exists(),
            "VF netdev {vf} still exists"
        );
    }
    println!("VFs removed after sriov_numvfs=0");
}

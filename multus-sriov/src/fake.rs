//! Fake sysfs trees for tests (this crate's and later crates', with feature `fake-sysfs`).
//!
//! [`FakeSysfs`] lays out, under a directory the caller owns (a temp dir), the directories, attribute files and
//! relative symlinks the kernel creates for a PCI NIC with SR-IOV, as seen on the VM's emulated igb
//! (`multus-cni/tests/vm_sriov_smoke.rs`):
//!
//! ```text
//! sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0/          the PF (behind root port 00:01.0)
//!     vendor device sriov_totalvfs sriov_numvfs
//!     driver      -> ../../../../bus/pci/drivers/igb
//!     iommu_group -> ../../../../kernel/iommu_groups/7
//!     virtfn0     -> ../0000:01:10.0
//!     net/<pf>/device -> ../../../0000:01:00.0
//! sys/devices/pci0000:00/0000:00:01.0/0000:01:10.0/          a VF
//!     vendor device  physfn -> ../0000:01:00.0  driver -> ../../../../bus/pci/drivers/igbvf  net/<vf>/
//! sys/bus/pci/devices/0000:01:00.0 -> ../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0
//! sys/bus/pci/drivers/igb/   sys/bus/pci/drivers/igbvf/   sys/kernel/iommu_groups/7/
//! sys/class/net/<pf> -> ../../devices/pci0000:00/0000:00:01.0/0000:01:00.0/net/<pf>
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::sysfs::Sysfs;
use crate::PciAddress;

/// A VF to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVf {
    /// Its PCI address.
    pub pci: PciAddress,
    /// Its netdev in this netns, if any.
    pub netdev: Option<String>,
    /// Its bound driver, `None` when unbound.
    pub driver: Option<String>,
    /// PCI vendor ID.
    pub vendor: u16,
    /// PCI device ID.
    pub device: u16,
    /// IOMMU group, `None` for no `iommu_group` link.
    pub iommu_group: Option<u32>,
}

/// A PF to lay out, with its VFs (`virtfn0`.. in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePf {
    /// Its netdev name.
    pub netdev: String,
    /// Its PCI address.
    pub pci: PciAddress,
    /// Its driver.
    pub driver: String,
    /// PCI vendor ID.
    pub vendor: u16,
    /// PCI device ID.
    pub device: u16,
    /// IOMMU group.
    pub iommu_group: Option<u32>,
    /// `sriov_totalvfs`.
    pub total_vfs: u32,
    /// The enabled VFs (`sriov_numvfs` is their count).
    pub vfs: Vec<FakeVf>,
}

impl FakePf {
    /// An Intel 82576 (igb) PF at `0000:<bus>:00.0` with `num_vfs` igbvf VFs at the kernel's igb routing (offset
    /// 0x80, stride 2: `<bus>:10.0`, `<bus>:10.2`, ...), VF `i` with netdev `<netdev>v<i>`, IOMMU group `7 + 1 + i`
    /// for VFs and 7 for the PF. `sriov_totalvfs` is 7.
    pub fn igb(netdev: &str, bus: u8, num_vfs: u32) -> FakePf {
        let vfs = (0..num_vfs)
            .map(|i| {
                let rid = 0x80 + 2 * i;
                FakeVf {
                    pci: PciAddress {
                        domain: 0,
                        bus,
                        device: ((rid >> 3) & 0x1f) as u8,
                        function: (rid & 7) as u8,
                    },
                    netdev: Some(format!("{netdev}v{i}")),
                    driver: Some("igbvf".into()),
                    vendor: 0x8086,
                    device: 0x10ca,
                    iommu_group: Some(8 + i),
                }
            })
            .collect();
        FakePf {
            netdev: netdev.into(),
            pci: PciAddress {
                domain: 0,
                bus,
                device: 0,
                function: 0,
            },
            driver: "igb".into(),
            vendor: 0x8086,
            device: 0x10c9,
            iommu_group: Some(7),
            total_vfs: 7,
            vfs,
        }
    }
}

/// A fake sysfs tree under a caller-owned directory.
#[derive(Debug, Clone)]
pub struct FakeSysfs {
    root: PathBuf,
}

impl FakeSysfs {
    /// Creates the skeleton (`sys/devices`, `sys/bus/pci/{devices,drivers}`, `sys/class/net`,
    /// `sys/kernel/iommu_groups`) under `root`.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<FakeSysfs> {
        let root = root.into();
        for d in [
            "sys/devices",
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/class/net",
            "sys/kernel/iommu_groups",
        ] {
            fs::create_dir_all(root.join(d))?;
        }
        Ok(FakeSysfs { root })
    }

    /// The root (pass to [`Sysfs::new`]).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A [`Sysfs`] reading this tree.
    pub fn sysfs(&self) -> Sysfs {
        Sysfs::new(&self.root)
    }

    /// The real directory of a function (`sys/devices/pci<dom>:00/<dom>:00:01.0/<bdf>`), under the one root port.
    pub fn device_dir(&self, pci: PciAddress) -> PathBuf {
        self.root.join("sys").join(device_rel(pci))
    }

    /// Lays out a PF, its VFs and their netdevs.
    pub fn add_pf(&self, pf: &FakePf) -> io::Result<()> {
        self.add_function(
            pf.pci,
            pf.vendor,
            pf.device,
            Some(&pf.driver),
            pf.iommu_group,
        )?;
        let dir = self.device_dir(pf.pci);
        fs::write(dir.join("sriov_totalvfs"), format!("{}\n", pf.total_vfs))?;
        fs::write(dir.join("sriov_numvfs"), format!("{}\n", pf.vfs.len()))?;
        self.add_netdev(pf.pci, &pf.netdev)?;
        for (i, vf) in pf.vfs.iter().enumerate() {
            self.add_function(
                vf.pci,
                vf.vendor,
                vf.device,
                vf.driver.as_deref(),
                vf.iommu_group,
            )?;
            symlink(format!("../{}", vf.pci), dir.join(format!("virtfn{i}")))?;
            symlink(
                format!("../{}", pf.pci),
                self.device_dir(vf.pci).join("physfn"),
            )?;
            if let Some(n) = &vf.netdev {
                self.add_netdev(vf.pci, n)?;
            }
        }
        Ok(())
    }

    /// Lays out a PCI function (no SR-IOV attributes): its directory, `vendor`, `device`, `driver`,
    /// `iommu_group`, and its `sys/bus/pci/devices` link.
    pub fn add_function(
        &self,
        pci: PciAddress,
        vendor: u16,
        device: u16,
        driver: Option<&str>,
        iommu_group: Option<u32>,
    ) -> io::Result<()> {
        let dir = self.device_dir(pci);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("vendor"), format!("0x{vendor:04x}\n"))?;
        fs::write(dir.join("device"), format!("0x{device:04x}\n"))?;
        // From sys/devices/pci0000:00/0000:00:01.0/<bdf>/ up to sys/ is four levels.
        let up = "../../../..";
        if let Some(d) = driver {
            fs::create_dir_all(self.root.join("sys/bus/pci/drivers").join(d))?;
            symlink(format!("{up}/bus/pci/drivers/{d}"), dir.join("driver"))?;
        }
        if let Some(g) = iommu_group {
            fs::create_dir_all(self.root.join(format!("sys/kernel/iommu_groups/{g}")))?;
            symlink(
                format!("{up}/kernel/iommu_groups/{g}"),
                dir.join("iommu_group"),
            )?;
        }
        symlink(
            format!("../../../{}", device_rel(pci).display()),
            self.root.join("sys/bus/pci/devices").join(pci.to_string()),
        )?;
        Ok(())
    }

    /// Gives a function a netdev: `<dev>/net/<name>/` with `device -> ../../../<bdf>`, and
    /// `sys/class/net/<name> -> ../../devices/.../net/<name>`.
    pub fn add_netdev(&self, pci: PciAddress, name: &str) -> io::Result<()> {
        let net = self.device_dir(pci).join("net").join(name);
        fs::create_dir_all(&net)?;
        symlink(format!("../../../{pci}"), net.join("device"))?;
        symlink(
            format!("../../{}/net/{name}", device_rel(pci).display()),
            self.root.join("sys/class/net").join(name),
        )
    }

    /// Removes a function's netdev (as when it moves into another netns or its driver unbinds).
    pub fn remove_netdev(&self, pci: PciAddress, name: &str) -> io::Result<()> {
        fs::remove_file(self.root.join("sys/class/net").join(name))?;
        fs::remove_dir_all(self.device_dir(pci).join("net").join(name))
    }

    /// Overwrites an attribute of a function (to test odd content).
    pub fn write_attr(&self, pci: PciAddress, name: &str, content: &[u8]) -> io::Result<()> {
        fs::write(self.device_dir(pci).join(name), content)
    }

    /// Replaces a link of a function (`driver`, `physfn`, `virtfn0`, ...) by one to `target` (to test odd links).
    pub fn relink(&self, pci: PciAddress, name: &str, target: &str) -> io::Result<()> {
        let path = self.device_dir(pci).join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        symlink(target, path)
    }

    /// Removes a link of a function (for example `driver`, as an unbind does).
    pub fn unlink(&self, pci: PciAddress, name: &str) -> io::Result<()> {
        fs::remove_file(self.device_dir(pci).join(name))
    }
}

/// `devices/pci<dom>:00/<dom>:00:01.0/<bdf>`, relative to `sys/`.
fn device_rel(pci: PciAddress) -> PathBuf {
    let d = pci.domain;
    PathBuf::from(format!("devices/pci{d:04x}:00/{d:04x}:00:01.0/{pci}"))
}

//! A simulated kernel for unit tests: a fake sysfs tree (`multus_sriov::fake`) plus a [`DriverOps`] that does to
//! the tree what the kernel does to sysfs on unbind / `driver_override` / `drivers_probe`: the `driver` link comes
//! and goes, netdevs disappear on unbind and reappear (under a kernel-chosen name) when a net driver binds, and
//! binding vfio-pci creates `/dev/vfio/<group>` in a temp dev dir. Faults can be injected per operation.
//!
//! It only simulates what the tests need; the real kernel path is proved in the VM (`multus-cni/tests/vm_dpdk.rs`).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use multus_sriov::fake::{FakePf, FakeSysfs};
use multus_sriov::PciAddress;

use crate::bind::{Binder, DriverOps};

/// Which operation to make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// `unbind` from this driver... (any driver).
    Unbind,
    /// Setting an override (not clearing it).
    SetOverride,
    /// `drivers_probe`.
    Probe,
}

#[derive(Debug, Default)]
struct State {
    /// Faults to inject: the nth (0-based) call of that kind fails.
    faults: HashMap<Fault, usize>,
    calls: HashMap<Fault, usize>,
    /// Log of operations, in order.
    log: Vec<String>,
    /// The next kernel netdev number (`eth<n>`).
    next_eth: u32,
    /// A probe of vfio-pci binds but creates no group device.
    no_group_dev: bool,
}

/// The simulated kernel.
#[derive(Debug, Clone)]
pub struct Sim {
    pub fake: FakeSysfs,
    pub dev_vfio: PathBuf,
    /// The driver each device binds to when probed without an override.
    native: Arc<HashMap<PciAddress, String>>,
    state: Arc<Mutex<State>>,
}

pub fn pci(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// An igb PF `ens1` at 0000:01:00.0 with `n` VFs (igbvf, netdevs `ens1v<i>`, groups 8..), an IOMMU, vfio-pci
/// loaded, MACs and flags on every netdev, and each group's `devices/` links.
pub fn igb_host(dir: &Path, n: u32) -> Sim {
    let fake = FakeSysfs::new(dir.join("root")).unwrap();
    let pf = FakePf::igb("ens1", 1, n);
    fake.add_pf(&pf).unwrap();
    let root = fake.root().to_path_buf();
    fs::create_dir_all(root.join("sys/class/iommu/dmar0")).unwrap();
    fs::create_dir_all(root.join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let mut native = HashMap::new();
    native.insert(pf.pci, "igb".to_string());
    for (i, vf) in pf.vfs.iter().enumerate() {
        native.insert(vf.pci, "igbvf".to_string());
        set_netdev_attrs(
            &fake,
            vf.pci,
            &format!("ens1v{i}"),
            &format!("02:00:00:00:01:{i:02x}"),
            true,
        );
    }
    set_netdev_attrs(&fake, pf.pci, "ens1", "02:00:00:00:00:01", true);
    let dev_vfio = dir.join("dev/vfio");
    fs::create_dir_all(&dev_vfio).unwrap();
    let sim = Sim {
        fake,
        dev_vfio,
        native: Arc::new(native),
        state: Arc::new(Mutex::new(State {
            next_eth: 10,
            ..State::default()
        })),
    };
    sim.link_groups();
    sim
}

fn set_netdev_attrs(fake: &FakeSysfs, pci: PciAddress, name: &str, mac: &str, up: bool) {
    let dir = fake.device_dir(pci).join("net").join(name);
    fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
    fs::write(dir.join("flags"), if up { "0x1003\n" } else { "0x1002\n" }).unwrap();
}

impl Sim {
    /// A binder over this tree with short waits.
    pub fn binder(&self) -> Binder {
        Binder::new(
            self.fake.sysfs(),
            Arc::new(self.clone()),
            self.dev_vfio.clone(),
        )
        .with_timeout(std::time::Duration::from_millis(200))
    }

    /// `sys/kernel/iommu_groups/<g>/devices/<bdf>` for every function with an `iommu_group` link.
    pub fn link_groups(&self) {
        let root = self.fake.root();
        for e in fs::read_dir(root.join("sys/bus/pci/devices")).unwrap() {
            let e = e.unwrap();
            let bdf = e.file_name().to_string_lossy().into_owned();
            let Some(g) = self.fake.sysfs().iommu_group(pci(&bdf)).unwrap() else {
                continue;
            };
            let d = root.join(format!("sys/kernel/iommu_groups/{g}/devices"));
            fs::create_dir_all(&d).unwrap();
            let _ = symlink(format!("../../../../bus/pci/devices/{bdf}"), d.join(&bdf));
        }
    }

    /// Makes the `nth` (0-based) call of `kind` fail with EIO.
    pub fn fail(&self, kind: Fault, nth: usize) {
        self.state.lock().unwrap().faults.insert(kind, nth);
    }

    /// vfio-pci binds without creating the group device.
    pub fn no_group_dev(&self) {
        self.state.lock().unwrap().no_group_dev = true;
    }

    /// The operations done so far.
    pub fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    fn check_fault(&self, kind: Fault) -> io::Result<()> {
        let mut s = self.state.lock().unwrap();
        let n = s.calls.entry(kind).or_insert(0);
        let this = *n;
        *n += 1;
        if s.faults.get(&kind) == Some(&this) {
            s.log.push(format!("{kind:?} FAILED"));
            return Err(io::Error::other(format!("injected {kind:?} failure")));
        }
        Ok(())
    }

    /// Binds the device to `driver` as the kernel would (link, netdev or group device).
    pub fn attach(&self, p: PciAddress, driver: &str) {
        let root = self.fake.root();
        fs::create_dir_all(root.join("sys/bus/pci/drivers").join(driver)).unwrap();
        self.fake
            .relink(
                p,
                "driver",
                &format!("../../../../bus/pci/drivers/{driver}"),
            )
            .unwrap();
        if driver == "vfio-pci" {
            if !self.state.lock().unwrap().no_group_dev {
                if let Some(g) = self.fake.sysfs().iommu_group(p).unwrap() {
                    fs::write(self.dev_vfio.join(g.to_string()), "").unwrap();
                }
            }
        } else if driver == "igbvf" || driver == "igb" {
            let name = {
                let mut s = self.state.lock().unwrap();
                s.next_eth += 1;
                format!("eth{}", s.next_eth - 1)
            };
            self.fake.add_netdev(p, &name).unwrap();
            // The kernel's new netdev is down, with the MAC the PF gives the VF.
            set_netdev_attrs(&self.fake, p, &name, "02:aa:bb:cc:dd:ee", false);
        }
    }

    /// Unbinds as the kernel would.
    pub fn detach(&self, p: PciAddress) {
        let s = self.fake.sysfs();
        let Some(d) = s.driver(p).unwrap() else {
            return;
        };
        for n in s.netdevs(p).unwrap() {
            self.fake.remove_netdev(p, &n).unwrap();
        }
        if d == "vfio-pci" {
            if let Some(g) = s.iommu_group(p).unwrap() {
                let _ = fs::remove_file(self.dev_vfio.join(g.to_string()));
            }
        }
        self.fake.unlink(p, "driver").unwrap();
    }

    fn override_of(&self, p: PciAddress) -> Option<String> {
        fs::read_to_string(self.fake.device_dir(p).join("driver_override"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
}

impl DriverOps for Sim {
    fn unbind(&self, p: PciAddress, driver: &str) -> io::Result<()> {
        self.state
            .lock()
            .unwrap()
            .log
            .push(format!("unbind {p} {driver}"));
        self.check_fault(Fault::Unbind)?;
        let cur = self.fake.sysfs().driver(p).map_err(io::Error::other)?;
        if cur.as_deref() != Some(driver) {
            return Err(io::Error::from_raw_os_error(libc_enodev()));
        }
        self.detach(p);
        Ok(())
    }

    fn set_override(&self, p: PciAddress, driver: Option<&str>) -> io::Result<()> {
        self.state
            .lock()
            .unwrap()
            .log
            .push(format!("override {p} {}", driver.unwrap_or("(clear)")));
        if driver.is_some() {
            self.check_fault(Fault::SetOverride)?;
        }
        if !self.fake.sysfs().pci_exists(p) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        fs::write(
            self.fake.device_dir(p).join("driver_override"),
            format!("{}\n", driver.unwrap_or("")),
        )
    }

    fn probe(&self, p: PciAddress) -> io::Result<()> {
        self.state.lock().unwrap().log.push(format!("probe {p}"));
        self.check_fault(Fault::Probe)?;
        if self
            .fake
            .sysfs()
            .driver(p)
            .map_err(io::Error::other)?
            .is_some()
        {
            return Ok(());
        }
        let want = self.override_of(p).or_else(|| self.native.get(&p).cloned());
        if let Some(w) = want {
            // A driver that is not loaded matches nothing: the device stays unbound, and the write succeeds.
            if self
                .fake
                .root()
                .join("sys/bus/pci/drivers")
                .join(&w)
                .is_dir()
            {
                self.attach(p, &w);
            }
        }
        Ok(())
    }
}

fn libc_enodev() -> i32 {
    19
}

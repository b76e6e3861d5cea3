//! Binding a PCI device to `vfio-pci` and giving it back to its original driver.
//!
//! Everything is read through a [`Sysfs`] with a configurable root and every change goes through a small
//! [`DriverOps`] trait (unbind, `driver_override`, `drivers_probe`), so the logic runs in unit tests on fake sysfs
//! trees with a simulated kernel; [`SysfsDriverOps`] is the real one (writes under `<root>/sys`). The device node
//! directory (`/dev/vfio`) is configurable too.
//!
//! Binding ([`Binder::plan`] then [`Binder::bind`]):
//!
//! 1. An IOMMU is present (`/sys/class/iommu` has an entry), or, only with `allowNoIommu`, the kernel's unsafe
//!    no-IOMMU mode is on (`/sys/module/vfio/parameters/enable_unsafe_noiommu_mode` is `Y`).
//! 2. `vfio-pci` is loaded (`/sys/bus/pci/drivers/vfio-pci` exists).
//! 3. The device's IOMMU group is usable whole: every other device in `/sys/kernel/iommu_groups/<n>/devices` is
//!    unbound or bound to a driver the kernel lets share a group with user-space DMA (`vfio-pci`, `pci-stub`,
//!    `pcieport`). The error names the first device that is not, and its driver.
//! 4. The original driver, netdev name, MAC and up flag are recorded ([`Original`]); the caller stores them before
//!    anything changes, so an interrupted bind can still be undone by DEL.
//! 5. Unbind from the original driver, `driver_override` = `vfio-pci`, `drivers_probe`, clear the override, wait
//!    (bounded) for `/dev/vfio/<group>`, verify the `driver` link. On any failure the original driver is bound
//!    again (override, probe, clear) and the error says whether that worked.
//!
//! A device already bound to `vfio-pci` (pre-bound by an operator or a device plugin) is accepted as it is: its
//! "original driver" is `vfio-pci` and restoring it changes nothing.
//!
//! Restoring ([`Binder::restore`]): unbind from `vfio-pci`, bind the original driver (override, probe, clear),
//! wait (bounded) for its netdev when it had one. It is idempotent and leaves alone a device that someone else has
//! already rebound (to its original driver or to another one) or that no longer exists (its VFs were disabled).
//! Renaming the netdev back to its original name and resetting its MAC are netlink operations, done by the
//! delegate with the [`Restored`] this returns.
//!
//! Files: `ops.rs` (the effects trait and its sysfs implementation), `error.rs` ([`BindError`]), this file (the
//! checks, [`Binder`]'s bind and restore), `tests.rs` (on fake sysfs with a simulated kernel).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multus_core::netlink::MacAddr;
use multus_sriov::{PciAddress, Sysfs};
use serde::{Deserialize, Serialize};

use crate::VFIO_PCI_DRIVER;

mod error;
mod ops;
#[cfg(test)]
mod tests;

pub use error::BindError;
use ops::check_driver_name;
pub use ops::{DriverOps, SysfsDriverOps};

/// Drivers the kernel lets stay bound in an IOMMU group used by `vfio-pci` (they do not do DMA of their own:
/// `driver_managed_dma`), besides `vfio-pci` itself.
pub const GROUP_SHAREABLE_DRIVERS: &[&str] = &[VFIO_PCI_DRIVER, "pci-stub", "pcieport"];

/// The kernel parameter of unsafe no-IOMMU mode, under the sysfs root.
const NOIOMMU_PARAM: &str = "sys/module/vfio/parameters/enable_unsafe_noiommu_mode";

/// Result of a bind operation.
pub type Result<T> = std::result::Result<T, BindError>;

/// What a device was before it was bound to vfio-pci: what restoring gives back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// Its driver; `None` when it was unbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Its netdev's name (in this netns), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netdev: Option<String>,
    /// Its netdev's MAC (`aa:bb:..`), when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Whether its netdev was administratively up.
    #[serde(default)]
    pub up: bool,
}

/// A vfio group: its number, and whether it is a no-IOMMU one (`/dev/vfio/noiommu-<n>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfioGroup {
    /// The IOMMU group number.
    pub number: u32,
    /// An unsafe no-IOMMU group.
    pub noiommu: bool,
}

impl VfioGroup {
    /// The name of its device node under `/dev/vfio`.
    pub fn dev_name(&self) -> String {
        if self.noiommu {
            format!("noiommu-{}", self.number)
        } else {
            self.number.to_string()
        }
    }
}

/// What [`Binder::plan`] found: everything checked, nothing changed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindPlan {
    /// The device.
    pub pci: PciAddress,
    /// Its PF, for a VF.
    pub pf: Option<PciAddress>,
    /// What it is now (what restoring gives back).
    pub original: Original,
    /// Its IOMMU group; `None` in no-IOMMU mode before the bind (vfio-pci creates one).
    pub group: Option<u32>,
    /// Binding without an IOMMU (`allowNoIommu` and the kernel's unsafe mode).
    pub noiommu: bool,
}

impl BindPlan {
    /// Whether the device is already on vfio-pci (nothing to change).
    pub fn already_bound(&self) -> bool {
        self.original.driver.as_deref() == Some(VFIO_PCI_DRIVER)
    }
}

/// A device bound to vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Its vfio group.
    pub group: VfioGroup,
    /// `/dev/vfio/<group>`.
    pub dev: PathBuf,
}

/// What restoring did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// Unbound from vfio-pci and bound to the original driver again (or left unbound, as it was).
    Restored,
    /// It was on vfio-pci before us; left there.
    LeftOnVfio,
    /// Someone had already bound it to its original driver.
    AlreadyRestored,
    /// Someone had bound it to another driver; left alone.
    TakenOver(String),
    /// The device no longer exists (its VFs were disabled).
    Gone,
}

/// The result of [`Binder::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What was done.
    pub outcome: RestoreOutcome,
    /// The device's netdev now (the kernel's name for it), when it had one before and it came back.
    pub netdev: Option<String>,
}

/// Bind and restore with a sysfs root, driver operations, a vfio device directory and a bound on waits.
#[derive(Debug, Clone)]
pub struct Binder {
    sysfs: Sysfs,
    ops: Arc<dyn DriverOps>,
    dev_vfio: PathBuf,
    timeout: Duration,
    poll: Duration,
}

impl Binder {
    /// The host: sysfs at `/`, [`SysfsDriverOps`], `/dev/vfio`, waits of at most 10 s.
    pub fn system() -> Self {
        Binder::new(
            Sysfs::system(),
            Arc::new(SysfsDriverOps::new("/")),
            "/dev/vfio",
        )
    }

    /// A binder over `sysfs` changing things through `ops`, waiting for group devices in `dev_vfio`.
    pub fn new(sysfs: Sysfs, ops: Arc<dyn DriverOps>, dev_vfio: impl Into<PathBuf>) -> Self {
        Binder {
            sysfs,
            ops,
            dev_vfio: dev_vfio.into(),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(20),
        }
    }

    /// Sets how long to wait for a group device or a netdev.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The sysfs read.
    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    /// The vfio device directory.
    pub fn dev_vfio(&self) -> &Path {
        &self.dev_vfio
    }

    fn root_path(&self, rel: &str) -> PathBuf {
        self.sysfs.root().join(rel)
    }

    /// Checks everything (IOMMU, vfio-pci, group viability) and records what the device is now. Changes nothing.
    pub fn plan(&self, pci: PciAddress, allow_no_iommu: bool) -> Result<BindPlan> {
        if !self.sysfs.pci_exists(pci) {
            return Err(BindError::NoSuchDevice(pci));
        }
        let driver = self.sysfs.driver(pci)?;
        let noiommu = if self.iommu_present()? {
            false
        } else if allow_no_iommu {
            self.check_noiommu_mode()?;
            true
        } else {
            return Err(BindError::NoIommu(self.sysfs.root().display().to_string()));
        };
        let vfio = self.root_path("sys/bus/pci/drivers").join(VFIO_PCI_DRIVER);
        if !vfio.is_dir() {
            return Err(BindError::NoVfioPci(vfio));
        }
        let group = self.sysfs.iommu_group(pci)?;
        match group {
            Some(g) => self.check_group(pci, g)?,
            None if noiommu => {}
            None => return Err(BindError::NoIommuGroup(pci)),
        }
        let pf = match self.sysfs.physfn(pci) {
            Ok(pf) => Some(pf),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        let netdev = self.sysfs.netdevs(pci)?.into_iter().next();
        let (mac, up) = match &netdev {
            Some(n) => self.netdev_state(n),
            None => (None, false),
        };
        Ok(BindPlan {
            pci,
            pf,
            original: Original {
                driver,
                netdev,
                mac,
                up,
            },
            group,
            noiommu,
        })
    }

    /// A netdev's MAC and up flag from `sys/class/net/<n>/{address,flags}` (unreadable: none, down).
    fn netdev_state(&self, netdev: &str) -> (Option<MacAddr>, bool) {
        let Ok(dir) = self.sysfs.netdev_dir(netdev) else {
            return (None, false);
        };
        let mac = fs::read_to_string(dir.join("address"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let up = fs::read_to_string(dir.join("flags"))
            .ok()
            .and_then(|s| u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok())
            .is_some_and(|f| f & 1 != 0);
        (mac, up)
    }

    /// Whether `/sys/class/iommu` has an entry.
    pub fn iommu_present(&self) -> Result<bool> {
        let dir = self.root_path("sys/class/iommu");
        match fs::read_dir(&dir) {
            Ok(mut d) => Ok(d.next().is_some()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BindError::Read { path: dir, source }),
        }
    }

    fn check_noiommu_mode(&self) -> Result<()> {
        let path = self.root_path(NOIOMMU_PARAM);
        match fs::read_to_string(&path) {
            Ok(s) if matches!(s.trim(), "Y" | "y" | "1") => Ok(()),
            Ok(s) => Err(BindError::NoIommuModeOff {
                path,
                found: format!("{:?}", s.trim()),
            }),
            Err(e) => Err(BindError::NoIommuModeOff {
                path,
                found: e.to_string(),
            }),
        }
    }

    /// The devices of IOMMU group `group` (`/sys/kernel/iommu_groups/<n>/devices`), sorted.
    pub fn group_devices(&self, group: u32) -> Result<Vec<String>> {
        let dir = self.root_path(&format!("sys/kernel/iommu_groups/{group}/devices"));
        let rd = fs::read_dir(&dir).map_err(|source| BindError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(|source| BindError::Read {
                path: dir.clone(),
                source,
            })?;
            out.push(e.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }

    /// Every other device of the group is unbound or on a [`GROUP_SHAREABLE_DRIVERS`] driver.
    fn check_group(&self, pci: PciAddress, group: u32) -> Result<()> {
        let me = pci.to_string();
        for other in self.group_devices(group)? {
            if other == me {
                continue;
            }
            let link = self
                .root_path("sys/bus/pci/devices")
                .join(&other)
                .join("driver");
            let driver = match fs::read_link(&link) {
                Ok(t) => t
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(BindError::Read { path: link, source }),
            };
            if !GROUP_SHAREABLE_DRIVERS.contains(&driver.as_str()) {
                return Err(BindError::GroupNotViable {
                    pci,
                    group,
                    other,
                    driver,
                });
            }
        }
        Ok(())
    }

    fn op(&self, what: impl Into<String>, pci: PciAddress, r: io::Result<()>) -> Result<()> {
        r.map_err(|source| BindError::Op {
            what: what.into(),
            pci,
            source,
        })
    }

    /// Carries out a plan: binds the device to vfio-pci (from whatever driver it is on now) and waits for its group
    /// device. On failure, binds `plan.original`'s driver again and says so in [`BindError::RolledBack`].
    pub fn bind(&self, plan: &BindPlan) -> Result<Bound> {
        let pci = plan.pci;
        // The driver now, not the plan's original: a retried bind may find the device anywhere.
        let current = self.sysfs.driver(pci)?;
        if current.as_deref() == Some(VFIO_PCI_DRIVER) {
            return self.finish_bind(plan);
        }
        let steps = || -> Result<Bound> {
            if let Some(d) = &current {
                self.op(format!("unbinding from {d}"), pci, self.ops.unbind(pci, d))?;
            }
            self.probe_with_override(pci, VFIO_PCI_DRIVER)?;
            self.finish_bind(plan)
        };
        match steps() {
            Ok(b) => Ok(b),
            Err(error) => {
                let rollback = match self.rebind(pci, &plan.original) {
                    Ok(()) => match &plan.original.driver {
                        Some(d) => format!("rolled back: {pci} is bound to {d} again"),
                        None => format!("rolled back: {pci} is unbound again, as it was"),
                    },
                    Err(e) => format!("ROLLBACK FAILED, {pci} may be left without a driver: {e}"),
                };
                tracing::warn!("{error}; {rollback}");
                Err(BindError::RolledBack {
                    pci,
                    error: Box::new(error),
                    rollback,
                })
            }
        }
    }

    /// Verifies the driver link and waits for the group device.
    fn finish_bind(&self, plan: &BindPlan) -> Result<Bound> {
        let pci = plan.pci;
        self.expect_driver(pci, VFIO_PCI_DRIVER)?;
        let number = match plan.group {
            Some(g) => g,
            None => self
                .sysfs
                .iommu_group(pci)?
                .ok_or(BindError::NoIommuGroup(pci))?,
        };
        let group = VfioGroup {
            number,
            noiommu: plan.noiommu,
        };
        let dev = self.dev_vfio.join(group.dev_name());
        if !self.wait(|| dev.exists()) {
            return Err(BindError::NoGroupDevice {
                pci,
                path: dev,
                timeout: self.timeout,
            });
        }
        Ok(Bound { group, dev })
    }

    /// Binds `pci` to `driver` the kernel's way: `driver_override`, `drivers_probe`, then the override cleared
    /// whatever the probe did (a later probe must find the device's own driver).
    fn probe_with_override(&self, pci: PciAddress, driver: &str) -> Result<()> {
        self.op(
            format!("setting driver_override to {driver} on"),
            pci,
            self.ops.set_override(pci, Some(driver)),
        )?;
        let probed = self.op(format!("probing {driver} for"), pci, self.ops.probe(pci));
        let cleared = self.op(
            "clearing driver_override of",
            pci,
            self.ops.set_override(pci, None),
        );
        probed?;
        cleared
    }

    /// The device's driver is `want` now, else [`BindError::NotBound`] naming the one it has.
    fn expect_driver(&self, pci: PciAddress, want: &str) -> Result<()> {
        let found = self.sysfs.driver(pci)?;
        if found.as_deref() != Some(want) {
            return Err(BindError::NotBound {
                pci,
                want: want.into(),
                found,
            });
        }
        Ok(())
    }

    /// Polls `cond` until it holds or the timeout passes.
    fn wait(&self, mut cond: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        loop {
            if cond() {
                return true;
            }
            if start.elapsed() >= self.timeout {
                return false;
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Puts the device back on `original.driver`: unbinds whatever it is on (unless that is already the
    /// original), then override + probe + clear, and verifies. For an originally unbound device, only unbinds.
    fn rebind(&self, pci: PciAddress, original: &Original) -> Result<()> {
        if let Some(want) = &original.driver {
            // From a record: checked before the device leaves the driver it is on.
            self.op("restoring the driver of", pci, check_driver_name(want))?;
        }
        let current = self.sysfs.driver(pci)?;
        if current == original.driver {
            return Ok(());
        }
        if let Some(d) = &current {
            self.op(format!("unbinding from {d}"), pci, self.ops.unbind(pci, d))?;
        }
        let Some(want) = &original.driver else {
            return self.op(
                "clearing driver_override of",
                pci,
                self.ops.set_override(pci, None),
            );
        };
        self.probe_with_override(pci, want)?;
        self.expect_driver(pci, want)?;
        Ok(())
    }

    /// Gives the device back to its original driver and waits for its netdev. Idempotent; a device someone else
    /// has already rebound, or that is gone, is left alone.
    pub fn restore(&self, pci: PciAddress, original: &Original) -> Result<Restored> {
        if !self.sysfs.pci_exists(pci) {
            return Ok(Restored {
                outcome: RestoreOutcome::Gone,
                netdev: None,
            });
        }
        let current = self.sysfs.driver(pci)?;
        let outcome = if original.driver.as_deref() == Some(VFIO_PCI_DRIVER) {
            RestoreOutcome::LeftOnVfio
        } else if current.is_some() && current == original.driver {
            RestoreOutcome::AlreadyRestored
        } else {
            match current.as_deref() {
                Some(d) if d != VFIO_PCI_DRIVER => RestoreOutcome::TakenOver(d.to_string()),
                _ => {
                    self.rebind(pci, original)?;
                    RestoreOutcome::Restored
                }
            }
        };
        let netdev = match (&outcome, &original.netdev) {
            (RestoreOutcome::Restored | RestoreOutcome::AlreadyRestored, Some(_)) => {
                let mut found = None;
                self.wait(|| {
                    found = self
                        .sysfs
                        .netdevs(pci)
                        .ok()
                        .and_then(|n| n.into_iter().next());
                    found.is_some()
                });
                if found.is_none() {
                    tracing::warn!(
                        "{pci} is back on {} but no netdev appeared within {:?}",
                        original.driver.as_deref().unwrap_or("?"),
                        self.timeout
                    );
                }
                found
            }
            _ => None,
        };
        Ok(Restored { outcome, netdev })
    }

    /// Whether the device is bound to vfio-pci and its group device exists (CHECK).
    pub fn verify(&self, pci: PciAddress, group: &VfioGroup) -> Result<PathBuf> {
        self.expect_driver(pci, VFIO_PCI_DRIVER)?;
        let dev = self.dev_vfio.join(group.dev_name());
        if !dev.exists() {
            return Err(BindError::NoGroupDevice {
                pci,
                path: dev,
                timeout: Duration::ZERO,
            });
        }
        Ok(dev)
    }
}

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

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use multus_core::cni::CniError;
use multus_core::netlink::MacAddr;
use multus_sriov::{PciAddress, Sysfs, SysfsError};
use serde::{Deserialize, Serialize};

use crate::VFIO_PCI_DRIVER;

/// Drivers the kernel lets stay bound in an IOMMU group used by `vfio-pci` (they do not do DMA of their own:
/// `driver_managed_dma`), besides `vfio-pci` itself.
pub const GROUP_SHAREABLE_DRIVERS: &[&str] = &[VFIO_PCI_DRIVER, "pci-stub", "pcieport"];

/// The kernel parameter of unsafe no-IOMMU mode, under the sysfs root.
const NOIOMMU_PARAM: &str = "sys/module/vfio/parameters/enable_unsafe_noiommu_mode";

/// Effects on the kernel's PCI driver model. [`SysfsDriverOps`] is the real one; tests simulate the kernel.
pub trait DriverOps: Send + Sync + std::fmt::Debug {
    /// Unbinds `pci` from `driver` (`/sys/bus/pci/drivers/<driver>/unbind`).
    fn unbind(&self, pci: PciAddress, driver: &str) -> io::Result<()>;
    /// Sets (`Some`) or clears (`None`) the device's `driver_override`.
    fn set_override(&self, pci: PciAddress, driver: Option<&str>) -> io::Result<()>;
    /// Asks the kernel to probe drivers for the device (`/sys/bus/pci/drivers_probe`).
    fn probe(&self, pci: PciAddress) -> io::Result<()>;
}

/// The real [`DriverOps`]: writes to the kernel's sysfs files under `<root>/sys`.
#[derive(Debug, Clone)]
pub struct SysfsDriverOps {
    root: PathBuf,
}

impl SysfsDriverOps {
    /// Writes under `root` (the directory holding `sys/`; `/` on a host).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        SysfsDriverOps { root: root.into() }
    }
}

/// Writes `value` to an existing sysfs attribute in one `write(2)`, as `echo value > path` does (`O_TRUNC`, which
/// sysfs ignores), never creating the file.
fn write_attr(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(value.as_bytes())
}

impl DriverOps for SysfsDriverOps {
    fn unbind(&self, pci: PciAddress, driver: &str) -> io::Result<()> {
        let path = self
            .root
            .join("sys/bus/pci/drivers")
            .join(driver)
            .join("unbind");
        write_attr(&path, &pci.to_string()).map_err(|e| annotate(e, "write", &path))
    }

    fn set_override(&self, pci: PciAddress, driver: Option<&str>) -> io::Result<()> {
        let path = self
            .root
            .join("sys/bus/pci/devices")
            .join(pci.to_string())
            .join("driver_override");
        // A lone newline clears the override (an empty write never reaches the kernel).
        write_attr(&path, driver.unwrap_or("\n")).map_err(|e| annotate(e, "write", &path))
    }

    fn probe(&self, pci: PciAddress) -> io::Result<()> {
        let path = self.root.join("sys/bus/pci/drivers_probe");
        write_attr(&path, &pci.to_string()).map_err(|e| annotate(e, "write", &path))
    }
}

fn annotate(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

/// Why binding or restoring failed. Converted to a [`CniError`] (code 7 for a device that does not exist, 103
/// otherwise) whose message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// No PCI function with this address.
    #[error("PCI device {0} does not exist (no /sys/bus/pci/devices/{0})")]
    NoSuchDevice(PciAddress),
    /// No IOMMU and no permission to go without one.
    #[error(
        "no IOMMU on this host ({0}/sys/class/iommu is empty): vfio-pci needs one (boot with intel_iommu=on or \
         amd_iommu=on); to bind without it, set \"allowNoIommu\": true and load vfio with \
         enable_unsafe_noiommu_mode=1 (unsafe: the device can DMA anywhere)"
    )]
    NoIommu(String),
    /// `allowNoIommu` is set but the kernel's unsafe no-IOMMU mode is off.
    #[error(
        "no IOMMU on this host and vfio's unsafe no-IOMMU mode is off ({path}: {found}); \"allowNoIommu\" needs \
         it on: modprobe vfio enable_unsafe_noiommu_mode=1"
    )]
    NoIommuModeOff {
        /// The parameter file.
        path: PathBuf,
        /// What it held (or why it could not be read).
        found: String,
    },
    /// The vfio-pci driver is not loaded.
    #[error("the vfio-pci driver is not available ({0} does not exist): modprobe vfio-pci")]
    NoVfioPci(PathBuf),
    /// The device has no IOMMU group although an IOMMU is present.
    #[error(
        "PCI device {0} has no IOMMU group (no iommu_group link): it cannot be given to vfio-pci"
    )]
    NoIommuGroup(PciAddress),
    /// Another device of the group is bound to a driver that keeps the group from user space.
    #[error(
        "IOMMU group {group} of {pci} is not usable whole: {other} in the same group is bound to {driver} \
         (every device of the group must be unbound or bound to vfio-pci)"
    )]
    GroupNotViable {
        /// The device to bind.
        pci: PciAddress,
        /// Its group.
        group: u32,
        /// The offending device.
        other: String,
        /// Its driver.
        driver: String,
    },
    /// Reading sysfs failed.
    #[error(transparent)]
    Sysfs(#[from] SysfsError),
    /// Reading something else failed (the IOMMU group's device list, the IOMMU class).
    #[error("reading {path}: {source}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A driver-model operation failed.
    #[error("{what} {pci}: {source}")]
    Op {
        /// What was being done (`unbinding from igbvf`).
        what: String,
        /// The device.
        pci: PciAddress,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// After a probe the device is not on the expected driver.
    #[error("{pci} is not bound to {want} after the probe (driver: {})", found.as_deref().unwrap_or("none"))]
    NotBound {
        /// The device.
        pci: PciAddress,
        /// The driver wanted.
        want: String,
        /// The driver found.
        found: Option<String>,
    },
    /// The vfio group device did not appear in time.
    #[error("{pci} is bound to vfio-pci but {} did not appear within {timeout:?}", path.display())]
    NoGroupDevice {
        /// The device.
        pci: PciAddress,
        /// The path waited for.
        path: PathBuf,
        /// How long.
        timeout: Duration,
    },
    /// A bind step failed and the original driver was (or could not be) bound again.
    #[error("binding {pci} to vfio-pci failed: {error}; {rollback}")]
    RolledBack {
        /// The device.
        pci: PciAddress,
        /// What failed.
        error: Box<BindError>,
        /// The rollback's outcome, in words.
        rollback: String,
    },
}

impl From<BindError> for CniError {
    fn from(e: BindError) -> Self {
        match e {
            BindError::NoSuchDevice(_) => CniError::invalid_config(e.to_string()),
            _ => CniError::kernel(e.to_string()),
        }
    }
}

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
            self.op(
                "setting driver_override to vfio-pci on",
                pci,
                self.ops.set_override(pci, Some(VFIO_PCI_DRIVER)),
            )?;
            let probed = self.op("probing vfio-pci for", pci, self.ops.probe(pci));
            // The override goes whatever the probe did: a later probe must find the device's own driver.
            let cleared = self.op(
                "clearing driver_override of",
                pci,
                self.ops.set_override(pci, None),
            );
            probed?;
            cleared?;
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
        let found = self.sysfs.driver(pci)?;
        if found.as_deref() != Some(VFIO_PCI_DRIVER) {
            return Err(BindError::NotBound {
                pci,
                want: VFIO_PCI_DRIVER.into(),
                found,
            });
        }
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
        self.op(
            format!("setting driver_override to {want} on"),
            pci,
            self.ops.set_override(pci, Some(want)),
        )?;
        let probed = self.op(format!("probing {want} for"), pci, self.ops.probe(pci));
        let cleared = self.op(
            "clearing driver_override of",
            pci,
            self.ops.set_override(pci, None),
        );
        probed?;
        cleared?;
        let found = self.sysfs.driver(pci)?;
        if found.as_ref() != Some(want) {
            return Err(BindError::NotBound {
                pci,
                want: want.clone(),
                found,
            });
        }
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
        let found = self.sysfs.driver(pci)?;
        if found.as_deref() != Some(VFIO_PCI_DRIVER) {
            return Err(BindError::NotBound {
                pci,
                want: VFIO_PCI_DRIVER.into(),
                found,
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{igb_host, pci, Fault, Sim};

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
}

//! The effects of binding: the kernel's PCI driver-model files (`unbind`, `driver_override`, `drivers_probe`)
//! behind a small trait, so that the logic in `bind` runs on fake sysfs with a simulated kernel in tests.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use multus_sriov::PciAddress;

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

/// A driver name read from a record, checked before it is written to `driver_override`: a name the kernel
/// lists under `/sys/bus/pci/drivers` (one path component of at most 255 bytes, without whitespace or NUL).
pub(super) fn check_driver_name(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\0' || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{:?} is not a driver name",
                name.chars().take(64).collect::<String>()
            ),
        ))
    }
}

fn annotate(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

//! Read-only sysfs access for SR-IOV, with a configurable root.
//!
//! Every path is `<root>/sys/...`: [`Sysfs::system`] reads the host (`/`), tests read a temp-dir tree built by
//! `fake::FakeSysfs` (feature `fake-sysfs`), which lays out the same directories and relative symlinks as the kernel.
//!
//! What is read, and where (`<bdf>` is a [`PciAddress`] such as `0000:01:10.0`):
//!
//! | what | path |
//! |------|------|
//! | a netdev's PCI function | `sys/class/net/<if>/device` (symlink, target's last component) |
//! | VFs the PF can offer / has enabled | `sys/bus/pci/devices/<bdf>/sriov_totalvfs`, `sriov_numvfs` |
//! | a PF's VFs | `sys/bus/pci/devices/<bdf>/virtfnN` (symlinks to `../<vf bdf>`) |
//! | a VF's PF | `sys/bus/pci/devices/<bdf>/physfn` (symlink to `../<pf bdf>`) |
//! | netdev name(s) in this netns | entries of `sys/bus/pci/devices/<bdf>/net/` |
//! | bound driver | `sys/bus/pci/devices/<bdf>/driver` (symlink; absent when unbound) |
//! | IDs | `vendor`, `device` (`0x8086`) |
//! | IOMMU group | `iommu_group` (symlink to `.../kernel/iommu_groups/<n>`) |
//!
//! VFs are enumerated through the `virtfnN` links, never through a netlink dump of the PF: a PF with a few hundred
//! VFs makes one `RTM_GETLINK` reply overflow rtnetlink's 64 KiB receive buffer.
//!
//! Why not the `sysfs-class` crate (named in the design card): its root is fixed at `/sys`, so unit tests cannot run
//! on a fake tree; it has none of the SR-IOV attributes (`sriov_numvfs`, `virtfnN`, `physfn`, `driver_override`); and
//! it has been unmaintained since 2021. This module is small and reads only what the SR-IOV delegate needs.
//!
//! Every read returns a [`SysfsError`] naming the path; odd content (bad numbers, names that are not PCI addresses,
//! dangling symlinks) is an error, never a panic.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::PciAddress;

/// Why a sysfs read failed. Every variant names the path it was reading.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// The file, directory or link could not be read (including "does not exist").
    #[error("sysfs: reading {path}: {source}")]
    Io {
        /// The path read.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The content (or a link target) is not what the kernel writes there.
    #[error("sysfs: {path}: unexpected content {content:?} (want {want})")]
    Malformed {
        /// The path read.
        path: PathBuf,
        /// What was found (trimmed, cut to 64 bytes).
        content: String,
        /// What was expected.
        want: &'static str,
    },
    /// A symlink whose target does not exist.
    #[error("sysfs: {path} is a dangling symlink (to {target})")]
    BrokenLink {
        /// The link.
        path: PathBuf,
        /// Its target as stored.
        target: PathBuf,
    },
    /// A netdev name that cannot be a path component of `sys/class/net`.
    #[error("sysfs: invalid network interface name {0:?}")]
    InvalidIfName(String),
}

impl SysfsError {
    /// Whether the error is "the path does not exist" (for example `sriov_totalvfs` on a PF without SR-IOV).
    pub fn is_not_found(&self) -> bool {
        matches!(self, SysfsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Result of a sysfs read.
pub type Result<T> = std::result::Result<T, SysfsError>;

/// A failed sysfs read is a failed kernel operation (code 103).
impl From<SysfsError> for multus_core::cni::CniError {
    fn from(e: SysfsError) -> Self {
        multus_core::cni::CniError::kernel(format!("sriov: {e}"))
    }
}

/// A VF of a PF: its index `N` (from `virtfnN`) and its PCI address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VfRef {
    /// The `N` of `virtfnN` (the VF index used by netlink `IFLA_VF_*` on the PF).
    pub index: u32,
    /// The VF's PCI address.
    pub pci: PciAddress,
}

/// Sysfs rooted at a directory: `<root>/sys/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysfs {
    root: PathBuf,
}

impl Sysfs {
    /// Sysfs under `root` (the directory holding `sys/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The host's sysfs (root `/`).
    pub fn system() -> Self {
        Sysfs::new("/")
    }

    /// The root this instance reads under.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/sys/bus/pci/devices/<bdf>`.
    pub fn pci_dir(&self, pci: PciAddress) -> PathBuf {
        self.root.join("sys/bus/pci/devices").join(pci.to_string())
    }

    /// `<root>/sys/class/net/<ifname>`, after checking the name is one path component.
    pub fn netdev_dir(&self, ifname: &str) -> Result<PathBuf> {
        if !valid_ifname(ifname) {
            return Err(SysfsError::InvalidIfName(ifname.to_string()));
        }
        Ok(self.root.join("sys/class/net").join(ifname))
    }

    /// Whether a PCI function with this address exists.
    pub fn pci_exists(&self, pci: PciAddress) -> bool {
        self.pci_dir(pci).exists()
    }

    /// The PCI function behind a netdev (`sys/class/net/<if>/device`); errors for virtual netdevs (no `device`).
    pub fn netdev_pci(&self, ifname: &str) -> Result<PciAddress> {
        link_pci(&self.netdev_dir(ifname)?.join("device"))
    }

    /// `sriov_totalvfs`: how many VFs the PF can offer. Not found on a function without SR-IOV.
    pub fn total_vfs(&self, pf: PciAddress) -> Result<u32> {
        read_u32(&self.pci_dir(pf).join("sriov_totalvfs"))
    }

    /// `sriov_numvfs`: how many VFs are enabled. Not found on a function without SR-IOV.
    pub fn num_vfs(&self, pf: PciAddress) -> Result<u32> {
        read_u32(&self.pci_dir(pf).join("sriov_numvfs"))
    }

    /// The PF's enabled VFs from its `virtfnN` links, by index.
    pub fn vfs(&self, pf: PciAddress) -> Result<Vec<VfRef>> {
        let dir = self.pci_dir(pf);
        let entries = fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?;
        let mut vfs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            let Some(index) = name
                .to_str()
                .and_then(|n| n.strip_prefix("virtfn"))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let path = entry.path();
            let index: u32 = index.parse().map_err(|_| SysfsError::Malformed {
                path: path.clone(),
                content: name.to_string_lossy().into_owned(),
                want: "virtfnN with N a u32",
            })?;
            vfs.push(VfRef {
                index,
                pci: link_pci(&path)?,
            });
        }
        vfs.sort();
        Ok(vfs)
    }

    /// A VF's PF (its `physfn` link). Not found when `vf` is not a VF.
    pub fn physfn(&self, vf: PciAddress) -> Result<PciAddress> {
        link_pci(&self.pci_dir(vf).join("physfn"))
    }

    /// Whether the function is a VF (has a `physfn` link). Errors only on unreadable links, not on absence.
    pub fn is_vf(&self, pci: PciAddress) -> Result<bool> {
        let path = self.pci_dir(pci).join("physfn");
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// The VF index of `vf` on its PF (the `N` of the PF's `virtfnN` pointing at it).
    pub fn vf_index(&self, vf: PciAddress) -> Result<Option<u32>> {
        let pf = self.physfn(vf)?;
        Ok(self
            .vfs(pf)?
            .into_iter()
            .find(|v| v.pci == vf)
            .map(|v| v.index))
    }

    /// The function's netdev names visible in this netns (`net/` entries), sorted. Empty when it has none (unbound,
    /// bound to vfio-pci, or its netdev is in another netns).
    pub fn netdevs(&self, pci: PciAddress) -> Result<Vec<String>> {
        let dir = self.pci_dir(pci).join("net");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            match name.to_str() {
                Some(n) if valid_ifname(n) => names.push(n.to_string()),
                _ => {
                    return Err(SysfsError::Malformed {
                        path: entry.path(),
                        content: name.to_string_lossy().into_owned(),
                        want: "a network interface name",
                    });
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// The bound driver's name (the `driver` link's last component); `None` when unbound.
    pub fn driver(&self, pci: PciAddress) -> Result<Option<String>> {
        let path = self.pci_dir(pci).join("driver");
        optional_link_name(&path)
    }

    /// The PCI vendor ID (`vendor`, `0x8086`).
    pub fn vendor_id(&self, pci: PciAddress) -> Result<u16> {
        read_hex_u16(&self.pci_dir(pci).join("vendor"))
    }

    /// The PCI device ID (`device`, `0x10ca`).
    pub fn device_id(&self, pci: PciAddress) -> Result<u16> {
        read_hex_u16(&self.pci_dir(pci).join("device"))
    }

    /// The IOMMU group number; `None` when the function has no `iommu_group` (IOMMU off).
    pub fn iommu_group(&self, pci: PciAddress) -> Result<Option<u32>> {
        let path = self.pci_dir(pci).join("iommu_group");
        match optional_link_name(&path)? {
            None => Ok(None),
            Some(n) => n.parse().map(Some).map_err(|_| SysfsError::Malformed {
                path,
                content: n,
                want: "a link to kernel/iommu_groups/<number>",
            }),
        }
    }
}

/// Whether `name` can be a Linux netdev name (1 to 15 bytes, no '/', no whitespace, not "." or "..").
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

fn io_err(path: &Path, source: io::Error) -> SysfsError {
    SysfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn malformed(path: &Path, content: &str, want: &'static str) -> SysfsError {
    let mut c = content.trim().to_string();
    if c.len() > 64 {
        let mut cut = 64;
        while !c.is_char_boundary(cut) {
            cut -= 1;
        }
        c.truncate(cut);
    }
    SysfsError::Malformed {
        path: path.to_path_buf(),
        content: c,
        want,
    }
}

fn read_attr(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) => Err(malformed(
            path,
            &String::from_utf8_lossy(e.as_bytes()),
            "UTF-8 text",
        )),
    }
}

fn read_u32(path: &Path) -> Result<u32> {
    let s = read_attr(path)?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(path, &s, "a decimal number"));
    }
    s.parse()
        .map_err(|_| malformed(path, &s, "a decimal number below 2^32"))
}

fn read_hex_u16(path: &Path) -> Result<u16> {
    let s = read_attr(path)?;
    let digits = s.strip_prefix("0x").unwrap_or(&s);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(path, &s, "a 16-bit hex ID such as 0x8086"));
    }
    u16::from_str_radix(digits, 16)
        .map_err(|_| malformed(path, &s, "a 16-bit hex ID such as 0x8086"))
}

/// The last component of a symlink's target, after checking the link resolves.
fn link_name(path: &Path) -> Result<String> {
    let target = fs::read_link(path).map_err(|e| io_err(path, e))?;
    if let Err(e) = fs::metadata(path) {
        return Err(if e.kind() == io::ErrorKind::NotFound {
            SysfsError::BrokenLink {
                path: path.to_path_buf(),
                target,
            }
        } else {
            io_err(path, e)
        });
    }
    match target.file_name().and_then(|n| n.to_str()) {
        Some(n) => Ok(n.to_string()),
        None => Err(malformed(
            path,
            &target.to_string_lossy(),
            "a link whose target ends in a UTF-8 name",
        )),
    }
}

fn optional_link_name(path: &Path) -> Result<Option<String>> {
    match fs::symlink_metadata(path) {
        Ok(_) => link_name(path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

fn link_pci(path: &Path) -> Result<PciAddress> {
    let name = link_name(path)?;
    name.parse()
        .map_err(|_| malformed(path, &name, "a link to a PCI function (dddd:bb:dd.f)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{FakePf, FakeSysfs};

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn tree(num_vfs: u32) -> (tempfile::TempDir, FakeSysfs) {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path()).unwrap();
        fake.add_pf(&FakePf::igb("ens1", 1, num_vfs)).unwrap();
        (dir, fake)
    }

    #[test]
    fn fake_tree_has_kernel_layout() {
        let (dir, fake) = tree(2);
        let r = dir.path();
        let link = |p: &str| fs::read_link(r.join(p)).unwrap();
        assert_eq!(
            link("sys/bus/pci/devices/0000:01:00.0"),
            Path::new("../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0")
        );
        assert_eq!(
            link("sys/class/net/ens1"),
            Path::new("../../devices/pci0000:00/0000:00:01.0/0000:01:00.0/net/ens1")
        );
        assert_eq!(
            link("sys/class/net/ens1/device"),
            Path::new("../../../0000:01:00.0")
        );
        assert_eq!(
            link("sys/bus/pci/devices/0000:01:00.0/virtfn1"),
            Path::new("../0000:01:10.2")
        );
        assert_eq!(
            link("sys/bus/pci/devices/0000:01:10.2/physfn"),
            Path::new("../0000:01:00.0")
        );
        assert_eq!(
            link("sys/bus/pci/devices/0000:01:10.0/driver"),
            Path::new("../../../../bus/pci/drivers/igbvf")
        );
        assert_eq!(
            link("sys/bus/pci/devices/0000:01:00.0/iommu_group"),
            Path::new("../../../../kernel/iommu_groups/7")
        );
        // Every link resolves inside the tree, as the VM test's canonicalize calls need.
        let pf_dev = fs::canonicalize(r.join("sys/class/net/ens1/device")).unwrap();
        assert_eq!(
            pf_dev,
            fake.device_dir(pci("0000:01:00.0")).canonicalize().unwrap()
        );
        let vf_dev = fs::canonicalize(pf_dev.join("virtfn0")).unwrap();
        assert_eq!(fs::canonicalize(vf_dev.join("physfn")).unwrap(), pf_dev);
        for l in ["driver", "iommu_group", "net/ens1v0/device"] {
            assert!(vf_dev.join(l).exists(), "{l}");
        }
        assert!(r.join("sys/class/net/ens1v0/device/physfn").exists());
    }

    #[test]
    fn discovers_pf_and_vfs() {
        let (_d, fake) = tree(3);
        let s = fake.sysfs();
        let pf = s.netdev_pci("ens1").unwrap();
        assert_eq!(pf, pci("0000:01:00.0"));
        assert_eq!(s.total_vfs(pf).unwrap(), 7);
        assert_eq!(s.num_vfs(pf).unwrap(), 3);
        let vfs = s.vfs(pf).unwrap();
        assert_eq!(
            vfs.iter()
                .map(|v| (v.index, v.pci.to_string()))
                .collect::<Vec<_>>(),
            [
                (0, "0000:01:10.0".into()),
                (1, "0000:01:10.2".into()),
                (2, "0000:01:10.4".into())
            ]
        );
        assert!(!s.is_vf(pf).unwrap());
        assert!(s.physfn(pf).unwrap_err().is_not_found());
        assert_eq!(s.netdevs(pf).unwrap(), ["ens1"]);
        assert_eq!(s.driver(pf).unwrap().as_deref(), Some("igb"));
        assert_eq!(s.vendor_id(pf).unwrap(), 0x8086);
        assert_eq!(s.device_id(pf).unwrap(), 0x10c9);
        assert_eq!(s.iommu_group(pf).unwrap(), Some(7));
        let vf = vfs[2].pci;
        assert!(s.is_vf(vf).unwrap());
        assert_eq!(s.physfn(vf).unwrap(), pf);
        assert_eq!(s.vf_index(vf).unwrap(), Some(2));
        assert_eq!(s.netdevs(vf).unwrap(), ["ens1v2"]);
        assert_eq!(s.netdev_pci("ens1v2").unwrap(), vf);
        assert_eq!(s.driver(vf).unwrap().as_deref(), Some("igbvf"));
        assert_eq!(s.device_id(vf).unwrap(), 0x10ca);
        assert_eq!(s.iommu_group(vf).unwrap(), Some(10));
        assert!(s.pci_exists(vf));
        assert!(!s.pci_exists(pci("0000:02:00.0")));
    }

    #[test]
    fn sriov_off_and_many_vfs() {
        let (_d, fake) = tree(0);
        let s = fake.sysfs();
        let pf = s.netdev_pci("ens1").unwrap();
        assert_eq!(s.num_vfs(pf).unwrap(), 0);
        assert!(s.vfs(pf).unwrap().is_empty());
        // virtfn10 sorts after virtfn9 (numeric, not lexical).
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeSysfs::new(dir.path()).unwrap();
        let mut pf = FakePf::igb("p0", 3, 12);
        pf.total_vfs = 12;
        fake.add_pf(&pf).unwrap();
        let vfs = fake.sysfs().vfs(pf.pci).unwrap();
        assert_eq!(vfs.len(), 12);
        assert!(vfs
            .iter()
            .enumerate()
            .all(|(i, v)| v.index == i as u32 && v.pci == pf.vfs[i].pci));
    }

    #[test]
    fn unbound_vf_and_netdev_elsewhere() {
        let (_d, fake) = tree(2);
        let s = fake.sysfs();
        let vf = pci("0000:01:10.2");
        fake.unlink(vf, "driver").unwrap();
        fake.remove_netdev(vf, "ens1v1").unwrap();
        assert_eq!(s.driver(vf).unwrap(), None);
        assert!(s.netdevs(vf).unwrap().is_empty());
        fake.unlink(vf, "iommu_group").unwrap();
        assert_eq!(s.iommu_group(vf).unwrap(), None);
        assert!(s.netdev_pci("ens1v1").unwrap_err().is_not_found());
    }

    fn names_path(e: &SysfsError, tail: &str) {
        let msg = e.to_string();
        assert!(msg.contains(tail), "{msg:?} does not name {tail}");
    }

    #[test]
    fn malformed_content_is_an_error_naming_the_path() {
        let (_d, fake) = tree(1);
        let s = fake.sysfs();
        let pf = pci("0000:01:00.0");
        let vf = pci("0000:01:10.0");
        for (attr, content) in [
            ("sriov_numvfs", &b"two\n"[..]),
            ("sriov_numvfs", b""),
            ("sriov_numvfs", b"-1"),
            ("sriov_numvfs", b"99999999999"),
            ("sriov_totalvfs", b"\xff\xfe"),
        ] {
            fake.write_attr(pf, attr, content).unwrap();
            let e = if attr == "sriov_numvfs" {
                s.num_vfs(pf)
            } else {
                s.total_vfs(pf)
            }
            .unwrap_err();
            assert!(matches!(e, SysfsError::Malformed { .. }), "{e}");
            names_path(&e, &format!("0000:01:00.0/{attr}"));
        }
        for content in [&b"0x"[..], b"8086x", b"0x123456", b"", b"0xzz"] {
            fake.write_attr(vf, "vendor", content).unwrap();
            names_path(&s.vendor_id(vf).unwrap_err(), "0000:01:10.0/vendor");
        }
        fake.write_attr(vf, "device", b"10ca").unwrap();
        assert_eq!(s.device_id(vf).unwrap(), 0x10ca, "no 0x prefix is accepted");
        fs::remove_file(fake.device_dir(vf).join("device")).unwrap();
        let e = s.device_id(vf).unwrap_err();
        assert!(e.is_not_found());
        names_path(&e, "0000:01:10.0/device");
    }

    #[test]
    fn odd_and_broken_links_are_errors_naming_the_path() {
        let (_d, fake) = tree(2);
        let s = fake.sysfs();
        let pf = pci("0000:01:00.0");
        let vf = pci("0000:01:10.0");
        fake.relink(pf, "virtfn1", "../0000:01:1f.0").unwrap();
        let e = s.vfs(pf).unwrap_err();
        assert!(matches!(e, SysfsError::BrokenLink { .. }), "{e}");
        names_path(&e, "0000:01:00.0/virtfn1");
        fake.relink(pf, "virtfn1", "../../../pci0000:00").unwrap();
        let e = s.vfs(pf).unwrap_err();
        assert!(matches!(e, SysfsError::Malformed { .. }), "{e}");
        fake.relink(pf, "virtfn1", "..").unwrap();
        names_path(&s.vfs(pf).unwrap_err(), "virtfn1");
        fake.relink(vf, "physfn", "../nowhere").unwrap();
        names_path(&s.physfn(vf).unwrap_err(), "0000:01:10.0/physfn");
        fake.relink(vf, "driver", "../../../../bus/pci/drivers/gone")
            .unwrap();
        names_path(&s.driver(vf).unwrap_err(), "0000:01:10.0/driver");
        fs::create_dir_all(fake.root().join("sys/kernel/iommu_groups/x")).unwrap();
        fake.relink(vf, "iommu_group", "../../../../kernel/iommu_groups/x")
            .unwrap();
        names_path(&s.iommu_group(vf).unwrap_err(), "0000:01:10.0/iommu_group");
        // A `virtfn` entry that is a file, not a link.
        fs::remove_file(fake.device_dir(pf).join("virtfn1")).unwrap();
        fs::write(fake.device_dir(pf).join("virtfn1"), "x").unwrap();
        names_path(&s.vfs(pf).unwrap_err(), "virtfn1");
        // Not virtfn links: ignored.
        fs::remove_file(fake.device_dir(pf).join("virtfn1")).unwrap();
        fs::write(fake.device_dir(pf).join("virtfn"), "x").unwrap();
        fs::write(fake.device_dir(pf).join("virtfnx"), "x").unwrap();
        assert_eq!(s.vfs(pf).unwrap().len(), 1);
    }

    #[test]
    fn interface_names_cannot_escape_class_net() {
        let (_d, fake) = tree(1);
        let s = fake.sysfs();
        for bad in ["", ".", "..", "../ens1", "a/b", "sixteen-chars-xx", "a b"] {
            assert!(
                matches!(s.netdev_pci(bad), Err(SysfsError::InvalidIfName(_))),
                "{bad:?}"
            );
        }
        let e = s.netdev_pci("nosuch0").unwrap_err();
        assert!(e.is_not_found());
        names_path(&e, "sys/class/net/nosuch0/device");
        assert_eq!(
            Sysfs::system().pci_dir(pci("0000:01:00.0")),
            Path::new("/sys/bus/pci/devices/0000:01:00.0")
        );
    }
}

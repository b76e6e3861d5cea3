//! `multus devices`: the node's SR-IOV PFs and VFs (and any other PCI function on vfio-pci or held by the `dpdk`
//! delegate) with their vendor and device names (the `pci-ids` database compiled in), driver, netdev, IOMMU group
//! and the attachment holding them: an SR-IOV allocation record (`<sriov dataDir>/pci/<bdf>`) or a DPDK binding
//! record (`<dpdk dataDir>/<containerID>@<ifname>.json`). Read-only: it never creates a state directory.
//!
//! `--sysfs-root` reads a tree other than `/sys`, e.g. a fake one in tests.

use std::fs;
use std::path::{Path, PathBuf};

use multus_dpdk::state::Store;
use multus_sriov::{PciAddress, Sysfs, VfAllocator};
use serde::Serialize;

/// Options of `multus devices`.
#[derive(clap::Args, Debug, Clone)]
pub struct DevicesOpts {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The directory holding `sys/` to read (`/` on a node).
    #[arg(long, default_value = "/")]
    pub sysfs_root: PathBuf,
    /// The SR-IOV delegate's dataDir (its allocation records are in `pci/`).
    #[arg(long, default_value = multus_sriov::cache::DEFAULT_DATA_DIR)]
    pub sriov_data_dir: PathBuf,
    /// The dpdk delegate's dataDir.
    #[arg(long, default_value = multus_dpdk::state::DEFAULT_STATE_DIR)]
    pub dpdk_data_dir: PathBuf,
}

/// Who holds a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldBy {
    /// `sriov` (an allocation record) or `dpdk` (a vfio-pci binding).
    pub via: &'static str,
    /// The CNI container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The attachment's interface name.
    pub ifname: String,
    /// The pod's netns path.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub netns: String,
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceRow {
    /// Its address.
    pub pci: String,
    /// `PF`, `VF`, or `PCI` (neither, listed because it is on vfio-pci or held).
    pub kind: &'static str,
    /// Its PF, for a VF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pf: Option<String>,
    /// Its VF index on the PF, for a VF.
    #[serde(rename = "vfIndex", skip_serializing_if = "Option::is_none")]
    pub vf_index: Option<u32>,
    /// Enabled / possible VFs, for a PF.
    #[serde(rename = "numVfs", skip_serializing_if = "Option::is_none")]
    pub num_vfs: Option<(u32, u32)>,
    /// PCI vendor ID, 4 hex digits.
    #[serde(rename = "vendorID")]
    pub vendor_id: String,
    /// PCI device ID, 4 hex digits.
    #[serde(rename = "deviceID")]
    pub device_id: String,
    /// The vendor's name, when the database knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<&'static str>,
    /// The device's name, when the database knows it.
    #[serde(rename = "name", skip_serializing_if = "Option::is_none")]
    pub device: Option<&'static str>,
    /// Bound driver.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Netdev in this netns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netdev: Option<String>,
    /// IOMMU group.
    #[serde(rename = "iommuGroup", skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<u32>,
    /// Who holds it.
    #[serde(rename = "heldBy", skip_serializing_if = "Option::is_none")]
    pub held_by: Option<HeldBy>,
}

/// The vendor and device names of a vendor / device ID pair from the `pci-ids` database.
pub fn names(vendor: u16, device: u16) -> (Option<&'static str>, Option<&'static str>) {
    use pci_ids::FromId;
    match pci_ids::Device::from_vid_pid(vendor, device) {
        Some(d) => (Some(d.vendor().name()), Some(d.name())),
        None => (pci_ids::Vendor::from_id(vendor).map(|v| v.name()), None),
    }
}

/// A function's row (without holder).
fn row(s: &Sysfs, pci: PciAddress, kind: &'static str) -> DeviceRow {
    let vendor = s.vendor_id(pci).ok();
    let device = s.device_id(pci).ok();
    let (vname, dname) = match (vendor, device) {
        (Some(v), Some(d)) => names(v, d),
        _ => (None, None),
    };
    let hex = |x: Option<u16>| {
        x.map(|x| format!("{x:04x}"))
            .unwrap_or_else(|| "????".into())
    };
    DeviceRow {
        pci: pci.to_string(),
        kind,
        pf: None,
        vf_index: None,
        num_vfs: None,
        vendor_id: hex(vendor),
        device_id: hex(device),
        vendor: vname,
        device: dname,
        driver: s.driver(pci).ok().flatten(),
        netdev: s.netdevs(pci).ok().and_then(|n| n.into_iter().next()),
        iommu_group: s.iommu_group(pci).ok().flatten(),
        held_by: None,
    }
}

/// Every row, PFs in address order each followed by its VFs, then other held or vfio-pci functions; problems
/// reading the state directories are returned as warnings.
pub fn collect(opts: &DevicesOpts) -> Result<(Vec<DeviceRow>, Vec<String>), String> {
    let s = Sysfs::new(&opts.sysfs_root);
    let dir = opts.sysfs_root.join("sys/bus/pci/devices");
    let rd = fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut all: Vec<PciAddress> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    all.sort();
    let mut warnings = Vec::new();
    let holders = holders(opts, &s, &mut warnings);
    let mut rows = Vec::new();
    let mut listed = std::collections::HashSet::new();
    for &pf in &all {
        let Ok(total) = s.total_vfs(pf) else { continue };
        if total == 0 {
            continue;
        }
        let mut r = row(&s, pf, "PF");
        let vfs = s.vfs(pf).unwrap_or_else(|e| {
            warnings.push(e.to_string());
            Vec::new()
        });
        r.num_vfs = Some((vfs.len() as u32, total));
        rows.push(r);
        listed.insert(pf);
        for v in vfs {
            let mut r = row(&s, v.pci, "VF");
            r.pf = Some(pf.to_string());
            r.vf_index = Some(v.index);
            rows.push(r);
            listed.insert(v.pci);
        }
    }
    for &p in &all {
        let on_vfio = s.driver(p).ok().flatten().as_deref() == Some(multus_dpdk::VFIO_PCI_DRIVER);
        if !listed.contains(&p) && (on_vfio || holders.iter().any(|(h, _)| *h == p)) {
            rows.push(row(&s, p, "PCI"));
        }
    }
    for r in &mut rows {
        r.held_by = holders
            .iter()
            .find(|(p, _)| p.to_string() == r.pci)
            .map(|(_, h)| h.clone());
    }
    Ok((rows, warnings))
}

/// Holders from the SR-IOV allocation records and the DPDK binding records (DPDK's first: it is the more
/// specific, a `dpdk` attachment of a VF allocated by the SR-IOV delegate).
fn holders(opts: &DevicesOpts, s: &Sysfs, warnings: &mut Vec<String>) -> Vec<(PciAddress, HeldBy)> {
    let mut out = Vec::new();
    let listing = Store::new(&opts.dpdk_data_dir).list();
    warnings.extend(listing.unreadable.iter().map(|u| u.error.to_string()));
    for (at, r) in listing.records {
        if let Ok(p) = r.pci.parse() {
            out.push((
                p,
                HeldBy {
                    via: "dpdk",
                    container_id: at.container_id,
                    ifname: at.ifname,
                    netns: r.netns,
                },
            ));
        }
    }
    let alloc_dir = opts.sriov_data_dir.join("pci");
    if alloc_dir.is_dir() {
        match VfAllocator::new(&alloc_dir, s.clone()).list() {
            Ok(l) => {
                for (p, h) in l {
                    out.push((
                        p,
                        HeldBy {
                            via: "sriov",
                            container_id: h.container_id,
                            ifname: h.ifname,
                            netns: h.netns,
                        },
                    ));
                }
            }
            Err(e) => warnings.push(e.to_string()),
        }
    }
    out
}

/// The rows as a table.
pub fn table(rows: &[DeviceRow]) -> String {
    let dash = |x: Option<String>| x.unwrap_or_else(|| "-".into());
    let mut lines = vec![[
        "PCI".to_string(),
        "KIND".into(),
        "VF".into(),
        "DRIVER".into(),
        "NETDEV".into(),
        "IOMMU".into(),
        "HELD BY".into(),
        "DEVICE".into(),
    ]];
    for r in rows {
        let vf = match (r.vf_index, r.num_vfs) {
            (Some(i), _) => i.to_string(),
            (_, Some((n, t))) => format!("{n}/{t}"),
            _ => "-".into(),
        };
        let name = format!(
            "{} {} [{}:{}]",
            r.vendor.unwrap_or("unknown vendor"),
            r.device.unwrap_or("unknown device"),
            r.vendor_id,
            r.device_id
        );
        lines.push([
            r.pci.clone(),
            r.kind.into(),
            vf,
            dash(r.driver.clone()),
            dash(r.netdev.clone()),
            dash(r.iommu_group.map(|g| g.to_string())),
            dash(
                r.held_by
                    .as_ref()
                    .map(|h| format!("{} {}/{}", h.via, h.container_id, h.ifname)),
            ),
            name,
        ]);
    }
    let mut widths = [0usize; 8];
    for l in &lines {
        for (w, c) in widths.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut line = String::new();
        for (i, (c, w)) in l.iter().zip(widths).enumerate() {
            if i + 1 == l.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `multus devices`: prints the table or JSON; returns the exit status.
pub fn run(opts: &DevicesOpts) -> i32 {
    let (rows, warnings) = match collect(opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("multus devices: {e}");
            return 1;
        }
    };
    for w in &warnings {
        eprintln!("multus devices: warning: {w}");
    }
    if opts.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!(
            "no SR-IOV PF and no device on vfio-pci under {}",
            Path::new(&opts.sysfs_root).join("sys").display()
        );
    } else {
        print!("{}", table(&rows));
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use multus_dpdk::bind::Original;
    use multus_dpdk::state::{Binding, Phase};
    use multus_sriov::fake::{FakePf, FakeSysfs};
    use multus_sriov::Holder;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: DevicesOpts,
    }

    fn pci(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    #[test]
    fn names_come_from_the_pci_ids_database() {
        assert_eq!(
            names(0x8086, 0x10ca),
            (Some("Intel Corporation"), Some("82576 Virtual Function"))
        );
        assert_eq!(names(0x8086, 0xfffe), (Some("Intel Corporation"), None));
        assert_eq!(names(0x0002, 0x0001), (None, None));
    }

    #[test]
    fn lists_pfs_vfs_drivers_groups_and_holders_of_a_fake_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let fake = FakeSysfs::new(&root).unwrap();
        fake.add_pf(&FakePf::igb("ens1", 1, 3)).unwrap();
        // A function without SR-IOV: not listed. One on vfio-pci: listed as PCI.
        fake.add_function(
            pci("0000:02:00.0"),
            0x1af4,
            0x1041,
            Some("virtio-pci"),
            None,
        )
        .unwrap();
        fake.add_function(
            pci("0000:03:00.0"),
            0x8086,
            0x1533,
            Some("vfio-pci"),
            Some(20),
        )
        .unwrap();
        // VF 0 bound for DPDK by c1/net1; VF 1 allocated by the SR-IOV delegate to c2/net1.
        let vf0 = pci("0000:01:10.0");
        fake.remove_netdev(vf0, "ens1v0").unwrap();
        fake.relink(vf0, "driver", "../../../../bus/pci/drivers/vfio-pci")
            .unwrap();
        let dpdk_dir = dir.path().join("dpdk");
        let store = Store::new(&dpdk_dir);
        let at = multus_core::cni::AttachmentRef {
            container_id: "c1".into(),
            ifname: "net1".into(),
        };
        let b = Binding {
            netns: "/var/run/netns/p1".into(),
            pci: vf0.to_string(),
            pf: Some("0000:01:00.0".into()),
            original: Original::default(),
            phase: Phase::Bound,
            vfio_dev: "/dev/vfio/8".into(),
            group: Some(8),
            noiommu: false,
            vf: None,
        };
        store
            .save(&at, &b, multus_core::fs::Durability::AtomicOnly)
            .unwrap();
        let sriov_dir = dir.path().join("sriov");
        VfAllocator::new(sriov_dir.join("pci"), fake.sysfs())
            .allocate_device(
                pci("0000:01:10.2"),
                &Holder {
                    container_id: "c2".into(),
                    ifname: "net1".into(),
                    netns: "/var/run/netns/p2".into(),
                },
            )
            .unwrap();
        let cli = Cli::try_parse_from([
            "devices".as_ref(),
            "--json".as_ref(),
            "--sysfs-root".as_ref(),
            root.as_os_str(),
            "--sriov-data-dir".as_ref(),
            sriov_dir.as_os_str(),
            "--dpdk-data-dir".as_ref(),
            dpdk_dir.as_os_str(),
        ])
        .unwrap();
        assert!(cli.opts.json);
        let (rows, warnings) = collect(&cli.opts).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let t = table(&rows);
        println!("{t}");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines,
            [
                "PCI           KIND  VF   DRIVER    NETDEV  IOMMU  HELD BY        DEVICE",
                "0000:01:00.0  PF    3/7  igb       ens1    7      -              Intel Corporation 82576 Gigabit Network Connection [8086:10c9]",
                "0000:01:10.0  VF    0    vfio-pci  -       8      dpdk c1/net1   Intel Corporation 82576 Virtual Function [8086:10ca]",
                "0000:01:10.2  VF    1    igbvf     ens1v1  9      sriov c2/net1  Intel Corporation 82576 Virtual Function [8086:10ca]",
                "0000:01:10.4  VF    2    igbvf     ens1v2  10     -              Intel Corporation 82576 Virtual Function [8086:10ca]",
                "0000:03:00.0  PCI   -    vfio-pci  -       20     -              Intel Corporation I210 Gigabit Network Connection [8086:1533]",
            ]
        );
        let json = serde_json::to_value(&rows).unwrap();
        assert_eq!(
            json[1],
            serde_json::json!({"pci": "0000:01:10.0", "kind": "VF", "pf": "0000:01:00.0", "vfIndex": 0,
                "vendorID": "8086", "deviceID": "10ca", "vendor": "Intel Corporation",
                "name": "82576 Virtual Function", "driver": "vfio-pci", "iommuGroup": 8,
                "heldBy": {"via": "dpdk", "containerID": "c1", "ifname": "net1", "netns": "/var/run/netns/p1"}})
        );
        assert_eq!(json[0]["numVfs"], serde_json::json!([3, 7]));
        assert_eq!(json[2]["heldBy"]["via"], "sriov");
        // Nothing under the sysfs root: an error naming it; no state dirs: no holders, no warnings, none created.
        let mut o = cli.opts.clone();
        o.sysfs_root = dir.path().join("nowhere");
        assert!(collect(&o)
            .unwrap_err()
            .contains("nowhere/sys/bus/pci/devices"));
        let mut o = cli.opts.clone();
        o.dpdk_data_dir = dir.path().join("no-dpdk");
        o.sriov_data_dir = dir.path().join("no-sriov");
        let (rows, warnings) = collect(&o).unwrap();
        assert!(warnings.is_empty() && rows.iter().all(|r| r.held_by.is_none()));
        assert!(!o.dpdk_data_dir.exists() && !o.sriov_data_dir.exists());
    }
}

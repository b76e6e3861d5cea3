//! Targets of what the plugins read back from disk: the input is written where the plugin looks (a
//! directory of this thread's own, emptied before every input) and read through the same code as a DEL or
//! a GC reads it: `load` of the attachment and `list` of the directory.

use super::{outcome, Target, Verdict};
use crate::engine::Shape;
use multus_cni::meta::cache::Cache;
use multus_core::cni::{AttachmentRef, CniError};
use multus_core::record::{Record, RecordStore};
use multus_sriov::cache::VfRecord;
use multus_sriov::{PciAddress, Sysfs, VfAllocator};
use std::path::{Path, PathBuf};

/// A device-info file (spec 1.1.0, the device plugin's or a delegate's).
pub const DEVICE_INFO: Target = Target {
    name: "device_info",
    about: "a device-info file (devinfo::parse)",
    shape: Shape::Json,
    check: device_info,
};

/// Our attachment cache record (`<cniDir>/<cid>@<ifname>.json`).
pub const CACHE_RECORD: Target = Target {
    name: "cache_record",
    about: "the meta-plugin's attachment cache record, loaded and listed",
    shape: Shape::Json,
    check: cache_record,
};

/// This project's earlier cache format (`<cniDir>/<cid>-<ifname>.json`).
pub const CACHE_LEGACY: Target = Target {
    name: "cache_legacy",
    about: "this project's earlier cache file, loaded and listed",
    shape: Shape::Json,
    check: cache_legacy,
};

/// Go Multus' entry (`<cniDir>/<cid>`: its DelegateNetConf list).
pub const CACHE_GO_ENTRY: Target = Target {
    name: "cache_go_entry",
    about: "Go Multus' cache entry of a container, loaded and listed",
    shape: Shape::Json,
    check: cache_go_entry,
};

/// libcni's result cache next to a valid Go Multus entry.
pub const CACHE_LIBCNI_RESULT: Target = Target {
    name: "cache_libcni_result",
    about: "libcni's result cache file (cniCacheV1) of a Go Multus attachment",
    shape: Shape::Json,
    check: cache_libcni_result,
};

/// The sriov delegate's per-attachment record.
pub const SRIOV_RECORD: Target = Target {
    name: "sriov_record",
    about: "the sriov delegate's VfRecord, loaded and listed",
    shape: Shape::Json,
    check: sriov_record,
};

/// The sriov allocator's record of a VF (`<dataDir>/<pci address>`).
pub const SRIOV_ALLOC: Target = Target {
    name: "sriov_alloc",
    about: "the sriov allocator's holder record of a VF, read and listed",
    shape: Shape::Json,
    check: sriov_alloc,
};

/// The dpdk delegate's per-attachment record.
pub const DPDK_RECORD: Target = Target {
    name: "dpdk_record",
    about: "the dpdk delegate's Binding record (with its VfRecord), loaded and listed",
    shape: Shape::Json,
    check: dpdk_record,
};

/// The container of the Go Multus fixture (`multus-cni/tests/fixtures/go-multus-4.2.2/delegates-mode`).
const GO_CID: &str = "3f0c2a0e5b7d4c1f9a8e6b2d1c0f9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d";
const GO_ENTRY: &[u8] = include_bytes!(
    "../../../multus-cni/tests/fixtures/go-multus-4.2.2/delegates-mode/cniDir/3f0c2a0e5b7d4c1f9a8e6b2d1c0f9e8d7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
);

thread_local! {
    static DIR: Option<tempfile::TempDir> = tempfile::Builder::new().prefix("multus-fuzz-").tempdir().ok();
}

/// Runs `f` on this thread's directory, emptied first.
fn in_dir(f: impl FnOnce(&Path) -> Verdict) -> Verdict {
    DIR.with(|d| {
        let Some(d) = d else {
            return Err("no temporary directory".into());
        };
        let dir = d.path();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        f(dir)
    })
}

fn write(path: PathBuf, bytes: &[u8]) -> Verdict {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("setup: {e}"))?;
    }
    std::fs::write(&path, bytes).map_err(|e| format!("setup: writing {}: {e}", path.display()))
}

fn at(cid: &str, ifname: &str) -> AttachmentRef {
    AttachmentRef {
        container_id: cid.into(),
        ifname: ifname.into(),
    }
}

fn device_info(b: &[u8]) -> Verdict {
    let Ok(v) = multus_core::devinfo::parse(b) else {
        return Ok(());
    };
    match v.get("type") {
        Some(serde_json::Value::String(t)) if !t.is_empty() => Ok(()),
        _ => Err(format!("accepted a device-info without a type: {v}")),
    }
}

/// Loads `at` and lists the directory through the meta-plugin's cache.
fn through_cache(dir: &Path, at: &AttachmentRef) -> Verdict {
    let cache = Cache::new(dir);
    outcome("Cache::load", cache.load(at))?;
    for l in cache.list() {
        outcome("Cache::list entry", l.attached)?;
    }
    Ok(())
}

fn cache_record(b: &[u8]) -> Verdict {
    in_dir(|dir| {
        write(dir.join("c1@eth0.json"), b)?;
        through_cache(dir, &at("c1", "eth0"))
    })
}

fn cache_legacy(b: &[u8]) -> Verdict {
    in_dir(|dir| {
        write(dir.join("c1-eth0.json"), b)?;
        through_cache(dir, &at("c1", "eth0"))
    })
}

fn cache_go_entry(b: &[u8]) -> Verdict {
    in_dir(|dir| {
        write(dir.join(GO_CID), b)?;
        through_cache(dir, &at(GO_CID, "eth0"))
    })
}

fn cache_libcni_result(b: &[u8]) -> Verdict {
    in_dir(|dir| {
        write(dir.join(GO_CID), GO_ENTRY)?;
        write(dir.join(format!("results/podnet-{GO_CID}-eth0")), b)?;
        write(dir.join(format!("results/macvlan-conf-{GO_CID}-net1")), b)?;
        through_cache(dir, &at(GO_CID, "eth0"))
    })
}

/// Loads and lists records of kind `T` whose file is `b`.
fn records<T: Record>(b: &[u8], check: impl Fn(&T) -> Verdict) -> Verdict {
    in_dir(|dir| {
        write(dir.join("c1@net1.json"), b)?;
        let store = RecordStore::<T>::new(dir);
        let loaded = store.load(&at("c1", "net1")).map_err(CniError::from);
        if let Some(Some(r)) = outcome("RecordStore::load", loaded)? {
            check(&r)?;
        }
        let listing = store.list();
        for (_, r) in &listing.records {
            check(r)?;
        }
        for u in listing.unreadable {
            outcome::<()>("RecordStore::list", Err(u.error.into()))?;
        }
        Ok(())
    })
}

fn sriov_record(b: &[u8]) -> Verdict {
    records::<VfRecord>(b, |r| {
        let _ = r.attachment();
        Ok(())
    })
}

fn dpdk_record(b: &[u8]) -> Verdict {
    records::<multus_dpdk::state::Binding>(b, |r| {
        let _ = r.pci.parse::<PciAddress>();
        Ok(())
    })
}

fn sriov_alloc(b: &[u8]) -> Verdict {
    in_dir(|dir| {
        let vf: PciAddress = "0000:01:10.2"
            .parse()
            .map_err(|e| format!("setup: {e:?}"))?;
        write(dir.join(vf.to_string()), b)?;
        let alloc = VfAllocator::new(dir, Sysfs::new(dir.join("no-sysfs")));
        outcome(
            "VfAllocator::holder",
            alloc.holder(vf).map_err(CniError::from),
        )?;
        outcome("VfAllocator::list", alloc.list().map_err(CniError::from))?;
        Ok(())
    })
}

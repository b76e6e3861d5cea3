//! The attachment cache files of this project's earlier versions: `<cniDir>/<containerID>-<ifname>.json`,
//! `{"format": 1, "containerID", "ifname", "netns", "attachments"}`. Such a name can stand for two
//! attachments (`a-b` + `c`, `a` + `b-c`), so a file is only ever taken for the attachment its content
//! names.

use super::{CachedAttachment, CachedPod, Listed};
use multus_core::cni::{AttachmentRef, CniError};
use multus_core::pipeline::Attached;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct LegacyEntry {
    format: u32,
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
    #[serde(default)]
    netns: String,
    attachments: Vec<CachedAttachment>,
}

fn path(dir: &Path, at: &AttachmentRef) -> PathBuf {
    dir.join(format!("{}-{}.json", at.container_id, at.ifname))
}

fn read(path: &Path) -> Result<Option<LegacyEntry>, CniError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A directory of that name is no entry (and not ours to remove).
        Err(_) if path.is_dir() => return Ok(None),
        Err(e) => return Err(CniError::io(format!("reading {}: {e}", path.display()))),
    };
    let corrupt = |why: String| {
        CniError::decoding(format!(
            "attachment cache {} is corrupt: {why}",
            path.display()
        ))
    };
    let e: LegacyEntry = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if e.format != 1 {
        return Err(corrupt(format!("unknown format {}", e.format)));
    }
    Ok(Some(e))
}

fn attached(e: LegacyEntry) -> Result<Vec<Attached>, CniError> {
    CachedPod {
        netns: e.netns,
        attachments: e.attachments,
    }
    .attached()
}

/// The attachment's earlier-format entry, if the file of its name is one and names it.
pub fn load(dir: &Path, at: &AttachmentRef) -> Result<Option<Vec<Attached>>, CniError> {
    match read(&path(dir, at))? {
        Some(e) if e.container_id == at.container_id && e.ifname == at.ifname => {
            attached(e).map(Some)
        }
        // The name's other reading: another attachment's file, not this one's.
        _ => Ok(None),
    }
}

/// Removes the attachment's earlier-format entry (only a file that names it).
pub fn remove(dir: &Path, at: &AttachmentRef) -> Result<(), CniError> {
    let p = path(dir, at);
    if let Ok(Some(_)) = load(dir, at) {
        multus_core::fs::remove_if_exists(&p)
            .map_err(|e| CniError::io(format!("removing {}: {e}", p.display())))?;
    }
    Ok(())
}

/// Every earlier-format entry of the directory.
pub fn list(dir: &Path) -> Vec<Listed> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.ends_with(".json") || name.contains('@') {
                return None;
            }
            let l = read(&e.path()).ok()??;
            let at = AttachmentRef {
                container_id: l.container_id.clone(),
                ifname: l.ifname.clone(),
            };
            if name != format!("{}-{}.json", at.container_id, at.ifname) {
                return None;
            }
            let netns = l.netns.clone();
            Some(Listed {
                attached: attached(l),
                netns,
                at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{at, net};
    use super::super::Cache;

    #[test]
    fn legacy_files_are_read_only_for_the_ids_inside() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        // Written by the earlier version for (a-b, c): the same file name as (a, b-c) would have had.
        let legacy = serde_json::json!({"format": 1, "containerID": "a-b", "ifname": "c", "netns": "/ns",
            "attachments": [{"name": "n", "ifname": "c", "network": net().to_value()}]});
        std::fs::write(d.path().join("a-b-c.json"), legacy.to_string()).unwrap();
        assert!(cache.load(&at("a", "b-c")).unwrap().is_none());
        assert_eq!(cache.load(&at("a-b", "c")).unwrap().unwrap().len(), 1);
        let listed = cache.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].at, at("a-b", "c"));
        // Removing the other attachment leaves it; removing its own takes it.
        cache.remove(&at("a", "b-c")).unwrap();
        assert!(d.path().join("a-b-c.json").exists());
        cache.remove(&at("a-b", "c")).unwrap();
        assert!(!d.path().join("a-b-c.json").exists());
    }
}

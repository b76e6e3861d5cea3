//! The attachment cache in `cniDir`: what was attached to a pod, written before the first delegate ADD so
//! that DEL can always undo it, even when the config or the cluster has changed since.
//!
//! One record per (container ID, `CNI_IFNAME`) in the project's record store
//! ([`multus_core::record`]: `<cniDir>/<containerID>@<ifname>.json`, kind `multus-attachments`): the delegate
//! configs exactly as run (kept whole), each attachment's interface, runtime config, CNI_ARGS extras and,
//! once known, its ADD result. Files written by earlier versions of this project
//! (`<containerID>-<ifname>.json`, format 1) are still read, and only when the IDs inside are the ones asked
//! for (two attachments could share such a name).

use multus_core::cni::{AttachmentRef, CniError, CniResult, NetworkConfig};
use multus_core::fs::{self, Durability};
use multus_core::pipeline::{Attached, Attachment};
use multus_core::record::{Record, RecordStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One cached attachment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedAttachment {
    /// Its name.
    pub name: String,
    /// Interface name in the pod.
    pub ifname: String,
    /// The network config exactly as run.
    pub network: Value,
    /// The runtime config it was given.
    #[serde(rename = "runtimeConfig", default)]
    pub runtime_config: Map<String, Value>,
    /// Extra CNI_ARGS.
    #[serde(rename = "extraArgs", default)]
    pub extra_args: Vec<(String, String)>,
    /// Default network or not.
    #[serde(rename = "isDefault", default)]
    pub is_default: bool,
    /// The ADD result, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

impl CachedAttachment {
    fn new(a: &Attachment, result: Option<&CniResult>) -> Self {
        CachedAttachment {
            name: a.name.clone(),
            ifname: a.ifname.clone(),
            network: a.network.to_value(),
            runtime_config: a.runtime_config.clone(),
            extra_args: a.extra_args.clone(),
            is_default: a.is_default,
            result: result.and_then(|r| r.to_value(&r.cni_version).ok()),
        }
    }

    fn attached(&self, i: usize) -> Result<Attached, CniError> {
        let network = NetworkConfig::from_value(self.network.clone())
            .map_err(|e| e.context(format!("cached attachment {i}")))?;
        Ok(Attached {
            attachment: Attachment {
                name: self.name.clone(),
                network,
                ifname: self.ifname.clone(),
                runtime_config: self.runtime_config.clone(),
                extra_args: self.extra_args.clone(),
                is_default: self.is_default,
            },
            // A result that no longer parses only costs the delegate its prevResult.
            result: self
                .result
                .as_ref()
                .and_then(|r| CniResult::from_value(r).ok()),
        })
    }
}

/// Everything attached to one pod sandbox through one Multus invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedPod {
    /// The netns at ADD.
    #[serde(default)]
    pub netns: String,
    /// The attachments, in ADD order.
    pub attachments: Vec<CachedAttachment>,
}

impl Record for CachedPod {
    const KIND: &'static str = "multus-attachments";
    const VERSION: u32 = 1;
}

impl CachedPod {
    /// The attachments back, with their results.
    pub fn attached(&self) -> Result<Vec<Attached>, CniError> {
        self.attachments
            .iter()
            .enumerate()
            .map(|(i, c)| c.attached(i))
            .collect()
    }
}

/// The format of this project's earlier cache files (`<containerID>-<ifname>.json`).
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

/// The attachment cache of a `cniDir`.
#[derive(Debug, Clone)]
pub struct Cache {
    store: RecordStore<CachedPod>,
}

/// One entry of [`Cache::list`].
pub struct Listed {
    /// Whose it is.
    pub at: AttachmentRef,
    /// The netns at ADD (empty when unknown).
    pub netns: String,
    /// What it holds, or why it cannot be read.
    pub attached: Result<Vec<Attached>, CniError>,
}

impl Cache {
    /// The cache in `dir` (created on the first write).
    pub fn new(dir: &Path) -> Self {
        Cache {
            store: RecordStore::new(dir),
        }
    }

    fn legacy_path(&self, at: &AttachmentRef) -> PathBuf {
        self.store
            .dir()
            .join(format!("{}-{}.json", at.container_id, at.ifname))
    }

    /// Stores what is about to be attached, durably: done before the first delegate ADD, so that DEL can
    /// undo whatever follows, even after a crash.
    pub fn store_planned(
        &self,
        at: &AttachmentRef,
        netns: &str,
        atts: &[Attachment],
    ) -> Result<(), CniError> {
        let rec = CachedPod {
            netns: netns.to_string(),
            attachments: atts
                .iter()
                .map(|a| CachedAttachment::new(a, None))
                .collect(),
        };
        Ok(self.store.save(at, &rec, Durability::Durable)?)
    }

    /// Records the ADD results, atomically but without fsync: if a crash loses them, the durable entry
    /// written before ADD still lets DEL undo everything (results only add `prevResult`).
    pub fn store_attached(
        &self,
        at: &AttachmentRef,
        netns: &str,
        attached: &[Attached],
    ) -> Result<(), CniError> {
        let rec = CachedPod {
            netns: netns.to_string(),
            attachments: attached
                .iter()
                .map(|a| CachedAttachment::new(&a.attachment, a.result.as_ref()))
                .collect(),
        };
        Ok(self.store.save(at, &rec, Durability::AtomicOnly)?)
    }

    /// What was attached; `Ok(None)` when nothing is cached; an error when an entry exists but cannot be
    /// read.
    pub fn load(&self, at: &AttachmentRef) -> Result<Option<Vec<Attached>>, CniError> {
        if let Some(rec) = self.store.load(at)? {
            return rec.attached().map(Some);
        }
        self.load_legacy(at)
    }

    fn load_legacy(&self, at: &AttachmentRef) -> Result<Option<Vec<Attached>>, CniError> {
        let path = self.legacy_path(at);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
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
        if e.container_id != at.container_id || e.ifname != at.ifname {
            // The name's other reading: another attachment's file, not ours.
            return Ok(None);
        }
        CachedPod {
            netns: e.netns,
            attachments: e.attachments,
        }
        .attached()
        .map(Some)
    }

    /// Removes an attachment's entry (nothing to do when there is none, whatever the directory's state).
    pub fn remove(&self, at: &AttachmentRef) -> Result<(), CniError> {
        self.store.remove(at)?;
        let legacy = self.legacy_path(at);
        if let Ok(Some(_)) = self.load_legacy(at) {
            fs::remove_if_exists(&legacy)
                .map_err(|e| CniError::io(format!("removing {}: {e}", legacy.display())))?;
        }
        Ok(())
    }

    /// Whether no attachment is cached at all (readable or not, in any format this cache reads).
    pub fn is_empty(&self) -> bool {
        self.list().is_empty()
    }

    /// Every entry; one that cannot be read is listed with the reason, never hiding the others.
    pub fn list(&self) -> Vec<Listed> {
        let listing = self.store.list();
        let mut out: Vec<Listed> = listing
            .records
            .into_iter()
            .map(|(at, rec)| Listed {
                attached: rec.attached(),
                netns: rec.netns,
                at,
            })
            .collect();
        for u in listing.unreadable {
            match u.at {
                Some(at) => out.push(Listed {
                    at,
                    netns: String::new(),
                    attached: Err(u.error.into()),
                }),
                None => tracing::warn!("attachment cache: {}", u.error),
            }
        }
        out.extend(self.list_legacy());
        out
    }

    fn list_legacy(&self) -> Vec<Listed> {
        let Ok(rd) = std::fs::read_dir(self.store.dir()) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if !name.ends_with(".json") || name.contains('@') {
                    return None;
                }
                let bytes = std::fs::read(e.path()).ok()?;
                let l: LegacyEntry = serde_json::from_slice(&bytes).ok()?;
                let at = AttachmentRef {
                    container_id: l.container_id,
                    ifname: l.ifname,
                };
                (name == format!("{}-{}.json", at.container_id, at.ifname)).then(|| Listed {
                    attached: self
                        .load_legacy(&at)
                        .and_then(|o| o.ok_or_else(|| CniError::decoding("legacy entry vanished"))),
                    netns: l.netns,
                    at,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(c: &str, i: &str) -> AttachmentRef {
        AttachmentRef {
            container_id: c.into(),
            ifname: i.into(),
        }
    }

    fn net() -> NetworkConfig {
        NetworkConfig::from_slice(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","extra":[1]}"#,
        )
        .unwrap()
    }

    #[test]
    fn planned_then_attached_then_removed() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(&d.path().join("sub"));
        let a = Attachment::new(net(), "eth0");
        cache
            .store_planned(&at("c1", "eth0"), "/ns", std::slice::from_ref(&a))
            .unwrap();
        let back = cache.load(&at("c1", "eth0")).unwrap().unwrap();
        assert_eq!(back[0].attachment, a);
        assert!(back[0].result.is_none());
        let attached = vec![Attached {
            attachment: a,
            result: Some(CniResult::new("1.0.0")),
        }];
        cache
            .store_attached(&at("c1", "eth0"), "/ns", &attached)
            .unwrap();
        assert_eq!(cache.load(&at("c1", "eth0")).unwrap().unwrap(), attached);
        assert_eq!(cache.list().len(), 1);
        cache.remove(&at("c1", "eth0")).unwrap();
        cache.remove(&at("c1", "eth0")).unwrap();
        assert!(cache.load(&at("c1", "eth0")).unwrap().is_none());
    }

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

    #[test]
    fn an_unreadable_entry_is_listed_with_its_attachment() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(d.path());
        cache
            .store_planned(&at("good", "eth0"), "", &[Attachment::new(net(), "eth0")])
            .unwrap();
        std::fs::write(d.path().join("bad@eth0.json"), b"{garbage").unwrap();
        let mut listed = cache.list();
        listed.sort_by(|a, b| a.at.cmp(&b.at));
        assert_eq!(listed[0].at, at("bad", "eth0"));
        assert_eq!(listed[0].attached.as_ref().unwrap_err().code.code(), 6);
        assert!(listed[1].attached.is_ok());
        assert_eq!(cache.load(&at("bad", "eth0")).unwrap_err().code.code(), 6);
    }
}

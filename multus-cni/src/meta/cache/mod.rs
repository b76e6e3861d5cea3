//! The attachment cache in `cniDir`: what was attached to a pod, written before the first delegate ADD so
//! that DEL can always undo it, even when the config or the cluster has changed since.
//!
//! One record per (container ID, `CNI_IFNAME`) in the project's record store
//! ([`multus_core::record`]: `<cniDir>/<containerID>@<ifname>.json`, kind `multus-attachments`): the delegate
//! configs exactly as run (kept whole), each attachment's interface, runtime config, CNI_ARGS extras and,
//! once known, its ADD result.
//!
//! What other Multus versions left in the same directory is read too, so that a node switched to this one
//! loses nothing: this project's earlier files ([`legacy`]) and Go Multus 3.x/4.x's ([`go_multus`]). DEL
//! and GC undo and remove them like our own.

use multus_core::cni::{AttachmentRef, CniError, CniResult, NetworkConfig};
use multus_core::fs::Durability;
use multus_core::pipeline::{Attached, Attachment};
use multus_core::record::{Record, RecordStore};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

pub mod go_multus;
pub mod legacy;

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

/// The attachment cache of a `cniDir`.
#[derive(Debug, Clone)]
pub struct Cache {
    store: RecordStore<CachedPod>,
    /// What Go Multus' entries do not say.
    go: go_multus::Defaults,
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
            go: go_multus::Defaults::default(),
        }
    }

    /// The cache of a Multus config (its `cniDir`, and what Go Multus' entries need from it).
    pub fn of(conf: &crate::meta::conf::MultusConf) -> Self {
        Cache {
            store: RecordStore::new(&conf.cni_dir),
            go: go_multus::Defaults {
                device_info_dir: Some(conf.device_info_dir.clone()),
                cni_version: conf.cni_version.clone(),
            },
        }
    }

    /// Stores what is about to be attached, durably: done before the first delegate ADD, so that DEL can
    /// undo whatever follows, even after a crash.
    pub fn store_planned(
        &self,
        at: &AttachmentRef,
        netns: &str,
        atts: &[Attachment],
    ) -> Result<(), CniError> {
        let cached = atts.iter().map(|a| CachedAttachment::new(a, None));
        self.save(at, netns, cached.collect(), Durability::Durable)
    }

    /// Records the ADD results, atomically but without fsync: if a crash loses them, the durable entry
    /// written before ADD still lets DEL undo everything (results only add `prevResult`).
    pub fn store_attached(
        &self,
        at: &AttachmentRef,
        netns: &str,
        attached: &[Attached],
    ) -> Result<(), CniError> {
        let cached = attached
            .iter()
            .map(|a| CachedAttachment::new(&a.attachment, a.result.as_ref()));
        self.save(at, netns, cached.collect(), Durability::AtomicOnly)
    }

    fn save(
        &self,
        at: &AttachmentRef,
        netns: &str,
        attachments: Vec<CachedAttachment>,
        sync: Durability,
    ) -> Result<(), CniError> {
        let rec = CachedPod {
            netns: netns.to_string(),
            attachments,
        };
        Ok(self.store.save(at, &rec, sync)?)
    }

    /// What was attached; `Ok(None)` when nothing is cached; an error when an entry exists but cannot be
    /// read. Our record first, then this project's earlier file, then Go Multus' entry of the container.
    pub fn load(&self, at: &AttachmentRef) -> Result<Option<Vec<Attached>>, CniError> {
        if let Some(rec) = self.store.load(at)? {
            return rec.attached().map(Some);
        }
        if let Some(a) = legacy::load(self.dir(), at)? {
            return Ok(Some(a));
        }
        go_multus::load(self.dir(), at, &self.go)
    }

    fn dir(&self) -> &Path {
        self.store.dir()
    }

    /// Removes an attachment's entry, in whichever format it was (nothing to do when there is none,
    /// whatever the directory's state).
    pub fn remove(&self, at: &AttachmentRef) -> Result<(), CniError> {
        self.store.remove(at)?;
        legacy::remove(self.dir(), at)?;
        go_multus::remove(self.dir(), at)
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
        out.extend(legacy::list(self.dir()));
        out.extend(go_multus::list(self.dir(), &self.go));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn at(c: &str, i: &str) -> AttachmentRef {
        AttachmentRef {
            container_id: c.into(),
            ifname: i.into(),
        }
    }

    pub(super) fn net() -> NetworkConfig {
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

//! The attachment cache in `cniDir`: what was attached to a pod, written before the first delegate ADD so
//! that DEL can always undo it, even when the config or the cluster has changed since.

use multus_core::cni::{CniError, CniResult, NetworkConfig};
use multus_core::fs::{write_atomic, Durability};
use multus_core::pipeline::Attachment;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The format version of a cache file.
const FORMAT: u32 = 1;

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

/// Everything attached to one pod sandbox through one Multus invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheEntry {
    /// Cache format.
    pub format: u32,
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The ifname Multus was called with.
    pub ifname: String,
    /// The netns at ADD.
    #[serde(default)]
    pub netns: String,
    /// The attachments, in ADD order.
    pub attachments: Vec<CachedAttachment>,
}

impl CacheEntry {
    /// A new entry from attachments (no results yet).
    pub fn new(container_id: &str, ifname: &str, netns: &str, atts: &[Attachment]) -> Self {
        CacheEntry {
            format: FORMAT,
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            netns: netns.to_string(),
            attachments: atts
                .iter()
                .map(|a| CachedAttachment {
                    name: a.name.clone(),
                    ifname: a.ifname.clone(),
                    network: a.network.to_value(),
                    runtime_config: a.runtime_config.clone(),
                    extra_args: a.extra_args.clone(),
                    is_default: a.is_default,
                    result: None,
                })
                .collect(),
        }
    }

    /// Records ADD results (same order as the attachments).
    pub fn set_results(&mut self, results: &[CniResult]) {
        for (a, r) in self.attachments.iter_mut().zip(results) {
            a.result = r.to_value(&r.cni_version).ok();
        }
    }

    /// The attachments back, with their results.
    pub fn attachments(&self) -> Result<(Vec<Attachment>, Vec<Option<CniResult>>), CniError> {
        let mut atts = Vec::new();
        let mut results = Vec::new();
        for (i, c) in self.attachments.iter().enumerate() {
            let network = NetworkConfig::from_value(c.network.clone())
                .map_err(|e| e.context(format!("cached attachment {i}")))?;
            atts.push(Attachment {
                name: c.name.clone(),
                network,
                ifname: c.ifname.clone(),
                runtime_config: c.runtime_config.clone(),
                extra_args: c.extra_args.clone(),
                is_default: c.is_default,
            });
            results.push(
                c.result
                    .as_ref()
                    .and_then(|r| CniResult::from_value(r).ok()),
            );
        }
        Ok((atts, results))
    }
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        Cache {
            dir: dir.to_path_buf(),
        }
    }

    /// The file of one (container ID, ifname); both were validated by the CNI environment parser, so
    /// neither can hold a `/`.
    pub fn path(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{container_id}-{ifname}.json"))
    }

    /// Writes an entry atomically and durably (temp file, fsync, rename, fsync of the directory): done
    /// before the first delegate ADD, so that DEL can undo whatever follows, even after a crash.
    pub fn store(&self, entry: &CacheEntry) -> Result<(), CniError> {
        self.write(entry, Durability::Durable)
    }

    /// Records results in an entry atomically but without fsync: if a crash loses them, the durable entry
    /// written before ADD still lets DEL undo everything (results only add `prevResult`).
    pub fn store_results(&self, entry: &CacheEntry) -> Result<(), CniError> {
        self.write(entry, Durability::AtomicOnly)
    }

    fn write(&self, entry: &CacheEntry, sync: Durability) -> Result<(), CniError> {
        let path = self.path(&entry.container_id, &entry.ifname);
        let bytes = serde_json::to_vec_pretty(entry).map_err(|e| CniError::io(e.to_string()))?;
        write_atomic(&path, &bytes, 0o600, sync)
            .map_err(|e| CniError::io(format!("attachment cache {}: {e}", path.display())))
    }

    /// Loads an entry. `Ok(None)` when there is none; an error when it exists but cannot be read or decoded.
    pub fn load(&self, container_id: &str, ifname: &str) -> Result<Option<CacheEntry>, CniError> {
        let path = self.path(container_id, ifname);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CniError::io(format!("reading {}: {e}", path.display()))),
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| {
            CniError::decoding(format!(
                "attachment cache {} is corrupt: {e}",
                path.display()
            ))
        })?;
        if entry.format != FORMAT {
            return Err(CniError::decoding(format!(
                "attachment cache {} has unknown format {}",
                path.display(),
                entry.format
            )));
        }
        Ok(Some(entry))
    }

    /// Removes an entry (nothing to do when it is gone).
    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), CniError> {
        match std::fs::remove_file(self.path(container_id, ifname)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io(format!("removing attachment cache: {e}"))),
        }
    }

    /// Every entry that can be read, with the paths of those that cannot.
    pub fn list(&self) -> (Vec<CacheEntry>, Vec<PathBuf>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return (good, bad);
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match std::fs::read(&p)
                .ok()
                .and_then(|b| serde_json::from_slice::<CacheEntry>(&b).ok())
            {
                Some(c) if c.format == FORMAT => good.push(c),
                _ => bad.push(p),
            }
        }
        (good, bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_load_remove() {
        let d = tempfile::tempdir().unwrap();
        let cache = Cache::new(&d.path().join("sub"));
        let net = NetworkConfig::from_slice(
            br#"{"cniVersion":"1.0.0","name":"n","type":"bridge","extra":[1]}"#,
        )
        .unwrap();
        let mut e = CacheEntry::new(
            "c1",
            "eth0",
            "/var/run/netns/x",
            &[Attachment::new(net.clone(), "eth0")],
        );
        cache.store(&e).unwrap();
        let back = cache.load("c1", "eth0").unwrap().unwrap();
        let (atts, res) = back.attachments().unwrap();
        assert_eq!(atts[0].network, net);
        assert!(res[0].is_none());
        e.set_results(&[CniResult::new("1.0.0")]);
        cache.store(&e).unwrap();
        assert!(cache
            .load("c1", "eth0")
            .unwrap()
            .unwrap()
            .attachments()
            .unwrap()
            .1[0]
            .is_some());
        assert_eq!(cache.list().0.len(), 1);
        std::fs::write(cache.path("c2", "eth0"), b"{garbage").unwrap();
        assert_eq!(cache.load("c2", "eth0").unwrap_err().code.code(), 6);
        assert_eq!(cache.list().1.len(), 1);
        cache.remove("c1", "eth0").unwrap();
        cache.remove("c1", "eth0").unwrap();
        assert!(cache.load("c1", "eth0").unwrap().is_none());
    }
}

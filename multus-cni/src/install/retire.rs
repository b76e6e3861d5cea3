//! Taking Multus off a node without leaking what it attached to the pods made before.
//!
//! A runtime such as containerd 1.6 tears a pod down with the CNI config it has *now*: once the Multus config
//! is gone, Multus is never called for the pods it attached, and their secondary IPs, VFs and cache entries
//! stay. So `uninstall` removes the Multus config only when nothing is cached in its `cniDir`; otherwise it
//! rewrites it in place as a **retiring** config ([`retiring_config`]): the same file, the same format, without
//! `kubeconfig`, `clusterNetwork` and `defaultNetworks` (so new pods get the primary network, `delegates[0]`,
//! alone), and with `"retiring": {"configFile": "<this file's path on the host>"}`. The meta-plugin then undoes
//! pods from the cache on DEL, and when the last cached attachment is gone it removes the file itself
//! ([`step_aside`]), so the runtime uses the primary config directly. `install` over a retiring config
//! simply writes the normal one.
//!
//! Everyone who writes or removes a Multus config (`install`, `uninstall`, [`step_aside`]) does it under an
//! `flock` of the CNI config directory itself ([`ConfDirLock`]), so a config written by a re-install is
//! never removed by a plugin that read the retiring one a moment before.

use serde_json::{Map, Value};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The key of a retiring config (in the Multus plugin's object: the top level of a `.conf`, `plugins[0]` of
/// a `.conflist`).
pub const RETIRING_KEY: &str = "retiring";
/// `retiring.configFile`: the path of the retiring config file on the host.
pub const CONFIG_FILE_KEY: &str = "configFile";
/// Upstream's default `cniDir`.
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/multus";

/// The cached attachments in a Multus `cniDir`, by file name: this project's records
/// (`<containerID>@<ifname>.json`), its earlier format (`<containerID>-<ifname>.json`) and Go Multus'
/// (`<containerID>`, no extension). Not counted: directories (Go Multus' `results/`, DPDK's `dpdk/`), hidden
/// files (temp files) and the record store's `lock`. A `cniDir` that does not exist holds nothing (`Ok` empty
/// for `NotFound` is the caller's choice: this returns the error).
pub fn cached_attachments(cni_dir: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(cni_dir)? {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || name == "lock" {
            continue;
        }
        let ours = name.ends_with(".json");
        let go = multus_core::cni::names::container_id(&name).is_ok();
        if ours || go {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The object holding Multus' own keys: the config itself (`.conf`), or its `plugins[0]` (`.conflist`).
fn multus_object(doc: &mut Value) -> Option<&mut Map<String, Value>> {
    let top = doc.as_object_mut()?;
    if top.contains_key("plugins") {
        top.get_mut("plugins")?
            .as_array_mut()?
            .first_mut()?
            .as_object_mut()
    } else {
        Some(top)
    }
}

/// The `cniDir` a Multus config names (host path), upstream's default when it names none; `None` when the
/// bytes are not a Multus config.
pub fn cni_dir_of(config: &[u8]) -> Option<PathBuf> {
    let mut doc: Value = serde_json::from_slice(config).ok()?;
    let m = multus_object(&mut doc)?;
    Some(PathBuf::from(
        m.get("cniDir")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_CNI_DIR),
    ))
}

/// Whether these bytes are a retiring Multus config.
pub fn is_retiring(config: &[u8]) -> bool {
    serde_json::from_slice::<Value>(config)
        .ok()
        .as_mut()
        .and_then(multus_object)
        .is_some_and(|m| m.contains_key(RETIRING_KEY))
}

/// Why a config could not be made retiring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetireError {
    /// Not JSON, or not a Multus config.
    #[error("it is not a Multus config ({0})")]
    NotMultus(String),
    /// Neither `delegates` nor a primary config to serve new pods.
    #[error(
        "it names no \"delegates\" and no primary network config was found to serve new pods with"
    )]
    NoPrimary,
}

/// The retiring form of the installed Multus config `installed`, to be written in place at the path it has on
/// the host, `host_path`: `kubeconfig`, `clusterNetwork` and `defaultNetworks` removed, `"retiring":
/// {"configFile": host_path}` added last, every other key kept in its order. A config without `delegates`
/// (one given with `--multus-conf-file`, naming only a `clusterNetwork`) gets `fallback_primary` (the node's
/// primary network config) as its only delegate. Pretty-printed, with a final newline, as `install` writes.
pub fn retiring_config(
    installed: &[u8],
    host_path: &Path,
    fallback_primary: Option<Value>,
) -> Result<Vec<u8>, RetireError> {
    let mut doc: Value =
        serde_json::from_slice(installed).map_err(|e| RetireError::NotMultus(e.to_string()))?;
    let m = multus_object(&mut doc)
        .ok_or_else(|| RetireError::NotMultus("no Multus plugin object".into()))?;
    match m.get("type").and_then(Value::as_str) {
        Some("multus") => {}
        // The thick plugin's config (the daemon's `00-multus.conf`): with the daemon gone, the thin meta-plugin
        // (the same binary as the shim, installed beside it) serves the retiring config.
        Some("multus-shim") => {
            m.insert("type".into(), Value::String("multus".into()));
        }
        _ => return Err(RetireError::NotMultus("its type is not \"multus\"".into())),
    }
    for k in [
        "kubeconfig",
        "clusterNetwork",
        "defaultNetworks",
        RETIRING_KEY,
    ] {
        m.shift_remove(k);
    }
    let has_delegates = m
        .get("delegates")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_delegates {
        let primary = fallback_primary.ok_or(RetireError::NoPrimary)?;
        m.insert("delegates".into(), Value::Array(vec![primary]));
    }
    let mut retiring = Map::new();
    retiring.insert(
        CONFIG_FILE_KEY.into(),
        Value::String(host_path.display().to_string()),
    );
    m.insert(RETIRING_KEY.into(), Value::Object(retiring));
    let mut bytes =
        serde_json::to_vec_pretty(&doc).map_err(|e| RetireError::NotMultus(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// An `flock` of a CNI config directory (the directory itself, so the host and a container that mounts it
/// share it), held while a Multus config there is checked and written or removed.
pub struct ConfDirLock(File);

impl ConfDirLock {
    /// Takes the lock of `dir`, waiting at most `bound`.
    pub fn take(dir: &Path, bound: Duration) -> io::Result<ConfDirLock> {
        let f = File::open(dir)?;
        let start = Instant::now();
        loop {
            match f.try_lock() {
                Ok(()) => return Ok(ConfDirLock(f)),
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < bound => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{} stayed locked for {bound:?}", dir.display()),
                    ))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
    }
}

impl Drop for ConfDirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// What [`step_aside`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAside {
    /// Attachments are still cached (their file names): the retiring config stays.
    Kept(Vec<String>),
    /// The retiring config was removed: the runtime uses the primary config from now on.
    Removed,
    /// The file no longer says retiring (Multus was installed again): left alone.
    NotRetiring,
    /// The file is already gone.
    Gone,
}

/// For the meta-plugin running with a retiring config, after a DEL: when no attachment is left cached in
/// `cni_dir` (a `cniDir` that does not exist holds none), removes `config_file` (`retiring.configFile`), if
/// it still says retiring; under the config directory's lock, so a config a re-install wrote meanwhile is
/// never removed.
pub fn step_aside(config_file: &Path, cni_dir: &Path) -> io::Result<StepAside> {
    let dir = match config_file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let _lock = ConfDirLock::take(dir, Duration::from_secs(10))?;
    let left = match cached_attachments(cni_dir) {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if !left.is_empty() {
        return Ok(StepAside::Kept(left));
    }
    let bytes = match std::fs::read(config_file) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StepAside::Gone),
        Err(e) => return Err(e),
    };
    if !is_retiring(&bytes) {
        return Ok(StepAside::NotRetiring);
    }
    multus_core::fs::remove_if_exists(config_file)?;
    Ok(StepAside::Removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_every_kind_of_cache_entry_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(cached_attachments(d.path()).unwrap(), Vec::<String>::new());
        std::fs::create_dir(d.path().join("results")).unwrap();
        std::fs::create_dir(d.path().join("dpdk")).unwrap();
        for n in ["lock", ".multus-tmp-1-2", ".hidden"] {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        assert_eq!(cached_attachments(d.path()).unwrap(), Vec::<String>::new());
        for n in ["c1@net1.json", "c2-eth0.json", "3f0c2a0e5b7d"] {
            std::fs::write(d.path().join(n), "{}").unwrap();
        }
        assert_eq!(
            cached_attachments(d.path()).unwrap(),
            ["3f0c2a0e5b7d", "c1@net1.json", "c2-eth0.json"]
        );
        assert_eq!(
            cached_attachments(&d.path().join("nope"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn retiring_form_of_a_conf_and_a_conflist() {
        let conf = br#"{"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus",
            "kubeconfig":"/k","logLevel":"verbose","clusterNetwork":"x","defaultNetworks":["y"],
            "delegates":[{"cniVersion":"0.3.1","name":"p","type":"bridge"}]}"#;
        let out = retiring_config(conf, Path::new("/etc/cni/net.d/00-multus.conf"), None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion":"0.3.1","name":"multus-cni-network","type":"multus","logLevel":"verbose",
                   "delegates":[{"cniVersion":"0.3.1","name":"p","type":"bridge"}],
                   "retiring":{"configFile":"/etc/cni/net.d/00-multus.conf"}})
        );
        assert!(is_retiring(&out) && !is_retiring(conf));
        // Retiring again is the same.
        assert_eq!(
            retiring_config(&out, Path::new("/etc/cni/net.d/00-multus.conf"), None).unwrap(),
            out
        );
        let list = br#"{"cniVersion":"1.0.0","name":"multus-cni-network","plugins":[{"type":"multus",
            "kubeconfig":"/k","cniDir":"/c","delegates":[{"name":"p","plugins":[{"type":"bridge"}]}]}]}"#;
        let out = retiring_config(list, Path::new("/h/00-multus.conflist"), None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["plugins"][0]["retiring"]["configFile"],
            "/h/00-multus.conflist"
        );
        assert!(v["plugins"][0].get("kubeconfig").is_none());
        assert_eq!(cni_dir_of(&out), Some(PathBuf::from("/c")));
        assert_eq!(cni_dir_of(conf), Some(PathBuf::from("/var/lib/cni/multus")));
        // No delegates: the node's primary serves new pods.
        let cluster_only = br#"{"cniVersion":"0.3.1","name":"m","type":"multus","kubeconfig":"/k","clusterNetwork":"n"}"#;
        assert_eq!(
            retiring_config(cluster_only, Path::new("/x"), None),
            Err(RetireError::NoPrimary)
        );
        let out = retiring_config(
            cluster_only,
            Path::new("/x"),
            Some(json!({"cniVersion":"0.3.1","name":"p","type":"bridge"})),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["delegates"][0]["name"], "p");
        assert!(matches!(
            retiring_config(b"{", Path::new("/x"), None),
            Err(RetireError::NotMultus(_))
        ));
        assert!(matches!(
            retiring_config(br#"{"type":"bridge"}"#, Path::new("/x"), None),
            Err(RetireError::NotMultus(_))
        ));
    }

    #[test]
    fn step_aside_only_when_nothing_is_cached_and_the_file_still_retires() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let conf = d.path().join("00-multus.conf");
        let retiring = retiring_config(
            br#"{"cniVersion":"0.3.1","name":"m","type":"multus","delegates":[{"type":"bridge"}]}"#,
            &conf,
            None,
        )
        .unwrap();
        std::fs::write(&conf, &retiring).unwrap();
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("c1@net1.json"), "{}").unwrap();
        assert_eq!(
            step_aside(&conf, &cache).unwrap(),
            StepAside::Kept(vec!["c1@net1.json".into()])
        );
        assert!(conf.exists());
        std::fs::remove_file(cache.join("c1@net1.json")).unwrap();
        std::fs::write(&conf, br#"{"type":"multus","kubeconfig":"/k"}"#).unwrap();
        assert_eq!(step_aside(&conf, &cache).unwrap(), StepAside::NotRetiring);
        assert!(conf.exists());
        std::fs::write(&conf, &retiring).unwrap();
        assert_eq!(step_aside(&conf, &cache).unwrap(), StepAside::Removed);
        assert!(!conf.exists());
        assert_eq!(step_aside(&conf, &cache).unwrap(), StepAside::Gone);
        // A cniDir that does not exist holds nothing.
        std::fs::write(&conf, &retiring).unwrap();
        assert_eq!(
            step_aside(&conf, &d.path().join("none")).unwrap(),
            StepAside::Removed
        );
    }

    #[test]
    fn the_conf_dir_lock_excludes_and_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        let held = ConfDirLock::take(d.path(), Duration::from_secs(1)).unwrap();
        let e = ConfDirLock::take(d.path(), Duration::from_millis(30))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        drop(held);
        assert!(ConfDirLock::take(d.path(), Duration::from_millis(30)).is_ok());
    }

    #[test]
    fn a_thick_config_retires_to_the_thin_meta_plugin() {
        let thick = json!({"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus-shim",
            "clusterNetwork":"/host/etc/cni/net.d/10-podnet.conf","daemonSocketDir":"/run/multus"});
        let primary = json!({"cniVersion":"1.0.0","name":"podnet","type":"bridge"});
        let r = retiring_config(
            thick.to_string().as_bytes(),
            Path::new("/etc/cni/net.d/00-multus.conf"),
            Some(primary.clone()),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["type"], "multus");
        assert_eq!(v["delegates"], json!([primary]));
        assert!(v.get("clusterNetwork").is_none());
        assert!(is_retiring(&r));
    }
}

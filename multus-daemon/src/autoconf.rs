//! The node's `00-multus.conf` for the shim, written as upstream's daemon writes it (its config manager):
//! with `multusConfigFile: auto`, generated around the primary network's config (the first
//! `.conf`/`.conflist` of `multusAutoconfigDir`, or `multusMasterCNI`): `type` `multus-shim`, `name`
//! `multus-cni-network` (the primary's with `overrideNetworkName`), `clusterNetwork` the primary's path,
//! its `capabilities`, and the daemon config's Multus keys; `forceCNIVersion` rewrites the primary's
//! `cniVersion` as upstream does. Otherwise the user's file is copied into `cniConfigDir`.
//!
//! While running, the primary config is looked at every second and the Multus config regenerated when it
//! changes; when `readinessindicatorfile` disappears, the config is removed and the daemon stops (as
//! upstream: the default network went away).

use crate::config::DaemonConfig;
use multus_core::fs::{write_atomic, Durability};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file the shim's config is written to.
pub const CONFIG_NAME: &str = "00-multus.conf";

/// The daemon config's keys that go into the generated config (upstream's `MultusConf` fields it keeps,
/// in its order), and ours for the shim.
const PASSED_KEYS: [&str; 16] = [
    "binDir",
    "cniVersion",
    "logFile",
    "logLevel",
    "logToStderr",
    "logOptions",
    "namespaceIsolation",
    "globalNamespaces",
    "cniDir",
    "auxiliaryCNIChainName",
    "daemonSocketDir",
    "daemonConnectTimeout",
    "daemonRequestTimeout",
    "systemNamespaces",
    "multusNamespace",
    "preferNodeBinary",
];

/// The primary network's config file: `multusMasterCNI` in the autoconfig dir, else its first config,
/// waiting for one up to `primaryWaitTimeout`.
pub fn find_primary(cfg: &DaemonConfig) -> Result<PathBuf, String> {
    let dir = &cfg.multus_autoconfig_dir;
    if let Some(name) = &cfg.multus_master_cni {
        let p = dir.join(name);
        if p.file_name().is_some_and(|n| n == CONFIG_NAME) {
            return Err(format!(
                "cannot specify {} to prevent recursive config load",
                p.display()
            ));
        }
        return Ok(p);
    }
    let deadline = Instant::now() + cfg.primary_wait;
    loop {
        if let Ok(p) = multus_cni::install::conf_gen::find_primary(dir, None) {
            return Ok(p);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no primary network config (.conf, .conflist) appeared in {} within {:?}",
                dir.display(),
                cfg.primary_wait
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn capabilities(primary: &Value) -> Map<String, Value> {
    let mut caps = Map::new();
    let plugins = primary["plugins"].as_array().cloned().unwrap_or_default();
    for c in
        std::iter::once(&primary["capabilities"]).chain(plugins.iter().map(|p| &p["capabilities"]))
    {
        for (k, v) in c.as_object().into_iter().flatten() {
            if v.as_bool() == Some(true) {
                caps.insert(k.clone(), Value::Bool(true));
            }
        }
    }
    caps
}

fn version_at_least_040(v: &str) -> bool {
    let parts: Vec<u32> = v.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.as_slice() >= [0, 4, 0].as_slice()
}

/// The shim's config around the primary config at `primary_path` (its bytes `primary`).
pub fn generate(cfg: &DaemonConfig, primary_path: &Path, primary: &[u8]) -> Result<Value, String> {
    let p: Value = serde_json::from_slice(primary)
        .map_err(|e| format!("primary config {}: not JSON: {e}", primary_path.display()))?;
    let theirs = p["cniVersion"].as_str().unwrap_or_default();
    // Upstream requires `cniVersion`; without one, ours takes the primary's (as `multus install`).
    let version = match cfg.raw.get("cniVersion").and_then(Value::as_str) {
        Some(v) => v,
        None if theirs.is_empty() => "1.0.0",
        None => theirs,
    };
    if version_at_least_040(version) && !version_at_least_040(theirs) {
        return Err(format!(
            "delegate cni version is {theirs} while top level cni version is {version}"
        ));
    }
    let mut m = Map::new();
    let mut caps = cfg
        .raw
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    caps.extend(capabilities(&p));
    for k in PASSED_KEYS {
        match cfg.raw.get(k) {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(v) => {
                m.insert(k.to_string(), v.clone());
            }
        }
    }
    if !caps.is_empty() {
        m.insert("capabilities".into(), Value::Object(caps));
    }
    m.insert("cniVersion".into(), json!(version));
    let name = match cfg.override_network_name {
        true => p["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or("the primary CNI configuration has no network name")?,
        false => "multus-cni-network",
    };
    m.insert("name".into(), json!(name));
    m.insert("clusterNetwork".into(), json!(primary_path));
    m.insert("type".into(), json!("multus-shim"));
    Ok(Value::Object(m))
}

/// Writes the config once; returns its path and the primary's bytes it was made from.
pub fn write_once(cfg: &DaemonConfig) -> Result<(PathBuf, Vec<u8>), String> {
    let dest_dir = &cfg.cni_config_dir;
    if !cfg.is_auto() {
        let src = PathBuf::from(&cfg.multus_config_file);
        let name = src.file_name().ok_or("multusConfigFile names no file")?;
        let dest = dest_dir.join(name);
        multus_core::fs::copy_atomic(&src, &dest, 0o600)
            .map_err(|e| format!("copying {} to {}: {e}", src.display(), dest.display()))?;
        return Ok((dest, Vec::new()));
    }
    let primary = find_primary(cfg)?;
    if cfg.force_cni_version {
        force_version(cfg, &primary)?;
    }
    let bytes = std::fs::read(&primary).map_err(|e| format!("{}: {e}", primary.display()))?;
    let conf = generate(cfg, &primary, &bytes)?;
    let dest = dest_dir.join(CONFIG_NAME);
    let text = serde_json::to_vec(&conf).map_err(|e| e.to_string())?;
    write_atomic(&dest, &text, 0o600, Durability::Durable)
        .map_err(|e| format!("writing {}: {e}", dest.display()))?;
    tracing::info!("wrote {} around {}", dest.display(), primary.display());
    Ok((dest, bytes))
}

/// `shimBinDir` (ours): copies the `multus` binary beside this daemon into that directory as
/// `multus-shim` (atomically, so a runtime running the old one is not disturbed), as upstream's init
/// container does, and as `multus` (which serves a retiring config); done at every start, so an upgrade of
/// the image upgrades the shim.
pub fn install_shim(cfg: &DaemonConfig) -> Result<Option<PathBuf>, String> {
    let Some(dir) = &cfg.shim_bin_dir else {
        return Ok(None);
    };
    let exe = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
    let src = exe.with_file_name("multus");
    let bytes = std::fs::read(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    // `multus` too: the thin meta-plugin serves the config retiring Multus once the daemon is gone.
    for name in ["multus-shim", "multus"] {
        let dest = dir.join(name);
        multus_core::fs::write_atomic(&dest, &bytes, 0o755, Durability::Durable)
            .map_err(|e| format!("copying {} to {}: {e}", src.display(), dest.display()))?;
    }
    tracing::info!(
        "installed {} as multus-shim and multus in {}",
        src.display(),
        dir.display()
    );
    Ok(Some(dir.join("multus-shim")))
}

/// `forceCNIVersion`: the primary config takes the daemon's `cniVersion` (upstream rewrites the file).
fn force_version(cfg: &DaemonConfig, primary: &Path) -> Result<(), String> {
    let Some(v) = cfg.raw.get("cniVersion").and_then(Value::as_str) else {
        return Ok(());
    };
    let bytes = std::fs::read(primary).map_err(|e| format!("{}: {e}", primary.display()))?;
    let mut conf: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not JSON: {e}", primary.display()))?;
    if conf["cniVersion"] == json!(v) {
        return Ok(());
    }
    conf["cniVersion"] = json!(v);
    let text = serde_json::to_vec(&conf).map_err(|e| e.to_string())?;
    write_atomic(primary, &text, 0o644, Durability::Durable)
        .map_err(|e| format!("rewriting {}: {e}", primary.display()))
}

/// What the watch over the files saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing to do.
    None,
    /// The primary changed: the config was written again.
    Rewritten,
    /// The readiness indicator file is gone: the config was removed, the daemon must stop.
    Unready,
}

/// One look at the files (every second while running).
pub fn check(cfg: &DaemonConfig, dest: &Path, primary_bytes: &mut Vec<u8>) -> Change {
    if let Some(f) = &cfg.readiness_indicator_file {
        if !f.exists() {
            tracing::warn!(
                "readiness indicator file {} is gone: removing {} and stopping",
                f.display(),
                dest.display()
            );
            let _ = multus_core::fs::remove_if_exists(dest);
            return Change::Unready;
        }
    }
    if !cfg.is_auto() {
        return Change::None;
    }
    let Ok(primary) = find_primary_now(cfg) else {
        return Change::None;
    };
    let now = std::fs::read(&primary).unwrap_or_default();
    if now == *primary_bytes || now.is_empty() {
        return Change::None;
    }
    match write_once(cfg) {
        Ok((_, b)) => {
            *primary_bytes = b;
            Change::Rewritten
        }
        Err(e) => {
            tracing::warn!("regenerating {}: {e}", dest.display());
            Change::None
        }
    }
}

fn find_primary_now(cfg: &DaemonConfig) -> Result<PathBuf, String> {
    match &cfg.multus_master_cni {
        Some(n) => Ok(cfg.multus_autoconfig_dir.join(n)),
        None => multus_cni::install::conf_gen::find_primary(&cfg.multus_autoconfig_dir, None)
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_as_upstream() {
        let cfg = DaemonConfig::parse(
            br#"{"cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,"chrootDir":"/hostroot",
                 "socketDir":"/host/run/multus/","capabilities":{"bandwidth":true}}"#,
        )
        .unwrap();
        let primary = br#"{"cniVersion":"0.3.1","name":"cbr0","plugins":[{"type":"flannel"},
                           {"type":"portmap","capabilities":{"portMappings":true}}]}"#;
        let c = generate(
            &cfg,
            Path::new("/host/etc/cni/net.d/10-flannel.conflist"),
            primary,
        )
        .unwrap();
        assert_eq!(
            c,
            json!({"cniVersion":"0.3.1","logLevel":"verbose","logToStderr":true,
                   "capabilities":{"bandwidth":true,"portMappings":true},"name":"multus-cni-network",
                   "clusterNetwork":"/host/etc/cni/net.d/10-flannel.conflist","type":"multus-shim"})
        );
        let cfg =
            DaemonConfig::parse(br#"{"cniVersion":"1.0.0","overrideNetworkName":true}"#).unwrap();
        let e = generate(&cfg, Path::new("/p"), primary).unwrap_err();
        assert!(e.contains("0.3.1"), "{e}");
        let ok = generate(
            &cfg,
            Path::new("/p"),
            br#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge"}"#,
        )
        .unwrap();
        assert_eq!(ok["name"], "cbr0");
    }

    #[test]
    fn prefer_node_binary_reaches_the_flow() {
        let cfg = DaemonConfig::parse(br#"{"preferNodeBinary":["bridge"]}"#).unwrap();
        let primary = br#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge"}"#;
        let c = generate(&cfg, Path::new("/p"), primary).unwrap();
        assert_eq!(c["preferNodeBinary"], json!(["bridge"]));
    }
}

//! Generating `00-multus.conf` / `00-multus.conflist` around the node's primary network config (pure: bytes
//! in, bytes out), as upstream's thin entrypoint does with `--multus-conf-file=auto`.

use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// What the generated config says beyond the primary network.
#[derive(Debug, Clone, Default)]
pub struct GenOptions {
    /// `cniVersion` to write; default: the primary config's.
    pub cni_version: Option<String>,
    /// Also write `cni_version` into the primary network's config (upstream's `--force-cni-version`).
    pub force_cni_version: bool,
    /// Name the Multus network after the primary network (upstream's `--override-network-name`) instead of
    /// `multus-cni-network`.
    pub override_network_name: bool,
    /// Path of the kubeconfig Multus reads (as seen on the host).
    pub kubeconfig: Option<PathBuf>,
    /// `namespaceIsolation`.
    pub namespace_isolation: bool,
    /// `globalNamespaces` (comma-separated).
    pub global_namespaces: Option<String>,
    /// `logLevel`.
    pub log_level: Option<String>,
    /// `logFile`.
    pub log_file: Option<PathBuf>,
    /// `logToStderr`.
    pub log_to_stderr: Option<bool>,
    /// `readinessindicatorfile`.
    pub readiness_indicator_file: Option<PathBuf>,
    /// Extra directory searched for plugin binaries (`binDir`).
    pub additional_bin_dir: Option<PathBuf>,
    /// `cniDir` (the attachment cache).
    pub cni_dir: Option<PathBuf>,
    /// `preferNodeBinary`: plugin types run from the node's binary.
    pub prefer_node_binary: Vec<String>,
}

/// Why a generated config could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    /// No candidate primary config in the CNI conf dir.
    #[error("no primary network config (*.conf, *.conflist, *.json other than Multus' own) in {0}: install the cluster's primary CNI first, or name one with --multus-master-cni-file-name")]
    NoPrimary(String),
    /// The named primary config does not exist.
    #[error("the primary network config {0} does not exist")]
    NamedMissing(String),
    /// The primary config is not usable.
    #[error("the primary network config {path} is malformed: {why}")]
    Malformed {
        /// Its path.
        path: String,
        /// What is wrong.
        why: String,
    },
}

/// The file names Multus writes itself (never taken as the primary network).
pub fn is_own_file(name: &str) -> bool {
    name.starts_with("00-multus.") || name.starts_with(".multus-tmp-")
}

/// Picks the primary config: the named one, else the alphabetically first `*.conf`, `*.conflist` or `*.json`
/// in `dir` that is not Multus' own (the order in which the runtime itself picks its default network).
pub fn find_primary(dir: &Path, named: Option<&str>) -> Result<PathBuf, GenError> {
    if let Some(n) = named {
        let p = if Path::new(n).is_absolute() {
            PathBuf::from(n)
        } else {
            dir.join(n)
        };
        return if p.is_file() {
            Ok(p)
        } else {
            Err(GenError::NamedMissing(p.display().to_string()))
        };
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|_| GenError::NoPrimary(dir.display().to_string()))?
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !is_own_file(n))
        .filter(|n| n.ends_with(".conf") || n.ends_with(".conflist") || n.ends_with(".json"))
        .collect();
    names.sort();
    names
        .first()
        .map(|n| dir.join(n))
        .ok_or_else(|| GenError::NoPrimary(dir.display().to_string()))
}

/// The union of the capabilities the primary network's plugins declare.
fn capabilities(primary: &Map<String, Value>) -> Map<String, Value> {
    let mut caps = Map::new();
    let plugins: Vec<&Value> = match primary.get("plugins") {
        Some(Value::Array(a)) => a.iter().collect(),
        _ => Vec::new(),
    };
    let own = primary.get("capabilities").into_iter();
    for c in own.chain(plugins.iter().filter_map(|p| p.get("capabilities"))) {
        if let Value::Object(m) = c {
            for (k, v) in m {
                if v.as_bool() == Some(true) {
                    caps.insert(k.clone(), Value::Bool(true));
                }
            }
        }
    }
    caps
}

/// The Multus plugin's own keys, from the install options and the primary's capabilities (without
/// `delegates`).
fn plugin_keys(primary: &Map<String, Value>, opts: &GenOptions) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), json!("multus"));
    let caps = capabilities(primary);
    if !caps.is_empty() {
        m.insert("capabilities".into(), Value::Object(caps));
    }
    if let Some(k) = &opts.kubeconfig {
        m.insert("kubeconfig".into(), json!(k));
    }
    if opts.namespace_isolation {
        m.insert("namespaceIsolation".into(), json!(true));
    }
    if let Some(g) = &opts.global_namespaces {
        m.insert("globalNamespaces".into(), json!(g));
    }
    if let Some(l) = &opts.log_level {
        m.insert("logLevel".into(), json!(l));
    }
    if let Some(f) = &opts.log_file {
        m.insert("logFile".into(), json!(f));
    }
    if let Some(s) = opts.log_to_stderr {
        m.insert("logToStderr".into(), json!(s));
    }
    if let Some(r) = &opts.readiness_indicator_file {
        m.insert("readinessindicatorfile".into(), json!(r));
    }
    if let Some(b) = &opts.additional_bin_dir {
        m.insert("binDir".into(), json!(b));
    }
    if let Some(c) = &opts.cni_dir {
        m.insert("cniDir".into(), json!(c));
    }
    if !opts.prefer_node_binary.is_empty() {
        m.insert("preferNodeBinary".into(), json!(opts.prefer_node_binary));
    }
    m
}

/// Generates the Multus config around `primary` (the bytes of the primary config file). Returns the file
/// name to write (`00-multus.conf`, or `00-multus.conflist` for cniVersion 1.0.0 and later) and its bytes.
pub fn generate(
    primary_path: &Path,
    primary: &[u8],
    opts: &GenOptions,
) -> Result<(String, Vec<u8>), GenError> {
    let malformed = |why: String| GenError::Malformed {
        path: primary_path.display().to_string(),
        why,
    };
    let v: Value =
        serde_json::from_slice(primary).map_err(|e| malformed(format!("not JSON: {e}")))?;
    // Validate it the way the meta-plugin will read it.
    multus_core::cni::NetworkConfig::from_value(v.clone()).map_err(|e| malformed(e.msg))?;
    let Value::Object(mut primary) = v else {
        return Err(malformed("not a JSON object".into()));
    };
    if opts.force_cni_version {
        if let Some(v) = &opts.cni_version {
            primary.insert("cniVersion".into(), json!(v));
        }
    }
    let net_name = if opts.override_network_name {
        primary
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("it has no \"name\" (--override-network-name)".into()))?
            .to_string()
    } else {
        "multus-cni-network".to_string()
    };
    let version = match &opts.cni_version {
        Some(v) => v.clone(),
        None => primary
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("1.0.0")
            .to_string(),
    };
    multus_core::cni::Version::parse_supported(&version).map_err(|e| malformed(e.msg))?;
    let mut m = plugin_keys(&primary, opts);
    m.insert("delegates".into(), json!([Value::Object(primary)]));
    let is_1x = multus_core::cni::Version::parse(&version)
        .map(|v| v.is_1x())
        .unwrap_or(false);
    let doc = if is_1x {
        json!({"cniVersion": version, "name": net_name, "plugins": [Value::Object(m)]})
    } else {
        let mut top = Map::new();
        top.insert("cniVersion".into(), json!(version));
        top.insert("name".into(), json!(net_name));
        top.extend(m);
        Value::Object(top)
    };
    let name = if is_1x {
        "00-multus.conflist"
    } else {
        "00-multus.conf"
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(|e| malformed(e.to_string()))?;
    bytes.push(b'\n');
    Ok((name.to_string(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_alphabetically_first_foreign_config() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "20-b.conflist",
            "10-calico.conflist",
            "00-multus.conf",
            "notes.txt",
            "05-x.json",
        ] {
            std::fs::write(d.path().join(n), "{}").unwrap();
        }
        assert_eq!(
            find_primary(d.path(), None).unwrap(),
            d.path().join("05-x.json")
        );
        assert_eq!(
            find_primary(d.path(), Some("20-b.conflist")).unwrap(),
            d.path().join("20-b.conflist")
        );
        assert!(matches!(
            find_primary(d.path(), Some("nope.conf")),
            Err(GenError::NamedMissing(_))
        ));
        let empty = tempfile::tempdir().unwrap();
        std::fs::write(empty.path().join("00-multus.conflist"), "{}").unwrap();
        assert!(matches!(
            find_primary(empty.path(), None),
            Err(GenError::NoPrimary(_))
        ));
    }

    #[test]
    fn wraps_a_conflist_as_the_delegate_with_its_capabilities() {
        let primary = br#"{"cniVersion":"1.0.0","name":"antrea","plugins":[
            {"type":"antrea","ipam":{"type":"host-local"}},
            {"type":"portmap","capabilities":{"portMappings":true}},
            {"type":"bandwidth","capabilities":{"bandwidth":true,"x":false}}]}"#;
        let opts = GenOptions {
            kubeconfig: Some("/etc/cni/net.d/multus.d/multus.kubeconfig".into()),
            namespace_isolation: true,
            global_namespaces: Some("default,kube-system".into()),
            ..Default::default()
        };
        let (name, bytes) = generate(Path::new("/x/10-antrea.conflist"), primary, &opts).unwrap();
        assert_eq!(name, "00-multus.conflist");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let m = &v["plugins"][0];
        assert_eq!(m["type"], "multus");
        assert_eq!(
            m["capabilities"],
            json!({"portMappings": true, "bandwidth": true})
        );
        assert_eq!(m["delegates"][0]["name"], "antrea");
        assert_eq!(m["delegates"][0]["plugins"][1]["type"], "portmap");
        assert_eq!(m["namespaceIsolation"], true);
    }

    #[test]
    fn forced_version_and_overridden_name() {
        let primary = br#"{"cniVersion":"0.4.0","name":"podnet","type":"bridge"}"#;
        let opts = GenOptions {
            cni_version: Some("1.0.0".into()),
            force_cni_version: true,
            override_network_name: true,
            ..Default::default()
        };
        let (name, bytes) = generate(Path::new("p"), primary, &opts).unwrap();
        assert_eq!(name, "00-multus.conflist");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["name"], "podnet");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["plugins"][0]["delegates"][0]["cniVersion"], "1.0.0");
        // Without --force-cni-version the primary keeps its own version.
        let (_, bytes) = generate(
            Path::new("p"),
            primary,
            &GenOptions {
                cni_version: Some("1.0.0".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["name"], "multus-cni-network");
        assert_eq!(v["plugins"][0]["delegates"][0]["cniVersion"], "0.4.0");
    }

    #[test]
    fn old_versions_get_a_single_conf_and_bad_primaries_are_refused() {
        let (name, bytes) = generate(
            Path::new("p"),
            br#"{"cniVersion":"0.3.1","name":"flannel","type":"flannel"}"#,
            &GenOptions::default(),
        )
        .unwrap();
        assert_eq!(name, "00-multus.conf");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["delegates"][0]["type"], "flannel");
        for bad in [
            &b"{"[..],
            b"[]",
            br#"{"cniVersion":"1.0.0","name":"x"}"#,
            br#"{"cniVersion":"0.5.0","type":"x"}"#,
        ] {
            assert!(matches!(
                generate(Path::new("p"), bad, &GenOptions::default()),
                Err(GenError::Malformed { .. })
            ));
        }
    }
}

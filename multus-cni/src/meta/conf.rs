//! The Multus configuration (`00-multus.conf`): the keys upstream Multus reads, with its defaults.

use multus_core::cni::keys::Keys;
use multus_core::cni::{AttachmentRef, CniError, NetworkConfig, PluginConf, Version};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Default directory of the attachment cache (upstream's `cniDir`).
pub const DEFAULT_CNI_DIR: &str = "/var/lib/cni/multus";
/// Default directory of plugin binaries (upstream's `binDir`).
pub const DEFAULT_BIN_DIR: &str = "/opt/cni/bin";
/// Default directory of network config files referenced by name (upstream's `confDir`).
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/multus/net.d";

/// A parsed Multus config.
#[derive(Debug, Clone)]
pub struct MultusConf {
    /// `cniVersion` of Multus itself: results are returned in it.
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `kubeconfig`: the Kubernetes mode (pods, NADs, network-status through the API).
    pub kubeconfig: Option<String>,
    /// `clusterNetwork`: the default network (a NAD in `multusNamespace`, a network name in `confDir`, a
    /// directory whose first config file is used, or a file).
    pub cluster_network: Option<String>,
    /// `defaultNetworks`: networks every pod (outside `systemNamespaces`) gets after the cluster network.
    pub default_networks: Vec<String>,
    /// `namespaceIsolation` (default false): pods may only use NADs of their namespace and `globalNamespaces`.
    pub namespace_isolation: bool,
    /// `globalNamespaces` (comma-separated, default `default`).
    pub global_namespaces: Vec<String>,
    /// `systemNamespaces` (default `["kube-system"]`): pods there get no `defaultNetworks`.
    pub system_namespaces: Vec<String>,
    /// `multusNamespace` (default `kube-system`): where `clusterNetwork`/`defaultNetworks` NADs live.
    pub multus_namespace: String,
    /// `logOptions`: upstream's rotation of `logFile` (`maxAge`, `maxSize`, `maxBackups`, `compress`), see
    /// [`crate::logging::LogOptions`].
    pub log_options: Map<String, Value>,
    /// `capabilities` Multus itself declares (the runtime fills `runtimeConfig` for them).
    #[allow(dead_code)]
    pub capabilities: Map<String, Value>,
    /// `readinessTimeout` (seconds, ours, default 45): how long ADD, STATUS and GC wait for
    /// `readinessindicatorfile`.
    pub readiness_timeout: Duration,
    /// `apiRetryTimeout` / `apiRetryInterval` (seconds, ours, defaults 10 and 0.25): the bounded retry of
    /// the pod GET (upstream's fixed 2.5 s is too short for some clusters, multus-cni #1461).
    pub api_retry: multus_k8s::client::RetryPolicy,
    /// `apiRequestTimeout` (seconds, ours, default 10): the limit on one API request.
    pub api_request_timeout: Duration,
    /// `deviceCheckpoint` (ours): the kubelet's device-plugin checkpoint file.
    pub device_checkpoint: PathBuf,
    /// `deviceInfoDir` (ours, default `/var/run/k8s.cni.cncf.io/devinfo`): the base directory of device
    /// information files (`dp/` from device plugins, `cni/` for delegates), see [`multus_core::devinfo`].
    pub device_info_dir: PathBuf,
    /// `delegates`: the kubeconfig-less mode's networks; the first is the default network.
    pub delegates: Vec<NetworkConfig>,
    /// `cniDir`: where attachments are cached for DEL.
    pub cni_dir: PathBuf,
    /// `binDir`: searched for plugin binaries before `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// `confDir`: network configs referenced by name (NADs without config, `clusterNetwork`).
    pub conf_dir: PathBuf,
    /// `logLevel`.
    pub log_level: String,
    /// `logFile`.
    pub log_file: Option<PathBuf>,
    /// `logToStderr` (default true).
    pub log_to_stderr: bool,
    /// `readinessindicatorfile`.
    pub readiness_indicator_file: Option<PathBuf>,
    /// `runtimeConfig` given by the runtime to Multus (passed to the default network only).
    pub runtime_config: Map<String, Value>,
    /// `retryDeleteOnError`: a failed delegate DEL is retried within the invocation (the cache is kept on
    /// failure either way).
    pub retry_delete_on_error: bool,
    /// `delegateTimeout` (seconds, this implementation's key): the limit on one plugin binary run.
    pub delegate_timeout: Duration,
    /// GC only: `cni.dev/valid-attachments`.
    pub valid_attachments: Vec<AttachmentRef>,
    /// `retiring.configFile` (ours): Multus is being removed from the node (written by `multus uninstall`
    /// while pods made with Multus remain). New pods get the primary network alone, uncached; cached ones
    /// are still undone; once none is left, this config file (the one the runtime reads) is removed.
    pub retiring: Option<PathBuf>,
    /// `auxiliaryCNIChainName`: a chain of the plugin configs in that subdirectory beside the
    /// `clusterNetwork` file, run for every pod after its networks (as Go Multus 4.1+).
    pub auxiliary_cni_chain_name: Option<String>,
    /// `preferNodeBinary` (ours): plugin types run from the node's binary (`binDir`, then `CNI_PATH`)
    /// instead of this project's built-in delegate; `"*"` for every type. Default: none.
    pub prefer_node_binary: Vec<String>,
}

/// The Multus config's keys, read with the one typed-key toolkit: an error names "multus config", the key
/// and the value.
fn keys(m: &Map<String, Value>) -> Keys<'_> {
    Keys::new(m).plugin("multus config")
}

fn str_key(m: &Map<String, Value>, k: &str) -> Result<Option<String>, CniError> {
    Ok(keys(m).string(k)?.map(str::to_string))
}

fn secs_key(m: &Map<String, Value>, k: &str, default: f64) -> Result<Duration, CniError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(Duration::from_secs_f64(default)),
        Some(v) => match v.as_f64() {
            Some(s) if (0.0..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
            _ => Err(keys(m).invalid(k, v, "must be a number of seconds between 0 and 3600")),
        },
    }
}

/// A list of names given as a JSON list of strings or as one comma-separated string.
fn names_key(m: &Map<String, Value>, k: &str, default: &[&str]) -> Result<Vec<String>, CniError> {
    let bad = |v: &Value| {
        keys(m).invalid(
            k,
            v,
            "must be a list of strings or a comma-separated string",
        )
    };
    match m.get(k) {
        None | Some(Value::Null) => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(Value::String(s)) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()),
        Some(v @ Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(|s| s.trim().to_string())
                    .ok_or_else(|| bad(v))
            })
            .collect(),
        Some(v) => Err(bad(v)),
    }
}

fn obj_key(m: &Map<String, Value>, k: &str) -> Result<Map<String, Value>, CniError> {
    Ok(keys(m).object(k)?.cloned().unwrap_or_default())
}

fn bool_key(m: &Map<String, Value>, k: &str, default: bool) -> Result<bool, CniError> {
    Ok(keys(m).bool(k)?.unwrap_or(default))
}

/// `retiring`: `{"configFile": "<path>"}`.
fn retiring(m: &Map<String, Value>) -> Result<Option<PathBuf>, CniError> {
    if !keys(m).is_set("retiring") {
        return Ok(None);
    }
    match keys(m).nested("retiring")?.string("configFile")? {
        Some(path) => Ok(Some(PathBuf::from(path))),
        None => Err(CniError::invalid_config(
            "multus config: \"retiring\" must be an object with \"configFile\"",
        )),
    }
}

/// `delegates`: each a network config; one without a version gets Multus' declared one.
fn delegates_key(
    m: &Map<String, Value>,
    declared_version: Option<&str>,
) -> Result<Vec<NetworkConfig>, CniError> {
    let list = match m.get("delegates") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(v) => return Err(keys(m).invalid("delegates", v, "must be a list")),
    };
    let mut delegates = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        let mut d = d.clone();
        if let (Value::Object(o), Some(own)) = (&mut d, declared_version) {
            // A delegate without a version runs with Multus' own; when Multus has none either,
            // it stays without one and is read as 0.1.0 (as upstream runs it through libcni).
            if matches!(o.get("cniVersion"), None | Some(Value::Null))
                || o.get("cniVersion").and_then(Value::as_str) == Some("")
            {
                o.insert("cniVersion".into(), Value::String(own.to_string()));
            }
        }
        let net = NetworkConfig::from_value(d)
            .map_err(|e| e.context(format!("multus config: delegates[{i}]")))?;
        delegates.push(net);
    }
    Ok(delegates)
}

/// `binDir`: a `:`-separated list, default [`DEFAULT_BIN_DIR`].
fn bin_dirs_key(m: &Map<String, Value>) -> Result<Vec<PathBuf>, CniError> {
    Ok(match str_key(m, "binDir")? {
        Some(s) => s
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect(),
        None => vec![PathBuf::from(DEFAULT_BIN_DIR)],
    })
}

/// `delegateTimeout`: seconds in (0, 3600], default 60.
fn delegate_timeout_key(m: &Map<String, Value>) -> Result<Duration, CniError> {
    match m.get("delegateTimeout") {
        None | Some(Value::Null) => Ok(Duration::from_secs(60)),
        Some(v) => match v.as_f64() {
            Some(s) if s > 0.0 && s <= 3600.0 => Ok(Duration::from_secs_f64(s)),
            _ => Err(keys(m).invalid(
                "delegateTimeout",
                v,
                "must be a number of seconds above 0, at most 3600",
            )),
        },
    }
}

impl MultusConf {
    /// Parses the config bytes Multus gets on stdin.
    pub fn parse(bytes: &[u8]) -> Result<Self, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("multus config is not valid JSON: {e}")))?;
        let m = match v {
            Value::Object(m) => m,
            _ => return Err(CniError::decoding("multus config must be a JSON object")),
        };
        // Without a version Multus is 0.1.0, as libcni and Go's skel read it: its answer is in that shape.
        let declared_version = str_key(&m, "cniVersion")?;
        let cni_version = declared_version
            .clone()
            .unwrap_or_else(|| multus_core::cni::IMPLICIT_VERSION.to_string());
        Version::parse_supported(&cni_version).map_err(|e| e.context("multus config"))?;
        let name = str_key(&m, "name")?.unwrap_or_else(|| "multus-cni-network".to_string());
        let kubeconfig = str_key(&m, "kubeconfig")?;
        let delegates = delegates_key(&m, declared_version.as_deref())?;
        let cluster_network = str_key(&m, "clusterNetwork")?;
        if kubeconfig.is_some() && delegates.is_empty() && cluster_network.is_none() {
            return Err(CniError::invalid_config(
                "multus config: with \"kubeconfig\", give the default network as \"clusterNetwork\" or \"delegates\"",
            ));
        }
        if kubeconfig.is_none() && delegates.is_empty() {
            return Err(CniError::invalid_config(
                "multus config: \"delegates\" must hold at least one network when there is no \"kubeconfig\"",
            ));
        }
        let mut gc_view = m.clone();
        gc_view.insert("type".into(), Value::String("multus".into()));
        let valid_attachments = PluginConf::from_value(Value::Object(gc_view))
            .and_then(|p| p.valid_attachments())
            .map_err(|e| e.context("multus config"))?;
        let api_retry = multus_k8s::client::RetryPolicy {
            timeout: secs_key(&m, "apiRetryTimeout", 10.0)?,
            interval: secs_key(&m, "apiRetryInterval", 0.25)?,
        };
        Ok(MultusConf {
            valid_attachments,
            cni_version,
            name,
            kubeconfig,
            cluster_network,
            default_networks: names_key(&m, "defaultNetworks", &[])?,
            namespace_isolation: bool_key(&m, "namespaceIsolation", false)?,
            global_namespaces: names_key(&m, "globalNamespaces", &["default"])?,
            system_namespaces: names_key(&m, "systemNamespaces", &["kube-system"])?,
            multus_namespace: str_key(&m, "multusNamespace")?
                .unwrap_or_else(|| "kube-system".to_string()),
            log_options: obj_key(&m, "logOptions")?,
            capabilities: obj_key(&m, "capabilities")?,
            readiness_timeout: secs_key(&m, "readinessTimeout", 45.0)?,
            api_retry,
            api_request_timeout: secs_key(&m, "apiRequestTimeout", 10.0)?,
            device_checkpoint: str_key(&m, "deviceCheckpoint")?
                .map(PathBuf::from)
                .unwrap_or_else(|| multus_k8s::nad::DEFAULT_CHECKPOINT.into()),
            device_info_dir: str_key(&m, "deviceInfoDir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| multus_core::devinfo::DEFAULT_DIR.into()),
            delegates,
            cni_dir: str_key(&m, "cniDir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| DEFAULT_CNI_DIR.into()),
            bin_dirs: bin_dirs_key(&m)?,
            conf_dir: str_key(&m, "confDir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| DEFAULT_CONF_DIR.into()),
            log_level: str_key(&m, "logLevel")?.unwrap_or_default(),
            log_file: str_key(&m, "logFile")?.map(PathBuf::from),
            log_to_stderr: bool_key(&m, "logToStderr", true)?,
            readiness_indicator_file: str_key(&m, "readinessindicatorfile")?.map(PathBuf::from),
            runtime_config: obj_key(&m, "runtimeConfig")?,
            retry_delete_on_error: bool_key(&m, "retryDeleteOnError", false)?,
            delegate_timeout: delegate_timeout_key(&m)?,
            retiring: retiring(&m)?,
            auxiliary_cni_chain_name: str_key(&m, "auxiliaryCNIChainName")?,
            prefer_node_binary: names_key(&m, "preferNodeBinary", &[])?,
        })
    }
}

impl MultusConf {
    /// The parts of the config that decide a pod's networks (the Kubernetes mode).
    pub fn plan_config(&self) -> multus_k8s::plan::PlanConfig {
        multus_k8s::plan::PlanConfig {
            cluster_network: self.cluster_network.clone(),
            default_networks: self.default_networks.clone(),
            delegates: self.delegates.clone(),
            multus_namespace: self.multus_namespace.clone(),
            namespace_isolation: self.namespace_isolation,
            global_namespaces: self.global_namespaces.clone(),
            system_namespaces: self.system_namespaces.clone(),
            conf_dir: self.conf_dir.clone(),
            runtime_config: self.runtime_config.clone(),
            auxiliary_chain: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_keys_and_upstream_defaults() {
        let c = MultusConf::parse(
            br#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig",
                 "clusterNetwork":"k8s-pod-network"}"#,
        )
        .unwrap();
        assert_eq!(c.cluster_network.as_deref(), Some("k8s-pod-network"));
        assert_eq!(c.multus_namespace, "kube-system");
        assert_eq!(c.global_namespaces, ["default"]);
        assert_eq!(c.system_namespaces, ["kube-system"]);
        assert!(!c.namespace_isolation && !c.retry_delete_on_error);
        assert_eq!(c.conf_dir, PathBuf::from(DEFAULT_CONF_DIR));
        assert_eq!(c.cni_dir, PathBuf::from(DEFAULT_CNI_DIR));
        assert_eq!(c.api_retry.timeout, Duration::from_secs(10));
        assert_eq!(
            c.device_checkpoint,
            PathBuf::from(multus_k8s::nad::DEFAULT_CHECKPOINT)
        );
        assert_eq!(
            c.device_info_dir,
            PathBuf::from("/var/run/k8s.cni.cncf.io/devinfo")
        );
        let c = MultusConf::parse(
            br#"{"cniVersion":"1.0.0","kubeconfig":"/k","clusterNetwork":"a","defaultNetworks":["b","c"],
                 "namespaceIsolation":true,"globalNamespaces":"default, shared","systemNamespaces":["kube-system","ops"],
                 "multusNamespace":"multus","logOptions":{"maxAge":5},"capabilities":{"portMappings":true},
                 "apiRetryTimeout":30,"apiRetryInterval":0.5,"readinessTimeout":2,"retryDeleteOnError":true}"#,
        )
        .unwrap();
        assert_eq!(c.default_networks, ["b", "c"]);
        assert_eq!(c.global_namespaces, ["default", "shared"]);
        assert_eq!(c.system_namespaces, ["kube-system", "ops"]);
        assert_eq!(c.multus_namespace, "multus");
        assert!(c.namespace_isolation && c.retry_delete_on_error);
        assert_eq!(c.api_retry.interval, Duration::from_millis(500));
        assert_eq!(c.readiness_timeout, Duration::from_secs(2));
        assert_eq!(c.plan_config().global_namespaces, ["default", "shared"]);
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (bad, code, word) in [
            (
                &br#"{"cniVersion":"1.0.0","name":"m","type":"multus"}"#[..],
                7,
                "delegates",
            ),
            (
                br#"{"name":"m","type":"multus","cniVersion":"0.5.0","delegates":[{"type":"x"}]}"#,
                1,
                "0.5.0",
            ),
            (
                br#"{"cniVersion":2,"delegates":[{"type":"x"}]}"#,
                7,
                "cniVersion",
            ),
            (
                br#"{"delegates":[{"type":"x","cniVersion":"0.2.1"}]}"#,
                1,
                "delegates[0]",
            ),
            (
                br#"{"cniVersion":"1.0.0","delegates":[{"name":"x"}]}"#,
                7,
                "delegates[0]",
            ),
            (br#"{"cniVersion":"1.0.0","delegates":{}}"#, 7, "delegates"),
            (
                br#"{"cniVersion":"1.0.0","binDir":3,"delegates":[{"type":"x"}]}"#,
                7,
                "binDir",
            ),
            (
                br#"{"cniVersion":"1.0.0","delegateTimeout":-1,"delegates":[{"type":"x"}]}"#,
                7,
                "delegateTimeout",
            ),
            (br#"{"cniVersion":"1.0.0","#, 6, "JSON"),
            (br#"{"cniVersion":"1.0.0","kubeconfig":"/k"}"#, 7, "clusterNetwork"),
            (
                br#"{"cniVersion":"1.0.0","kubeconfig":"/k","clusterNetwork":"x","defaultNetworks":3}"#,
                7,
                "defaultNetworks",
            ),
            (
                br#"{"cniVersion":"1.0.0","kubeconfig":"/k","clusterNetwork":"x","namespaceIsolation":"yes"}"#,
                7,
                "namespaceIsolation",
            ),
            (
                br#"{"cniVersion":"1.0.0","kubeconfig":"/k","clusterNetwork":"x","apiRetryTimeout":"1"}"#,
                7,
                "apiRetryTimeout",
            ),
            (
                br#"{"cniVersion":"1.0.0","kubeconfig":"/k","clusterNetwork":"x","logOptions":[]}"#,
                7,
                "logOptions",
            ),
        ] {
            let e = MultusConf::parse(bad).unwrap_err();
            assert_eq!(e.code.code(), code, "{e}");
            assert!(e.msg.contains(word), "{e} should name {word}");
        }
    }

    #[test]
    fn versions_as_upstream_reads_them() {
        // Upstream's how-to-use example and DaemonSet ConfigMap: no cniVersion anywhere.
        let c = MultusConf::parse(
            br#"{"name":"multus-cni-network","type":"multus","kubeconfig":"/k",
                 "delegates":[{"type":"flannel","name":"flannel.1","delegate":{"isDefaultGateway":true}}]}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "0.1.0");
        assert_eq!(c.delegates[0].cni_version(), "0.1.0");
        // Neither has one: the delegate stays as written.
        assert!(c.delegates[0].to_value().get("cniVersion").is_none());
        // A delegate without one (or with an empty one) takes Multus' own; its own wins otherwise.
        let c = MultusConf::parse(
            br#"{"cniVersion":"0.2.0","delegates":[{"type":"bridge"},{"type":"ptp","cniVersion":""},
                 {"type":"macvlan","cniVersion":"1.0.0"},{"name":"l","plugins":[{"type":"ptp"}]},
                 {"name":"l2","cniVersion":"0.1.0","plugins":[{"type":"ptp"}]}]}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "0.2.0");
        let got: Vec<&str> = c.delegates.iter().map(|d| d.cni_version()).collect();
        assert_eq!(got, ["0.2.0", "0.2.0", "1.0.0", "0.2.0", "0.1.0"]);
        assert_eq!(
            c.delegates[0].to_value().get("cniVersion"),
            Some(&Value::String("0.2.0".into()))
        );
        for v in ["0.1.0", "", "1.1.0"] {
            let conf = format!(r#"{{"cniVersion":"{v}","delegates":[{{"type":"x"}}]}}"#);
            let c = MultusConf::parse(conf.as_bytes()).unwrap();
            let want = if v.is_empty() { "0.1.0" } else { v };
            assert_eq!(
                (c.cni_version.as_str(), c.delegates[0].cni_version()),
                (want, want)
            );
        }
    }
}

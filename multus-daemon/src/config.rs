//! `daemon-config.json`: upstream's daemon keys (its `ControllerNetConf` and the `MultusConf` its config
//! manager generates `00-multus.conf` from), ours beside them. The whole file is also laid over the Multus
//! config of every request, as upstream's server does (`overrideCNIConfigWithServerConfig`).

use serde_json::{Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Upstream's default path of the daemon config.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/cni/net.d/multus.d/daemon-config.json";

/// The daemon's configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The file as read: overlaid on every request's Multus config.
    pub raw: Map<String, Value>,
    /// `chrootDir`: plugin binaries run chrooted here (the host's root in the daemon's container).
    pub chroot_dir: Option<PathBuf>,
    /// `socketDir` (default `/run/multus/`): where `multus.sock` is made.
    pub socket_dir: PathBuf,
    /// `metricsPort`: `/metrics`, `/healthz`, `/readyz` over HTTP on this TCP port.
    pub metrics_port: Option<u16>,
    /// `metricsBindAddress` (ours, default `0.0.0.0`): the address the metrics port is bound to.
    pub metrics_bind_address: String,
    /// `connectionLimit`: at most this many shim connections served at once.
    pub connection_limit: Option<usize>,
    /// `logLevel`.
    pub log_level: String,
    /// `logFile`.
    pub log_file: Option<PathBuf>,
    /// `logToStderr` (upstream's default false; ours true when there is no `logFile`).
    pub log_to_stderr: bool,
    /// `cniConfigDir` (default `/etc/cni/net.d`): where `00-multus.conf` is written.
    pub cni_config_dir: PathBuf,
    /// `cniConfigDirHost` (ours; default: `cniConfigDir` without a leading `/host`): the same directory as
    /// the host sees it (a retiring config names its own host path).
    pub cni_config_dir_host: PathBuf,
    /// `multusConfigFile` (default `auto`: generated around the primary network; else a file copied).
    pub multus_config_file: String,
    /// `multusMasterCNI`: the primary network's config file name (default: the first in the autoconfig dir).
    pub multus_master_cni: Option<String>,
    /// `multusAutoconfigDir` (default: `cniConfigDir`): where the primary network's config is looked for.
    pub multus_autoconfig_dir: PathBuf,
    /// `forceCNIVersion`: rewrite the primary config's `cniVersion` to ours.
    pub force_cni_version: bool,
    /// `overrideNetworkName`: the Multus network takes the primary's name.
    pub override_network_name: bool,
    /// `readinessindicatorfile`: waited for at start; its removal stops the daemon.
    pub readiness_indicator_file: Option<PathBuf>,
    /// `kubeconfig` (ours; default: the in-cluster service account, as upstream).
    pub kubeconfig: Option<PathBuf>,
    /// `nodeName` (ours; default `MULTUS_NODE_NAME`): whose pods the cache keeps.
    pub node_name: Option<String>,
    /// `cleanupConfigOnExit` (ours, default false): on SIGTERM, take the Multus config off the node the
    /// way `multus uninstall` does.
    pub cleanup_config_on_exit: bool,
    /// `drainTimeout` (ours, seconds, default 20): how long SIGTERM waits for requests in flight.
    pub drain_timeout: Duration,
    /// `apiRequestTimeout` (as in the Multus config, default 10 s): the limit on one API request.
    pub api_request_timeout: Duration,
    /// `shimBinDir` (ours): where the shim is installed at start (see [`crate::autoconf::install_shim`]).
    pub shim_bin_dir: Option<PathBuf>,
    /// `primaryWaitTimeout` (ours, seconds, default 120 as upstream): how long to wait for a primary config.
    pub primary_wait: Duration,
}

fn secs(m: &Map<String, Value>, k: &str, default: f64) -> Result<Duration, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(Duration::from_secs_f64(default)),
        Some(v) => v
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 86_400.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{k:?} must be a number of seconds, not {v}")),
    }
}

fn string(m: &Map<String, Value>, k: &str) -> Result<Option<String>, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(format!("{k:?} must be a string, not {v}")),
    }
}

fn boolean(m: &Map<String, Value>, k: &str) -> Result<bool, String> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(format!("{k:?} must be true or false, not {v}")),
    }
}

/// A container path as the host sees it: upstream's manifests mount host directories under `/host`.
fn host_view(p: &std::path::Path) -> PathBuf {
    match p.strip_prefix("/host") {
        Ok(rest) => PathBuf::from("/").join(rest),
        Err(_) => p.to_path_buf(),
    }
}

impl DaemonConfig {
    /// Parses the file's bytes.
    pub fn parse(bytes: &[u8]) -> Result<DaemonConfig, String> {
        let raw = match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err("the daemon config must be a JSON object".into()),
            Err(e) => return Err(format!("the daemon config is not valid JSON: {e}")),
        };
        if raw.get("perNodeCertificate").and_then(|p| p.get("enabled")) == Some(&Value::Bool(true))
        {
            return Err(
                "\"perNodeCertificate\" is not supported: give \"kubeconfig\" or run in-cluster"
                    .into(),
            );
        }
        let port = |k: &str| -> Result<Option<u16>, String> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .map(Some)
                    .ok_or_else(|| format!("{k:?} must be a port number, not {v}")),
            }
        };
        let connection_limit = match raw.get("connectionLimit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|n| *n > 0)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| format!("connection limit must be greater than 0, got {v}"))?,
            ),
        };
        let log_file = string(&raw, "logFile")?.map(PathBuf::from);
        let cni_config_dir =
            PathBuf::from(string(&raw, "cniConfigDir")?.unwrap_or_else(|| "/etc/cni/net.d".into()));
        Ok(DaemonConfig {
            chroot_dir: string(&raw, "chrootDir")?.map(PathBuf::from),
            socket_dir: string(&raw, "socketDir")?
                .unwrap_or_else(|| multus_cni::shim::protocol::DEFAULT_SOCKET_DIR.into())
                .into(),
            metrics_port: port("metricsPort")?,
            metrics_bind_address: string(&raw, "metricsBindAddress")?
                .unwrap_or_else(|| "0.0.0.0".into()),
            connection_limit,
            log_level: string(&raw, "logLevel")?.unwrap_or_else(|| "error".into()),
            log_to_stderr: match raw.get("logToStderr") {
                Some(Value::Bool(b)) => *b,
                _ => log_file.is_none(),
            },
            log_file,
            multus_config_file: string(&raw, "multusConfigFile")?.unwrap_or_else(|| "auto".into()),
            multus_master_cni: string(&raw, "multusMasterCNI")?,
            multus_autoconfig_dir: string(&raw, "multusAutoconfigDir")?
                .map(PathBuf::from)
                .unwrap_or_else(|| cni_config_dir.clone()),
            cni_config_dir_host: match string(&raw, "cniConfigDirHost")? {
                Some(h) => PathBuf::from(h),
                None => host_view(&cni_config_dir),
            },
            cni_config_dir,
            force_cni_version: boolean(&raw, "forceCNIVersion")?,
            override_network_name: boolean(&raw, "overrideNetworkName")?,
            readiness_indicator_file: string(&raw, "readinessindicatorfile")?.map(PathBuf::from),
            kubeconfig: string(&raw, "kubeconfig")?.map(PathBuf::from),
            node_name: string(&raw, "nodeName")?.or_else(|| {
                std::env::var("MULTUS_NODE_NAME")
                    .ok()
                    .filter(|n| !n.is_empty())
            }),
            cleanup_config_on_exit: boolean(&raw, "cleanupConfigOnExit")?,
            drain_timeout: secs(&raw, "drainTimeout", 20.0)?,
            api_request_timeout: secs(&raw, "apiRequestTimeout", 10.0)?,
            primary_wait: secs(&raw, "primaryWaitTimeout", 120.0)?,
            shim_bin_dir: string(&raw, "shimBinDir")?.map(PathBuf::from),
            raw,
        })
    }

    /// Reads and parses the file.
    pub fn load(path: &std::path::Path) -> Result<DaemonConfig, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("daemon config {}: {e}", path.display()))?;
        Self::parse(&bytes).map_err(|e| format!("daemon config {}: {e}", path.display()))
    }

    /// Whether `00-multus.conf` is generated around the primary network (upstream's `auto`).
    pub fn is_auto(&self) -> bool {
        self.multus_config_file == "auto"
    }

    /// The socket the shim connects to.
    pub fn socket_path(&self) -> PathBuf {
        multus_cni::shim::protocol::socket_path(&self.socket_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's thick DaemonSet's config, verbatim.
    #[test]
    fn upstreams_daemon_config() {
        let c = DaemonConfig::parse(
            br#"{"chrootDir": "/hostroot", "cniVersion": "0.3.1", "logLevel": "verbose", "logToStderr": true,
                 "cniConfigDir": "/host/etc/cni/net.d", "multusAutoconfigDir": "/host/etc/cni/net.d",
                 "multusConfigFile": "auto", "socketDir": "/host/run/multus/"}"#,
        )
        .unwrap();
        assert_eq!(c.chroot_dir, Some(PathBuf::from("/hostroot")));
        assert_eq!(
            c.socket_path(),
            PathBuf::from("/host/run/multus/multus.sock")
        );
        assert!(c.is_auto() && c.log_to_stderr && c.metrics_port.is_none());
        assert_eq!(
            c.multus_autoconfig_dir,
            PathBuf::from("/host/etc/cni/net.d")
        );
        assert_eq!(c.raw["cniVersion"], "0.3.1");
        assert_eq!(c.cni_config_dir_host, PathBuf::from("/etc/cni/net.d"));
    }

    #[test]
    fn refusals_name_the_key() {
        for (text, word) in [
            (r#"{"connectionLimit": 0}"#, "greater than 0"),
            (r#"{"metricsPort": "x"}"#, "metricsPort"),
            (r#"{"socketDir": 3}"#, "socketDir"),
            (r#"{"drainTimeout": -1}"#, "drainTimeout"),
            (
                r#"{"perNodeCertificate": {"enabled": true}}"#,
                "perNodeCertificate",
            ),
            ("[]", "object"),
        ] {
            let e = DaemonConfig::parse(text.as_bytes()).unwrap_err();
            assert!(e.contains(word), "{text}: {e}");
        }
    }
}

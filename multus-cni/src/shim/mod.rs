//! `multus-shim` (the `multus` binary started as `multus-shim`, or `multus shim`): the thick plugin's CNI
//! side. It forwards the runtime's call to the node's `multus-daemon` over `<daemonSocketDir>/multus.sock`
//! (upstream's protocol, [`protocol`]) and prints the daemon's answer, in the Multus config's
//! `cniVersion`. VERSION is answered here.
//!
//! Bounded where upstream's is not: a missing, refusing or busy daemon is waited for at most
//! `daemonConnectTimeout` seconds (ours, default 10; upstream polls `/readyz` for 60 s), the whole call
//! takes at most `daemonRequestTimeout` seconds (ours, default 110: below the kubelet's 2 minutes for a
//! sandbox), and either gives a CNI error with code 11 ("try again later") naming the socket. A DEL that
//! fails is reported as failed (upstream's shim answers success, so the runtime never retries it and the
//! pod's attachments leak).
//!
//! No async runtime and no HTTP library ([`http`]): the process stays as small as the thin plugin.

pub mod http;
pub mod protocol;

use multus_core::cni::{CniError, CniResult, ErrorCode, VersionInfo};
use multus_core::skel::{error_version, Outcome};
use protocol::{Request, Response};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// What the shim reads of the Multus config on stdin.
#[derive(Debug, Clone, PartialEq)]
pub struct ShimConf {
    /// `cniVersion`: the version the answer is given in.
    pub cni_version: String,
    /// `daemonSocketDir` (default `/run/multus/`).
    pub socket_dir: PathBuf,
    /// `daemonConnectTimeout` and `daemonRequestTimeout`.
    pub bounds: http::Bounds,
}

impl ShimConf {
    /// Reads the config (only these keys: the daemon reads the rest).
    pub fn parse(stdin: &[u8]) -> Result<ShimConf, CniError> {
        let v: serde_json::Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::decoding(format!("multus-shim: the config on stdin is not JSON: {e}"))
        })?;
        let secs = |k: &str, default: f64| -> Result<Duration, CniError> {
            match &v[k] {
                serde_json::Value::Null => Ok(Duration::from_secs_f64(default)),
                x => x
                    .as_f64()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s < 86_400.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        CniError::invalid_config(format!(
                            "multus-shim: {k:?} must be a number of seconds, not {x}"
                        ))
                    }),
            }
        };
        let connect = secs("daemonConnectTimeout", 10.0)?;
        let total = secs("daemonRequestTimeout", 110.0)?;
        Ok(ShimConf {
            cni_version: error_version(stdin),
            socket_dir: v["daemonSocketDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(protocol::DEFAULT_SOCKET_DIR)
                .into(),
            bounds: http::Bounds {
                connect,
                total: total.max(connect),
            },
        })
    }
}

/// The shim process: stdin and the environment to the daemon, its answer to stdout; the exit status.
pub fn main() -> i32 {
    let stdin = multus_core::skel::read_stdin();
    let env: BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("CNI_"))
        .collect();
    multus_core::skel::emit(&run(&env, &stdin))
}

/// One call: `env` holds the `CNI_*` variables.
pub fn run(env: &BTreeMap<String, String>, stdin: &[u8]) -> Outcome {
    let command = env.get("CNI_COMMAND").map(String::as_str).unwrap_or("");
    if command == "VERSION" {
        return Outcome::ok(serde_json::to_value(VersionInfo::reply(stdin)).ok());
    }
    let conf = match ShimConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e, &error_version(stdin)),
    };
    match call(&conf, env, stdin, command == "ADD") {
        Ok(body) => Outcome::ok(body),
        Err(e) => {
            eprintln!("multus-shim: {command}: {}", e.msg);
            Outcome::error(&e, &conf.cni_version)
        }
    }
}

fn call(
    conf: &ShimConf,
    env: &BTreeMap<String, String>,
    stdin: &[u8],
    is_add: bool,
) -> Result<Option<serde_json::Value>, CniError> {
    let req = Request {
        env: env.clone(),
        config: stdin.to_vec(),
        interface_attributes: None,
    };
    let body = serde_json::to_vec(&req).map_err(|e| CniError::io(e.to_string()))?;
    let sock = protocol::socket_path(&conf.socket_dir);
    let (status, answer) =
        http::post(&sock, protocol::CNI_PATH, &body, conf.bounds).map_err(|e| {
            CniError::try_again_later(format!(
                "the multus daemon at {} did not answer: {e} (is the multus DaemonSet running on this node?)",
                sock.display()
            ))
        })?;
    if status != 200 {
        return Err(daemon_error(status, &answer));
    }
    if !is_add {
        return Ok(None);
    }
    let resp: Response = serde_json::from_slice(&answer).map_err(|e| {
        CniError::new(
            ErrorCode::DelegateBadOutput,
            format!("the multus daemon's answer is not a response: {e}"),
        )
    })?;
    let result = resp.result.ok_or_else(|| {
        CniError::new(
            ErrorCode::DelegateBadOutput,
            "the multus daemon answered ADD without a result",
        )
    })?;
    CniResult::from_value(&result)?
        .to_value(&conf.cni_version)
        .map(Some)
}

/// The daemon's error: its CNI error as it is, else the status and text (5xx: try again later).
fn daemon_error(status: u16, body: &[u8]) -> CniError {
    if let Some(e) = CniError::from_json(body) {
        return e;
    }
    let text = String::from_utf8_lossy(body);
    let msg = format!("the multus daemon answered {status}: {}", text.trim());
    if status >= 500 || status == 429 {
        CniError::try_again_later(msg)
    } else {
        CniError::new(ErrorCode::DelegateFailed, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_and_defaults() {
        let c = ShimConf::parse(br#"{"cniVersion":"0.3.1","type":"multus-shim"}"#).unwrap();
        assert_eq!(c.socket_dir, PathBuf::from("/run/multus/"));
        assert_eq!(c.cni_version, "0.3.1");
        assert_eq!(c.bounds.connect, Duration::from_secs(10));
        let c = ShimConf::parse(
            br#"{"cniVersion":"1.0.0","daemonSocketDir":"/x","daemonConnectTimeout":0.5,"daemonRequestTimeout":0.2}"#,
        )
        .unwrap();
        assert_eq!(c.socket_dir, PathBuf::from("/x"));
        assert_eq!(c.bounds.total, Duration::from_millis(500));
        assert!(ShimConf::parse(br#"{"daemonConnectTimeout":"x"}"#).is_err());
        assert!(ShimConf::parse(b"nope").is_err());
    }

    #[test]
    fn no_daemon_is_code_11_naming_the_socket() {
        let d = tempfile::tempdir().unwrap();
        let conf = serde_json::json!({"cniVersion":"1.0.0","daemonSocketDir":d.path(),"daemonConnectTimeout":0.2});
        let env: BTreeMap<String, String> = [("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "c")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let out = run(&env, conf.to_string().as_bytes());
        assert_eq!(out.status, 1);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["code"], 11);
        assert!(v["msg"].as_str().unwrap().contains("multus.sock"), "{v}");
    }

    #[test]
    fn daemon_errors_pass_through_or_say_the_status() {
        let e = daemon_error(400, br#"{"code":7,"msg":"no NAD","details":"d"}"#);
        assert_eq!((e.code.code(), e.msg.as_str()), (7, "no NAD"));
        assert_eq!(daemon_error(503, b"busy").code.code(), 11);
        assert_eq!(daemon_error(400, b"could not extract").code.code(), 100);
    }
}

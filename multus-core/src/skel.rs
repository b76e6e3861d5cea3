//! The plugin side of the CNI protocol, for any [`Delegate`]: read the environment and stdin, run the verb,
//! write the result or the error on stdout. What the Go `skel` package is to the reference plugins.
//!
//! [`run_plugin`] does no I/O of its own beyond what it is given, so it is tested without a process;
//! [`serve`] is the process around any verb runner (the meta-plugin's too), and [`main`] the process of one
//! delegate.

use crate::cni::{
    CniEnv, CniError, Command, PluginConf, Version, VersionInfo, CURRENT_VERSION, IMPLICIT_VERSION,
};
use crate::delegate::{Context, Delegate, Registry};
use std::io::{Read, Write};
use std::sync::Arc;

/// What a plugin invocation prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The bytes for stdout (a result, a VERSION reply, an error, or nothing).
    pub stdout: Vec<u8>,
    /// The exit status: 0 on success, 1 on error.
    pub status: i32,
}

impl Outcome {
    /// Success with a JSON body (or none).
    pub fn ok(body: Option<serde_json::Value>) -> Self {
        let stdout = body.map(|b| to_pretty(&b)).unwrap_or_default();
        Outcome { stdout, status: 0 }
    }

    /// An error in the JSON form of `cni_version`.
    pub fn error(err: &CniError, cni_version: &str) -> Self {
        Outcome {
            stdout: to_pretty(&err.to_json(cni_version)),
            status: 1,
        }
    }
}

fn to_pretty(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

/// The version to write an error in: the config's when it is a supported one ([`IMPLICIT_VERSION`] for a
/// config object that declares none), else the current one.
pub fn error_version(stdin: &[u8]) -> String {
    let declared = match serde_json::from_slice::<serde_json::Value>(stdin) {
        Ok(serde_json::Value::Object(m)) => match m.get("cniVersion") {
            None | Some(serde_json::Value::Null) => IMPLICIT_VERSION,
            Some(serde_json::Value::String(v)) if v.is_empty() => IMPLICIT_VERSION,
            Some(serde_json::Value::String(v)) => v.as_str(),
            Some(_) => CURRENT_VERSION,
        }
        .to_string(),
        _ => return CURRENT_VERSION.to_string(),
    };
    if crate::cni::SUPPORTED_VERSIONS.contains(&declared.as_str()) {
        declared
    } else {
        CURRENT_VERSION.to_string()
    }
}

/// Runs one verb of a single-plugin delegate, given its parsed environment and stdin.
pub async fn run_plugin(
    delegate: &dyn Delegate,
    env: &CniEnv,
    stdin: &[u8],
    registry: Arc<Registry>,
) -> Outcome {
    let version = error_version(stdin);
    if env.command == Command::Version {
        return Outcome::ok(serde_json::to_value(VersionInfo::reply(stdin)).ok());
    }
    match run_verb(delegate, env, stdin, registry).await {
        Ok(body) => Outcome::ok(body),
        Err(e) => Outcome::error(&e, &version),
    }
}

async fn run_verb(
    delegate: &dyn Delegate,
    env: &CniEnv,
    stdin: &[u8],
    registry: Arc<Registry>,
) -> Result<Option<serde_json::Value>, CniError> {
    let conf = PluginConf::from_slice(stdin)?;
    // A config without a version is 0.1.0, as Go's skel reads it; the delegate gets the config as given.
    let version = conf.cni_version().unwrap_or(IMPLICIT_VERSION).to_string();
    let v = Version::parse_supported(&version)?;
    if matches!(env.command, Command::Status | Command::Gc) && !v.has_status_gc() {
        return Err(CniError::incompatible_version(format!(
            "{} needs cniVersion 1.1.0 or later, the config has {version}",
            env.command
        )));
    }
    if env.command == Command::Check && v < Version::V0_4_0 {
        return Err(CniError::incompatible_version(format!(
            "CHECK needs cniVersion 0.4.0 or later, the config has {version}"
        )));
    }
    let ctx = Context::from_env(env, registry);
    match env.command {
        Command::Add => {
            crate::delegate::known_keys::warn_unimplemented(delegate, &conf);
            let r = delegate.add(&ctx, &conf).await?;
            Ok(Some(r.to_value(&version)?))
        }
        Command::Check => delegate.check(&ctx, &conf).await.map(|_| None),
        Command::Del => delegate.del(&ctx, &conf).await.map(|_| None),
        Command::Status => delegate.status(&ctx, &conf).await.map(|_| None),
        Command::Gc => delegate.gc(&ctx, &conf).await.map(|_| None),
        Command::Version => Ok(None),
    }
}

/// Reads all of stdin (empty when it is closed or unreadable).
pub fn read_stdin() -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
    buf
}

/// Writes an outcome to stdout and returns its exit status.
pub fn emit(outcome: &Outcome) -> i32 {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&outcome.stdout);
    let _ = out.flush();
    outcome.status
}

/// The whole plugin process: stdin, the environment, a current-thread tokio runtime running `run`, the
/// answer on stdout. Returns the exit status for `std::process::exit`, which must follow (the runtime is not
/// torn down: closing its descriptors and joining its idle threads would only delay the exit). The
/// meta-plugin and every standalone plugin start through here.
pub fn serve<F, Fut>(run: F) -> i32
where
    F: FnOnce(CniEnv, Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let stdin = read_stdin();
    let env = match CniEnv::from_process() {
        Ok(e) => e,
        Err(e) => return emit(&Outcome::error(&e, &error_version(&stdin))),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return emit(&Outcome::error(
                &CniError::io(format!("cannot start the runtime: {e}")),
                &error_version(&stdin),
            ))
        }
    };
    let outcome = rt.block_on(run(env, stdin));
    let code = emit(&outcome);
    std::mem::forget(rt);
    code
}

/// The whole plugin process for one delegate ([`serve`] running [`run_plugin`]).
pub fn main(delegate: Arc<dyn Delegate>, registry: Arc<Registry>) -> i32 {
    serve(|env, stdin| async move { run_plugin(delegate.as_ref(), &env, &stdin, registry).await })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cni::CniResult;
    use async_trait::async_trait;
    use serde_json::{json, Value};
    use std::path::PathBuf;

    /// Answers ADD with a 1.1 result of two interfaces, two IPv4 and one IPv6 address; records the config.
    struct Fake(std::sync::Mutex<Option<Value>>);

    #[async_trait]
    impl Delegate for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        async fn add(&self, _: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
            *self.0.lock().unwrap() = Some(conf.to_value());
            CniResult::from_value(&json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "veth0", "mac": "aa:aa:aa:aa:aa:aa"},
                               {"name": "eth0", "mac": "aa:aa:aa:aa:aa:ab", "sandbox": "/x", "mtu": 1400}],
                "ips": [{"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                        {"interface": 1, "address": "10.1.0.6/24"},
                        {"interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "priority": 5}, {"dst": "::/0"}],
                "dns": {"nameservers": ["10.1.0.1"]}
            }))
        }
        async fn check(&self, _: &Context, _: &PluginConf) -> Result<(), CniError> {
            Ok(())
        }
        async fn del(&self, _: &Context, _: &PluginConf) -> Result<(), CniError> {
            Ok(())
        }
    }

    fn env(command: Command) -> CniEnv {
        CniEnv {
            command,
            container_id: "c1".into(),
            netns: Some(PathBuf::from("/proc/self/ns/net")),
            ifname: "eth0".into(),
            args: Default::default(),
            path: Vec::new(),
        }
    }

    fn run(command: Command, stdin: &[u8]) -> (Outcome, Option<Value>) {
        let fake = Fake(Default::default());
        let out = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(run_plugin(
                &fake,
                &env(command),
                stdin,
                Arc::new(Registry::new()),
            ));
        let seen = fake.0.lock().unwrap().take();
        (out, seen)
    }

    fn body(o: &Outcome) -> Value {
        serde_json::from_slice(&o.stdout).unwrap()
    }

    #[test]
    fn legacy_and_version_less_configs_get_the_0_2_0_shape() {
        let want = |v: &str| {
            json!({"cniVersion": v,
                   "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1", "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]},
                   "ip6": {"ip": "fd00::5/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
                   "dns": {"nameservers": ["10.1.0.1"]}})
        };
        let (o, _) = run(
            Command::Add,
            br#"{"cniVersion":"0.2.0","name":"n","type":"fake"}"#,
        );
        assert_eq!((o.status, body(&o)), (0, want("0.2.0")));
        // Without a version (or an empty one): 0.1.0, and the plugin sees its config as given.
        for stdin in [
            &br#"{"name":"n","type":"fake"}"#[..],
            br#"{"cniVersion":"","name":"n","type":"fake"}"#,
        ] {
            let (o, seen) = run(Command::Add, stdin);
            assert_eq!((o.status, body(&o)), (0, want("0.1.0")));
            assert_eq!(
                seen.unwrap(),
                serde_json::from_slice::<Value>(stdin).unwrap()
            );
        }
    }

    #[test]
    fn old_versions_have_no_check_status_or_gc() {
        for (cmd, stdin, word) in [
            (
                Command::Check,
                &br#"{"cniVersion":"0.2.0","type":"fake"}"#[..],
                "0.4.0",
            ),
            (Command::Check, br#"{"type":"fake"}"#, "0.4.0"),
            (Command::Status, br#"{"type":"fake"}"#, "1.1.0"),
            (
                Command::Gc,
                br#"{"cniVersion":"0.1.0","type":"fake"}"#,
                "1.1.0",
            ),
        ] {
            let (o, _) = run(cmd, stdin);
            let e = body(&o);
            assert_eq!((o.status, e["code"].as_u64()), (1, Some(1)), "{cmd}: {e}");
            assert!(e["msg"].as_str().unwrap().contains(word), "{e}");
        }
        let (o, _) = run(Command::Del, br#"{"type":"fake"}"#);
        assert_eq!(o.status, 0);
    }

    #[test]
    fn errors_are_written_in_the_config_version() {
        assert_eq!(error_version(br#"{"type":"x"}"#), "0.1.0");
        assert_eq!(error_version(br#"{"cniVersion":"0.2.0"}"#), "0.2.0");
        assert_eq!(error_version(br#"{"cniVersion":"0.5.0"}"#), CURRENT_VERSION);
        assert_eq!(error_version(br#"{"cniVersion":3}"#), CURRENT_VERSION);
        assert_eq!(error_version(b"[]"), CURRENT_VERSION);
        assert_eq!(error_version(b""), CURRENT_VERSION);
        let (o, _) = run(
            Command::Add,
            br#"{"name":"n","type":"fake","cniVersion":"0.5.0"}"#,
        );
        assert_eq!(body(&o)["code"], 1);
    }
}

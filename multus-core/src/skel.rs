//! The plugin side of the CNI protocol, for any [`Delegate`]: read the environment and stdin, run the verb,
//! write the result or the error on stdout. What the Go `skel` package is to the reference plugins.
//!
//! [`run_plugin`] does no I/O of its own beyond what it is given, so it is tested without a process;
//! [`serve`] is the process around any verb runner (the meta-plugin's too), and [`main`] the process of one
//! delegate.

use crate::cni::{CniEnv, CniError, Command, PluginConf, Version, VersionInfo, CURRENT_VERSION};
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

/// The version to write an error in: the config's when it is a supported one, else the current one.
pub fn error_version(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| {
            v.get("cniVersion")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .filter(|v| crate::cni::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| CURRENT_VERSION.to_string())
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
    let version = conf
        .cni_version()
        .ok_or_else(|| CniError::incompatible_version("network config: \"cniVersion\" is missing"))?
        .to_string();
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

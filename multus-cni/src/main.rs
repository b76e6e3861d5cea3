//! `multus`: the CNI plugin binary.
//!
//! - Started as `multus` with `CNI_COMMAND` set: the Multus meta-plugin ([`meta`]).
//! - Started under the name of a built-in delegate (`host-local`, `macvlan`, `ipvlan`, ...): that plugin
//!   alone, a drop-in for the reference binary of the same name.
//! - Started as `multus` without `CNI_COMMAND`: the command line ([`cli`]).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod builtins;
mod cli;
mod demo;
mod devices;
mod fsutil;
mod install;
mod logging;
mod meta;

use multus_core::cni::{CniEnv, CniError, ErrorCode};
use multus_core::skel::{self, error_version, Outcome};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = std::panic::catch_unwind(|| dispatch(&name)).unwrap_or_else(|_| {
        // A panic is a bug; the runtime still gets a CNI error, never a half-written answer.
        let e = CniError::new(
            ErrorCode::DelegateFailed,
            "multus panicked (a bug: please report it with the log)",
        );
        skel::emit(&Outcome::error(&e, multus_core::cni::CURRENT_VERSION))
    });
    std::process::exit(code);
}

fn dispatch(name: &str) -> i32 {
    if name != "multus" && builtins::standalone_types().iter().any(|t| t == name) {
        return standalone(name);
    }
    if std::env::var_os("CNI_COMMAND").is_some() {
        return meta_plugin();
    }
    cli::main()
}

/// The meta-plugin process.
fn meta_plugin() -> i32 {
    let stdin = skel::read_stdin();
    let env = match CniEnv::from_process() {
        Ok(e) => e,
        Err(e) => return skel::emit(&Outcome::error(&e, &error_version(&stdin))),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = CniError::io(format!("cannot start the runtime: {e}"));
            return skel::emit(&Outcome::error(&e, &error_version(&stdin)));
        }
    };
    let outcome = rt.block_on(meta::run(&env, &stdin));
    skel::emit(&outcome)
}

/// One built-in delegate as a standalone plugin.
fn standalone(name: &str) -> i32 {
    logging::init(
        &std::env::var("MULTUS_LOG_LEVEL").unwrap_or_default(),
        None,
        true,
    );
    let registry = Arc::new(builtins::registry(Vec::new(), Duration::from_secs(60)));
    match registry.resolve(name, &[]) {
        Ok(d) => skel::main(d, registry),
        Err(e) => skel::emit(&Outcome::error(&e, multus_core::cni::CURRENT_VERSION)),
    }
}

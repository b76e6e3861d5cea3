//! Helpers of the binary's integration tests: the shared ones of `multus-testsupport`, and running the
//! built `multus` binary as a runtime would.
#![allow(dead_code, unused_imports)]

pub use multus_testsupport::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The built binary.
pub fn multus_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_multus"))
}

/// Runs the multus binary for a verb on one container.
pub fn cni(
    command: &str,
    container: &str,
    netns: Option<&Path>,
    ifname: &str,
    conf: &Value,
) -> Run {
    let ns = netns.map(|p| p.to_string_lossy().into_owned());
    let mut vars: Vec<(&str, &str)> = vec![
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    if let Some(ns) = ns.as_deref() {
        vars.push(("CNI_NETNS", ns));
    }
    run_plugin(&multus_bin(), &vars, conf.to_string().as_bytes())
}

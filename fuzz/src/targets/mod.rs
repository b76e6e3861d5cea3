//! The fuzz targets: one per parser of input, each calling the parser as the plugins do and judging the
//! outcome: a value that holds what the parser promises, or a clean error (a [`CniError`] of an input code:
//! 1-7 or 11, with a message). A panic, a hang, another code, or a value that breaks its contract is a
//! finding.
//!
//! - [`cni`]: plugin configs, network configs and conflists, CNI results of every version (and a
//!   delegate's error output), `CNI_ARGS`, the CNI environment, the VERSION request.
//! - [`k8s`]: the Multus config, the networks and default-network annotations, NADs, pods, the kubelet's
//!   device checkpoint.
//! - [`files`]: what is read back from disk: device-info files, the meta-plugin's caches (ours, this
//!   project's earlier format, Go Multus' entries and libcni's result cache), the sriov and dpdk records,
//!   the sriov allocations.

use crate::engine::Shape;
use multus_core::cni::CniError;

pub mod cni;
pub mod files;
pub mod k8s;

/// What a target says of one input: `Err` is a finding.
pub type Verdict = Result<(), String>;

/// One fuzz target.
#[derive(Debug)]
pub struct Target {
    /// Its name (also its corpus directory and its test).
    pub name: &'static str,
    /// What it reads, in a few words.
    pub about: &'static str,
    /// The input's shape, for the generator.
    pub shape: Shape,
    /// Runs the parser on one input.
    pub check: fn(&[u8]) -> Verdict,
}

/// Every target.
pub static TARGETS: &[Target] = &[
    cni::PLUGIN_CONF,
    cni::NETWORK_CONFIG,
    cni::CNI_RESULT,
    cni::CNI_ARGS,
    cni::CNI_ENV,
    cni::VERSION_REQUEST,
    k8s::MULTUS_CONF,
    k8s::NETWORKS_ANNOTATION,
    k8s::DEFAULT_NETWORK_ANNOTATION,
    k8s::NAD,
    k8s::POD,
    k8s::KUBELET_CHECKPOINT,
    files::DEVICE_INFO,
    files::CACHE_RECORD,
    files::CACHE_LEGACY,
    files::CACHE_GO_ENTRY,
    files::CACHE_LIBCNI_RESULT,
    files::SRIOV_RECORD,
    files::SRIOV_ALLOC,
    files::DPDK_RECORD,
];

/// The target of this name.
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// The codes a parser of input may answer with: the spec's 1-7 and 11.
pub const INPUT_CODES: [u32; 8] = [1, 2, 3, 4, 5, 6, 7, 11];

/// `Ok(Some(value))`, `Ok(None)` for a clean error, `Err` (a finding) for an error of another code or
/// without a message.
pub fn outcome<T>(what: &str, r: Result<T, CniError>) -> Result<Option<T>, String> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if INPUT_CODES.contains(&e.code.code()) && !e.msg.is_empty() => Ok(None),
        Err(e) => Err(format!(
            "{what}: an error of code {} is not a clean input error: {:?}",
            e.code.code(),
            e.msg.chars().take(300).collect::<String>()
        )),
    }
}

/// A name a parser accepted as an interface name must be one the kernel takes.
pub fn valid_ifname(what: &str, name: Option<&str>) -> Verdict {
    match name {
        Some(n) => multus_core::cni::names::ifname(n)
            .map_err(|e| format!("{what}: accepted an interface name the kernel refuses: {e}")),
        None => Ok(()),
    }
}

/// The input as text, as the environment or the API hands it over (invalid UTF-8 replaced).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

//! # multus-fuzz
//!
//! Fuzz targets for every parser that reads input, on stable Rust (no cargo-fuzz, no nightly): configs and
//! conflists, the Multus config, the networks and default-network annotations, NADs, pods, CNI results of
//! every version, `CNI_ARGS`, the CNI environment, the kubelet checkpoint, device-info files, the
//! meta-plugin's caches (ours, this project's earlier format, Go Multus' entries, libcni's result cache),
//! the sriov and dpdk records. (host-local's store and index have their own properties in `multus-ipam`.)
//!
//! Each target ([`targets::TARGETS`]) takes bytes and says whether the parser behaved: a value that holds
//! what it promises, or a clean error (a `CniError` of an input code). [`run`] replays the target's corpus
//! (`fuzz/corpus/<target>/`: real configs, fixtures, the reference plugins' results), then feeds it
//! generated inputs ([`engine`]: proptest strategies for bytes, text and JSON structures, and mutations of
//! the seeds) for a bounded time; a panic, a hang or a broken contract is a [`Failure`], minimized and
//! saved under `fuzz/artifacts/`.
//!
//! `cargo test -p multus-fuzz` runs every target for `FUZZ_SECS` seconds (default 2); see the README for a
//! longer run of one target.
//!
//! ```
//! let t = multus_fuzz::targets::find("cni_args").unwrap();
//! let report = multus_fuzz::run(t, std::time::Duration::from_millis(100), 1).unwrap();
//! assert!(report.cases > 0);
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod engine;
mod run;
pub mod targets;

pub use run::{check, corpus, corpus_dir, replay_corpus, run, Failure, Report, CASE_LIMIT};

use std::time::Duration;

/// The time budget of one target: `FUZZ_SECS` (seconds, fractions allowed), else `default`.
pub fn budget(default: Duration) -> Duration {
    std::env::var("FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

/// The generator's seed: `FUZZ_SEED`, else one from the clock (printed with every report and failure).
pub fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

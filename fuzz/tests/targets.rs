//! Every fuzz target for a bounded time (`FUZZ_SECS`, default 2 s each; the tests run in parallel), after
//! its corpus. A finding fails the test with the input, where it was saved and the seed.

use multus_fuzz::targets::{find, TARGETS};
use std::time::Duration;

fn fuzz(name: &str) {
    let t = find(name).unwrap_or_else(|| panic!("no target {name}"));
    let budget = multus_fuzz::budget(Duration::from_secs(2));
    match multus_fuzz::run(t, budget, multus_fuzz::seed()) {
        Ok(r) => {
            assert!(r.replayed > 0, "{name}: its corpus is empty");
            eprintln!(
                "{name}: {} corpus files, {} generated inputs in {:.1?} (FUZZ_SEED={})",
                r.replayed, r.cases, r.elapsed, r.seed
            );
        }
        Err(f) => panic!("{f}"),
    }
}

macro_rules! targets {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { fuzz(stringify!($name)); })*
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

targets!(
    plugin_conf,
    network_config,
    cni_result,
    cni_args,
    cni_env,
    version_request,
    multus_conf,
    networks_annotation,
    default_network_annotation,
    nad,
    pod,
    kubelet_checkpoint,
    device_info,
    cache_record,
    cache_legacy,
    cache_go_entry,
    cache_libcni_result,
    sriov_record,
    sriov_alloc,
    dpdk_record,
);

#[test]
fn every_target_has_a_test_and_a_corpus() {
    let mut names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    let mut tested = TESTED.to_vec();
    names.sort();
    tested.sort();
    assert_eq!(names, tested);
    for t in TARGETS {
        assert!(
            !multus_fuzz::corpus(t.name).is_empty(),
            "{}: no corpus",
            t.name
        );
    }
}

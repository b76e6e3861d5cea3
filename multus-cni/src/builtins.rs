//! The built-in delegates of this binary, and the registry that resolves everything else to plugin binaries.

use multus_core::delegate::external::ExecOptions;
use multus_core::delegate::observe::DelegateObserver;
use multus_core::delegate::Registry;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A registry with every built-in delegate, searching `bin_dirs` (then `CNI_PATH`) for other types.
pub fn registry(bin_dirs: Vec<PathBuf>, timeout: Duration) -> Registry {
    let mut r = Registry::new();
    r.set_bin_dirs(bin_dirs)
        .set_timeout(timeout)
        .set_exec(EXEC.get().cloned().unwrap_or_default())
        .set_observer(OBSERVER.get().cloned());
    // Built-in delegates are registered here as their crates provide them.
    r.register("macvlan", Arc::new(multus_core::plugins::Macvlan));
    r.register("ipvlan", Arc::new(multus_core::plugins::Ipvlan));
    // A config with a key it does not implement (ipMasq, vlan, ...) runs the node's bridge binary instead.
    r.register("bridge", Arc::new(multus_core::plugins::Bridge));
    // In-process host-local: the same store as the reference binary, so the two can be mixed on a node.
    r.register(
        "host-local",
        Arc::new(multus_ipam::cni::HostLocal::default()),
    );
    r.register("sriov", Arc::new(multus_sriov::Sriov::default()));
    // Binds the attachment's PCI device to vfio-pci for a DPDK application, gives it back on DEL.
    r.register("dpdk", Arc::new(multus_dpdk::Dpdk::system()));
    r
}

static EXEC: OnceLock<ExecOptions> = OnceLock::new();
static OBSERVER: OnceLock<Arc<dyn DelegateObserver>> = OnceLock::new();

/// Makes every registry of this process report its delegates' verbs to `observer` (the thick daemon's
/// delegate latency metrics), set once at its start. Returns false when it was set already.
pub fn set_delegate_observer(observer: Arc<dyn DelegateObserver>) -> bool {
    OBSERVER.set(observer).is_ok()
}

/// Makes every registry of this process start plugin binaries this way: the thick daemon's `chrootDir`
/// (upstream's server-wide `ChrootExec`) and killing them with the daemon, set once at its start. With a
/// `chrootDir`, built-in delegates run chrooted into it too (each verb on a thread of its own, see
/// `multus_core::delegate::chrooted`). The thin binary never sets it. Returns false when it was set
/// already.
pub fn set_exec_options(exec: ExecOptions) -> bool {
    EXEC.set(exec).is_ok()
}

/// Leaves the node's binary to run `types` (`"*"`: every type) instead of the built-in delegates, as a
/// Multus config's `preferNodeBinary` asks.
pub fn prefer_node_binaries(r: &mut Registry, types: &[String]) {
    let all = types.iter().any(|t| t == "*");
    let builtin: Vec<String> = r.builtin_types().into_iter().map(str::to_string).collect();
    for t in builtin {
        if all || types.contains(&t) {
            r.unregister(&t);
        }
    }
}

/// The plugin types this binary also runs standalone when started under that file name.
pub fn standalone_types() -> Vec<String> {
    registry(Vec::new(), Duration::from_secs(1))
        .builtin_types()
        .into_iter()
        .map(str::to_string)
        .collect()
}

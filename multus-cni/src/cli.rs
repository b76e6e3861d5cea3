//! The command line of `multus` when it is not run by a container runtime.

use clap::{Parser, Subcommand};

/// Multus CNI in Rust: a CNI meta-plugin giving pods several network interfaces.
///
/// Run by a container runtime (with CNI_COMMAND set) it is the CNI plugin. Started under the name of a
/// built-in plugin (for example as a `host-local` link), it is that plugin alone. `multus -version` (also
/// `--version`, `-v`) prints the version as upstream's binary does.
#[derive(Parser, Debug)]
#[command(name = "multus", about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print the CNI spec versions this plugin supports, as the VERSION command does.
    Version,
    /// List the plugin types built into this binary.
    Builtins,
    /// Install Multus on this node: copy the binary, write the kubeconfig and the Multus config around the
    /// primary network's config, then keep them up to date until SIGTERM (what the DaemonSet runs, with
    /// upstream's thin-entrypoint flags; --once writes them once and exits).
    Install(Box<multus_cni::install::InstallOpts>),
    /// Take Multus off this node: remove the kubeconfig, and the Multus config when no pod made with Multus
    /// remains; while some do, leave it retiring (new pods get the primary network alone through it; it goes
    /// by itself after the last of them is deleted).
    Uninstall(multus_cni::install::UninstallOpts),
    /// The user guide's example on this machine as root, no cluster: a network namespace for the pod, eth0
    /// from the reference bridge plugin and net1 from the macvlan NAD, through the meta-plugin's own code;
    /// prints the network-status annotation and the pod's net1, then takes it all down (--keep leaves it).
    Demo(multus_cni::demo::DemoOpts),
    /// The thick plugin's shim: forward the CNI call (CNI_* variables, config on stdin) to the node's
    /// multus-daemon over `<daemonSocketDir>/multus.sock` and print its answer (what `multus-shim` runs).
    Shim,
    /// Run the thick plugin's per-node daemon: executes `multus-daemon` (next to this binary, else on PATH)
    /// with these arguments. The daemon is a binary of its own so that this one stays small.
    Daemon {
        /// Arguments for multus-daemon (e.g. --config /etc/cni/net.d/multus.d/daemon-config.json).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// List this node's SR-IOV PFs and VFs (and devices on vfio-pci): PCI address, vendor and device names,
    /// driver, netdev, IOMMU group, and the attachment holding each (SR-IOV allocation or DPDK binding).
    Devices(multus_cni::devices::DevicesOpts),
}

/// The version line of upstream's `multus -version` (`multus: version:<v>(<tree state><release>),
/// commit:<sha>, date:<date>`); the commit, tree state, release status and date come from the build's
/// environment (`MULTUS_GIT_COMMIT`, `MULTUS_GIT_TREE_STATE`, `MULTUS_RELEASE_STATUS` such as `,released`,
/// `MULTUS_BUILD_DATE`), with upstream's placeholders when it has none.
pub fn version_line() -> String {
    format!(
        "multus: version:v{}({}{}), commit:{}, date:{}",
        env!("CARGO_PKG_VERSION"),
        option_env!("MULTUS_GIT_TREE_STATE").unwrap_or(""),
        option_env!("MULTUS_RELEASE_STATUS").unwrap_or(""),
        option_env!("MULTUS_GIT_COMMIT").unwrap_or("unknown commit"),
        option_env!("MULTUS_BUILD_DATE").unwrap_or("unknown date"),
    )
}

/// Whether the arguments ask for the version as Go's `flag` package reads upstream's `-version`/`-v`.
fn asks_version(args: &[String]) -> bool {
    matches!(
        args,
        [a] if matches!(
            a.as_str(),
            "-version" | "--version" | "-v" | "--v" | "-V" | "-version=true" | "--version=true" | "-v=true"
                | "--v=true"
        )
    )
}

/// Runs the command line; returns the exit status. Started as `thin_entrypoint` (a link named as upstream's
/// entrypoint, so a DaemonSet that keeps upstream's `command: ["/thin_entrypoint"]` runs it), it is
/// `multus install`.
pub fn main() -> i32 {
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if asks_version(&args) {
        println!("{}", version_line());
        return 0;
    }
    let started_as = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if started_as.as_deref() == Some("thin_entrypoint") {
        argv.splice(0..1, ["multus".into(), "install".into()]);
    }
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            eprintln!(
                "\nmultus is a CNI plugin: a container runtime runs it with CNI_COMMAND set."
            );
            2
        }
        Some(Cmd::Version) => {
            let info = multus_core::cni::VersionInfo::reply(b"");
            println!(
                "{}",
                serde_json::to_string_pretty(&info).unwrap_or_default()
            );
            0
        }
        Some(Cmd::Install(o)) => multus_cni::install::install(&o),
        Some(Cmd::Uninstall(o)) => multus_cni::install::uninstall(&o),
        Some(Cmd::Demo(o)) => multus_cni::demo::run(&o),
        Some(Cmd::Devices(o)) => multus_cni::devices::run(&o),
        Some(Cmd::Shim) => multus_cni::shim::main(),
        Some(Cmd::Daemon { args }) => exec_daemon(&args),
        Some(Cmd::Builtins) => {
            for t in multus_cni::builtins::standalone_types() {
                println!("{t}");
            }
            0
        }
    }
}

/// Replaces this process with `multus-daemon` (beside this binary, else on `PATH`); returns only on failure.
fn exec_daemon(args: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("multus-daemon")))
        .filter(|p| p.is_file());
    let program = beside.unwrap_or_else(|| "multus-daemon".into());
    let err = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "multus daemon: cannot run {}: {err} (the daemon is the multus-daemon binary of the thick image)",
        program.display()
    );
    127
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_flags_as_upstream() {
        for a in ["-version", "--version", "-v", "-version=true"] {
            assert!(asks_version(&[a.to_string()]), "{a}");
        }
        assert!(!asks_version(&["version".into()]));
        assert!(!asks_version(&["-version".into(), "x".into()]));
        let l = version_line();
        assert!(
            l.starts_with(&format!("multus: version:v{}(", env!("CARGO_PKG_VERSION")))
                && l.contains("), commit:")
                && l.contains(", date:"),
            "{l}"
        );
    }
}

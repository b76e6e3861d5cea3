//! The command line of `multus` when it is not run by a container runtime.

use clap::{Parser, Subcommand};

/// Multus CNI in Rust: a CNI meta-plugin giving pods several network interfaces.
///
/// Run by a container runtime (with CNI_COMMAND set) it is the CNI plugin. Started under the name of a
/// built-in plugin (for example as a `host-local` link), it is that plugin alone.
#[derive(Parser, Debug)]
#[command(name = "multus", version, about, long_about)]
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
    /// primary network's config (what the DaemonSet runs; --watch keeps them up to date).
    Install(Box<multus_cni::install::InstallOpts>),
    /// Take Multus off this node: remove the Multus config and kubeconfig so the runtime uses the primary
    /// network again; existing pods can still be deleted.
    Uninstall(multus_cni::install::UninstallOpts),
    /// The user guide's example on this machine as root, no cluster: a network namespace for the pod, eth0
    /// from the reference bridge plugin and net1 from the macvlan NAD, through the meta-plugin's own code;
    /// prints the network-status annotation and the pod's net1, then takes it all down (--keep leaves it).
    Demo(multus_cni::demo::DemoOpts),
    /// List this node's SR-IOV PFs and VFs (and devices on vfio-pci): PCI address, vendor and device names,
    /// driver, netdev, IOMMU group, and the attachment holding each (SR-IOV allocation or DPDK binding).
    Devices(multus_cni::devices::DevicesOpts),
}

/// Runs the command line; returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
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
        Some(Cmd::Builtins) => {
            for t in multus_cni::builtins::standalone_types() {
                println!("{t}");
            }
            0
        }
    }
}

//! `multus install` and `multus uninstall`: what the DaemonSet's container runs on each node (upstream's
//! thin entrypoint), and how Multus is taken off a node again without breaking its pods.
//!
//! - [`conf_gen`]: the Multus config around the primary network (pure).
//! - [`kubeconfig`]: the kubeconfig from the pod's service account (pure).

pub mod conf_gen;
pub mod kubeconfig;

use multus_core::fs;

use clap::Args;
use conf_gen::{GenError, GenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Options of `multus install` (upstream's entrypoint parameters, same meanings).
#[derive(Args, Debug, Clone)]
pub struct InstallOpts {
    /// The host's CNI config directory, as mounted in this container.
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The host's CNI binary directory, as mounted in this container.
    #[arg(long, default_value = "/host/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// The binary to install (default: this one).
    #[arg(long)]
    pub multus_bin_file: Option<PathBuf>,
    /// Do not copy the binary.
    #[arg(long)]
    pub skip_multus_binary_copy: bool,
    /// The primary network's config file in the conf dir (default: the alphabetically first other config).
    #[arg(long, alias = "multus-master-cni-file-name")]
    pub primary_config: Option<String>,
    /// Where the kubeconfig is on the host (the path written into the Multus config).
    #[arg(long, default_value = "/etc/cni/net.d/multus.d/multus.kubeconfig")]
    pub multus_kubeconfig_file_host: PathBuf,
    /// Write no kubeconfig and no `kubeconfig` key (a node without a cluster: kubeconfig-less mode).
    #[arg(long)]
    pub skip_kubeconfig: bool,
    /// The service account directory of this pod.
    #[arg(long, default_value = "/var/run/secrets/kubernetes.io/serviceaccount")]
    pub service_account_dir: PathBuf,
    /// `namespaceIsolation`.
    #[arg(long)]
    pub namespace_isolation: bool,
    /// `globalNamespaces` (comma-separated).
    #[arg(long)]
    pub global_namespaces: Option<String>,
    /// `logLevel` (debug, verbose, error, panic).
    #[arg(long)]
    pub multus_log_level: Option<String>,
    /// `logFile`.
    #[arg(long)]
    pub multus_log_file: Option<PathBuf>,
    /// `logToStderr`.
    #[arg(long)]
    pub multus_log_to_stderr: Option<bool>,
    /// `readinessindicatorfile`.
    #[arg(long)]
    pub readiness_indicator_file: Option<PathBuf>,
    /// An extra directory for plugin binaries (`binDir`).
    #[arg(long)]
    pub additional_bin_dir: Option<PathBuf>,
    /// `cniVersion` of the generated config (default: the primary config's).
    #[arg(long)]
    pub cni_version: Option<String>,
    /// `cniDir` (the attachment cache).
    #[arg(long)]
    pub multus_cni_dir: Option<PathBuf>,
    /// Keep running: regenerate when the primary config changes, rewrite the kubeconfig when the token rotates.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between two looks at the files while watching.
    #[arg(long, default_value_t = 1.0)]
    pub poll_interval: f64,
    /// On SIGTERM or SIGINT while watching, uninstall (remove the Multus config and kubeconfig) before exiting.
    #[arg(long)]
    pub cleanup_config_on_exit: bool,
}

/// Options of `multus uninstall`.
#[derive(Args, Debug, Clone)]
pub struct UninstallOpts {
    /// The host's CNI config directory, as mounted in this container.
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
}

/// What one pass of install wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The Multus config file written.
    pub conf: PathBuf,
    /// The primary config it wraps, and its bytes.
    pub primary: PathBuf,
    primary_bytes: Vec<u8>,
    token: String,
}

fn kubeconfig_in_container(opts: &InstallOpts) -> PathBuf {
    opts.cni_conf_dir.join("multus.d").join("multus.kubeconfig")
}

fn gen_options(opts: &InstallOpts) -> GenOptions {
    GenOptions {
        cni_version: opts.cni_version.clone(),
        kubeconfig: (!opts.skip_kubeconfig).then(|| opts.multus_kubeconfig_file_host.clone()),
        namespace_isolation: opts.namespace_isolation,
        global_namespaces: opts.global_namespaces.clone(),
        log_level: opts.multus_log_level.clone(),
        log_file: opts.multus_log_file.clone(),
        log_to_stderr: opts.multus_log_to_stderr,
        readiness_indicator_file: opts.readiness_indicator_file.clone(),
        additional_bin_dir: opts.additional_bin_dir.clone(),
        cni_dir: opts.multus_cni_dir.clone(),
    }
}

/// Writes the kubeconfig when the token changed; returns the token.
fn write_kubeconfig(opts: &InstallOpts, previous: &str) -> Result<String, String> {
    if opts.skip_kubeconfig {
        return Ok(String::new());
    }
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").ok();
    let sa = kubeconfig::ServiceAccount::read(
        &opts.service_account_dir,
        host.as_deref(),
        port.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    if sa.token != previous {
        let path = kubeconfig_in_container(opts);
        fs::write_atomic(
            &path,
            kubeconfig::render(&sa).as_bytes(),
            0o600,
            fs::Durability::Durable,
        )
        .map_err(|e| format!("cannot write the kubeconfig {}: {e}", path.display()))?;
        eprintln!("multus install: wrote {}", path.display());
    }
    Ok(sa.token)
}

/// One pass: binary, kubeconfig, Multus config. Files whose content is unchanged are not rewritten.
pub fn install_once(opts: &InstallOpts, previous: &Installed) -> Result<Installed, String> {
    if !opts.skip_multus_binary_copy && previous.conf.as_os_str().is_empty() {
        let from = match &opts.multus_bin_file {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
        };
        let to = opts.cni_bin_dir.join("multus");
        fs::copy_atomic(&from, &to, 0o755)
            .map_err(|e| format!("cannot install {} as {}: {e}", from.display(), to.display()))?;
        eprintln!("multus install: installed {}", to.display());
    }
    let token = write_kubeconfig(opts, &previous.token)?;
    let primary = conf_gen::find_primary(&opts.cni_conf_dir, opts.primary_config.as_deref())
        .map_err(|e| e.to_string())?;
    let primary_bytes = std::fs::read(&primary)
        .map_err(|e| format!("cannot read the primary config {}: {e}", primary.display()))?;
    let mut conf = previous.conf.clone();
    if primary != previous.primary || primary_bytes != previous.primary_bytes {
        let (name, bytes) = conf_gen::generate(&primary, &primary_bytes, &gen_options(opts))
            .map_err(|e: GenError| e.to_string())?;
        conf = opts.cni_conf_dir.join(&name);
        fs::write_atomic(&conf, &bytes, 0o644, fs::Durability::Durable)
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        // Only one Multus config may exist: the runtime would take the other one first.
        for other in ["00-multus.conf", "00-multus.conflist"] {
            if other != name {
                let _ = fs::remove_if_exists(&opts.cni_conf_dir.join(other));
            }
        }
        eprintln!(
            "multus install: wrote {} around {}",
            conf.display(),
            primary.display()
        );
    }
    Ok(Installed {
        conf,
        primary,
        primary_bytes,
        token,
    })
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn catch_stop_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for s in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            let _ = sigaction(s, &act);
        }
    }
}

/// `multus install`: one pass, then (with `--watch`) keep the files right until stopped.
pub fn install(opts: &InstallOpts) -> i32 {
    let mut state = match install_once(opts, &Installed::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("multus install: {e}");
            return 1;
        }
    };
    if !opts.watch {
        return 0;
    }
    catch_stop_signals();
    let poll = Duration::from_secs_f64(opts.poll_interval.clamp(0.05, 3600.0));
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(poll);
        match install_once(opts, &state) {
            Ok(s) => state = s,
            // A transient problem (primary config being rewritten, token not yet rotated in): say so, keep
            // the files as they are, and look again.
            Err(e) => eprintln!("multus install: {e} (keeping the current files)"),
        }
    }
    if opts.cleanup_config_on_exit {
        return uninstall(&UninstallOpts {
            cni_conf_dir: opts.cni_conf_dir.clone(),
        });
    }
    0
}

/// `multus uninstall`: removes the Multus config and kubeconfig so the runtime falls back to the primary
/// network. The binary stays: a runtime may still call it to DEL pods made while Multus was installed, and it
/// tears them down from its attachment cache.
pub fn uninstall(opts: &UninstallOpts) -> i32 {
    let mut status = 0;
    let dir = &opts.cni_conf_dir;
    for p in owned_files(dir) {
        match fs::remove_if_exists(&p) {
            Ok(true) => eprintln!("multus uninstall: removed {}", p.display()),
            Ok(false) => {}
            Err(e) => {
                eprintln!("multus uninstall: cannot remove {}: {e}", p.display());
                status = 1;
            }
        }
    }
    let _ = std::fs::remove_dir(dir.join("multus.d"));
    status
}

/// The files `uninstall` removes.
pub fn owned_files(conf_dir: &Path) -> Vec<PathBuf> {
    vec![
        conf_dir.join("00-multus.conf"),
        conf_dir.join("00-multus.conflist"),
        conf_dir.join("multus.d/multus.kubeconfig"),
    ]
}

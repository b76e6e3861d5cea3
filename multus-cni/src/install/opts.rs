//! What `multus install` and `multus uninstall` are told: upstream's flags in upstream's forms (clap), checked
//! once before anything is written, and what one install pass leaves for the next.

use clap::{ArgAction, Args};
use std::path::{Path, PathBuf};

use super::conf_gen::GenOptions;

/// A boolean flag as Go's `pflag` takes it: `--flag` alone is true, `--flag=<value>` takes what
/// `strconv.ParseBool` takes (`1`, `t`, `T`, `TRUE`, `true`, `True`, `0`, `f`, `F`, `FALSE`, `false`,
/// `False`).
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true or false)")),
    }
}

/// Where the Multus config is on the node, as `install` writes it and `uninstall` retires or removes it.
#[derive(Args, Debug, Clone)]
pub struct Placement {
    /// The host's CNI config directory, as mounted in this container (where the Multus config and
    /// multus.d/multus.kubeconfig are written).
    #[arg(long, default_value = "/host/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The same directory as the host (and so the container runtime and Multus itself) sees it: a retiring
    /// config names its own path on the host (ours).
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir_host: PathBuf,
    /// `auto`: generate the Multus config (00-multus.conf, or 00-multus.conflist from cniVersion 1.0.0 on)
    /// around the primary network's config; or a Multus config file to copy into --cni-conf-dir under its
    /// own name.
    #[arg(long, default_value = "auto")]
    pub multus_conf_file: String,
    /// Where the Multus cniDir (the attachment cache; /var/lib/cni/multus unless the config names another)
    /// is mounted in this container, to tell whether pods made with Multus remain (ours; default:
    /// `/host/<cniDir>` if it exists, else `<cniDir>`; when neither exists, they are assumed to remain).
    #[arg(long)]
    pub multus_cni_dir_in_container: Option<PathBuf>,
}

impl Placement {
    /// The names (in the conf dir) of the Multus config files this placement owns.
    pub(super) fn conf_names(&self) -> Vec<String> {
        if self.multus_conf_file == "auto" {
            vec!["00-multus.conf".into(), "00-multus.conflist".into()]
        } else {
            vec![Path::new(&self.multus_conf_file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()]
        }
    }

    pub(super) fn kubeconfig(&self) -> PathBuf {
        self.cni_conf_dir.join("multus.d").join("multus.kubeconfig")
    }
}

/// Options of `multus install`: every flag of upstream's thin entrypoint, with its default and meaning
/// (booleans also as `--flag=true|false`; a flag given twice takes its last value, as Go's flags do), and a
/// few of ours.
#[derive(Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct InstallOpts {
    /// Where the Multus config goes.
    #[command(flatten)]
    pub place: Placement,
    /// Where the primary network's config is looked for with --multus-conf-file=auto (default: --cni-conf-dir).
    #[arg(long)]
    pub multus_autoconfig_dir: Option<PathBuf>,
    /// The primary network's config file in --multus-autoconfig-dir (default: the alphabetically first
    /// *.conf, *.conflist or *.json there other than Multus' own).
    #[arg(long = "multus-master-cni-file-name", visible_alias = "primary-config")]
    pub primary_config: Option<String>,
    /// The host's CNI binary directory, as mounted in this container.
    #[arg(long, default_value = "/host/opt/cni/bin")]
    pub cni_bin_dir: PathBuf,
    /// The binary to install as `<cni-bin-dir>/multus` (default: this one).
    #[arg(long)]
    pub multus_bin_file: Option<PathBuf>,
    /// Do not copy the binary.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_multus_binary_copy: bool,
    /// Where the kubeconfig is on the host (the path written into the Multus config).
    #[arg(long, default_value = "/etc/cni/net.d/multus.d/multus.kubeconfig")]
    pub multus_kubeconfig_file_host: PathBuf,
    /// Write no kubeconfig and no `kubeconfig` key (a node without a cluster: kubeconfig-less mode; ours).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_kubeconfig: bool,
    /// The service account directory of this pod.
    #[arg(long, default_value = "/var/run/secrets/kubernetes.io/serviceaccount")]
    pub service_account_dir: PathBuf,
    /// `namespaceIsolation`.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub namespace_isolation: bool,
    /// `globalNamespaces` (comma-separated).
    #[arg(long)]
    pub global_namespaces: Option<String>,
    /// `logLevel`: debug, verbose, error or panic (also info, warning).
    #[arg(long)]
    pub multus_log_level: Option<String>,
    /// `logFile`.
    #[arg(long)]
    pub multus_log_file: Option<PathBuf>,
    /// `logToStderr` (false writes `"logToStderr": false`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", value_parser = go_bool, action = ArgAction::Set)]
    pub multus_log_to_stderr: bool,
    /// `readinessindicatorfile`.
    #[arg(long)]
    pub readiness_indicator_file: Option<PathBuf>,
    /// An extra directory for plugin binaries (`binDir`).
    #[arg(long)]
    pub additional_bin_dir: Option<PathBuf>,
    /// `preferNodeBinary` (ours): plugin types run from the node's binary instead of the built-in delegate
    /// (comma-separated; `*` for every type).
    #[arg(long)]
    pub prefer_node_binary: Option<String>,
    /// `cniVersion` of the Multus config (default: the primary config's).
    #[arg(long)]
    pub cni_version: Option<String>,
    /// Also give the primary network (the delegate) --cni-version.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub force_cni_version: bool,
    /// Name the Multus network after the primary network instead of multus-cni-network.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub override_network_name: bool,
    /// Rename the primary config to `<name>.old` once the Multus config is written (CRI-O).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub rename_conf_file: bool,
    /// Upstream's Multus-specific config directory: created, as upstream does (it is not written into the
    /// config: upstream writes it as "cniConf", a key no Multus reads).
    #[arg(long)]
    pub multus_cni_conf_dir: Option<PathBuf>,
    /// Refused: our API client always verifies the API server (upstream's hidden flag writes
    /// insecure-skip-tls-verify).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_tls_verify: bool,
    /// `cniDir` (the attachment cache) written into the config (ours; default: Multus' /var/lib/cni/multus).
    #[arg(long)]
    pub multus_cni_dir: Option<PathBuf>,
    /// Do not watch the files: write them once, then wait for SIGTERM or SIGINT.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub skip_config_watch: bool,
    /// On SIGTERM or SIGINT, uninstall (see `multus uninstall`) before exiting.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub cleanup_config_on_exit: bool,
    /// Accepted for compatibility: watching is the default.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub watch: bool,
    /// Write the files once and exit (ours: scripts and tests).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", value_parser = go_bool, action = ArgAction::Set)]
    pub once: bool,
    /// Seconds between two looks at the files while watching.
    #[arg(long, default_value_t = 1.0)]
    pub poll_interval: f64,
}

/// Options of `multus uninstall`.
#[derive(Args, Debug, Clone)]
#[command(args_override_self = true)]
pub struct UninstallOpts {
    /// Where the Multus config goes.
    #[command(flatten)]
    pub place: Placement,
}

/// What the last pass of install wrote and saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The Multus config file written, and its bytes.
    pub conf: PathBuf,
    pub(super) conf_bytes: Vec<u8>,
    /// The primary config it wraps (auto mode), and its bytes.
    pub primary: PathBuf,
    pub(super) primary_bytes: Vec<u8>,
    pub(super) primary_missing: bool,
    pub(super) kubeconfig_bytes: Vec<u8>,
    pub(super) binary_copied: bool,
}

const LOG_LEVELS: [&str; 6] = ["debug", "verbose", "info", "warning", "error", "panic"];

/// The option checks upstream makes before it writes anything (`verifyFileExists`, the log level), and
/// ours.
pub(super) fn validate(opts: &InstallOpts) -> Result<(), String> {
    if opts.skip_tls_verify {
        return Err("--skip-tls-verify is refused: multus-rs's API client always verifies the API server \
                    (a kubeconfig with insecure-skip-tls-verify is refused), so the service account's CA \
                    is written instead; drop the flag"
            .into());
    }
    if let Ok(p) = std::env::var("KUBERNETES_SERVICE_PROTOCOL") {
        if !opts.skip_kubeconfig && !p.is_empty() && p != "https" {
            return Err(format!(
                "KUBERNETES_SERVICE_PROTOCOL={p}: multus-rs's API client speaks https only"
            ));
        }
    }
    if !opts.place.cni_conf_dir.is_dir() {
        return Err(format!(
            "cni-conf-dir is not found: {}",
            opts.place.cni_conf_dir.display()
        ));
    }
    if !opts.skip_multus_binary_copy && !opts.cni_bin_dir.is_dir() {
        return Err(format!(
            "cni-bin-dir is not found: {}",
            opts.cni_bin_dir.display()
        ));
    }
    if let Some(b) = &opts.multus_bin_file {
        if !b.is_file() {
            return Err(format!("multus-bin-file is not found: {}", b.display()));
        }
    }
    if opts.place.multus_conf_file != "auto" && !Path::new(&opts.place.multus_conf_file).is_file() {
        return Err(format!(
            "multus-conf-file is not found: {}",
            opts.place.multus_conf_file
        ));
    }
    if let Some(l) = &opts.multus_log_level {
        if !LOG_LEVELS.contains(&l.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "Log levels should be one of: debug/verbose/error/panic, did not understand: {l:?}"
            ));
        }
    }
    if opts.force_cni_version && opts.cni_version.is_none() {
        return Err("--force-cni-version needs --cni-version: the version to force".into());
    }
    Ok(())
}

pub(super) fn gen_options(opts: &InstallOpts) -> GenOptions {
    GenOptions {
        cni_version: opts.cni_version.clone(),
        force_cni_version: opts.force_cni_version,
        override_network_name: opts.override_network_name,
        kubeconfig: (!opts.skip_kubeconfig).then(|| opts.multus_kubeconfig_file_host.clone()),
        namespace_isolation: opts.namespace_isolation,
        global_namespaces: opts.global_namespaces.clone(),
        log_level: opts
            .multus_log_level
            .as_ref()
            .map(|l| l.to_ascii_lowercase()),
        log_file: opts.multus_log_file.clone(),
        log_to_stderr: (!opts.multus_log_to_stderr).then_some(false),
        readiness_indicator_file: opts.readiness_indicator_file.clone(),
        additional_bin_dir: opts.additional_bin_dir.clone(),
        cni_dir: opts.multus_cni_dir.clone(),
        prefer_node_binary: opts
            .prefer_node_binary
            .as_deref()
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

//! The daemon from start to stop: see the crate documentation.

use crate::autoconf::{self, Change};
use crate::config::DaemonConfig;
use crate::{api_config, server, Daemon};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

/// Runs the daemon with the config file at `config_path`; the exit status (0 after SIGTERM or SIGINT,
/// 2 when the readiness indicator file went away, 1 on a start-up failure).
pub fn run(config_path: &Path) -> i32 {
    let cfg = match DaemonConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("multus-daemon: {e}");
            return 1;
        }
    };
    multus_cni::logging::init(&cfg.log_level, cfg.log_file.as_deref(), cfg.log_to_stderr);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("multus-daemon")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("multus-daemon: cannot start the runtime: {e}");
            return 1;
        }
    };
    let code = rt.block_on(async move {
        match lifecycle(cfg).await {
            Ok(code) => code,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("multus-daemon: {e}");
                1
            }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, String> {
        let s = |k| signal(k).map_err(|e| format!("signal handler: {e}"));
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Waits for `readinessindicatorfile` (as upstream before it starts); false when a signal came first.
async fn wait_readiness(cfg: &DaemonConfig, signals: &mut Signals) -> bool {
    let Some(f) = cfg.readiness_indicator_file.clone() else {
        return true;
    };
    let wait = async {
        while !f.exists() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = wait => true,
        _ = signals.next() => false,
    }
}

async fn lifecycle(cfg: DaemonConfig) -> Result<i32, String> {
    let started = Instant::now();
    let mut signals = Signals::new()?;
    multus_cni::builtins::set_exec_options(multus_core::delegate::external::ExecOptions {
        chroot: cfg.chroot_dir.clone(),
        die_with_parent: true,
    });
    if !wait_readiness(&cfg, &mut signals).await {
        return Ok(0);
    }
    let api = api_config(&cfg)?;
    let d = Daemon::new(cfg, api);
    multus_cni::builtins::set_delegate_observer(d.metrics.clone());
    d.start_reflectors();
    let listener = d.bind_socket()?;
    tokio::spawn(server::serve_socket(d.clone(), listener));
    if let Some(port) = d.cfg.metrics_port {
        let addr = format!("{}:{port}", d.cfg.metrics_bind_address);
        let l = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("metrics port {addr}: {e}"))?;
        tokio::spawn(server::serve_metrics(d.clone(), l));
    }
    tokio::spawn(log_ready(d.clone(), started));
    autoconf::install_shim(&d.cfg)?;
    let cfg = d.cfg.clone();
    let (dest, mut primary) = tokio::task::spawn_blocking(move || autoconf::write_once(&cfg))
        .await
        .map_err(|e| e.to_string())??;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let code = loop {
        tokio::select! {
            _ = signals.next() => break 0,
            _ = tick.tick() => {
                if autoconf::check(&d.cfg, &dest, &mut primary) == Change::Unready {
                    break 2;
                }
            }
        }
    };
    Ok(stop(&d, code).await)
}

async fn log_ready(d: Arc<Daemon>, started: Instant) {
    while !d.ready() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tracing::info!(
        "ready {} ms after start: {} pods, {} NADs in the cache",
        started.elapsed().as_millis(),
        d.cache.len(crate::cache::Resource::Pods),
        d.cache.len(crate::cache::Resource::Nads)
    );
}

/// The shutdown: not ready, no new connection, requests in flight drained, the config taken off the node
/// when asked, by `multus uninstall`'s own code: removed when no attachment is cached, else rewritten as a
/// retiring config that the thin meta-plugin (`multus`, installed beside the shim) serves until the last
/// pod made with Multus is deleted.
async fn stop(d: &Arc<Daemon>, code: i32) -> i32 {
    tracing::info!("stopping: {} requests in flight", d.in_flight());
    d.shutdown();
    d.close_socket();
    if !d.drain(d.cfg.drain_timeout).await {
        tracing::warn!(
            "{} requests still in flight after {:?}; exiting",
            d.in_flight(),
            d.cfg.drain_timeout
        );
    }
    if d.cfg.cleanup_config_on_exit {
        let opts = multus_cni::install::UninstallOpts {
            place: multus_cni::install::Placement {
                cni_conf_dir: d.cfg.cni_config_dir.clone(),
                cni_conf_dir_host: d.cfg.cni_config_dir_host.clone(),
                multus_conf_file: d.cfg.multus_config_file.clone(),
                multus_cni_dir_in_container: Some(cache_dir(&d.cfg)),
            },
        };
        if multus_cni::install::uninstall(&opts) != 0 {
            tracing::warn!(
                "could not take the Multus config off {}",
                d.cfg.cni_config_dir.display()
            );
        }
    }
    code
}

/// Where this daemon keeps the attachments' cache, as it sees it: the `cniDir` of the requests it serves
/// (the daemon config's, laid over every request; else, for a `multusConfigFile` of the user's, that
/// file's; else the default). The uninstall code is told so: a directory that does not exist here means
/// this daemon never cached an attachment, and the config is removed rather than left retiring.
fn cache_dir(cfg: &DaemonConfig) -> PathBuf {
    let own = cfg.raw.get("cniDir").and_then(|v| v.as_str());
    if let Some(dir) = own.filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let users = (!cfg.is_auto())
        .then(|| std::fs::read(&cfg.multus_config_file).ok())
        .flatten();
    users
        .and_then(|b| multus_cni::install::retire::cni_dir_of(&b))
        .unwrap_or_else(|| multus_cni::meta::conf::DEFAULT_CNI_DIR.into())
}

/// What the command line asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Run with this config file.
    Run(PathBuf),
    /// Only check that the config file is valid (ours: `-check`).
    Check(PathBuf),
    /// Print the version.
    Version,
}

/// Upstream's `-config FILE` (default upstream's path) and `-version`; ours `-check`.
pub fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let mut path = None;
    let mut check = false;
    while let Some(a) = it.next() {
        match a.trim_start_matches('-') {
            "config" => path = Some(PathBuf::from(it.next().ok_or("-config needs a path")?)),
            s if s.starts_with("config=") => path = Some(PathBuf::from(&s["config=".len()..])),
            "version" | "v" => return Ok(Args::Version),
            "check" => check = true,
            _ => {
                return Err(format!(
                    "unknown argument {a:?} (usage: multus-daemon [-config FILE] [-check])"
                ))
            }
        }
    }
    let path = path.unwrap_or_else(|| crate::config::DEFAULT_CONFIG_FILE.into());
    Ok(if check {
        Args::Check(path)
    } else {
        Args::Run(path)
    })
}

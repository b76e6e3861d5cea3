//! # multus-daemon
//!
//! The thick Multus plugin's per-node daemon, compatible with upstream's `multus-daemon` and
//! `multus-shim`: the shim (the `multus` binary started as `multus-shim`) forwards each CNI call over
//! `<socketDir>/multus.sock`, and the daemon runs the one meta-plugin flow, [`multus_cni::meta::Meta`],
//! in-process for it, with built-in delegates in-process too (no fork/exec for macvlan, ipvlan,
//! bridge, host-local, sriov, dpdk) and other plugins executed as in thin mode, inside `chrootDir` when set.
//!
//! - [`config`]: `daemon-config.json` (upstream's keys and ours);
//! - [`autoconf`]: the node's `00-multus.conf` for the shim, kept in step with the primary network;
//! - [`cache`] and [`reflector`]: the watch cache of this node's pods and all NADs (LIST+WATCH);
//! - [`handler`]: `POST /cni` through [`multus_cni::meta::Meta`], one pod's requests in order;
//! - [`delegate`]: `POST /delegate` (hot-plug of one network, as upstream's);
//! - [`server`]: the unix socket and the metrics port; [`metrics`]: what Prometheus scrapes.
//!
//! Start to stop ([`run()`]): the readiness indicator file, the API client, the reflectors, the socket, the
//! config file, then serving; SIGTERM or SIGINT: not ready, no new connection, the requests in flight
//! finish (within `drainTimeout`), the config is taken off the node when `cleanupConfigOnExit` asks.
//!
//! An embedder checks a `daemon-config.json` and sees the config the shim will get, without running
//! anything:
//!
//! ```
//! use multus_daemon::{autoconf, config::DaemonConfig};
//! use std::path::Path;
//!
//! let cfg = DaemonConfig::parse(br#"{"chrootDir": "/hostroot", "metricsPort": 9091, "cniDir": "/var/lib/cni/multus"}"#)?;
//! assert_eq!(cfg.chroot_dir.as_deref(), Some(Path::new("/hostroot")));
//! let primary = br#"{"cniVersion": "0.3.1", "name": "podnet", "type": "bridge"}"#;
//! let shim = autoconf::generate(&cfg, Path::new("/etc/cni/net.d/10-podnet.conf"), primary)?;
//! assert_eq!(shim["type"], "multus-shim");
//! assert_eq!(shim["clusterNetwork"], "/etc/cni/net.d/10-podnet.conf");
//! assert_eq!(shim["cniDir"], "/var/lib/cni/multus");
//! # Ok::<(), String>(())
//! ```
//!
//! and runs the daemon as `multus-daemon -config FILE` does, until SIGTERM:
//!
//! ```no_run
//! let status = multus_daemon::run(std::path::Path::new("/etc/cni/net.d/multus.d/daemon-config.json"));
//! std::process::exit(status);
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod autoconf;
pub mod cache;
pub mod config;
pub mod delegate;
pub mod handler;
pub mod metrics;
pub mod reflector;
pub mod server;

use cache::{Resource, WatchCache};
use config::DaemonConfig;
use handler::{ClientPool, PodLocks};
use metrics::Metrics;
use multus_k8s::client::ClientConfig;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The daemon's shared state.
pub struct Daemon {
    /// Its configuration.
    pub cfg: DaemonConfig,
    /// The watch cache.
    pub cache: Arc<WatchCache>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// API clients for the requests.
    pub pool: ClientPool,
    /// One lock per pod.
    pub locks: Arc<PodLocks>,
    /// What `kubeconfig` says in the requests' Multus configs (the daemon's API access).
    pub kubeconfig_label: String,
    in_flight: AtomicUsize,
    idle: Notify,
    socket_open: AtomicBool,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("cfg", &self.cfg)
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Daemon);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Daemon {
    /// The daemon's state for `cfg`, reaching the API with `api`.
    pub fn new(cfg: DaemonConfig, mut api: ClientConfig) -> Arc<Daemon> {
        let metrics = Arc::new(Metrics::new());
        let m = metrics.clone();
        api.observer = Some(Arc::new(move |verb, status| m.api_request(verb, status)));
        api.status_patch = true;
        api.request_timeout = cfg.api_request_timeout;
        let kubeconfig_label = cfg
            .kubeconfig
            .as_ref()
            .map_or_else(|| "in-cluster".to_string(), |p| p.display().to_string());
        Arc::new(Daemon {
            cfg,
            cache: Arc::new(WatchCache::default()),
            metrics,
            pool: ClientPool::new(api),
            locks: Arc::new(PodLocks::default()),
            kubeconfig_label,
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            socket_open: AtomicBool::new(false),
            stop: watch::channel(false).0,
        })
    }

    /// Ready: the cache listed both resources, the socket is open, shutdown has not started.
    pub fn ready(&self) -> bool {
        self.cache.synced() && self.socket_open.load(Ordering::SeqCst) && !*self.stop.borrow()
    }

    /// A request begins (ends when the token drops).
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self)
    }

    /// Requests being served.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// A receiver that sees `true` once shutdown starts.
    pub fn stop_rx(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Starts the shutdown: not ready, servers and reflectors stop.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// Waits until no request is in flight, at most `bound`; whether none is.
    pub async fn drain(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let idle = self.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline.into(), idle)
                .await
                .is_err()
            {
                return self.in_flight() == 0;
            }
        }
    }

    /// Starts one reflector per resource.
    pub fn start_reflectors(self: &Arc<Self>) {
        for resource in [Resource::Pods, Resource::Nads] {
            let r = reflector::Reflector {
                resource,
                node: self.cfg.node_name.clone(),
                client: self.pool.fresh(),
                cache: self.cache.clone(),
                metrics: self.metrics.clone(),
                stop: self.stop_rx(),
            };
            tokio::spawn(r.run());
        }
    }

    /// Binds `multus.sock` (the directory made 0700 if missing, a stale socket replaced, the socket 0600).
    pub fn bind_socket(&self) -> Result<tokio::net::UnixListener, String> {
        use std::os::unix::fs::PermissionsExt;
        let sock = self.cfg.socket_path();
        let dir = &self.cfg.socket_dir;
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let _ = std::fs::remove_file(&sock);
        let l = tokio::net::UnixListener::bind(&sock)
            .map_err(|e| format!("listening on {}: {e}", sock.display()))?;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("{}: {e}", sock.display()))?;
        self.socket_open.store(true, Ordering::SeqCst);
        Ok(l)
    }

    /// Closes the socket: no new connection, the file removed.
    pub fn close_socket(&self) {
        self.socket_open.store(false, Ordering::SeqCst);
        let _ = std::fs::remove_file(self.cfg.socket_path());
    }
}

/// The API access of the daemon: its `kubeconfig`, else the in-cluster service account.
pub fn api_config(cfg: &DaemonConfig) -> Result<ClientConfig, String> {
    let c = match &cfg.kubeconfig {
        Some(k) => ClientConfig::from_kubeconfig(k),
        None => ClientConfig::in_cluster(Path::new(multus_k8s::client::SERVICE_ACCOUNT_DIR)),
    };
    c.map_err(|e| e.msg)
}

pub mod run;
pub use run::run;

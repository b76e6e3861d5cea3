//! `multus install` and `multus uninstall`: what the DaemonSet's container runs on each node (upstream's
//! thin entrypoint, `cmd/thin_entrypoint`, with its flags), and how Multus is taken off a node again without
//! leaking what it attached.
//!
//! - [`conf_gen`]: the Multus config around the primary config (pure).
//! - [`kubeconfig`]: the kubeconfig from the pod's service account (pure).
//! - [`retire`]: the retiring config `uninstall` leaves while pods made with Multus remain, and how the
//!   meta-plugin removes it after the last of them.
//!
//! `install` keeps running as upstream's entrypoint does: it watches the primary config, the Multus config
//! and the kubeconfig (unless `--skip-config-watch`, then it only waits) until SIGTERM or SIGINT, and with
//! `--cleanup-config-on-exit` uninstalls then.

pub mod conf_gen;
pub mod kubeconfig;
mod opts;
pub mod retire;

use opts::{gen_options, validate};
pub use opts::{go_bool, InstallOpts, Installed, Placement, UninstallOpts};

use multus_core::fs;

use conf_gen::GenError;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Writes the kubeconfig when it is not what the service account says now (token rotated, CA changed,
/// file removed); returns what it holds.
fn write_kubeconfig(opts: &InstallOpts, previous: &[u8]) -> Result<Vec<u8>, String> {
    if opts.skip_kubeconfig {
        return Ok(Vec::new());
    }
    let host = std::env::var("KUBERNETES_SERVICE_HOST").ok();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").ok();
    let sa = kubeconfig::ServiceAccount::read(
        &opts.service_account_dir,
        host.as_deref(),
        port.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let text = kubeconfig::render(&sa).into_bytes();
    let path = opts.place.kubeconfig();
    if text != previous || std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
        fs::write_atomic(&path, &text, 0o600, fs::Durability::Durable)
            .map_err(|e| format!("cannot write the kubeconfig {}: {e}", path.display()))?;
        eprintln!("multus install: wrote {}", path.display());
    }
    Ok(text)
}

/// Writes `bytes` as the Multus config `path` unless it already holds them, under the conf dir's lock.
/// Returns whether it wrote.
fn write_conf(dir: &Path, path: &Path, bytes: &[u8]) -> Result<bool, String> {
    let _lock = retire::ConfDirLock::take(dir, Duration::from_secs(30))
        .map_err(|e| format!("cannot lock {}: {e}", dir.display()))?;
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(false);
    }
    fs::write_atomic(path, bytes, 0o644, fs::Durability::Durable)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(true)
}

/// One pass: binary (first pass), kubeconfig, Multus config. Files whose content is right are not
/// rewritten; a Multus config someone else changed or removed (a retiring one, say) is written again.
pub fn install_once(opts: &InstallOpts, previous: &Installed) -> Result<Installed, String> {
    let mut now = previous.clone();
    if !opts.skip_multus_binary_copy && !previous.binary_copied {
        copy_binary(opts)?;
        now.binary_copied = true;
    }
    now.kubeconfig_bytes = write_kubeconfig(opts, &previous.kubeconfig_bytes)?;
    if opts.place.multus_conf_file != "auto" {
        return copy_user_conf(opts, now);
    }
    // The primary config wrapped before is gone: wait for it to come back, as upstream does (with
    // --rename-conf-file, we renamed it ourselves).
    if !previous.primary.as_os_str().is_empty() && !previous.primary.exists() {
        if !previous.primary_missing {
            eprintln!(
                "multus install: the primary config {} has been deleted; waiting for its restoration",
                previous.primary.display()
            );
        }
        now.primary_missing = true;
        return Ok(now);
    }
    if previous.primary_missing {
        eprintln!(
            "multus install: the primary config {} was restored",
            previous.primary.display()
        );
        now.primary_missing = false;
    }
    wrap_primary(opts, previous, now)
}

/// Copies this binary (or `--multus-bin-file`) into the CNI bin dir as `multus`.
fn copy_binary(opts: &InstallOpts) -> Result<(), String> {
    let from = match &opts.multus_bin_file {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?,
    };
    let to = opts.cni_bin_dir.join("multus");
    fs::copy_atomic(&from, &to, 0o755)
        .map_err(|e| format!("cannot install {} as {}: {e}", from.display(), to.display()))?;
    eprintln!("multus install: installed {}", to.display());
    Ok(())
}

/// A config of the user's own (`--multus-conf-file=<path>`, upstream's ConfigMap way), copied as it is.
fn copy_user_conf(opts: &InstallOpts, mut now: Installed) -> Result<Installed, String> {
    let dir = &opts.place.cni_conf_dir;
    let from = PathBuf::from(&opts.place.multus_conf_file);
    let bytes = std::fs::read(&from)
        .map_err(|e| format!("cannot read multus-conf-file {}: {e}", from.display()))?;
    let name = opts.place.conf_names().remove(0);
    let conf = dir.join(&name);
    if write_conf(dir, &conf, &bytes)? {
        eprintln!(
            "multus install: multus config file {} is copied to {}",
            from.display(),
            conf.display()
        );
    }
    now.conf = conf;
    now.conf_bytes = bytes;
    Ok(now)
}

/// `--multus-conf-file=auto`: the Multus config generated around the primary network's config (again only
/// when the primary changed), the only Multus config in the directory; the primary renamed when asked.
fn wrap_primary(
    opts: &InstallOpts,
    previous: &Installed,
    mut now: Installed,
) -> Result<Installed, String> {
    let dir = &opts.place.cni_conf_dir;
    let auto_dir = opts.multus_autoconfig_dir.as_ref().unwrap_or(dir);
    let primary = conf_gen::find_primary(auto_dir, opts.primary_config.as_deref())
        .map_err(|e| e.to_string())?;
    let primary_bytes = std::fs::read(&primary)
        .map_err(|e| format!("cannot read the primary config {}: {e}", primary.display()))?;
    let (name, bytes) = if primary != previous.primary || primary_bytes != previous.primary_bytes {
        conf_gen::generate(&primary, &primary_bytes, &gen_options(opts))
            .map_err(|e: GenError| e.to_string())?
    } else {
        let name = previous
            .conf
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        (name, previous.conf_bytes.clone())
    };
    let conf = dir.join(&name);
    if write_conf(dir, &conf, &bytes)? {
        eprintln!(
            "multus install: wrote {} around {}",
            conf.display(),
            primary.display()
        );
    }
    // Only one Multus config may exist: the runtime would take the other one first.
    for other in opts.place.conf_names() {
        if other != name {
            let _ = fs::remove_if_exists(&dir.join(other));
        }
    }
    if opts.rename_conf_file {
        let old = PathBuf::from(format!("{}.old", primary.display()));
        std::fs::rename(&primary, &old).map_err(|e| {
            format!(
                "cannot move {} to {}: {e}",
                primary.display(),
                old.display()
            )
        })?;
        eprintln!(
            "multus install: the primary config is moved to {}",
            old.display()
        );
    }
    now.conf = conf;
    now.conf_bytes = bytes;
    now.primary = primary;
    now.primary_bytes = primary_bytes;
    Ok(now)
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

/// Sleeps `d`, or less when a stop signal comes.
fn sleep_unless_stopped(d: Duration) {
    let step = Duration::from_millis(50);
    let mut left = d;
    while !STOP.load(Ordering::SeqCst) && !left.is_zero() {
        let s = left.min(step);
        std::thread::sleep(s);
        left -= s;
    }
}

/// `multus install`: one pass, then (unless `--once`) keep the files right until SIGTERM or SIGINT.
pub fn install(opts: &InstallOpts) -> i32 {
    if let Err(e) = validate(opts) {
        eprintln!("multus install: {e}");
        return 1;
    }
    if let Some(d) = &opts.multus_cni_conf_dir {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!(
                "multus install: cannot create multus-cni-conf-dir {}: {e}",
                d.display()
            );
            return 1;
        }
    }
    catch_stop_signals();
    let mut state = match install_once(opts, &Installed::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("multus install: {e}");
            return 1;
        }
    };
    if opts.once {
        return 0;
    }
    let poll = Duration::from_secs_f64(opts.poll_interval.clamp(0.05, 3600.0));
    if opts.skip_config_watch {
        eprintln!(
            "multus install: not watching the files (--skip-config-watch); waiting for SIGTERM"
        );
    }
    while !STOP.load(Ordering::SeqCst) {
        sleep_unless_stopped(poll);
        if opts.skip_config_watch || STOP.load(Ordering::SeqCst) {
            continue;
        }
        match install_once(opts, &state) {
            Ok(s) => state = s,
            // A transient problem (primary config being rewritten, token not yet rotated in): say so, keep
            // the files as they are, and look again.
            Err(e) => eprintln!("multus install: {e} (keeping the current files)"),
        }
    }
    if opts.cleanup_config_on_exit {
        return uninstall(&UninstallOpts {
            place: opts.place.clone(),
        });
    }
    0
}

/// Where the `cniDir` (host path) is seen in this container: the flag, else `/host/<cniDir>`, else
/// `<cniDir>` itself, whichever exists.
fn cni_dir_here(place: &Placement, host: &Path) -> Option<PathBuf> {
    if let Some(d) = &place.multus_cni_dir_in_container {
        return Some(d.clone());
    }
    let under_host = Path::new("/host").join(host.strip_prefix("/").unwrap_or(host));
    [under_host, host.to_path_buf()]
        .into_iter()
        .find(|p| p.is_dir())
}

/// The node's primary config, as a delegate for a retiring config that names none.
fn fallback_primary(place: &Placement, own: &str) -> Option<serde_json::Value> {
    let p = conf_gen::find_primary(&place.cni_conf_dir, None).ok()?;
    if p.file_name()?.to_string_lossy() == own {
        return None;
    }
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Retires or removes one Multus config file; returns false on a failure (said on stderr).
fn uninstall_conf(place: &Placement, name: &str) -> bool {
    let dir = &place.cni_conf_dir;
    let path = dir.join(name);
    let _lock = match retire::ConfDirLock::take(dir, Duration::from_secs(30)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("multus uninstall: cannot lock {}: {e}", dir.display());
            return false;
        }
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
        Err(e) => {
            eprintln!("multus uninstall: cannot read {}: {e}", path.display());
            return false;
        }
    };
    let remove = |why: &str| match fs::remove_if_exists(&path) {
        Ok(_) => {
            eprintln!("multus uninstall: removed {} ({why})", path.display());
            true
        }
        Err(e) => {
            eprintln!("multus uninstall: cannot remove {}: {e}", path.display());
            false
        }
    };
    let Some(cni_dir) = retire::cni_dir_of(&bytes) else {
        return remove("it is not a Multus config any runtime could use");
    };
    let cached = match cni_dir_here(place, &cni_dir) {
        Some(here) => match retire::cached_attachments(&here) {
            Ok(v) if v.is_empty() => {
                return remove(&format!(
                    "no attachment is cached in {}",
                    here.display()
                ))
            }
            Ok(v) => format!("{} attachments are cached in {}", v.len(), here.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return remove(&format!("{} does not exist", here.display()))
            }
            Err(e) => format!("cannot list {}: {e}", here.display()),
        },
        None => format!(
            "the cniDir {} is not mounted in this container (--multus-cni-dir-in-container), so pods made \
             with Multus may remain",
            cni_dir.display()
        ),
    };
    let host_path = place.cni_conf_dir_host.join(name);
    let retiring = match retire::retiring_config(&bytes, &host_path, fallback_primary(place, name))
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!(
                    "multus uninstall: cannot leave {} retiring: {e}; pods made with Multus will not be undone \
                     by the runtime",
                    path.display()
                );
            return remove(&cached);
        }
    };
    match fs::write_atomic(&path, &retiring, 0o644, fs::Durability::Durable) {
        Ok(()) => {
            eprintln!(
                "multus uninstall: {cached}: rewrote {} as a retiring config (new pods get the primary network \
                 alone through it; pods made with Multus are undone from the cache; the meta-plugin removes it \
                 after the last of them)",
                path.display()
            );
            true
        }
        Err(e) => {
            eprintln!("multus uninstall: cannot write {}: {e}", path.display());
            false
        }
    }
}

/// `multus uninstall`: takes Multus off the node's runtime path without leaking what it attached. With no
/// attachment cached in the config's `cniDir`, the Multus config is removed and the runtime falls back to
/// the primary network; otherwise it is rewritten in place as a retiring config ([`retire`]). The
/// kubeconfig is removed either way. The binary stays: the runtime still runs it for pods made before.
pub fn uninstall(opts: &UninstallOpts) -> i32 {
    let mut ok = true;
    for name in opts.place.conf_names() {
        ok &= uninstall_conf(&opts.place, &name);
    }
    let kc = opts.place.kubeconfig();
    match fs::remove_if_exists(&kc) {
        Ok(true) => eprintln!("multus uninstall: removed {}", kc.display()),
        Ok(false) => {}
        Err(e) => {
            eprintln!("multus uninstall: cannot remove {}: {e}", kc.display());
            ok = false;
        }
    }
    let _ = std::fs::remove_dir(opts.place.cni_conf_dir.join("multus.d"));
    if ok {
        0
    } else {
        1
    }
}

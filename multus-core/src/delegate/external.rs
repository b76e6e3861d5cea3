//! Running a plugin binary exactly as a container runtime does: `CNI_*` environment, the config on stdin,
//! a result or a CNI error on stdout, stderr into our log, and a timeout; optionally chrooted (the thick
//! daemon's `chrootDir`, as upstream's `ChrootExec`), its path then being the one inside the chroot.

use super::{Context, Delegate};
use crate::cni::{CniError, CniResult, Command, ErrorCode, PluginConf};
use async_trait::async_trait;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How plugin binaries are started, beyond what a runtime does (set for the whole registry).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Run chrooted here (the thick daemon's `chrootDir`); the binary's path is the one inside.
    pub chroot: Option<PathBuf>,
    /// Kill the plugin (SIGKILL) when the thread that started it ends, e.g. when the long-running daemon
    /// dies mid-ADD: an orphaned plugin would otherwise finish its ADD after the DEL that follows.
    pub die_with_parent: bool,
}

/// A plugin binary on disk.
#[derive(Debug, Clone)]
pub struct ExternalPlugin {
    path: PathBuf,
    timeout: Duration,
    exec: ExecOptions,
}

/// What one run of a plugin binary gave back.
#[derive(Debug)]
struct Output {
    stdout: Vec<u8>,
}

impl ExternalPlugin {
    /// A plugin at `path`, killed after `timeout`.
    pub fn new(path: PathBuf, timeout: Duration) -> Self {
        ExternalPlugin {
            path,
            timeout,
            exec: ExecOptions::default(),
        }
    }

    /// Starts the binary with these options.
    pub fn with_exec(mut self, exec: ExecOptions) -> Self {
        self.exec = exec;
        self
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Runs the binary for `command` with `stdin` and the context's environment.
    async fn exec(
        &self,
        ctx: &Context,
        command: Command,
        stdin: &[u8],
    ) -> Result<Output, CniError> {
        let name = self.name();
        let child = self
            .command(ctx, command)?
            .spawn()
            .map_err(|e| CniError::io(format!("cannot run plugin {}: {e}", self.path.display())))?;
        let Some((status, stdout, stderr)) = run_bounded(child, stdin, self.timeout).await else {
            return Err(CniError::new(
                ErrorCode::DelegateTimeout,
                format!(
                    "plugin {name} did not finish {command} within {:?} and was killed",
                    self.timeout
                ),
            ));
        };
        let stderr_text = String::from_utf8_lossy(&stderr);
        for line in stderr_text.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(plugin = %name, command = %command, "{line}");
        }
        let status = status.map_err(|e| CniError::io(format!("waiting for plugin {name}: {e}")))?;
        if status.success() {
            return Ok(Output { stdout });
        }
        Err(failure(&name, status, &stdout, &stderr_text))
    }

    /// The plugin's command: the CNI variables of `command` (the runtime's own removed), `CNI_PATH`, pipes, its
    /// own process group, and `chrootDir` / die-with-parent applied between fork and exec.
    fn command(
        &self,
        ctx: &Context,
        command: Command,
    ) -> Result<tokio::process::Command, CniError> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.env("CNI_COMMAND", command.as_str());
        for k in [
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_ARGS",
            "CNI_PATH",
        ] {
            cmd.env_remove(k);
        }
        if command.is_per_attachment() {
            cmd.env("CNI_CONTAINERID", &ctx.container_id)
                .env("CNI_IFNAME", &ctx.ifname);
            if let Some(ns) = &ctx.netns {
                cmd.env("CNI_NETNS", ns);
            }
            if !ctx.args.is_empty() {
                cmd.env("CNI_ARGS", ctx.args.render());
            }
        }
        let path: Vec<String> = ctx
            .registry
            .bin_dirs_for_path()
            .iter()
            .chain(ctx.cni_path.iter())
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        cmd.env("CNI_PATH", path.join(":"));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group, so that a timeout kills whatever the plugin started too.
            .process_group(0);
        if self.exec.chroot.is_some() || self.exec.die_with_parent {
            let root = self.exec.chroot.as_deref().map(root_path).transpose()?;
            let die = self.exec.die_with_parent;
            // SAFETY: between fork and exec only async-signal-safe calls (prctl, chroot, chdir) on memory
            // prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if die && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    if let Some(root) = &root {
                        if !enter_root(root) {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        Ok(cmd)
    }
}

/// What a finished plugin gave back: its exit status, stdout and stderr.
type Finished = (std::io::Result<std::process::ExitStatus>, Vec<u8>, Vec<u8>);

/// Feeds `stdin` to the plugin and collects its output until it exits, within `timeout`; past it, kills the
/// plugin's whole process group and returns `None`.
async fn run_bounded(
    mut child: tokio::process::Child,
    stdin: &[u8],
    timeout: std::time::Duration,
) -> Option<Finished> {
    let pgid = child.id();
    let mut child_in = child.stdin.take();
    let mut child_out = child.stdout.take();
    let mut child_err = child.stderr.take();
    let input = stdin.to_vec();
    let run = async move {
        let write = async {
            if let Some(mut w) = child_in.take() {
                // A plugin may exit without reading its stdin (VERSION); a broken pipe is not an error.
                let _ = w.write_all(&input).await;
                let _ = w.shutdown().await;
            }
        };
        let read_out = async {
            let mut buf = Vec::new();
            if let Some(r) = child_out.as_mut() {
                let _ = r.read_to_end(&mut buf).await;
            }
            buf
        };
        let read_err = async {
            let mut buf = Vec::new();
            if let Some(r) = child_err.as_mut() {
                let _ = r.read_to_end(&mut buf).await;
            }
            buf
        };
        let ((), out, err) = tokio::join!(write, read_out, read_err);
        let status = child.wait().await;
        (status, out, err)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(r) => Some(r),
        Err(_) => {
            if let Some(pid) = pgid.and_then(|p| i32::try_from(p).ok()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            None
        }
    }
}

/// The CNI error of a plugin that exited non-zero: its own CNI error from stdout, else code 100 naming how it
/// ended, with the tail of its stderr.
fn failure(name: &str, status: std::process::ExitStatus, stdout: &[u8], stderr: &str) -> CniError {
    if let Some(mut e) = CniError::from_json(stdout) {
        if e.msg.is_empty() {
            e.msg = format!("plugin {name} failed");
        }
        return e;
    }
    let how = match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => {
            use std::os::unix::process::ExitStatusExt;
            format!("was killed by signal {}", status.signal().unwrap_or(0))
        }
    };
    let mut msg = format!("plugin {name} {how} without a CNI error");
    let tail = stderr.trim();
    if !tail.is_empty() {
        let start = tail.len().saturating_sub(400);
        let start = (start..tail.len())
            .find(|&i| tail.is_char_boundary(i))
            .unwrap_or(tail.len());
        msg.push_str(&format!("; stderr: {}", &tail[start..]));
    }
    CniError::new(ErrorCode::DelegateFailed, msg).with_details(snippet(stdout))
}

/// `chrootDir` as the path the `chroot` call takes.
pub(super) fn root_path(root: &Path) -> Result<std::ffi::CString, CniError> {
    std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
        .map_err(|_| CniError::invalid_config("chrootDir holds a NUL byte"))
}

/// Makes `root` the calling thread's root and working directory (`chroot`, `chdir /`); false on a failure
/// (then in `errno`). Async-signal-safe: also called between fork and exec.
pub(super) fn enter_root(root: &std::ffi::CStr) -> bool {
    // SAFETY: a valid NUL-terminated path and a constant one.
    unsafe { libc::chroot(root.as_ptr()) == 0 && libc::chdir(c"/".as_ptr()) == 0 }
}

/// A printable start of some bytes, for error details.
fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[async_trait]
impl Delegate for ExternalPlugin {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let out = self.exec(ctx, Command::Add, &conf.to_bytes()).await?;
        let mut result = CniResult::from_json(&out.stdout).map_err(|e| {
            CniError::new(
                ErrorCode::DelegateBadOutput,
                format!(
                    "plugin {} returned a result that cannot be decoded: {}",
                    self.name(),
                    e.msg
                ),
            )
            .with_details(snippet(&out.stdout))
        })?;
        if result.cni_version.is_empty() {
            result.cni_version = conf.cni_version().unwrap_or_default().to_string();
        }
        Ok(result)
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.exec(ctx, Command::Check, &conf.to_bytes())
            .await
            .map(|_| ())
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.exec(ctx, Command::Del, &conf.to_bytes())
            .await
            .map(|_| ())
    }

    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.exec(ctx, Command::Status, &conf.to_bytes())
            .await
            .map(|_| ())
    }

    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.exec(ctx, Command::Gc, &conf.to_bytes())
            .await
            .map(|_| ())
    }
}

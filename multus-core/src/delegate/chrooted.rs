//! Built-in delegates inside `chrootDir`: the thick daemon runs in a container whose files are not the
//! host's, with the host's root mounted at `chrootDir`. A plugin binary is simply started chrooted there
//! (see [`external`](super::external)); a built-in delegate runs in the daemon's own process, so each of its
//! verbs runs on a new OS thread that first takes its own filesystem context (`unshare(CLONE_FS)`) and
//! `chroot`s into `chrootDir`. Every path the built-in resolves (a host-local `dataDir`, `CNI_NETNS`, sysfs,
//! device-info files, the binaries it runs in turn) is then the host's, exactly as for a plugin binary; the
//! daemon's other threads keep their root. The thread runs the verb on its own single-threaded runtime and
//! ends with it, as the netns threads do, so no thread of a pool is ever left chrooted.
//!
//! Inside, the delegate's context carries a registry without `chrootDir`: what it resolves in turn (its IPAM
//! plugin, built-in or binary) runs on the same thread or is started from it, already inside.

use super::external::{enter_root, root_path};
use super::{run_verb, Context, Delegate, KnownKeys};
use crate::cni::{CniError, CniResult, Command, PluginConf};
use async_trait::async_trait;
use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;

/// A built-in delegate whose verbs run chrooted into a directory (the thick daemon's `chrootDir`).
pub struct Chrooted {
    inner: Arc<dyn Delegate>,
    root: CString,
}

impl Chrooted {
    /// Wraps `inner` so that it runs inside `root`.
    pub fn new(inner: Arc<dyn Delegate>, root: &Path) -> Result<Self, CniError> {
        Ok(Chrooted {
            inner,
            root: root_path(root)?,
        })
    }

    /// Runs one verb of the inner delegate on a thread chrooted into the root; `None` for the verbs
    /// without a result.
    async fn run(
        &self,
        command: Command,
        ctx: &Context,
        conf: &PluginConf,
    ) -> Result<Option<CniResult>, CniError> {
        let mut inside = ctx.clone();
        inside.registry = Arc::new(ctx.registry.inside_chroot());
        let conf = conf.clone();
        let inner = self.inner.clone();
        let root = self.root.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("multus-chroot".into())
            .spawn(move || {
                let r = enter(&root).and_then(|()| {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| CniError::io(format!("cannot start a runtime: {e}")))?;
                    let r = rt.block_on(run_verb(inner.as_ref(), command, &inside, &conf));
                    rt.shutdown_background();
                    r
                });
                let _ = tx.send(r);
            })
            .map_err(|e| CniError::io(format!("cannot start a thread: {e}")))?;
        rx.await.unwrap_or_else(|_| {
            Err(CniError::io(format!(
                "the chrooted thread of {} ended without an answer",
                self.inner.describe()
            )))
        })
    }
}

/// Gives the calling thread its own filesystem context and makes `root` its root and working directory.
fn enter(root: &CString) -> Result<(), CniError> {
    // SAFETY: a plain system call; CLONE_FS affects only this thread (it no longer shares root and cwd with
    // the rest of the process).
    let own_fs = unsafe { libc::unshare(libc::CLONE_FS) == 0 };
    if !own_fs || !enter_root(root) {
        return Err(CniError::io(format!(
            "cannot enter chrootDir {:?}: {}",
            root,
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[async_trait]
impl Delegate for Chrooted {
    fn describe(&self) -> String {
        format!("{} (in chrootDir {:?})", self.inner.describe(), self.root)
    }

    fn known_keys(&self) -> Option<KnownKeys> {
        self.inner.known_keys()
    }

    fn declines(&self, conf: &PluginConf) -> Option<String> {
        self.inner.declines(conf)
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        self.run(Command::Add, ctx, conf)
            .await?
            .ok_or_else(|| CniError::io(format!("{} gave no ADD result", self.inner.describe())))
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(Command::Check, ctx, conf).await.map(|_| ())
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(Command::Del, ctx, conf).await.map(|_| ())
    }

    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(Command::Status, ctx, conf).await.map(|_| ())
    }

    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(Command::Gc, ctx, conf).await.map(|_| ())
    }
}

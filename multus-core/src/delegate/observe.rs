//! Watching delegates run: a [`Registry`](super::Registry) with an observer hands out its delegates
//! wrapped in [`Observed`], which reports each verb's plugin type, duration and outcome (the thick daemon's
//! delegate latency metrics). Without an observer nothing is wrapped.

use super::{Context, Delegate};
use crate::cni::{CniError, CniResult, Command, PluginConf};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Told about every delegate verb that ran.
pub trait DelegateObserver: Send + Sync {
    /// `plugin_type` ran `command` for `took`; `error` is its CNI error code, if it failed.
    fn observed(&self, plugin_type: &str, command: Command, took: Duration, error: Option<u32>);
}

/// A delegate whose verbs are reported to an observer.
pub struct Observed {
    inner: Arc<dyn Delegate>,
    plugin_type: String,
    observer: Arc<dyn DelegateObserver>,
}

impl Observed {
    /// Wraps `inner`, reporting under `plugin_type`.
    pub fn new(
        inner: Arc<dyn Delegate>,
        plugin_type: &str,
        observer: Arc<dyn DelegateObserver>,
    ) -> Self {
        Observed {
            inner,
            plugin_type: plugin_type.to_string(),
            observer,
        }
    }

    fn report<T>(&self, command: Command, start: Instant, r: &Result<T, CniError>) {
        let code = r.as_ref().err().map(|e| e.code.code());
        self.observer
            .observed(&self.plugin_type, command, start.elapsed(), code);
    }
}

#[async_trait]
impl Delegate for Observed {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn known_keys(&self) -> Option<super::known_keys::KnownKeys> {
        self.inner.known_keys()
    }

    fn declines(&self, conf: &PluginConf) -> Option<String> {
        self.inner.declines(conf)
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let t = Instant::now();
        let r = self.inner.add(ctx, conf).await;
        self.report(Command::Add, t, &r);
        r
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let t = Instant::now();
        let r = self.inner.check(ctx, conf).await;
        self.report(Command::Check, t, &r);
        r
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let t = Instant::now();
        let r = self.inner.del(ctx, conf).await;
        self.report(Command::Del, t, &r);
        r
    }

    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let t = Instant::now();
        let r = self.inner.status(ctx, conf).await;
        self.report(Command::Status, t, &r);
        r
    }

    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let t = Instant::now();
        let r = self.inner.gc(ctx, conf).await;
        self.report(Command::Gc, t, &r);
        r
    }
}

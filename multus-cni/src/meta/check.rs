//! CHECK (the cached attachments against the kernel, through each delegate) and STATUS (the default
//! network ready, every local network's plugins ready).

use super::cache::Cache;
use super::Meta;
use multus_core::cni::{CniError, Command};
use multus_core::delegate::chain;
use multus_core::pipeline;
use multus_k8s::plan::{self, NetworkSource};

impl Meta<'_> {
    /// CHECK: every cached attachment, against its ADD result.
    pub(super) async fn check(&mut self) -> Result<(), CniError> {
        self.live_netns()?;
        let cached = Cache::of(self.conf).load(&self.at())?;
        if cached.is_none() && self.conf.retiring.is_some() {
            tracing::info!(
                "CHECK while Multus is being removed: the pod was not attached through Multus"
            );
            return Ok(());
        }
        let attached = cached.ok_or_else(|| {
            CniError::invalid_config(format!(
                "CHECK: nothing is known of container {} ({}): no attachment cache",
                self.env.container_id, self.env.ifname
            ))
        })?;
        pipeline::check(&self.pod(), &attached).await
    }

    /// STATUS: the readiness indicator file, then the STATUS of every network the config holds (the
    /// `delegates`, and a `clusterNetwork` that is a local config; a NAD needs no STATUS here).
    pub(super) async fn status(&mut self) -> Result<(), CniError> {
        self.wait_readiness(CniError::not_available).await?;
        let ctx = self.network_context(Command::Status);
        for net in &self.conf.delegates {
            chain::status(&ctx, net).await?;
        }
        if self.conf.delegates.is_empty() {
            if let Some(c) = &self.conf.cluster_network {
                if let Ok(NetworkSource::Local(net)) =
                    plan::resolve_named(c, &self.conf.conf_dir, &self.conf.multus_namespace)
                {
                    chain::status(&ctx, &net).await?;
                }
            }
        }
        Ok(())
    }
}

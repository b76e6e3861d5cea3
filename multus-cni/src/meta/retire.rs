//! Taking Multus off a node without leaking what pods made with it hold. A container runtime such as
//! containerd 1.6 deletes a pod with the CNI config it has at that moment, so removing `00-multus.conf` at
//! uninstall would leave every pod made before to be torn down by the primary network alone: their
//! secondary interfaces' IPs, VFs and cache entries would leak. So `multus uninstall` leaves a *retiring*
//! config in its place while anything is cached (`"retiring": {"configFile": ..}`, no kubeconfig, the
//! primary as the only delegate):
//!
//! - ADD runs the primary network alone and caches nothing (exactly what the runtime would run without
//!   Multus: same network name, config and interface, so a later DEL through the primary alone matches it);
//! - DEL and GC undo cached attachments as always (with nothing cached: the primary's DEL);
//! - once no attachment is cached any more, the DEL or GC that saw so removes the retiring config file
//!   (only while it still says `retiring`: a re-install may have replaced it), and the runtime uses the
//!   primary config directly from then on.

use super::{default_result, Meta};
use crate::install::retire::{step_aside, StepAside};
use multus_core::cni::CniError;
use multus_core::pipeline::{self, Attachments};

impl Meta<'_> {
    /// ADD while retiring: the primary network (the config's first delegate) alone, uncached.
    pub(super) async fn add_retiring(&mut self) -> Result<serde_json::Value, CniError> {
        self.live_netns()?;
        let primary = self.conf.delegates.first().ok_or_else(|| {
            CniError::invalid_config(
                "multus config: \"retiring\" needs the primary network in \"delegates\"",
            )
        })?;
        let mut a = multus_core::pipeline::Attachment::new(primary.clone(), &self.env.ifname)
            .default_network();
        a.runtime_config = self.conf.runtime_config.clone();
        let atts = Attachments::new(vec![a])?;
        let attached = pipeline::add(&self.pod(), &atts).await?;
        tracing::info!(
            "ADD of {} while Multus is being removed: the primary network alone, not cached",
            self.env.container_id
        );
        default_result(&attached, &self.conf.cni_version)
    }

    /// After a DEL or GC while retiring: when nothing is cached any more, the retiring config goes
    /// ([`crate::install::retire::step_aside`]: under the config directory's lock, only while the file still
    /// says retiring).
    pub(super) fn step_aside_if_done(&self) {
        let Some(file) = &self.conf.retiring else {
            return;
        };
        match step_aside(file, &self.conf.cni_dir) {
            Ok(StepAside::Removed) => tracing::info!(
                "no pod made with Multus is left: removed {}; the runtime uses the primary network's config now",
                file.display()
            ),
            Ok(StepAside::Kept(left)) => {
                tracing::debug!("retiring: {} attachment(s) still cached", left.len())
            }
            Ok(StepAside::NotRetiring | StepAside::Gone) => {}
            Err(e) => tracing::warn!("removing the retiring config {}: {e}", file.display()),
        }
    }
}

//! ADD: plan, cache, pipeline, `default-route`, results, `network-status`, answer. Whatever fails after the
//! first delegate ran is rolled back (every delegate DEL, the device information files, the cache), so a pod
//! is never attached but unreported.

use super::cache::Cache;
use super::plan::{self, PlanRequest};
use super::source::PodArgs;
use super::{default_route, devinfo, Meta};
use multus_core::cni::{CniError, CniResult};
use multus_core::pipeline::{self, Attached};
use multus_k8s::annotation::NETWORK_STATUS_ANNOTATION;
use multus_k8s::status;
use std::net::IpAddr;

impl Meta<'_> {
    /// ADD: the pod's attachments, attached in order; the default network's result.
    pub(super) async fn add(&mut self) -> Result<serde_json::Value, CniError> {
        // First, as Go Multus: nothing is asked of the API before the default network is ready.
        self.wait_readiness(CniError::try_again_later).await?;
        if self.conf.retiring.is_some() {
            return self.add_retiring().await;
        }
        let netns = self.live_netns()?.to_string_lossy().into_owned();
        let pod_args = PodArgs::from_env(self.env);
        let req = PlanRequest {
            pod: pod_args.as_ref(),
            container_id: &self.env.container_id,
            ifname: &self.env.ifname,
            retry: self.conf.api_retry,
        };
        let (plan, _pod) = plan::resolve(&mut self.source, self.conf, &req).await?;
        tracing::debug!(
            "API connections opened for this ADD: {}",
            self.source.connections_opened()
        );
        let atts = &plan.attachments;
        devinfo::copy_from_device_plugins(&plan, &self.conf.device_info_dir);
        let cache = Cache::of(self.conf);
        let at = self.at();
        if let Err(e) = cache.store_planned(&at, &netns, atts) {
            devinfo::remove(atts);
            return Err(e);
        }
        let pod = self.pod();
        let mut attached = match pipeline::add(&pod, atts).await {
            Ok(a) => a,
            Err(e) => {
                devinfo::remove(atts);
                let _ = cache.remove(&at);
                return Err(e);
            }
        };
        if let Some(req) = &plan.default_route {
            if let Err(e) = default_route::apply(req, &netns, &mut attached).await {
                self.roll_back(&attached).await;
                return Err(e);
            }
        }
        if let Err(e) = cache.store_attached(&at, &netns, &attached) {
            tracing::warn!("could not record results in the attachment cache: {e}");
        }
        if let Some(p) = &pod_args {
            if let Err(e) = self
                .write_status(p, &attached, plan.default_route.as_ref())
                .await
            {
                self.roll_back(&attached).await;
                return Err(e);
            }
        }
        super::default_result(&attached, &self.conf.cni_version)
    }

    /// Writes `network-status` (a no-op without a pod source).
    async fn write_status(
        &mut self,
        p: &PodArgs,
        attached: &[Attached],
        default_route: Option<&(usize, Vec<IpAddr>)>,
    ) -> Result<(), CniError> {
        if !self.source.has_pods() {
            return Ok(());
        }
        let text = status::render(&statuses(attached, default_route));
        self.source
            .set_annotation(p, NETWORK_STATUS_ANNOTATION, &text)
            .await
    }

    /// Undoes a successful pipeline ADD that a later step failed: every delegate DEL, then the device
    /// information files and the cache; a failed DEL keeps the cache so that the runtime's DEL can finish.
    async fn roll_back(&self, attached: &[Attached]) {
        match self.undo(&self.pod(), attached).await {
            Ok(()) => {
                let _ = Cache::of(self.conf).remove(&self.at());
            }
            Err(de) => tracing::warn!("rollback of {}: {de}", self.env.container_id),
        }
    }
}

/// The network-status entries; `default` goes to the attachment carrying the requested default route, if
/// any, else to the default network; `device-info` is the content of the attachment's device information
/// file after its ADD.
fn statuses(
    attached: &[Attached],
    default_route: Option<&(usize, Vec<IpAddr>)>,
) -> Vec<status::NetworkStatus> {
    let empty = CniResult::new(multus_core::cni::CURRENT_VERSION);
    attached
        .iter()
        .enumerate()
        .flat_map(|(i, at)| {
            let a = &at.attachment;
            let default = multus_k8s::default_route::status_default(i, a, default_route);
            let info = devinfo::load(a);
            let r = at.result.as_ref().unwrap_or(&empty);
            status::from_result(&a.name, &a.ifname, r, default, info.as_ref())
        })
        .collect()
}

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
            container_id: &self.env.container_id,
            ifname: &self.env.ifname,
            retry: self.conf.api_retry,
        };
        let pod = match &pod_args {
            Some(p) => match plan::read_pod(&mut self.source, p, req.retry).await? {
                Some(pod) => Some(pod),
                None if self.source.has_pods() => {
                    // Deleted before its sandbox was set up: nothing to attach (as Go Multus answers).
                    tracing::info!(
                        "ADD: pod {}/{} not found (deleted already?): answering with an empty result",
                        p.namespace,
                        p.name
                    );
                    return self.empty_result(&netns);
                }
                None => None,
            },
            None => None,
        };
        let (plan, pod_obj) = plan::plan_for(&mut self.source, self.conf, &req, pod).await?;
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
        self.log_added(&attached);
        if let Some(p) = &pod_obj {
            self.post_added_events(p, &attached).await;
        }
        if let Err(e) = cache.store_attached(&at, &netns, &attached) {
            tracing::warn!("could not record results in the attachment cache: {e}");
        }
        if let (Some(p), Some(obj)) = (&pod_args, &pod_obj) {
            // The UID the API has (a static pod's mirror has its own), so a new pod of the name is left alone.
            let p = PodArgs {
                uid: obj.uid.clone(),
                ..p.clone()
            };
            if let Err(e) = self.write_status(&p, &attached).await {
                self.roll_back(&attached).await;
                return Err(e);
            }
        }
        super::default_result(&attached, &self.conf.cni_version)
    }

    /// Go Multus' verbose `Add:` line, one per attached delegate.
    fn log_added(&self, attached: &[Attached]) {
        let arg = |k| self.env.args.get(k).unwrap_or_default();
        for at in attached {
            let r = at
                .result
                .as_ref()
                .and_then(|r| r.to_value(&r.cni_version).ok());
            tracing::info!(
                "{}",
                crate::logging::add_line(
                    arg("K8S_POD_NAMESPACE"),
                    arg("K8S_POD_NAME"),
                    arg("K8S_POD_UID"),
                    &at.attachment.name,
                    at.attachment.network.name(),
                    &at.attachment.ifname,
                    &r.unwrap_or_default().to_string()
                )
            );
        }
    }

    /// Go Multus' answer for a pod that is gone: its interface in the sandbox, the address 0.0.0.0/0.
    fn empty_result(&self, netns: &str) -> Result<serde_json::Value, CniError> {
        let v = serde_json::json!({
            "cniVersion": multus_core::cni::CURRENT_VERSION,
            "interfaces": [{"name": self.env.ifname, "sandbox": netns}],
            "ips": [{"address": "0.0.0.0/0", "gateway": "0.0.0.0", "interface": 0}],
        });
        CniResult::from_value(&v)?.to_value(&self.conf.cni_version)
    }

    /// `AddedInterface` for every attachment that reported an interface or an address, as Go Multus posts
    /// them ("Add net1 [192.168.1.200/24] from default/macvlan-conf").
    async fn post_added_events(&mut self, pod: &multus_k8s::plan::Pod, attached: &[Attached]) {
        for at in attached {
            let Some(r) = &at.result else { continue };
            if r.interfaces.is_empty() && r.ips.is_empty() {
                continue;
            }
            let ips: Vec<String> = r.ips.iter().map(|ip| ip.address.to_string()).collect();
            let a = &at.attachment;
            let msg = format!("Add {} [{}] from {}", a.ifname, ips.join(" "), a.name);
            self.source
                .post_event(pod, "Normal", "AddedInterface", &msg)
                .await;
        }
    }

    /// Writes `network-status` (a no-op without a pod source).
    async fn write_status(&mut self, p: &PodArgs, attached: &[Attached]) -> Result<(), CniError> {
        if !self.source.has_pods() {
            return Ok(());
        }
        let text = status::render(&statuses(attached));
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

/// The network-status entries: `default` on the pod's cluster-wide default network (also when another
/// network took the default route); `device-info` the content of the attachment's device information file
/// after its ADD.
fn statuses(attached: &[Attached]) -> Vec<status::NetworkStatus> {
    let empty = CniResult::new(multus_core::cni::CURRENT_VERSION);
    attached
        .iter()
        .flat_map(|at| {
            let a = &at.attachment;
            let info = devinfo::load(a);
            let r = at.result.as_ref().unwrap_or(&empty);
            status::from_result(&a.name, &a.ifname, r, a.is_default, info.as_ref())
        })
        .collect()
}

//! DEL and GC: undoing attachments, the same way in both modes and for every caller (a DEL, a GC of a stale
//! attachment, the rollback of a failed ADD): every delegate DEL in reverse (retried with
//! `retryDeleteOnError`), then the device information files; the cache entry goes only when every delegate
//! DEL succeeded, so a failed DEL can be retried from it.
//!
//! What a DEL undoes: the cache entry when there is one (no API call: the pod, its NADs or the API server may
//! be gone). With nothing cached (never attached, already deleted, or the cache lost), what the source and
//! config say the pod has now (its networks when the pod can be read, else the default networks), each
//! without a result: a DEL of something never attached is a no-op for every plugin, and a lost cache still
//! releases the IPs. With an unreadable entry, the same, except that a pod the source should know but cannot
//! read makes the DEL fail (code 11) and keeps the entry, rather than report success while something may be
//! left attached.

use super::cache::Cache;
use super::plan::{self, PlanRequest};
use super::source::PodArgs;
use super::{devinfo, Meta};
use multus_core::cni::{AttachmentRef, CniError, Command};
use multus_core::delegate::chain;
use multus_core::netns::NetNs;
use multus_core::pipeline::{self, Attached, Pod};
use multus_k8s::annotation::NETWORK_STATUS_ANNOTATION;
use multus_k8s::client::RetryPolicy;
use std::collections::BTreeMap;
use std::time::Duration;

impl Meta<'_> {
    /// DEL: undoes the attachment and removes its cache entry.
    pub(super) async fn del(&mut self) -> Result<(), CniError> {
        let cache = Cache::of(self.conf);
        let at = self.at();
        let attached = match cache.load(&at) {
            Ok(Some(a)) => a,
            Ok(None) => {
                tracing::info!(
                    "DEL of {} ({}): nothing cached; undoing what the config and the pod say now",
                    at.container_id,
                    at.ifname
                );
                self.planned_now(false).await?
            }
            Err(corrupt) => {
                tracing::warn!("{corrupt}; asking the config and the pod what was attached");
                self.planned_now(true).await.map_err(|e| {
                    CniError::try_again_later(format!(
                        "{}; and what was attached cannot be told ({}): nothing was deleted, the cache is kept",
                        corrupt.msg, e.msg
                    ))
                })?
            }
        };
        self.undo(&self.pod(), &attached).await?;
        cache.remove(&at)?;
        self.clear_network_status().await;
        self.step_aside_if_done();
        Ok(())
    }

    /// As Go Multus 3.x (4.1 stopped for a StatefulSet race that the UID precondition here avoids): a DEL
    /// while the sandbox's netns still exists empties the pod's `network-status`, with the pod's UID, so a
    /// pod whose sandbox is re-created never shows interfaces that are gone. Bounded (2 s a request) and
    /// best effort: a failure is logged, never failing the DEL.
    async fn clear_network_status(&mut self) {
        let Some(p) = PodArgs::from_env(self.env) else {
            return;
        };
        let netns_alive = self
            .env
            .netns
            .as_deref()
            .is_some_and(|n| NetNs::open(n).is_ok());
        if !self.source.has_pods()
            || !netns_alive
            || self.conf.system_namespaces.contains(&p.namespace)
        {
            return;
        }
        self.source.limit_requests(Duration::from_secs(2));
        if let Err(e) = self
            .source
            .set_annotation(&p, NETWORK_STATUS_ANNOTATION, "[]")
            .await
        {
            tracing::warn!(
                "DEL: could not clear the network-status of pod {}/{}: {e}",
                p.namespace,
                p.name
            );
        }
    }

    /// Every delegate DEL (retried with `retryDeleteOnError`), then the device information files.
    pub(super) async fn undo(&self, pod: &Pod, attached: &[Attached]) -> Result<(), CniError> {
        let mut res = pipeline::del(pod, attached).await;
        let mut tries = 1;
        while res.is_err() && self.conf.retry_delete_on_error && tries < 3 {
            tracing::info!(
                "DEL failed ({:?}); retrying (retryDeleteOnError)",
                res.as_ref().err()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            res = pipeline::del(pod, attached).await;
            tries += 1;
        }
        res?;
        devinfo::remove_attached(attached);
        let arg = |k| self.env.args.get(k).unwrap_or_default();
        for at in attached.iter().rev() {
            let a = &at.attachment;
            tracing::info!(
                "{}",
                crate::logging::del_line(
                    arg("K8S_POD_NAMESPACE"),
                    arg("K8S_POD_NAME"),
                    arg("K8S_POD_UID"),
                    a.network.name(),
                    &a.ifname,
                    &a.network.to_value().to_string()
                )
            );
        }
        Ok(())
    }

    /// What the pod has according to the source and config now. `need_pod`: a pod named by `CNI_ARGS`
    /// that the source cannot read is an error (else the default networks stand in for it).
    async fn planned_now(&mut self, need_pod: bool) -> Result<Vec<Attached>, CniError> {
        let pod_args = PodArgs::from_env(self.env);
        let req = PlanRequest {
            container_id: &self.env.container_id,
            ifname: &self.env.ifname,
            retry: RetryPolicy {
                timeout: if need_pod {
                    self.conf.api_retry.timeout.min(Duration::from_secs(5))
                } else {
                    Duration::ZERO
                },
                interval: self.conf.api_retry.interval,
            },
        };
        if need_pod && self.source.has_pods() && pod_args.is_none() {
            return Err(CniError::invalid_env(
                "no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS",
            ));
        }
        let pod = match &pod_args {
            Some(p) => match plan::read_pod(&mut self.source, p, req.retry).await {
                Ok(None) if need_pod && self.source.has_pods() => {
                    return Err(CniError::try_again_later(format!(
                        "pod {}/{} is not in the API",
                        p.namespace, p.name
                    )))
                }
                Ok(pod) => pod,
                Err(e) if need_pod => return Err(e),
                Err(e) => {
                    tracing::info!("{e}; undoing the default networks");
                    None
                }
            },
            None => None,
        };
        let had_pod = pod.is_some();
        match plan::plan_for(&mut self.source, self.conf, &req, pod).await {
            Ok((p, _)) => Ok(p.attachments.unattached()),
            Err(e) if need_pod => Err(e),
            Err(e) if had_pod => {
                tracing::warn!("{e}; undoing the default networks");
                let (p, _) = plan::plan_for(&mut self.source, self.conf, &req, None).await?;
                Ok(p.attachments.unattached())
            }
            Err(e) => {
                // Nothing cached and nothing can be planned: nothing is known to undo. An error would
                // only keep the sandbox from ever being deleted.
                tracing::error!("{e}; nothing cached and nothing known to undo");
                Ok(Vec::new())
            }
        }
    }

    /// GC: every cached attachment that is not in `cni.dev/valid-attachments` is undone; then every network
    /// is told which of its attachments are still valid.
    pub(super) async fn gc(&mut self) -> Result<(), CniError> {
        self.wait_readiness(CniError::try_again_later).await?;
        let cache = Cache::of(self.conf);
        let valid = &self.conf.valid_attachments;
        let mut failures = Vec::new();
        let mut live: Vec<(AttachmentRef, Vec<Attached>)> = Vec::new();
        let mut live_unknown = false;
        for entry in cache.list() {
            let is_valid = valid.contains(&entry.at);
            match entry.attached {
                Ok(a) if is_valid => live.push((entry.at, a)),
                Ok(a) => {
                    // A stale attachment: undo everything it holds, as the runtime's DEL would have (in
                    // its netns if that still exists, so that its interfaces go too).
                    let mut pod = self.pod();
                    pod.container_id = entry.at.container_id.clone();
                    pod.netns = Some(std::path::PathBuf::from(&entry.netns))
                        .filter(|p| !entry.netns.is_empty() && NetNs::open(p).is_ok());
                    match self.undo(&pod, &a).await {
                        Ok(()) => cache.remove(&entry.at)?,
                        Err(e) => failures.push(e),
                    }
                }
                Err(e) => {
                    tracing::error!(
                        "GC: the cache entry of {} ({}) cannot be read, so it is kept: {e}",
                        entry.at.container_id,
                        entry.at.ifname
                    );
                    live_unknown |= is_valid;
                }
            }
        }
        if live_unknown {
            // Which networks a live attachment uses is unknown: a network GC could release its IPs.
            tracing::error!("GC: the networks are not garbage-collected while a live attachment's cache entry is unreadable");
        } else {
            failures.extend(self.gc_networks(&live).await);
        }
        self.step_aside_if_done();
        pipeline::aggregate("GC", failures.len().max(1), failures)
    }

    /// Tells each network (the config's and the cached ones) which of its attachments are still valid.
    async fn gc_networks(&self, live: &[(AttachmentRef, Vec<Attached>)]) -> Vec<CniError> {
        let mut nets = BTreeMap::new();
        let mut valid_per_net: BTreeMap<String, Vec<AttachmentRef>> = BTreeMap::new();
        for net in &self.conf.delegates {
            nets.entry(net.name().to_string())
                .or_insert_with(|| net.clone());
        }
        for (at, attached) in live {
            for a in attached {
                let net = &a.attachment.network;
                nets.entry(net.name().to_string())
                    .or_insert_with(|| net.clone());
                valid_per_net
                    .entry(net.name().to_string())
                    .or_default()
                    .push(a.attachment.reference(&at.container_id));
            }
        }
        let ctx = self.network_context(Command::Gc);
        let mut failures = Vec::new();
        for (name, net) in nets {
            let valid = valid_per_net.remove(&name).unwrap_or_default();
            if let Err(e) = chain::gc(&ctx, &net, &valid).await {
                failures.push(e);
            }
        }
        failures
    }
}

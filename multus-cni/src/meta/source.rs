//! Where a meta-plugin invocation reads the pod and its NetworkAttachmentDefinitions from, and writes the
//! pod's `network-status` to: the only thing that differs between the two modes of the meta-plugin.
//!
//! - [`PodSource::None`]: the kubeconfig-less mode (upstream's `delegates`): no pod, no NADs; the plan is
//!   the config's networks alone.
//! - [`PodSource::Api`]: the API server of the `kubeconfig` (the client is made at its first use, so a DEL
//!   that needs nothing from the API never fails on a missing or broken kubeconfig); with a
//!   [`PodCache`] (the thick daemon's watch cache) pods and NADs are read from it first, and from the API
//!   only when it has no answer (pod not seen yet or with another UID, NAD not held).
//! - [`PodSource::Files`]: local manifests (`multus demo`), through the same code as the API.

use super::conf::MultusConf;
use multus_core::cni::{CniEnv, CniError};
use multus_k8s::cache::PodCache;
use multus_k8s::client::{Client, ClientConfig, Event, EventPod, RetryPolicy};
use multus_k8s::plan::Pod as PodObject;
use multus_k8s::source::{FileSource, Source};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The pod an invocation is for, from `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodArgs {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID` (may be empty with old runtimes).
    pub uid: String,
}

impl PodArgs {
    /// The pod named by `CNI_ARGS`, if the runtime named one.
    pub fn from_env(env: &CniEnv) -> Option<PodArgs> {
        let get = |k| env.args.get(k).filter(|s| !s.is_empty());
        Some(PodArgs {
            namespace: get("K8S_POD_NAMESPACE")?.to_string(),
            name: get("K8S_POD_NAME")?.to_string(),
            uid: get("K8S_POD_UID").unwrap_or_default().to_string(),
        })
    }
}

/// What a request goes to.
enum Backend<'a> {
    None,
    Files(&'a mut FileSource),
    Api(&'a mut Client),
}

/// Where pods and NADs come from.
#[derive(Debug)]
pub enum PodSource {
    /// No pods and no NADs: the config's networks alone (the kubeconfig-less mode).
    None,
    /// The API server of a kubeconfig.
    Api {
        /// The kubeconfig file.
        kubeconfig: PathBuf,
        /// The limit on one API request.
        request_timeout: Duration,
        /// The client, once made.
        client: Option<Box<Client>>,
        /// Read before the API for pods and NADs (the thick daemon's watch cache).
        cache: Option<Arc<dyn PodCache>>,
    },
    /// Local manifests.
    Files(FileSource),
}

impl PodSource {
    /// The source a Multus config names: the API with `kubeconfig`, else none.
    pub fn from_conf(conf: &MultusConf) -> Self {
        match &conf.kubeconfig {
            Some(k) => PodSource::Api {
                kubeconfig: PathBuf::from(k),
                request_timeout: conf.api_request_timeout,
                client: None,
                cache: None,
            },
            None => PodSource::None,
        }
    }

    /// Whether pods and NADs can be read at all.
    pub fn has_pods(&self) -> bool {
        !matches!(self, PodSource::None)
    }

    /// The source to ask, the API client made at its first use.
    fn backend(&mut self) -> Result<Backend<'_>, CniError> {
        Ok(match self {
            PodSource::None => Backend::None,
            PodSource::Files(f) => Backend::Files(f),
            PodSource::Api {
                kubeconfig,
                request_timeout,
                client,
                ..
            } => {
                if client.is_none() {
                    let mut cfg = ClientConfig::from_kubeconfig(kubeconfig)
                        .map_err(|e| e.context("multus config: \"kubeconfig\""))?;
                    cfg.request_timeout = *request_timeout;
                    *client = Some(Box::new(Client::new(cfg)));
                }
                match client.as_deref_mut() {
                    Some(c) => Backend::Api(c),
                    None => return Err(CniError::io("no API client")),
                }
            }
        })
    }

    /// The watch cache in front of the API, if any.
    fn cache(&self) -> Option<&Arc<dyn PodCache>> {
        match self {
            PodSource::Api { cache, .. } => cache.as_ref(),
            _ => None,
        }
    }

    /// The pod (retrying within `retry` while the API is unreachable); `Ok(None)` when there is no such
    /// pod, or no pod source. The watch cache answers first when it has the pod with the UID asked for.
    pub async fn pod(
        &mut self,
        p: &PodArgs,
        retry: RetryPolicy,
    ) -> Result<Option<PodObject>, CniError> {
        let cached = self.cache().and_then(|c| c.pod(&p.namespace, &p.name));
        if let Some(pod) = cached.filter(|c| p.uid.is_empty() || c.uid == p.uid) {
            return Ok(Some(pod));
        }
        match self.backend()? {
            Backend::None => Ok(None),
            Backend::Files(f) => f.pod(&p.namespace, &p.name, retry).await,
            Backend::Api(c) => c.pod(&p.namespace, &p.name, retry).await,
        }
    }

    /// A NAD (the raw object); the watch cache answers first.
    pub async fn nad(&mut self, namespace: &str, name: &str) -> Result<Value, CniError> {
        if let Some(nad) = self.cache().and_then(|c| c.nad(namespace, name)) {
            return Ok(nad);
        }
        match self.backend()? {
            Backend::None => Err(CniError::invalid_config(format!(
                "NetworkAttachmentDefinition {namespace}/{name}: NADs need \"kubeconfig\" in the multus config"
            ))),
            Backend::Files(f) => f.nad(namespace, name).await,
            Backend::Api(c) => c.nad(namespace, name).await,
        }
    }

    /// Sets one annotation of the pod (nothing without a pod source).
    pub async fn set_annotation(
        &mut self,
        p: &PodArgs,
        key: &str,
        value: &str,
    ) -> Result<(), CniError> {
        let uid = Some(p.uid.as_str()).filter(|u| !u.is_empty());
        let (ns, name) = (&p.namespace, &p.name);
        match self.backend()? {
            Backend::None => Ok(()),
            Backend::Files(f) => f.set_annotation(ns, name, uid, key, value).await,
            Backend::Api(c) => c.set_annotation(ns, name, uid, key, value).await,
        }
    }

    /// Bounds each API request to at most `limit` (for what must not hold a DEL up), when no request was made
    /// yet.
    pub fn limit_requests(&mut self, limit: Duration) {
        if let PodSource::Api {
            request_timeout,
            client,
            ..
        } = self
        {
            *request_timeout = (*request_timeout).min(limit);
            // A client given made (the daemon's pooled ones) takes the limit too.
            if let Some(c) = client {
                c.limit_request_timeout(limit);
            }
        }
    }

    /// Posts an event about the pod, best effort: a failure is logged, never an error (nothing without a
    /// pod source).
    pub async fn post_event(&mut self, p: &PodObject, kind: &str, reason: &str, message: &str) {
        let pod = EventPod {
            namespace: &p.namespace,
            name: &p.name,
            uid: &p.uid,
        };
        let event = Event {
            kind,
            reason,
            message,
        };
        let res = match self.backend() {
            Ok(Backend::None) => Ok(()),
            Ok(Backend::Files(f)) => f.post_event(&pod, &event).await,
            Ok(Backend::Api(c)) => Source::post_event(c, &pod, &event).await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            tracing::warn!("could not post the {reason} event: {e}");
        }
    }

    /// How many API connections were opened (for the debug log of an ADD).
    pub fn connections_opened(&self) -> u32 {
        match self {
            PodSource::Api {
                client: Some(c), ..
            } => c.connections_opened(),
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_core::cni::CniArgs;

    #[test]
    fn pod_args_need_namespace_and_name() {
        let mut env = CniEnv {
            command: multus_core::cni::Command::Add,
            container_id: "c".into(),
            netns: None,
            ifname: "eth0".into(),
            args: CniArgs::parse("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p").unwrap(),
            path: Vec::new(),
        };
        let p = PodArgs::from_env(&env).unwrap();
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str(), p.uid.as_str()),
            ("ns", "p", "")
        );
        env.args = CniArgs::parse("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=").unwrap();
        assert!(PodArgs::from_env(&env).is_none());
    }

    #[test]
    fn no_source_has_no_pod_and_refuses_nads() {
        let mut s = PodSource::None;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let p = PodArgs {
            namespace: "ns".into(),
            name: "p".into(),
            uid: String::new(),
        };
        assert!(rt
            .block_on(s.pod(&p, RetryPolicy::default()))
            .unwrap()
            .is_none());
        let e = rt.block_on(s.nad("ns", "n")).unwrap_err();
        assert!(e.msg.contains("kubeconfig"), "{e}");
        rt.block_on(s.set_annotation(&p, "k", "v")).unwrap();
    }
}

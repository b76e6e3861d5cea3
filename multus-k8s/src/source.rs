//! Where the meta-plugin's Kubernetes mode reads pods and NetworkAttachmentDefinitions from, and where it
//! writes `network-status`: the API server ([`Client`]) or local YAML files ([`FileSource`], what
//! `multus demo` runs on a machine without a cluster). Both go through the same planning, pipeline, cache
//! and status code; only these three calls differ.
//!
//! ```
//! use multus_k8s::source::{FileSource, Source};
//! # fn main() -> Result<(), multus_core::cni::CniError> {
//! let mut src = FileSource::from_yaml(&[
//!     "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sample-pod\n  annotations:\n    k8s.v1.cni.cncf.io/networks: macvlan-conf\n",
//!     "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata:\n  name: macvlan-conf\nspec:\n  config: '{\"type\": \"macvlan\"}'\n",
//! ])?;
//! let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| multus_core::cni::CniError::io(e.to_string()))?;
//! let pod = rt.block_on(src.pod("default", "sample-pod", Default::default()))?.expect("in the manifests");
//! assert_eq!(pod.annotations["k8s.v1.cni.cncf.io/networks"], "macvlan-conf");
//! rt.block_on(src.set_annotation("default", "sample-pod", None, "k8s.v1.cni.cncf.io/network-status", "[]"))?;
//! assert_eq!(src.pod_object("default", "sample-pod").unwrap()["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"], "[]");
//! # Ok(()) }
//! ```

use crate::client::{Client, Event, EventPod, RetryPolicy};
use crate::plan::Pod;
use multus_core::cni::CniError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;

/// A source of pods and NADs, and a sink for pod annotations.
pub trait Source {
    /// The pod `namespace/name`; `None` when there is no such pod (the API retries within `retry` while it
    /// is unreachable).
    fn pod(
        &mut self,
        namespace: &str,
        name: &str,
        retry: RetryPolicy,
    ) -> impl Future<Output = Result<Option<Pod>, CniError>>;

    /// The raw NetworkAttachmentDefinition object `namespace/name`.
    fn nad(&mut self, namespace: &str, name: &str)
        -> impl Future<Output = Result<Value, CniError>>;

    /// Posts an event about the pod.
    fn post_event(
        &mut self,
        pod: &EventPod<'_>,
        event: &Event<'_>,
    ) -> impl Future<Output = Result<(), CniError>>;

    /// Sets one annotation of the pod (leaving a pod with another `uid` alone).
    fn set_annotation(
        &mut self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), CniError>>;
}

impl Source for Client {
    async fn pod(
        &mut self,
        namespace: &str,
        name: &str,
        retry: RetryPolicy,
    ) -> Result<Option<Pod>, CniError> {
        match self.get_pod(namespace, name, retry).await {
            Ok(p) => Ok(Some(p)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_cni(&format!("pod {namespace}/{name}"))),
        }
    }

    async fn post_event(&mut self, pod: &EventPod<'_>, event: &Event<'_>) -> Result<(), CniError> {
        self.post_event(pod, event)
            .await
            .map_err(|e| e.to_cni(&format!("event on pod {}/{}", pod.namespace, pod.name)))
    }

    async fn nad(&mut self, namespace: &str, name: &str) -> Result<Value, CniError> {
        self.get_nad(namespace, name)
            .await
            .map_err(|e| e.to_cni(&format!("NetworkAttachmentDefinition {namespace}/{name}")))
    }

    async fn set_annotation(
        &mut self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        key: &str,
        value: &str,
    ) -> Result<(), CniError> {
        self.set_pod_annotation(namespace, name, uid, key, value, 10)
            .await
            .map_err(|e| e.to_cni(&format!("writing {key} of pod {namespace}/{name}")))
    }
}

/// Pods and NADs read from YAML (or JSON) manifests, as `kubectl apply -f` would take them; annotations are
/// written to the objects held here. Objects without a namespace are in `default`.
#[derive(Debug, Clone, Default)]
pub struct FileSource {
    pods: BTreeMap<(String, String), Value>,
    nads: BTreeMap<(String, String), Value>,
    events: Vec<Value>,
}

fn key_of(v: &Value) -> Result<(String, String), CniError> {
    let meta = &v["metadata"];
    let name = meta["name"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| CniError::decoding("a manifest object has no metadata.name"))?;
    let ns = meta["namespace"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    Ok((ns.to_string(), name.to_string()))
}

impl FileSource {
    /// Reads every document of each text (`---`-separated); keeps the `Pod`s and
    /// `NetworkAttachmentDefinition`s, ignores other kinds.
    pub fn from_yaml(texts: &[&str]) -> Result<FileSource, CniError> {
        let mut src = FileSource::default();
        for (i, text) in texts.iter().enumerate() {
            for doc in serde_norway::Deserializer::from_str(text) {
                let v = Value::deserialize(doc).map_err(|e| {
                    CniError::decoding(format!("manifest {i}: not valid YAML: {e}"))
                })?;
                if v.is_null() {
                    continue;
                }
                src.add_object(v)?;
            }
        }
        Ok(src)
    }

    /// Adds one API object (a `Pod` or a `NetworkAttachmentDefinition`; other kinds are ignored).
    pub fn add_object(&mut self, mut v: Value) -> Result<(), CniError> {
        let (ns, name) = key_of(&v)?;
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        match v["kind"].as_str() {
            Some("Pod") => {
                self.pods.insert((ns, name), v);
            }
            Some("NetworkAttachmentDefinition") => {
                self.nads.insert((ns, name), v);
            }
            _ => {}
        }
        Ok(())
    }

    /// The pods held, as objects.
    pub fn pods(&self) -> impl Iterator<Item = &Value> {
        self.pods.values()
    }

    /// The NADs held, as objects.
    pub fn nads(&self) -> impl Iterator<Item = &Value> {
        self.nads.values()
    }

    /// One pod object.
    pub fn pod_object(&self, namespace: &str, name: &str) -> Option<&Value> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }

    /// One NAD object, to change before it is read (`multus demo` substitutes the master interface).
    pub fn nad_object_mut(&mut self, namespace: &str, name: &str) -> Option<&mut Value> {
        self.nads
            .get_mut(&(namespace.to_string(), name.to_string()))
    }
}

impl FileSource {
    /// The events posted, as `kubectl describe pod` would list them.
    pub fn events(&self) -> &[Value] {
        &self.events
    }
}

impl Source for FileSource {
    async fn post_event(&mut self, pod: &EventPod<'_>, event: &Event<'_>) -> Result<(), CniError> {
        self.events.push(crate::client::event_body(
            pod,
            event,
            std::time::SystemTime::now(),
        ));
        Ok(())
    }

    async fn pod(
        &mut self,
        namespace: &str,
        name: &str,
        _: RetryPolicy,
    ) -> Result<Option<Pod>, CniError> {
        self.pod_object(namespace, name)
            .map(Pod::from_json)
            .transpose()
    }

    async fn nad(&mut self, namespace: &str, name: &str) -> Result<Value, CniError> {
        self.nads
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .ok_or_else(|| {
                CniError::invalid_config(format!(
                    "NetworkAttachmentDefinition {namespace}/{name}: not in the manifests"
                ))
            })
    }

    async fn set_annotation(
        &mut self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        key: &str,
        value: &str,
    ) -> Result<(), CniError> {
        let pod = self
            .pods
            .get_mut(&(namespace.to_string(), name.to_string()))
            .ok_or_else(|| {
                CniError::invalid_config(format!("pod {namespace}/{name}: not in the manifests"))
            })?;
        if let Some(uid) = uid {
            let have = pod["metadata"]["uid"].as_str().unwrap_or_default();
            if !have.is_empty() && have != uid {
                return Err(CniError::invalid_config(format!(
                    "pod {namespace}/{name} has UID {have}, not {uid}"
                )));
            }
        }
        crate::annotation::set_in_pod(pod, key, value)
            .ok_or_else(|| CniError::decoding("pod without metadata"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_manifests_and_kinds() {
        let src = FileSource::from_yaml(&[
            "---\nkind: Pod\nmetadata: {name: a, namespace: x}\n---\nkind: Service\nmetadata: {name: s}\n---\n",
            "kind: NetworkAttachmentDefinition\nmetadata: {name: n}\nspec: {config: '{}'}\n",
        ])
        .unwrap();
        assert_eq!(src.pods().count(), 1);
        assert_eq!(
            src.pod_object("x", "a").unwrap()["metadata"]["namespace"],
            "x"
        );
        assert_eq!(
            src.nads().next().unwrap()["metadata"]["namespace"],
            "default"
        );
    }

    #[test]
    fn bad_manifests_are_errors() {
        assert!(FileSource::from_yaml(&["kind: Pod\nmetadata: {}\n"]).is_err());
        assert!(FileSource::from_yaml(&["kind: [\n"]).is_err());
    }

    #[test]
    fn missing_objects_and_uid_mismatch() {
        let mut src =
            FileSource::from_yaml(&["kind: Pod\nmetadata: {name: a, uid: u1}\n"]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert!(rt.block_on(src.nad("default", "zz")).is_err());
        assert!(rt
            .block_on(src.pod("default", "b", RetryPolicy::default()))
            .unwrap()
            .is_none());
        assert!(rt
            .block_on(src.set_annotation("default", "a", Some("u2"), "k", "v"))
            .is_err());
        rt.block_on(src.set_annotation("default", "a", Some("u1"), "k", "v"))
            .unwrap();
        assert_eq!(
            src.pod_object("default", "a").unwrap()["metadata"]["annotations"]["k"],
            "v"
        );
    }
}

//! A cache in front of the API for the two reads of an ADD: the pod and its NetworkAttachmentDefinitions.
//!
//! The meta-plugin asks the cache first and makes one GET only when the cache has no answer: the pod is not
//! there yet (the watch has not seen it) or it has another UID (a new pod of the same name); a NAD the cache
//! does not hold. The thin `multus` binary has no cache; the thick daemon keeps one by LIST+WATCH.

use crate::plan::Pod;
use serde_json::Value;

/// Pods and NADs as a watch last saw them. Object-safe, so that a caller holds an `Arc<dyn PodCache>`.
pub trait PodCache: Send + Sync + std::fmt::Debug {
    /// The pod `namespace/name`, if the cache holds it.
    fn pod(&self, namespace: &str, name: &str) -> Option<Pod>;

    /// The raw NetworkAttachmentDefinition object `namespace/name`, if the cache holds it.
    fn nad(&self, namespace: &str, name: &str) -> Option<Value>;
}

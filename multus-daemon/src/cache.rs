//! The watch cache: this node's pods and every NetworkAttachmentDefinition, as the reflectors
//! ([`crate::reflector`]) last saw them, read by each ADD through [`PodCache`] instead of the API.
//!
//! A pod is kept reduced to what Multus reads ([`Pod`]: names, UID, resourceVersion, annotations without
//! the large ones Multus never reads); a NAD whole but for `managedFields` and kubectl's last applied
//! configuration. Each resource also keeps how fresh it is: synced (a first LIST done), whether a watch is
//! open, and when the API was last heard from.

use multus_k8s::cache::PodCache;
use multus_k8s::plan::Pod;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// Annotations Multus never reads that can be large: not kept.
const DROPPED_ANNOTATIONS: [&str; 3] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    multus_k8s::annotation::NETWORK_STATUS_ANNOTATION,
    "k8s.v1.cni.cncf.io/networks-status",
];

/// The resources kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// This node's pods.
    Pods,
    /// NetworkAttachmentDefinitions of every namespace.
    Nads,
}

impl Resource {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Nads => "network-attachment-definitions",
        }
    }
}

type Key = (String, String);

/// How fresh one resource is.
#[derive(Debug)]
struct Freshness {
    synced: AtomicBool,
    watching: AtomicBool,
    last_contact: Mutex<Option<Instant>>,
}

impl Freshness {
    fn new() -> Self {
        Freshness {
            synced: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            last_contact: Mutex::new(None),
        }
    }
}

/// The cache.
#[derive(Debug)]
pub struct WatchCache {
    pods: RwLock<HashMap<Key, Pod>>,
    nads: RwLock<HashMap<Key, Value>>,
    fresh: [Freshness; 2],
    started: Instant,
}

impl Default for WatchCache {
    fn default() -> Self {
        WatchCache {
            pods: RwLock::new(HashMap::new()),
            nads: RwLock::new(HashMap::new()),
            fresh: [Freshness::new(), Freshness::new()],
            started: Instant::now(),
        }
    }
}

/// A pod reduced to what Multus reads.
pub fn reduce_pod(mut pod: Pod) -> Pod {
    for k in DROPPED_ANNOTATIONS {
        pod.annotations.remove(k);
    }
    pod
}

/// A NAD without what Multus never reads.
pub fn reduce_nad(mut nad: Value) -> Value {
    if let Some(meta) = nad.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(DROPPED_ANNOTATIONS[0]);
        }
    }
    nad
}

fn key_of(v: &Value) -> Option<Key> {
    let m = &v["metadata"];
    Some((
        m["namespace"].as_str()?.to_string(),
        m["name"].as_str()?.to_string(),
    ))
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

impl WatchCache {
    fn fresh(&self, r: Resource) -> &Freshness {
        &self.fresh[r as usize]
    }

    /// Replaces every pod (a LIST).
    pub fn replace_pods(&self, pods: Vec<Pod>) {
        let map = pods
            .into_iter()
            .map(|p| ((p.namespace.clone(), p.name.clone()), reduce_pod(p)))
            .collect();
        *write(&self.pods) = map;
        self.listed(Resource::Pods);
    }

    /// Replaces every NAD (a LIST).
    pub fn replace_nads(&self, nads: Vec<Value>) {
        let map = nads
            .into_iter()
            .filter_map(|n| Some((key_of(&n)?, reduce_nad(n))))
            .collect();
        *write(&self.nads) = map;
        self.listed(Resource::Nads);
    }

    fn listed(&self, r: Resource) {
        self.fresh(r).synced.store(true, Ordering::SeqCst);
        self.contact(r);
    }

    /// A pod added or changed.
    pub fn put_pod(&self, pod: Pod) {
        let key = (pod.namespace.clone(), pod.name.clone());
        write(&self.pods).insert(key, reduce_pod(pod));
    }

    /// A pod deleted.
    pub fn remove_pod(&self, namespace: &str, name: &str) {
        write(&self.pods).remove(&(namespace.to_string(), name.to_string()));
    }

    /// A NAD added or changed.
    pub fn put_nad(&self, nad: Value) {
        if let Some(k) = key_of(&nad) {
            write(&self.nads).insert(k, reduce_nad(nad));
        }
    }

    /// A NAD deleted.
    pub fn remove_nad(&self, nad: &Value) {
        if let Some(k) = key_of(nad) {
            write(&self.nads).remove(&k);
        }
    }

    /// The API was heard from about `r` (an event, a bookmark, a list, a watch opened).
    pub fn contact(&self, r: Resource) {
        if let Ok(mut t) = self.fresh(r).last_contact.lock() {
            *t = Some(Instant::now());
        }
    }

    /// Whether a watch of `r` is open.
    pub fn set_watching(&self, r: Resource, on: bool) {
        self.fresh(r).watching.store(on, Ordering::SeqCst);
        if on {
            self.contact(r);
        }
    }

    /// Whether both resources were listed once.
    pub fn synced(&self) -> bool {
        self.fresh.iter().all(|f| f.synced.load(Ordering::SeqCst))
    }

    /// How many objects of `r` are held.
    pub fn len(&self, r: Resource) -> usize {
        match r {
            Resource::Pods => read(&self.pods).len(),
            Resource::Nads => read(&self.nads).len(),
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len(Resource::Pods) == 0 && self.len(Resource::Nads) == 0
    }

    /// How far behind the API `r` may be: zero while its watch is open, else the time since the API was
    /// last heard from about it (since start when never).
    pub fn staleness(&self, r: Resource) -> Duration {
        let f = self.fresh(r);
        if f.watching.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let last = f.last_contact.lock().ok().and_then(|t| *t);
        last.unwrap_or(self.started).elapsed()
    }
}

impl PodCache for WatchCache {
    fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        read(&self.pods)
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    fn nad(&self, namespace: &str, name: &str) -> Option<Value> {
        read(&self.nads)
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_multus_reads() {
        let c = WatchCache::default();
        assert!(!c.synced());
        let mut p = Pod {
            namespace: "ns".into(),
            name: "p".into(),
            uid: "u".into(),
            ..Default::default()
        };
        p.annotations
            .insert("k8s.v1.cni.cncf.io/networks".into(), "a".into());
        p.annotations.insert(
            "kubectl.kubernetes.io/last-applied-configuration".into(),
            "{...}".into(),
        );
        c.replace_pods(vec![p]);
        let got = c.pod("ns", "p").unwrap();
        assert_eq!(got.annotations.len(), 1);
        c.replace_nads(vec![
            json!({"metadata": {"namespace": "ns", "name": "n", "managedFields": [1]},
                                   "spec": {"config": "{}"}}),
        ]);
        assert!(c.synced());
        assert!(c.nad("ns", "n").unwrap()["metadata"]
            .get("managedFields")
            .is_none());
        c.remove_pod("ns", "p");
        assert!(c.pod("ns", "p").is_none());
        assert_eq!(c.len(Resource::Nads), 1);
        c.set_watching(Resource::Pods, true);
        assert_eq!(c.staleness(Resource::Pods), Duration::ZERO);
    }
}

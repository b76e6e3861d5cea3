//! Keeping the [`WatchCache`] in step with the API: for each resource a LIST (in pages; pods by
//! `fieldSelector=spec.nodeName=<node>`) then a WATCH from the list's resourceVersion, with bookmarks.
//!
//! - A watch that ends (the server's `timeoutSeconds`, a dropped connection) is opened again from the
//!   last resourceVersion seen (an event's or a bookmark's): nothing is listed again.
//! - 410 Gone (the resourceVersion was compacted away), as an `ERROR` event or an HTTP status, lists again.
//! - Errors (the API down, refusals) back off exponentially, 0.2 s to 10 s with jitter, and the reflector
//!   goes on from where it was: the cache keeps serving what it holds meanwhile.
//!
//! Own LIST+WATCH on the project's client rather than kube-runtime's reflector: see README (thick mode).

use crate::cache::{Resource, WatchCache};
use crate::metrics::Metrics;
use multus_k8s::client::{ApiError, Client};
use multus_k8s::plan::Pod;
use multus_k8s::watch::{resource_version, WatchEvent};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Objects per LIST page.
const PAGE: usize = 500;

/// One resource's LIST+WATCH loop.
pub struct Reflector {
    /// What it keeps.
    pub resource: Resource,
    /// Pods: only this node's.
    pub node: Option<String>,
    /// Its own client (a watch holds a connection).
    pub client: Client,
    /// Where it keeps them.
    pub cache: Arc<WatchCache>,
    /// Restart and relist counters.
    pub metrics: Arc<Metrics>,
    /// Set to true to stop.
    pub stop: watch::Receiver<bool>,
}

#[derive(Deserialize)]
struct ListMeta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(rename = "continue", default)]
    cont: Option<String>,
}

#[derive(Deserialize)]
struct List<T> {
    metadata: ListMeta,
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct PodItem {
    metadata: PodMeta,
}

#[derive(Deserialize)]
struct PodMeta {
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(rename = "resourceVersion", default)]
    resource_version: String,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl From<PodItem> for Pod {
    fn from(p: PodItem) -> Pod {
        let m = p.metadata;
        Pod {
            namespace: m.namespace,
            name: m.name,
            uid: m.uid,
            resource_version: m.resource_version,
            annotations: m.annotations.unwrap_or_default(),
        }
    }
}

/// How a watch ended.
enum WatchEnd {
    /// Normally (timeout, closed): watch again from here.
    Resume,
    /// 410 Gone: list again.
    Gone,
}

/// Exponential backoff with jitter.
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);

    fn next(&mut self) -> Duration {
        let d = self.0;
        self.0 = (self.0 * 2).min(Self::MAX);
        // Up to a fifth more, so that daemons restarted together do not retry in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        d + d / 5 * u32::try_from(nanos % 100).unwrap_or(0) / 100
    }

    fn reset(&mut self) {
        self.0 = Self::MIN;
    }
}

impl Reflector {
    fn collection(&self) -> &'static str {
        match self.resource {
            Resource::Pods => "/api/v1/pods",
            Resource::Nads => "/apis/k8s.cni.cncf.io/v1/network-attachment-definitions",
        }
    }

    fn selector(&self) -> String {
        match (&self.resource, &self.node) {
            (Resource::Pods, Some(n)) => format!("&fieldSelector=spec.nodeName%3D{}", escape(n)),
            _ => String::new(),
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs until stopped.
    pub async fn run(mut self) {
        let mut backoff = Backoff(Backoff::MIN);
        let mut rv: Option<String> = None;
        let label = self.resource.label();
        while !self.stopped() {
            let from = match rv.clone() {
                Some(v) => v,
                None => match self.list().await {
                    Ok(v) => {
                        backoff.reset();
                        rv = Some(v.clone());
                        v
                    }
                    Err(e) => {
                        tracing::warn!("watch cache: listing {label}: {e}");
                        self.pause(backoff.next()).await;
                        continue;
                    }
                },
            };
            let started = Instant::now();
            let end = self.watch(&from, &mut rv).await;
            self.cache.set_watching(self.resource, false);
            self.metrics
                .watch_restarts
                .get_or_create(&label.into())
                .inc();
            match end {
                Ok(WatchEnd::Resume) if started.elapsed() > Duration::from_secs(1) => {
                    backoff.reset()
                }
                Ok(WatchEnd::Resume) => self.pause(backoff.next()).await,
                Ok(WatchEnd::Gone) => {
                    tracing::info!(
                        "watch cache: {label} resourceVersion {from} is gone (410): listing again"
                    );
                    self.metrics.relists.get_or_create(&label.into()).inc();
                    rv = None;
                }
                Err(e) => {
                    tracing::warn!("watch cache: watching {label}: {e}");
                    self.pause(backoff.next()).await;
                }
            }
        }
    }

    async fn pause(&mut self, d: Duration) {
        let _ = tokio::time::timeout(d, self.stop.changed()).await;
    }

    /// A whole LIST into the cache; its resourceVersion.
    async fn list(&mut self) -> Result<String, ApiError> {
        let mut pods = Vec::new();
        let mut nads = Vec::new();
        let mut cont: Option<String> = None;
        let rv = loop {
            let mut path = format!("{}?limit={PAGE}{}", self.collection(), self.selector());
            if let Some(c) = &cont {
                path.push_str(&format!("&continue={}", escape(c)));
            }
            let body = self.client.list(&path).await?;
            let meta = match self.resource {
                Resource::Pods => {
                    let l: List<PodItem> = decode(&body, &path)?;
                    pods.extend(l.items.into_iter().map(Pod::from));
                    l.metadata
                }
                Resource::Nads => {
                    let l: List<serde_json::Value> = decode(&body, &path)?;
                    nads.extend(l.items);
                    l.metadata
                }
            };
            match meta.cont.filter(|c| !c.is_empty()) {
                Some(c) => cont = Some(c),
                None => break meta.resource_version,
            }
        };
        match self.resource {
            Resource::Pods => self.cache.replace_pods(pods),
            Resource::Nads => self.cache.replace_nads(nads),
        }
        Ok(rv)
    }

    /// One watch from `from`; `rv` follows the events.
    async fn watch(&mut self, from: &str, rv: &mut Option<String>) -> Result<WatchEnd, ApiError> {
        // As client-go: 5 to 10 minutes, so that watches of many daemons do not end together.
        let secs = 300 + u64::from(std::process::id()) % 300;
        let path = format!(
            "{}?watch=1&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={secs}{}",
            self.collection(),
            escape(from),
            self.selector()
        );
        let mut stream = match self.client.watch(&path).await {
            Ok(s) => s,
            Err(e) if e.status() == Some(410) => return Ok(WatchEnd::Gone),
            Err(e) => return Err(e),
        };
        self.cache.set_watching(self.resource, true);
        let deadline = Instant::now() + Duration::from_secs(secs + 30);
        loop {
            let next = tokio::select! {
                n = tokio::time::timeout_at(deadline.into(), stream.next()) => n,
                _ = self.stop.changed() => return Ok(WatchEnd::Resume),
            };
            let ev = match next {
                Err(_) => return Ok(WatchEnd::Resume),
                Ok(r) => match r? {
                    None => return Ok(WatchEnd::Resume),
                    Some(ev) => ev,
                },
            };
            self.cache.contact(self.resource);
            match ev {
                WatchEvent::Error { code: 410, .. } => return Ok(WatchEnd::Gone),
                WatchEvent::Error { code, message } => {
                    return Err(ApiError::Status {
                        code,
                        path,
                        message,
                    })
                }
                WatchEvent::Bookmark(v) => *rv = Some(v),
                WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                    *rv = Some(resource_version(&o).to_string());
                    self.apply(o, false);
                }
                WatchEvent::Deleted(o) => {
                    *rv = Some(resource_version(&o).to_string());
                    self.apply(o, true);
                }
            }
        }
    }

    fn apply(&self, obj: serde_json::Value, deleted: bool) {
        match self.resource {
            Resource::Pods => match Pod::from_json(&obj) {
                Ok(p) if deleted => self.cache.remove_pod(&p.namespace, &p.name),
                Ok(p) => self.cache.put_pod(p),
                Err(e) => tracing::warn!("watch cache: a pod event: {e}"),
            },
            Resource::Nads if deleted => self.cache.remove_nad(&obj),
            Resource::Nads => self.cache.put_nad(obj),
        }
    }
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8], path: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode(format!("{path}: {e}")))
}

/// Percent-encodes what a query value must not hold as is.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_bound() {
        let mut b = Backoff(Backoff::MIN);
        let first = b.next();
        assert!(first >= Backoff::MIN && first <= Backoff::MIN * 6 / 5);
        for _ in 0..10 {
            b.next();
        }
        assert!(b.next() <= Backoff::MAX * 6 / 5);
        b.reset();
        assert!(b.next() < Duration::from_millis(300));
    }

    #[test]
    fn pod_pages_decode_into_what_multus_reads() {
        let body = br#"{"kind":"PodList","metadata":{"resourceVersion":"7","continue":"x"},
            "items":[{"metadata":{"name":"a","namespace":"n","uid":"u","resourceVersion":"5",
                      "annotations":{"k":"v"}},"spec":{"containers":[]}}]}"#;
        let l: List<PodItem> = decode(body, "/p").unwrap();
        assert_eq!(l.metadata.cont.as_deref(), Some("x"));
        let p: Pod = l.items.into_iter().next().unwrap().into();
        assert_eq!(
            (p.name.as_str(), p.uid.as_str(), p.annotations["k"].as_str()),
            ("a", "u", "v")
        );
        assert_eq!(escape("spec.nodeName=a b"), "spec.nodeName%3Da%20b");
    }
}

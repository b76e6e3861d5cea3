//! LIST and WATCH of the stand-in, as the API server serves them to a reflector: the pods of all
//! namespaces (`fieldSelector=spec.nodeName=<node>` honoured) and the NADs of all namespaces; `limit` /
//! `continue` pages; a watch replays the changes after its `resourceVersion` from a history, then streams
//! new ones as chunked JSON lines; `allowWatchBookmarks` gets `BOOKMARK`s when the test asks; a
//! `resourceVersion` older than the last [`expire`](super::TestApiServer::expire_watches) gets the API
//! server's `ERROR` event with a 410 `Expired` Status; `timeoutSeconds` ends the watch.

use super::{lock, ok_body, status_body, Body, State};
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::Response;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// The collections that can be listed and watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Pod,
    Nad,
}

/// One change, as the history keeps it for watches that resume.
pub(super) struct Change {
    rv: u64,
    kind: Kind,
    line: Bytes,
    node: Option<String>,
}

/// An open watch.
pub(super) struct Watcher {
    id: u64,
    kind: Kind,
    node: Option<String>,
    bookmarks: bool,
    tx: UnboundedSender<Bytes>,
}

/// The most changes kept for resuming watches.
const HISTORY: usize = 100_000;

fn node_of(obj: &Value) -> Option<String> {
    obj["spec"]["nodeName"].as_str().map(str::to_string)
}

fn matches(kind: Kind, want_kind: Kind, want_node: &Option<String>, node: &Option<String>) -> bool {
    kind == want_kind && (want_node.is_none() || want_node == node)
}

fn event_line(typ: &str, obj: &Value) -> Bytes {
    let mut s = json!({"type": typ, "object": obj}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Records a change of `obj` (its resourceVersion already set to `st.rv`) and sends it to the watches
/// that select it.
pub(super) fn record(st: &mut State, kind: Kind, typ: &str, obj: &Value) {
    let node = node_of(obj);
    let line = event_line(typ, obj);
    st.watchers
        .retain(|w| !matches(kind, w.kind, &w.node, &node) || w.tx.send(line.clone()).is_ok());
    st.history.push_back(Change {
        rv: st.rv,
        kind,
        line,
        node,
    });
    if st.history.len() > HISTORY {
        st.history.pop_front();
    }
}

/// Ends every open watch (their connections see the end of the body).
pub(super) fn close_all(st: &mut State) {
    st.watchers.clear();
}

/// Sends a `BOOKMARK` at the current resourceVersion to every watch that allows them.
pub(super) fn bookmark(st: &mut State) {
    for w in &st.watchers {
        if !w.bookmarks {
            continue;
        }
        let kind = match w.kind {
            Kind::Pod => json!({"kind": "Pod", "apiVersion": "v1"}),
            Kind::Nad => {
                json!({"kind": "NetworkAttachmentDefinition", "apiVersion": "k8s.cni.cncf.io/v1"})
            }
        };
        let mut obj = kind;
        obj["metadata"] = json!({"resourceVersion": st.rv.to_string()});
        let _ = w.tx.send(event_line("BOOKMARK", &obj));
    }
}

/// The query of a request, percent-decoded.
pub(super) fn query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = || std::str::from_utf8(b.get(i + 1..i + 3)?).ok();
        match (b[i], hex().and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn node_selector(q: &BTreeMap<String, String>) -> Result<Option<String>, String> {
    let Some(sel) = q.get("fieldSelector").filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match sel.split_once('=') {
        Some(("spec.nodeName", node)) => Ok(Some(node.trim_start_matches('=').to_string())),
        _ => Err(format!(
            "field selector {sel:?} is not supported by the stand-in"
        )),
    }
}

/// A LIST or WATCH of `kind` with the request's query.
pub(super) fn collection(
    shared: &Arc<Mutex<State>>,
    kind: Kind,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let node = match node_selector(q) {
        Ok(n) => n,
        Err(e) => return status_body(400, "BadRequest", &e),
    };
    if matches!(q.get("watch").map(String::as_str), Some("1" | "true")) {
        return watch(shared, kind, node, q);
    }
    list(&lock(shared), kind, node, q)
}

fn objects<'a>(st: &'a State, kind: Kind) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
    match kind {
        Kind::Pod => Box::new(st.pods.values()),
        Kind::Nad => Box::new(st.nads.values()),
    }
}

fn list(
    st: &State,
    kind: Kind,
    node: Option<String>,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let all: Vec<&Value> = objects(st, kind)
        .filter(|o| node.is_none() || node_of(o) == node)
        .collect();
    let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(all.len());
    let items: Vec<&Value> = all.get(start..end).unwrap_or_default().to_vec();
    let mut meta = json!({"resourceVersion": st.rv.to_string()});
    if end < all.len() {
        meta["continue"] = Value::String(end.to_string());
    }
    let (list_kind, api) = match kind {
        Kind::Pod => ("PodList", "v1"),
        Kind::Nad => ("NetworkAttachmentDefinitionList", "k8s.cni.cncf.io/v1"),
    };
    ok_body(&json!({"kind": list_kind, "apiVersion": api, "metadata": meta, "items": items}))
}

fn watch(
    shared: &Arc<Mutex<State>>,
    kind: Kind,
    node: Option<String>,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let (tx, rx) = unbounded_channel();
    let mut st = lock(shared);
    let from: Option<u64> = q
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
        .and_then(|v| v.parse().ok());
    match from {
        Some(rv) if rv < st.expired_below => {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                "reason": "Expired", "message": format!("too old resource version: {rv} ({})", st.expired_below)});
            let _ = tx.send(event_line("ERROR", &status));
            return stream(rx);
        }
        Some(rv) => {
            for c in st.history.iter().filter(|c| c.rv > rv) {
                if matches(c.kind, kind, &node, &c.node) {
                    let _ = tx.send(c.line.clone());
                }
            }
        }
        None => {
            let lines: Vec<Bytes> = objects(&st, kind)
                .filter(|o| node.is_none() || node_of(o) == node)
                .map(|o| event_line("ADDED", o))
                .collect();
            for l in lines {
                let _ = tx.send(l);
            }
        }
    }
    st.next_watch += 1;
    let id = st.next_watch;
    st.watchers.push(Watcher {
        id,
        kind,
        node,
        bookmarks: matches!(
            q.get("allowWatchBookmarks").map(String::as_str),
            Some("true" | "1")
        ),
        tx,
    });
    drop(st);
    if let Some(secs) = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()) {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            lock(&shared).watchers.retain(|w| w.id != id);
        });
    }
    stream(rx)
}

/// A chunked body fed by a channel: ends when every sender is gone.
struct ChanBody(UnboundedReceiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn stream(rx: UnboundedReceiver<Bytes>) -> Response<Body> {
    use http_body_util::BodyExt;
    let mut r = Response::new(ChanBody(rx).boxed_unsync());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_decoded() {
        let q = query(Some("watch=1&fieldSelector=spec.nodeName%3Dnode-1&x"));
        assert_eq!(q["fieldSelector"], "spec.nodeName=node-1");
        assert_eq!(node_selector(&q).unwrap().as_deref(), Some("node-1"));
        assert_eq!(q["x"], "");
        assert!(node_selector(&query(Some("fieldSelector=metadata.name%3Da"))).is_err());
    }
}

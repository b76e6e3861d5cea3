//! LIST and WATCH on the API client: what a watch cache is made of (the thick daemon keeps pods and NADs
//! this way). A LIST is one GET of a collection (`?limit=&continue=` pages); a WATCH is a GET with
//! `watch=1` whose chunked body is one JSON event per line (`{"type": "ADDED", "object": {...}}`), read here
//! line by line on a connection of its own, so the client's kept-alive connection stays free for other
//! requests.

use crate::client::{ApiError, Client};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::Value;
use std::time::Duration;

/// One event of a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    /// An object was added.
    Added(Value),
    /// An object changed.
    Modified(Value),
    /// An object was deleted (its last state).
    Deleted(Value),
    /// The watch reached this resourceVersion (no object changed).
    Bookmark(String),
    /// The server ended the watch with a `Status` (410 Gone: the resourceVersion is too old, relist).
    Error {
        /// The Status' `code` (0 when absent).
        code: u16,
        /// Its `message`.
        message: String,
    },
}

impl WatchEvent {
    /// Reads one line of a watch body.
    pub fn parse(line: &[u8]) -> Result<WatchEvent, ApiError> {
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| ApiError::Decode(format!("watch event: {e}")))?;
        let Value::Object(mut m) = v else {
            return Err(ApiError::Decode("watch event is not an object".into()));
        };
        let object = m.remove("object").unwrap_or(Value::Null);
        match m.get("type").and_then(Value::as_str).unwrap_or_default() {
            "ADDED" => Ok(WatchEvent::Added(object)),
            "MODIFIED" => Ok(WatchEvent::Modified(object)),
            "DELETED" => Ok(WatchEvent::Deleted(object)),
            "BOOKMARK" => Ok(WatchEvent::Bookmark(resource_version(&object).to_string())),
            "ERROR" => Ok(WatchEvent::Error {
                code: object["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(0),
                message: object["message"].as_str().unwrap_or_default().to_string(),
            }),
            t => Err(ApiError::Decode(format!("watch event of type {t:?}"))),
        }
    }
}

/// `metadata.resourceVersion` of an object ("" when absent).
pub fn resource_version(obj: &Value) -> &str {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
}

/// An open watch: its events, one at a time.
pub struct WatchStream {
    body: Incoming,
    buf: BytesMut,
    // Kept so that the connection is not closed under the body.
    _sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

/// The most a watch event line may hold (a NAD or pod is far smaller).
const MAX_EVENT: usize = 16 << 20;

impl WatchStream {
    /// The next event; `None` when the server ended the watch (its `timeoutSeconds`, or a closed
    /// connection between events).
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, ApiError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(i + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return WatchEvent::parse(line).map(Some);
            }
            if self.buf.len() > MAX_EVENT {
                return Err(ApiError::Decode("a watch event longer than 16 MiB".into()));
            }
            match self.body.frame().await {
                None => {
                    // A last event without its newline.
                    let rest = self.buf.split().freeze();
                    let rest = rest.trim_ascii();
                    return match rest.is_empty() {
                        true => Ok(None),
                        false => WatchEvent::parse(rest).map(Some),
                    };
                }
                Some(Err(e)) => return Err(ApiError::Transport(format!("watch: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}

impl Client {
    /// Opens a watch on `path` (a collection path with `watch=1` and its query) on a connection of its
    /// own; connecting and the answer's head are bounded by the request timeout, the events are not.
    pub async fn watch(&mut self, path: &str) -> Result<WatchStream, ApiError> {
        let timeout = self.cfg.request_timeout;
        let r = match tokio::time::timeout(timeout, self.open_watch(path)).await {
            Ok(r) => r,
            Err(_) => Err(ApiError::Transport(format!(
                "GET {path}: no answer within {timeout:?}"
            ))),
        };
        let status = match &r {
            Ok(_) => Some(200),
            Err(e) => e.status(),
        };
        self.observe("WATCH", status);
        r
    }

    async fn open_watch(&mut self, path: &str) -> Result<WatchStream, ApiError> {
        let mut sender = self.connect().await?;
        sender
            .ready()
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let req = self.build_request(&hyper::Method::GET, path, &None)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            let body = tokio::time::timeout(Duration::from_secs(5), resp.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(ApiError::Status {
                code,
                path: path.to_string(),
                message,
            });
        }
        Ok(WatchStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
            _sender: sender,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_every_type() {
        let e =
            WatchEvent::parse(br#"{"type":"ADDED","object":{"metadata":{"name":"a"}}}"#).unwrap();
        assert_eq!(
            e,
            WatchEvent::Added(serde_json::json!({"metadata":{"name":"a"}}))
        );
        let e = WatchEvent::parse(
            br#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"12"}}}"#,
        )
        .unwrap();
        assert_eq!(e, WatchEvent::Bookmark("12".into()));
        let e = WatchEvent::parse(
            br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired","message":"too old resource version: 5 (9)"}}"#,
        )
        .unwrap();
        assert!(matches!(e, WatchEvent::Error { code: 410, .. }));
        assert!(WatchEvent::parse(b"[1]").is_err());
        assert!(WatchEvent::parse(br#"{"type":"WHAT"}"#).is_err());
    }
}

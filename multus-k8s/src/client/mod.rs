//! A minimal Kubernetes API client for the four REST calls Multus makes: GET a pod, GET a NAD, GET then PUT
//! `pods/{name}/status` (retrying on a resourceVersion conflict).
//!
//! Why not kube-rs: measured on this machine kind, kube 5 + k8s-openapi with rustls costs ~139 s of release
//! build and +9 MB of binary, against ~33 s and 2.8 MB for hyper + rustls; the tests build every crate in
//! debug and the binary in release on a 2-core CI with a tight budget, and the meta layer must add at most
//! 3 ms to an ADD. Four calls on untyped JSON need none of kube's typed resources, watches or runtime, so
//! this is HTTP/1.1 over one rustls connection (hyper's `client::conn`), opened on first use and reused
//! for every call of the invocation.
//!
//! Credentials: a kubeconfig file (server, certificate authority as file or data, bearer token, token
//! file, or client certificate and key as files or data; relative paths are relative to the kubeconfig),
//! or the in-cluster service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the mounted token and CA).
//!
//! Files: `config.rs` (where to connect and with what credentials: kubeconfig, in-cluster, TLS), `error.rs`
//! ([`ApiError`] and its CNI codes), this file (the connection, the calls, events).

use crate::plan::Pod;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::time::{Duration, Instant};

mod config;
mod error;

pub use config::{ApiObserver, ClientConfig, RetryPolicy, SERVICE_ACCOUNT_DIR};
pub use error::ApiError;

/// An API client: one TLS connection, opened on first use and reused.
pub struct Client {
    pub(crate) cfg: ClientConfig,
    conn: Option<SendRequest<Full<Bytes>>>,
    connects: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("cfg", &self.cfg).finish()
    }
}

fn status_message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect())
}

/// The REST path of a pod.
pub fn pod_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{name}")
}

impl Client {
    /// A client (no connection yet).
    pub fn new(cfg: ClientConfig) -> Client {
        Client {
            cfg,
            conn: None,
            connects: 0,
        }
    }

    /// How many connections this client opened (1 when every call reused the first).
    pub fn connections_opened(&self) -> u32 {
        self.connects
    }

    /// Bounds each request from now on to at most `limit`.
    pub fn limit_request_timeout(&mut self, limit: Duration) {
        self.cfg.request_timeout = self.cfg.request_timeout.min(limit);
    }

    /// Sets the limit on one request.
    pub fn set_request_timeout(&mut self, timeout: Duration) {
        self.cfg.request_timeout = timeout;
    }

    pub(crate) async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, ApiError> {
        let t = |e: &dyn std::fmt::Display| {
            ApiError::Transport(format!("{}:{}: {e}", self.cfg.host, self.cfg.port))
        };
        let tcp = tokio::net::TcpStream::connect((self.cfg.host.as_str(), self.cfg.port))
            .await
            .map_err(|e| t(&e))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(self.cfg.tls.clone())
            .connect(self.cfg.server_name.clone(), tcp)
            .await
            .map_err(|e| t(&format!("TLS: {e}")))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| t(&e))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("API connection ended: {e}");
            }
        });
        self.connects += 1;
        Ok(sender)
    }

    /// A request with the host, token and content type (a JSON merge patch for PATCH).
    pub(crate) fn build_request(
        &self,
        method: &hyper::Method,
        path: &str,
        body: &Option<Vec<u8>>,
    ) -> Result<hyper::Request<Full<Bytes>>, ApiError> {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(
                hyper::header::HOST,
                format!("{}:{}", self.cfg.host, self.cfg.port),
            )
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "multus-rs");
        if let Some(t) = self.cfg.bearer() {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            let ct = if method == hyper::Method::PATCH {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        req.body(Full::new(Bytes::from(body.clone().unwrap_or_default())))
            .map_err(|e| ApiError::Transport(format!("building request {path}: {e}")))
    }

    async fn send_once(
        &mut self,
        method: &hyper::Method,
        path: &str,
        body: &Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ApiError> {
        let mut sender = match self.conn.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let req = self.build_request(method, path, body)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        let code = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::Transport(e.to_string()))?
            .to_bytes();
        self.conn = Some(sender);
        Ok((code, bytes))
    }

    /// Reports a request to the observer, if any.
    pub(crate) fn observe(&self, verb: &str, status: Option<u16>) {
        if let Some(o) = &self.cfg.observer {
            o(verb, status);
        }
    }

    /// One request; a broken kept-alive connection is reopened once. Returns the body of a 2xx answer.
    async fn request(
        &mut self,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Value, ApiError> {
        let verb = method.as_str().to_string();
        let bytes = self.request_as(&verb, method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Decode(format!("{path}: {e}")))
    }

    /// One request reported as `verb`; the body of a 2xx answer.
    async fn request_as(
        &mut self,
        verb: &str,
        method: hyper::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, ApiError> {
        let timeout = self.cfg.request_timeout;
        let mut attempt = 0;
        let (code, bytes) = loop {
            attempt += 1;
            let r = tokio::time::timeout(timeout, self.send_once(&method, path, &body))
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::Transport(format!(
                        "{method} {path}: no answer within {timeout:?}"
                    )))
                });
            match r {
                Ok(x) => break x,
                // A kept-alive connection the server closed: one fresh connection, then give up.
                Err(ApiError::Transport(_)) if attempt == 1 && self.connects > 0 => {
                    self.conn = None;
                    continue;
                }
                Err(e) => {
                    self.conn = None;
                    self.observe(verb, None);
                    return Err(e);
                }
            }
        };
        self.observe(verb, Some(code));
        if !(200..300).contains(&code) {
            return Err(ApiError::Status {
                code,
                path: path.to_string(),
                message: status_message(&bytes),
            });
        }
        Ok(bytes)
    }

    /// LIST: GET a collection path (with its query) once; the raw body of a 2xx answer (so that a large
    /// list is decoded straight into what the caller keeps).
    pub async fn list(&mut self, path: &str) -> Result<Bytes, ApiError> {
        self.request_as("LIST", hyper::Method::GET, path, None)
            .await
    }

    /// GET a pod once.
    pub async fn get_pod_raw(&mut self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.request(hyper::Method::GET, &pod_path(namespace, name), None)
            .await
    }

    /// GET a pod, retrying while the server is unreachable or overloaded, within `retry`. A 404 is
    /// authoritative and returned at once (a pod is in the API before its sandbox exists, so "not found" means
    /// deleted; Go Multus' direct GET does not retry it either).
    pub async fn get_pod(
        &mut self,
        namespace: &str,
        name: &str,
        retry: RetryPolicy,
    ) -> Result<Pod, ApiError> {
        let deadline = Instant::now() + retry.timeout;
        loop {
            match self.get_pod_raw(namespace, name).await {
                Ok(v) => return Pod::from_json(&v).map_err(|e| ApiError::Decode(e.msg)),
                Err(e) if e.is_transient() && Instant::now() + retry.interval < deadline => {
                    tracing::debug!("pod {namespace}/{name}: {e}; retrying");
                    tokio::time::sleep(retry.interval).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// POSTs a core/v1 Event about `pod` (as client-go's recorder names it: `<pod>.<hex time>`, source
    /// component `multus`).
    pub async fn post_event(
        &mut self,
        pod: &EventPod<'_>,
        event: &Event<'_>,
    ) -> Result<(), ApiError> {
        let body = event_body(pod, event, std::time::SystemTime::now());
        let path = format!("/api/v1/namespaces/{}/events", pod.namespace);
        self.request(
            hyper::Method::POST,
            &path,
            Some(body.to_string().into_bytes()),
        )
        .await
        .map(|_| ())
    }

    /// GET a NetworkAttachmentDefinition (the raw object).
    pub async fn get_nad(&mut self, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.request(
            hyper::Method::GET,
            &crate::nad::nad_path(namespace, name),
            None,
        )
        .await
    }

    /// Sets one annotation of a pod through `pods/{name}/status`, as upstream does (with
    /// [`ClientConfig::status_patch`], one merge PATCH first): GET, change, PUT with
    /// the pod's resourceVersion; a 409 conflict starts over with a fresh GET (at most `attempts` times).
    /// When `uid` is given, a pod with another UID (a new pod of the same name) is left alone.
    pub async fn set_pod_annotation(
        &mut self,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
        key: &str,
        value: &str,
        attempts: u32,
    ) -> Result<(), ApiError> {
        let path = format!("{}/status", pod_path(namespace, name));
        if self.cfg.status_patch {
            let mut meta = serde_json::json!({"annotations": {key: value}});
            if let Some(uid) = uid.filter(|u| !u.is_empty()) {
                // A precondition: the server refuses to change a pod's UID, so another pod of the name fails.
                meta["uid"] = Value::String(uid.to_string());
            }
            let body = serde_json::json!({ "metadata": meta })
                .to_string()
                .into_bytes();
            match self.request(hyper::Method::PATCH, &path, Some(body)).await {
                Ok(_) => return Ok(()),
                Err(e) if matches!(e.status(), Some(403 | 405 | 415)) => {
                    tracing::debug!("{path}: PATCH refused ({e}); GET + PUT instead");
                }
                Err(e) => return Err(e),
            }
        }
        let mut last = None;
        for _ in 0..attempts.max(1) {
            let mut pod = self.get_pod_raw(namespace, name).await?;
            if let Some(uid) = uid.filter(|u| !u.is_empty()) {
                if pod["metadata"]["uid"].as_str() != Some(uid) {
                    return Err(ApiError::Status {
                        code: 409,
                        path,
                        message: format!(
                            "the pod now has UID {}, not {uid}",
                            pod["metadata"]["uid"]
                        ),
                    });
                }
            }
            if crate::annotation::set_in_pod(&mut pod, key, value).is_none() {
                return Err(ApiError::Decode("pod without metadata".into()));
            }
            let body = serde_json::to_vec(&pod).map_err(|e| ApiError::Decode(e.to_string()))?;
            match self.request(hyper::Method::PUT, &path, Some(body)).await {
                Ok(_) => return Ok(()),
                Err(e) if e.status() == Some(409) => {
                    tracing::debug!("{path}: conflict, retrying with a fresh GET");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(ApiError::Transport("no attempt made".into())))
    }
}

/// The pod an event is about.
#[derive(Debug, Clone, Copy)]
pub struct EventPod<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its UID (may be empty).
    pub uid: &'a str,
}

/// What an event says (`type` `Normal` or `Warning`, a CamelCase reason, a message), as `kubectl describe
/// pod` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// `Normal` or `Warning`.
    pub kind: &'a str,
    /// Upstream's reasons: `AddedInterface`, `NoNetworkFound`.
    pub reason: &'a str,
    /// The message.
    pub message: &'a str,
}

/// The core/v1 Event object of `event` about `pod` at `now`.
pub fn event_body(pod: &EventPod<'_>, event: &Event<'_>, now: std::time::SystemTime) -> Value {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let stamp = multus_core::time::rfc3339_utc(now);
    serde_json::json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", pod.name, since.as_nanos()), "namespace": pod.namespace},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.namespace, "name": pod.name,
                           "uid": pod.uid},
        "reason": event.reason, "message": event.message, "type": event.kind,
        "source": {"component": "multus"}, "reportingComponent": "multus",
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_core_v1_objects_with_utc_stamps() {
        let pod = EventPod {
            namespace: "default",
            name: "sample-pod",
            uid: "u1",
        };
        let ev = Event {
            kind: "Normal",
            reason: "AddedInterface",
            message: "Add net1 [192.168.1.200/24] from default/macvlan-conf",
        };
        let t = std::time::UNIX_EPOCH + Duration::from_secs(1_764_899_999);
        let v = event_body(&pod, &ev, t);
        assert_eq!(v["firstTimestamp"], "2025-12-05T01:59:59Z");
        assert_eq!(v["involvedObject"]["uid"], "u1");
        assert_eq!(v["reason"], "AddedInterface");
        assert!(v["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("sample-pod."));
    }

    #[test]
    fn api_errors_map_to_cni_codes() {
        let s = |code| ApiError::Status {
            code,
            path: "/p".into(),
            message: "m".into(),
        };
        assert_eq!(s(404).to_cni("x").code.code(), 7);
        assert_eq!(s(403).to_cni("x").code.code(), 7);
        assert_eq!(s(503).to_cni("x").code.code(), 11);
        assert_eq!(
            ApiError::Transport("refused".into())
                .to_cni("x")
                .code
                .code(),
            11
        );
        assert!(s(404)
            .to_cni("NAD a/b")
            .msg
            .starts_with("NAD a/b: API server answered 404"));
    }
}

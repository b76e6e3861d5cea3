//! A stand-in for the Kubernetes API server, for tests (feature `test-server`): a real HTTPS server on
//! 127.0.0.1 with a CA, a server certificate and a client certificate generated at start, serving the REST
//! paths and JSON Multus uses:
//!
//! - `GET /api/v1/namespaces/{ns}/pods/{name}` (404 when absent);
//! - `PUT /api/v1/namespaces/{ns}/pods/{name}/status`: 409 when the body's `metadata.resourceVersion` is
//!   not the current one (and for as many injected conflicts as asked), else stored with a new
//!   resourceVersion;
//! - `GET /apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/{name}` (404, or 403 for
//!   NADs marked forbidden).
//!
//! - `PATCH /api/v1/namespaces/{ns}/pods/{name}/status` (JSON merge patch of the annotations; a
//!   `metadata.uid` that is not the pod's is refused with 409, as a UID precondition);
//! - `GET /api/v1/pods` and `GET /apis/k8s.cni.cncf.io/v1/network-attachment-definitions`: LIST and WATCH
//!   (`watch`: `spec.nodeName` field selector, pages, resumption, bookmarks, 410 Gone, timeouts).
//!
//! Pods made by [`TestApiServer::add_pod`] run on [`TEST_NODE`]. [`TestApiServer::set_down`] takes the
//! server down and up again on the same address (connections dropped, open watches ended).
//!
//! Every request must carry the bearer token or come over a connection that presented the client
//! certificate (else 401). [`TestApiServer::write_kubeconfig`] writes a kubeconfig that reaches it.
//!
//! ```
//! # fn main() -> Result<(), String> {
//! use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
//! let server = TestApiServer::start()?;
//! server.add_nad("default", "macvlan-conf", r#"{"cniVersion":"0.3.1","type":"macvlan"}"#, &[]);
//! let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
//! let kubeconfig = server.write_kubeconfig(dir.path(), KubeconfigAuth::Token)?;
//! assert!(kubeconfig.exists());
//! # Ok(()) }
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

mod watch;
use watch::Kind;

/// The node the pods of [`TestApiServer::add_pod`] run on (`spec.nodeName`).
pub const TEST_NODE: &str = "test-node";

/// The body of every answer (whole, or a watch's stream).
type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// How the kubeconfig written by [`TestApiServer::write_kubeconfig`] authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeconfigAuth {
    /// A bearer token.
    Token,
    /// A wrong bearer token (every request gets 401).
    WrongToken,
    /// The client certificate and key, inline (`client-certificate-data`, `client-key-data`).
    ClientCertificate,
}

#[derive(Default)]
struct State {
    pods: BTreeMap<(String, String), Value>,
    nads: BTreeMap<(String, String), Value>,
    forbidden: BTreeSet<(String, String)>,
    conflicts: u32,
    log: Vec<String>,
    connections: u32,
    rv: u64,
    events: Vec<Value>,
    history: std::collections::VecDeque<watch::Change>,
    watchers: Vec<watch::Watcher>,
    next_watch: u64,
    expired_below: u64,
    down: bool,
}

/// The running server; stopped on drop.
pub struct TestApiServer {
    addr: SocketAddr,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    token: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn status_body(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                      "message":message,"reason":reason,"code":code});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn ok_body(v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed_unsync());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// The certificates made at start and the TLS acceptor serving with them.
struct Certs {
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all generated now.
fn make_certs() -> Result<Certs, String> {
    let ca_key = rcgen::KeyPair::generate().map_err(e2s)?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e2s)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "multus-k8s test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(e2s)?;
    let server_key = rcgen::KeyPair::generate().map_err(e2s)?;
    let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .map_err(e2s)?
        .signed_by(&server_key, &ca)
        .map_err(e2s)?;
    let client_key = rcgen::KeyPair::generate().map_err(e2s)?;
    let mut cp = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e2s)?;
    cp.distinguished_name
        .push(rcgen::DnType::CommonName, "system:node:test");
    cp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = cp.signed_by(&client_key, &ca).map_err(e2s)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).map_err(e2s)?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(e2s)?;
    let key = PrivateKeyDer::from_pem_slice(server_key.serialize_pem().as_bytes()).map_err(e2s)?;
    let chain = vec![CertificateDer::from(server_cert.der().to_vec())];
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(e2s)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(e2s)?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    Ok(Certs {
        acceptor,
        ca_pem: ca.pem(),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    })
}

impl TestApiServer {
    /// Generates the certificates and starts serving on a free port of 127.0.0.1.
    pub fn start() -> Result<TestApiServer, String> {
        let Certs {
            acceptor,
            ca_pem,
            client_cert_pem,
            client_key_pem,
        } = make_certs()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(e2s)?;
        listener.set_nonblocking(true).map_err(e2s)?;
        let addr = listener.local_addr().map_err(e2s)?;
        let token = format!("test-token-{:x}", std::process::id());
        let state = Arc::new(Mutex::new(State {
            rv: 100,
            ..Default::default()
        }));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let tok = token.clone();
        let thread = std::thread::Builder::new()
            .name("test-api-server".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            acc = listener.accept() => {
                                let Ok((tcp, _)) = acc else { continue };
                                if lock(&st).down {
                                    continue;
                                }
                                let _ = tcp.set_nodelay(true);
                                lock(&st).connections += 1;
                                let acceptor = acceptor.clone();
                                let st = st.clone();
                                let tok = tok.clone();
                                tokio::spawn(async move {
                                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                                    let has_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
                                    let svc = hyper::service::service_fn(move |req| {
                                        let st = st.clone();
                                        let tok = tok.clone();
                                        async move { Ok::<_, std::convert::Infallible>(handle(st, &tok, has_cert, req).await) }
                                    });
                                    let _ = hyper::server::conn::http1::Builder::new()
                                        .serve_connection(TokioIo::new(tls), svc)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .map_err(e2s)?;
        Ok(TestApiServer {
            addr,
            ca_pem,
            client_cert_pem,
            client_key_pem,
            token,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The bearer token it accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Stops serving (connections refused from now on): the API server is down.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Writes `ca.pem` and a kubeconfig into `dir`; returns the kubeconfig's path.
    pub fn write_kubeconfig(&self, dir: &Path, auth: KubeconfigAuth) -> Result<PathBuf, String> {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        std::fs::create_dir_all(dir).map_err(e2s)?;
        std::fs::write(dir.join("ca.pem"), &self.ca_pem).map_err(e2s)?;
        let user = match auth {
            KubeconfigAuth::Token => format!("token: {}", self.token),
            KubeconfigAuth::WrongToken => "token: not-the-token".to_string(),
            KubeconfigAuth::ClientCertificate => format!(
                "client-certificate-data: {}\n    client-key-data: {}",
                b64(&self.client_cert_pem),
                b64(&self.client_key_pem)
            ),
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: ca.pem\n\
             users:\n- name: multus\n  user:\n    {user}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: multus\n\
             current-context: test\n",
            self.url()
        );
        let path = dir.join("multus.kubeconfig");
        std::fs::write(&path, text).map_err(e2s)?;
        Ok(path)
    }

    /// Creates (or replaces) a pod on [`TEST_NODE`]; returns it.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        annotations: &[(&str, &str)],
    ) -> Value {
        self.add_pod_on_node(namespace, name, uid, TEST_NODE, annotations)
    }

    /// Creates (or replaces) a pod on `node`; returns it.
    pub fn add_pod_on_node(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        node: &str,
        annotations: &[(&str, &str)],
    ) -> Value {
        let mut st = lock(&self.state);
        st.rv += 1;
        let ann: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let pod = json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":name,"namespace":namespace,"uid":uid,"resourceVersion":st.rv.to_string(),"annotations":ann},
            "spec":{"nodeName":node,"containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Pending"}});
        let old = st.pods.insert((namespace.into(), name.into()), pod.clone());
        let typ = if old.is_some() { "MODIFIED" } else { "ADDED" };
        watch::record(&mut st, Kind::Pod, typ, &pod);
        pod
    }

    /// Deletes a pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut st = lock(&self.state);
        if let Some(mut pod) = st.pods.remove(&(namespace.into(), name.into())) {
            st.rv += 1;
            pod["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
            watch::record(&mut st, Kind::Pod, "DELETED", &pod);
        }
    }

    /// A pod as stored.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .pods
            .get(&(namespace.into(), name.into()))
            .cloned()
    }

    /// The pod's network-status annotation, decoded.
    pub fn network_status(&self, namespace: &str, name: &str) -> Option<Value> {
        let pod = self.pod(namespace, name)?;
        let s = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"].as_str()?;
        serde_json::from_str(s).ok()
    }

    /// Creates (or replaces) a NAD with `spec.config` and annotations.
    pub fn add_nad(&self, namespace: &str, name: &str, config: &str, annotations: &[(&str, &str)]) {
        let ann: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        let mut st = lock(&self.state);
        st.rv += 1;
        let nad = json!({"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition",
            "metadata":{"name":name,"namespace":namespace,"annotations":ann,"resourceVersion":st.rv.to_string()},
            "spec":{"config":config}});
        let old = st.nads.insert((namespace.into(), name.into()), nad.clone());
        let typ = if old.is_some() { "MODIFIED" } else { "ADDED" };
        watch::record(&mut st, Kind::Nad, typ, &nad);
    }

    /// Deletes a NAD.
    pub fn delete_nad(&self, namespace: &str, name: &str) {
        let mut st = lock(&self.state);
        if let Some(mut nad) = st.nads.remove(&(namespace.into(), name.into())) {
            st.rv += 1;
            nad["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
            watch::record(&mut st, Kind::Nad, "DELETED", &nad);
        }
    }

    /// Takes the server down (`true`: new connections are dropped, requests on open ones get 503, open
    /// watches end) or up again on the same address.
    pub fn set_down(&self, down: bool) {
        let mut st = lock(&self.state);
        st.down = down;
        if down {
            watch::close_all(&mut st);
        }
    }

    /// Ends every open watch and forgets the history: a watch resumed from any resourceVersion up to now
    /// gets 410 Gone (what an etcd compaction does to a reflector), so the watcher must LIST again.
    pub fn expire_watches(&self) {
        let mut st = lock(&self.state);
        st.expired_below = st.rv + 1;
        st.history.clear();
        watch::close_all(&mut st);
    }

    /// Sends a BOOKMARK at the current resourceVersion to every watch that allows bookmarks; returns it.
    pub fn bookmark(&self) -> u64 {
        let mut st = lock(&self.state);
        st.rv += 1;
        watch::bookmark(&mut st);
        st.rv
    }

    /// How many watches are open.
    pub fn open_watches(&self) -> usize {
        lock(&self.state).watchers.len()
    }

    /// Makes GETs of this NAD answer 403 (RBAC refusal).
    pub fn forbid_nad(&self, namespace: &str, name: &str) {
        lock(&self.state)
            .forbidden
            .insert((namespace.into(), name.into()));
    }

    /// The next `n` status updates get a 409 conflict (as if another writer changed the pod in between).
    pub fn inject_conflicts(&self, n: u32) {
        lock(&self.state).conflicts = n;
    }

    /// Every request so far, as `METHOD path -> status`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }

    /// The events posted so far (core/v1 Event objects, in order).
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state).events.clone()
    }

    /// Forgets the request log and the connection count.
    pub fn clear_log(&self) {
        let mut st = lock(&self.state);
        st.log.clear();
        st.connections = 0;
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u32 {
        lock(&self.state).connections
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(
    shared: Arc<Mutex<State>>,
    token: &str,
    has_cert: bool,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let st = &*shared;
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let patch_type_ok = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == b"application/merge-patch+json");
    let authorized = has_cert
        || req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {token}").as_str());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let resp = if lock(st).down {
        status_body(503, "ServiceUnavailable", "the API server is down (test)")
    } else if !authorized {
        status_body(401, "Unauthorized", "Unauthorized")
    } else if method == Method::PATCH && !patch_type_ok {
        status_body(
            415,
            "UnsupportedMediaType",
            "only application/merge-patch+json",
        )
    } else {
        let q = watch::query(raw_query.as_deref());
        match (&method, parts.as_slice()) {
            (&Method::GET, ["api", "v1", "pods"]) => watch::collection(&shared, Kind::Pod, &q),
            (&Method::GET, ["apis", "k8s.cni.cncf.io", "v1", "network-attachment-definitions"]) => {
                watch::collection(&shared, Kind::Nad, &q)
            }
            _ => route(st, &method, &path, &body),
        }
    };
    let shown = match &raw_query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    lock(st)
        .log
        .push(format!("{method} {shown} -> {}", resp.status().as_u16()));
    resp
}

/// A JSON merge patch of a pod's annotations through `pods/{name}/status`, with its UID as a precondition.
fn patch_status(st: &mut State, ns: &str, name: &str, body: &[u8]) -> Response<Body> {
    let key = (ns.to_string(), name.to_string());
    let Ok(patch) = serde_json::from_slice::<Value>(body) else {
        return status_body(400, "BadRequest", "body is not JSON");
    };
    let Some(cur) = st.pods.get(&key).cloned() else {
        return status_body(404, "NotFound", &format!("pods \"{name}\" not found"));
    };
    if let Some(uid) = patch["metadata"]["uid"].as_str() {
        if cur["metadata"]["uid"].as_str() != Some(uid) {
            return status_body(
                409,
                "Conflict",
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    cur["metadata"]["uid"]
                ),
            );
        }
    }
    let mut updated = cur;
    if !updated["metadata"]["annotations"].is_object() {
        updated["metadata"]["annotations"] = json!({});
    }
    if let (Some(changes), Some(ann)) = (
        patch["metadata"]["annotations"].as_object(),
        updated["metadata"]["annotations"].as_object_mut(),
    ) {
        for (k, v) in changes {
            match v {
                Value::Null => ann.remove(k),
                v => ann.insert(k.clone(), v.clone()),
            };
        }
    }
    st.rv += 1;
    updated["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
    st.pods.insert(key, updated.clone());
    watch::record(st, Kind::Pod, "MODIFIED", &updated);
    ok_body(&updated)
}

fn route(st: &Mutex<State>, method: &Method, path: &str, body: &[u8]) -> Response<Body> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut st = lock(st);
    match (method, parts.as_slice()) {
        (&Method::GET, ["api", "v1", "namespaces", ns, "pods", name]) => {
            match st.pods.get(&(ns.to_string(), name.to_string())) {
                Some(p) => ok_body(p),
                None => status_body(404, "NotFound", &format!("pods \"{name}\" not found")),
            }
        }
        (&Method::PUT, ["api", "v1", "namespaces", ns, "pods", name, "status"]) => {
            let key = (ns.to_string(), name.to_string());
            let Ok(new) = serde_json::from_slice::<Value>(body) else {
                return status_body(400, "BadRequest", "body is not JSON");
            };
            let Some(cur) = st.pods.get(&key).cloned() else {
                return status_body(404, "NotFound", &format!("pods \"{name}\" not found"));
            };
            if st.conflicts > 0 {
                st.conflicts -= 1;
                st.rv += 1;
                let rv = st.rv.to_string();
                if let Some(p) = st.pods.get_mut(&key) {
                    p["metadata"]["resourceVersion"] = Value::String(rv);
                }
                return status_body(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again");
            }
            if new["metadata"]["resourceVersion"] != cur["metadata"]["resourceVersion"] {
                return status_body(409, "Conflict", "the object has been modified; please apply your changes to the latest version and try again");
            }
            st.rv += 1;
            let mut updated = cur;
            updated["metadata"]["annotations"] = new["metadata"]["annotations"].clone();
            updated["status"] = new["status"].clone();
            updated["metadata"]["resourceVersion"] = Value::String(st.rv.to_string());
            st.pods.insert(key, updated.clone());
            watch::record(&mut st, Kind::Pod, "MODIFIED", &updated);
            ok_body(&updated)
        }
        (&Method::PATCH, ["api", "v1", "namespaces", ns, "pods", name, "status"]) => {
            patch_status(&mut st, ns, name, body)
        }
        (&Method::POST, ["api", "v1", "namespaces", ns, "events"]) => {
            let Ok(ev) = serde_json::from_slice::<Value>(body) else {
                return status_body(400, "BadRequest", "body is not JSON");
            };
            if ev["metadata"]["namespace"] != *ns || ev["involvedObject"]["kind"] != "Pod" {
                return status_body(422, "Invalid", "event namespace or involved object invalid");
            }
            st.events.push(ev.clone());
            let mut r = ok_body(&ev);
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        (
            &Method::GET,
            ["apis", "k8s.cni.cncf.io", "v1", "namespaces", ns, "network-attachment-definitions", name],
        ) => {
            let key = (ns.to_string(), name.to_string());
            if st.forbidden.contains(&key) {
                return status_body(
                    403,
                    "Forbidden",
                    &format!("network-attachment-definitions.k8s.cni.cncf.io \"{name}\" is forbidden: User \"multus\" cannot get resource in the namespace \"{ns}\""),
                );
            }
            match st.nads.get(&key) {
                Some(n) => ok_body(n),
                None => status_body(
                    404,
                    "NotFound",
                    &format!("network-attachment-definitions.k8s.cni.cncf.io \"{name}\" not found"),
                ),
            }
        }
        _ => status_body(404, "NotFound", &format!("no route {method} {path}")),
    }
}

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

use crate::plan::Pod;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use multus_core::cni::CniError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the in-cluster service account is mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How long and how often to retry a pod GET (upstream's fixed 2.5 s is too short for some clusters,
/// multus-cni #1461, so both are configurable).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Give up after this long.
    pub timeout: Duration,
    /// Wait this long between attempts.
    pub interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            timeout: Duration::from_secs(10),
            interval: Duration::from_millis(250),
        }
    }
}

/// How to reach and authenticate to the API server.
#[derive(Clone)]
pub struct ClientConfig {
    /// `https://host:port` as configured.
    pub server: String,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
    /// Where the token was read from (a service account's projected token, a kubeconfig's `tokenFile`):
    /// read again when it changes, since the kubelet rotates it and a long-running client (the thick
    /// daemon) would otherwise be refused once the first one expires.
    token_file: Option<(PathBuf, Arc<std::sync::Mutex<TokenCache>>)>,
    /// The limit on one request (connect included).
    pub request_timeout: Duration,
    /// Write pod annotations with one JSON merge PATCH of `pods/{name}/status` carrying the pod's UID (no
    /// read first), falling back to GET + PUT when the server refuses the PATCH (403, 405, 415). The thick
    /// daemon sets it (RBAC `patch` on `pods/status`); the thin plugin keeps upstream's GET + PUT.
    pub status_patch: bool,
    /// Told about every request: its verb (`GET`, `PUT`, `PATCH`, `POST`, `LIST`, `WATCH`) and the HTTP
    /// status, or `None` when no answer came (the daemon's API request metrics).
    pub observer: Option<ApiObserver>,
}

/// See [`ClientConfig::observer`].
pub type ApiObserver = Arc<dyn Fn(&str, Option<u16>) + Send + Sync>;

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An error of the API client.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The server answered with an error status.
    Status {
        /// HTTP status.
        code: u16,
        /// The request path.
        path: String,
        /// The server's message (`Status.message`), or the body.
        message: String,
    },
    /// The server could not be reached, or the connection broke.
    Transport(String),
    /// The answer was not what the API returns.
    Decode(String),
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Status {
                code,
                path,
                message,
            } => write!(f, "API server answered {code} for {path}: {message}"),
            ApiError::Transport(m) => write!(f, "API server unreachable: {m}"),
            ApiError::Decode(m) => write!(f, "API server answer not understood: {m}"),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether trying again may help (server unreachable, overloaded or failing).
    pub fn is_transient(&self) -> bool {
        match self {
            ApiError::Transport(_) => true,
            ApiError::Status { code, .. } => *code == 429 || *code >= 500,
            ApiError::Decode(_) => false,
        }
    }

    /// The CNI error for it, prefixed with what was being done: unreachable or failing servers are "try
    /// again later" (11), refusals and absences an invalid network config (7).
    pub fn to_cni(&self, what: &str) -> CniError {
        let msg = format!("{what}: {self}");
        match self {
            e if e.is_transient() => CniError::try_again_later(msg),
            ApiError::Decode(_) => CniError::decoding(msg),
            _ => CniError::invalid_config(msg),
        }
    }
}

fn cfg_err(file: &Path, why: impl std::fmt::Display) -> CniError {
    CniError::invalid_config(format!("kubeconfig {}: {why}", file.display()))
}

fn read_file(base: &Path, kubeconfig: &Path, p: &str, what: &str) -> Result<Vec<u8>, CniError> {
    let path = if Path::new(p).is_absolute() {
        PathBuf::from(p)
    } else {
        base.join(p)
    };
    multus_core::fs::read_input(&path)
        .map_err(|e| cfg_err(kubeconfig, format!("{what} {}: {e}", path.display())))
}

/// Splits `https://host[:port][/]` into host and port.
fn parse_server(server: &str) -> Result<(String, u16), String> {
    let rest = server
        .strip_prefix("https://")
        .ok_or_else(|| format!("server {server:?} must be an https:// URL"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("server {server:?} has no host"));
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| format!("server {server:?}: unterminated IPv6 address"))?;
        let port = match p.strip_prefix(':') {
            Some(p) => p
                .parse()
                .map_err(|_| format!("server {server:?}: bad port"))?,
            None => 443,
        };
        return Ok((h.to_string(), port));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .map_err(|_| format!("server {server:?}: bad port {p:?}"))?,
        )),
        None => Ok((authority.to_string(), 443)),
    }
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| format!("not base64: {e}"))
}

struct Creds {
    ca_pem: Vec<u8>,
    client_cert: Option<(Vec<u8>, Vec<u8>)>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

/// The token as last read from its file, and that file's modification time then.
#[derive(Debug, Default)]
struct TokenCache {
    token: String,
    modified: Option<std::time::SystemTime>,
}

fn tls_config(creds: &Creds, origin: &Path) -> Result<Arc<rustls::ClientConfig>, CniError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(&creds.ca_pem) {
        let c = c.map_err(|e| cfg_err(origin, format!("certificate authority: {e}")))?;
        roots
            .add(c)
            .map_err(|e| cfg_err(origin, format!("certificate authority: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(cfg_err(
            origin,
            "the certificate authority holds no PEM certificate",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cfg_err(origin, format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let mut cfg = match &creds.client_cert {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| cfg_err(origin, format!("client certificate: {e}")))?;
            if chain.is_empty() {
                return Err(cfg_err(
                    origin,
                    "the client certificate holds no PEM certificate",
                ));
            }
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| cfg_err(origin, format!("client key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| cfg_err(origin, format!("client certificate and key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A kubeconfig cluster's CA: `certificate-authority-data` (base64) or the `certificate-authority` file.
fn cluster_ca(
    cluster: &Value,
    cluster_name: &str,
    base: &Path,
    path: &Path,
) -> Result<Vec<u8>, CniError> {
    match (
        cluster["certificate-authority-data"].as_str(),
        cluster["certificate-authority"].as_str(),
    ) {
        (Some(d), _) => {
            b64(d).map_err(|e| cfg_err(path, format!("certificate-authority-data: {e}")))
        }
        (None, Some(f)) => read_file(base, path, f, "certificate-authority"),
        (None, None) => Err(cfg_err(
            path,
            format!("cluster {cluster_name:?} has no certificate-authority(-data)"),
        )),
    }
}

/// A kubeconfig user's credentials (client certificate and key, token or token file) with the cluster's CA.
fn user_creds(
    user: &Value,
    user_name: &str,
    base: &Path,
    path: &Path,
    ca_pem: Vec<u8>,
) -> Result<Creds, CniError> {
    let pem = |data: &str, file: &str| -> Result<Option<Vec<u8>>, CniError> {
        match (user[data].as_str(), user[file].as_str()) {
            (Some(d), _) => b64(d)
                .map(Some)
                .map_err(|e| cfg_err(path, format!("{data}: {e}"))),
            (None, Some(f)) => read_file(base, path, f, file).map(Some),
            (None, None) => Ok(None),
        }
    };
    let client_cert = match (
        pem("client-certificate-data", "client-certificate")?,
        pem("client-key-data", "client-key")?,
    ) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(cfg_err(
                path,
                format!("user {user_name:?}: a client certificate needs both certificate and key"),
            ))
        }
    };
    let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
        (Some(t), _) => Some(t.to_string()),
        (None, Some(f)) => Some(
            String::from_utf8_lossy(&read_file(base, path, f, "tokenFile")?)
                .trim()
                .to_string(),
        ),
        (None, None) => None,
    };
    let token_file = match (user["token"].as_str(), user["tokenFile"].as_str()) {
        (None, Some(f)) if Path::new(f).is_absolute() => Some(PathBuf::from(f)),
        (None, Some(f)) => Some(base.join(f)),
        _ => None,
    };
    Ok(Creds {
        ca_pem,
        client_cert,
        token,
        token_file,
    })
}

fn find_named<'a>(list: &'a Value, name: &str, inner: &str) -> Option<&'a Value> {
    list.as_array()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))
        .map(|e| &e[inner])
}

impl ClientConfig {
    /// The bearer token now: from its file when that changed since it was last read (one `stat` per
    /// request), else as read before.
    fn bearer(&self) -> Option<String> {
        let Some((file, cache)) = &self.token_file else {
            return self.token.clone();
        };
        let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
        let modified = std::fs::metadata(file).and_then(|m| m.modified()).ok();
        if modified.is_some() && modified != c.modified {
            match std::fs::read(file) {
                Ok(b) if !b.is_empty() => {
                    c.token = String::from_utf8_lossy(&b).trim().to_string();
                    c.modified = modified;
                }
                _ => {}
            }
        }
        Some(c.token.clone())
    }

    /// Reads a kubeconfig file (YAML or JSON), using its `current-context` (else its only context).
    pub fn from_kubeconfig(path: &Path) -> Result<ClientConfig, CniError> {
        let bytes = multus_core::fs::read_input(path).map_err(|e| {
            CniError::invalid_config(format!(
                "kubeconfig {}: cannot be read: {e}",
                path.display()
            ))
        })?;
        let kc: Value = serde_norway::from_slice(&bytes).map_err(|e| {
            CniError::decoding(format!(
                "kubeconfig {}: not valid YAML: {e}",
                path.display()
            ))
        })?;
        let base = path.parent().unwrap_or(Path::new("/"));
        let ctx_name = match kc["current-context"].as_str().filter(|s| !s.is_empty()) {
            Some(c) => c.to_string(),
            None => match kc["contexts"].as_array().map(Vec::as_slice) {
                Some([only]) => only["name"].as_str().unwrap_or_default().to_string(),
                _ => return Err(cfg_err(path, "no current-context")),
            },
        };
        let ctx = find_named(&kc["contexts"], &ctx_name, "context")
            .ok_or_else(|| cfg_err(path, format!("context {ctx_name:?} is not defined")))?;
        let cluster_name = ctx["cluster"].as_str().unwrap_or_default();
        let cluster = find_named(&kc["clusters"], cluster_name, "cluster")
            .ok_or_else(|| cfg_err(path, format!("cluster {cluster_name:?} is not defined")))?;
        let user_name = ctx["user"].as_str().unwrap_or_default();
        let null = Value::Null;
        let user = find_named(&kc["users"], user_name, "user").unwrap_or(&null);
        let server = cluster["server"]
            .as_str()
            .ok_or_else(|| cfg_err(path, format!("cluster {cluster_name:?} has no server")))?;
        if cluster["insecure-skip-tls-verify"].as_bool() == Some(true) {
            return Err(cfg_err(
                path,
                "insecure-skip-tls-verify is not supported: give certificate-authority(-data)",
            ));
        }
        let ca_pem = cluster_ca(cluster, cluster_name, base, path)?;
        let creds = user_creds(user, user_name, base, path, ca_pem)?;
        Self::build(server, &creds, path)
    }

    /// The in-cluster service account: `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`, and the token and
    /// CA under `sa_dir` (normally [`SERVICE_ACCOUNT_DIR`]).
    pub fn in_cluster(sa_dir: &Path) -> Result<ClientConfig, CniError> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            CniError::invalid_env("in-cluster config: KUBERNETES_SERVICE_HOST is not set")
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        let server = if host.contains(':') {
            format!("https://[{host}]:{port}")
        } else {
            format!("https://{host}:{port}")
        };
        let read = |f: &str| {
            std::fs::read(sa_dir.join(f)).map_err(|e| {
                CniError::io(format!(
                    "in-cluster config: {}: {e}",
                    sa_dir.join(f).display()
                ))
            })
        };
        let creds = Creds {
            ca_pem: read("ca.crt")?,
            client_cert: None,
            token: Some(String::from_utf8_lossy(&read("token")?).trim().to_string()),
            token_file: Some(sa_dir.join("token")),
        };
        Self::build(&server, &creds, sa_dir)
    }

    fn build(server: &str, creds: &Creds, origin: &Path) -> Result<ClientConfig, CniError> {
        let (host, port) = parse_server(server).map_err(|e| cfg_err(origin, e))?;
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| cfg_err(origin, format!("server host {host:?}: {e}")))?;
        Ok(ClientConfig {
            server: server.to_string(),
            host,
            port,
            server_name,
            tls: tls_config(creds, origin)?,
            token: creds.token.clone(),
            token_file: creds.token_file.clone().map(|f| {
                let modified = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
                let cache = TokenCache {
                    token: creds.token.clone().unwrap_or_default(),
                    modified,
                };
                (f, Arc::new(std::sync::Mutex::new(cache)))
            }),
            request_timeout: Duration::from_secs(10),
            status_patch: false,
            observer: None,
        })
    }
}

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
            let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
                return Err(ApiError::Decode("pod without metadata".into()));
            };
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Default::default()));
            if !ann.is_object() {
                *ann = Value::Object(Default::default());
            }
            if let Some(a) = ann.as_object_mut() {
                a.insert(key.to_string(), Value::String(value.to_string()));
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
    fn servers() {
        assert_eq!(
            parse_server("https://10.0.0.1:6443").unwrap(),
            ("10.0.0.1".into(), 6443)
        );
        assert_eq!(
            parse_server("https://api.example/").unwrap(),
            ("api.example".into(), 443)
        );
        assert_eq!(
            parse_server("https://[fd00::1]:6443").unwrap(),
            ("fd00::1".into(), 6443)
        );
        assert!(parse_server("http://x").unwrap_err().contains("https://"));
        assert!(parse_server("https://x:port").unwrap_err().contains("port"));
    }

    #[test]
    fn kubeconfig_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope.kubeconfig");
        let e = ClientConfig::from_kubeconfig(&missing).unwrap_err();
        assert!(
            e.msg.contains("nope.kubeconfig") && e.msg.contains("cannot be read"),
            "{e}"
        );
        assert_eq!(e.code.code(), 7);
        for (text, word) in [
            ("a: [", "YAML"),
            ("clusters: []\ncontexts: []\n", "current-context"),
            ("current-context: c\ncontexts: []\n", "\"c\" is not defined"),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x:1'}}]\n",
                "certificate-authority",
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x:1', certificate-authority: ca.pem}}]\n",
                "ca.pem",
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k, user: u}}]\nclusters: [{name: k, cluster: {server: 'https://x:1', certificate-authority-data: 'bm90IGEgY2VydA=='}}]\n",
                "no PEM certificate",
            ),
            (
                "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\nclusters: [{name: k, cluster: {server: 'https://x:1', insecure-skip-tls-verify: true}}]\n",
                "insecure-skip-tls-verify",
            ),
        ] {
            let f = d.path().join("kc");
            std::fs::write(&f, text).unwrap();
            let e = ClientConfig::from_kubeconfig(&f).unwrap_err();
            assert!(e.msg.contains("kc") && e.msg.contains(word), "{text}: {e}");
        }
    }

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

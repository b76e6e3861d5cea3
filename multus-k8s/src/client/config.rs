//! Where the API server is and how to authenticate to it: a kubeconfig file or the in-cluster service
//! account, made into a rustls client config once.

use base64::Engine;
use multus_core::cni::CniError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) server_name: ServerName<'static>,
    pub(super) tls: Arc<rustls::ClientConfig>,
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
    pub(super) fn bearer(&self) -> Option<String> {
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
}

//! The kubeconfig Multus uses on the node, made from the DaemonSet pod's service account (pure: inputs to
//! text). Written as YAML, as upstream does; rewritten when the token rotates.

use std::path::Path;

/// The in-cluster service account files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The bearer token.
    pub token: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: Vec<u8>,
    /// `https://host:port` of the API server.
    pub server: String,
}

/// Why the service account could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SaError {
    /// A file could not be read.
    #[error("cannot read the service account {what} at {path}: {err}; is the pod's service account mounted?")]
    Read {
        /// Which file.
        what: &'static str,
        /// Where.
        path: String,
        /// The error.
        err: std::io::Error,
    },
    /// The token file is empty.
    #[error("the service account token at {0} is empty")]
    EmptyToken(String),
    /// No API server address in the environment.
    #[error("KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are not set: cannot tell where the API server is")]
    NoServer,
}

impl ServiceAccount {
    /// Reads `token` and `ca.crt` from `dir` and the API server from `host`/`port`.
    pub fn read(dir: &Path, host: Option<&str>, port: Option<&str>) -> Result<Self, SaError> {
        let read = |what: &'static str, name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|err| SaError::Read {
                what,
                path: p.display().to_string(),
                err,
            })
        };
        let token = String::from_utf8_lossy(&read("token", "token")?)
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(SaError::EmptyToken(dir.join("token").display().to_string()));
        }
        let ca_pem = read("CA certificate", "ca.crt")?;
        let (Some(host), Some(port)) = (
            host.filter(|h| !h.is_empty()),
            port.filter(|p| !p.is_empty()),
        ) else {
            return Err(SaError::NoServer);
        };
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Ok(ServiceAccount {
            token,
            ca_pem,
            server: format!("https://{host}:{port}"),
        })
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (for `certificate-authority-data`).
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The kubeconfig text for a service account.
pub fn render(sa: &ServiceAccount) -> String {
    // The token and server are quoted as YAML double-quoted strings; neither may hold a quote or newline
    // (a token is base64url with dots, a server is a URL), but escape anyway.
    let q = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    format!(
        "# Kubeconfig file for Multus CNI plugin.\n\
         apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: local\n\
         \x20 cluster:\n\
         \x20   server: \"{server}\"\n\
         \x20   certificate-authority-data: \"{ca}\"\n\
         users:\n\
         - name: multus\n\
         \x20 user:\n\
         \x20   token: \"{token}\"\n\
         contexts:\n\
         - name: multus-context\n\
         \x20 context:\n\
         \x20   cluster: local\n\
         \x20   user: multus\n\
         current-context: multus-context\n",
        server = q(&sa.server),
        ca = base64(&sa.ca_pem),
        token = q(&sa.token),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }

    #[test]
    fn reads_a_service_account_and_renders() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("token"), "abc.def\n").unwrap();
        std::fs::write(d.path().join("ca.crt"), "PEM").unwrap();
        let sa = ServiceAccount::read(d.path(), Some("10.96.0.1"), Some("443")).unwrap();
        assert_eq!(sa.server, "https://10.96.0.1:443");
        let text = render(&sa);
        assert!(text.contains("token: \"abc.def\""), "{text}");
        assert!(text.contains(&format!(
            "certificate-authority-data: \"{}\"",
            base64(b"PEM")
        )));
        assert_eq!(
            ServiceAccount::read(d.path(), Some("fd00::1"), Some("6443"))
                .unwrap()
                .server,
            "https://[fd00::1]:6443"
        );
        assert!(matches!(
            ServiceAccount::read(d.path(), None, Some("443")),
            Err(SaError::NoServer)
        ));
        std::fs::write(d.path().join("token"), "  \n").unwrap();
        assert!(matches!(
            ServiceAccount::read(d.path(), Some("h"), Some("1")),
            Err(SaError::EmptyToken(_))
        ));
        assert!(matches!(
            ServiceAccount::read(Path::new("/nonexistent"), Some("h"), Some("1")),
            Err(SaError::Read { .. })
        ));
    }
}

//! Errors of the API client, and the CNI error each becomes.

use multus_core::cni::CniError;

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

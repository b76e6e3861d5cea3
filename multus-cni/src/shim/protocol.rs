//! The thick plugin's wire format, as upstream's `pkg/server/api` defines it, so that upstream's shim works
//! with our daemon and ours with theirs: `POST /cni` (and `/delegate`) on `<socketDir>/multus.sock` with
//! a JSON [`Request`]; `200` with a [`Response`] (`{"Result": {...}}` for ADD, an empty body for the other
//! verbs), or `400` with the CNI error object (`{"code", "msg", "details"}`).

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The CNI request path.
pub const CNI_PATH: &str = "/cni";
/// The delegate (hot-plug) request path.
pub const DELEGATE_PATH: &str = "/delegate";
/// The socket's file name in `socketDir`.
pub const SOCKET_NAME: &str = "multus.sock";
/// Upstream's default socket directory (`daemonSocketDir` / `socketDir`).
pub const DEFAULT_SOCKET_DIR: &str = "/run/multus/";

/// The socket in a socket directory.
pub fn socket_path(dir: &Path) -> PathBuf {
    dir.join(SOCKET_NAME)
}

/// One CNI call forwarded to the daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// The `CNI_*` environment of the call (upstream's shim sends its whole environment).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// The config on stdin (Go's `[]byte`: base64 in JSON).
    #[serde(default, with = "go_bytes", skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<u8>,
    /// `/delegate` only: what the network selection element would have asked for.
    #[serde(
        default,
        rename = "interfaceAttributes",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_attributes: Option<InterfaceAttributes>,
}

/// Upstream's `DelegateInterfaceAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceAttributes {
    /// Requested IPs (`IP=` in `CNI_ARGS`).
    #[serde(default, rename = "ips", skip_serializing_if = "Vec::is_empty")]
    pub ip_request: Vec<String>,
    /// Requested MAC (`MAC=` in `CNI_ARGS`).
    #[serde(default, rename = "mac", skip_serializing_if = "String::is_empty")]
    pub mac_request: String,
    /// `cni-args` merged into the delegate's `args.cni`.
    #[serde(default, rename = "cni-args")]
    pub cni_args: Option<serde_json::Map<String, Value>>,
}

/// The daemon's answer to a successful call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The ADD result (upstream sends it as CNI 1.0.0; ours as 1.1.0 when Multus' version is 1.1.0).
    #[serde(rename = "Result", default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
}

/// Go encodes `[]byte` as standard base64 (and `null` for nil).
mod go_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        match s {
            None => Ok(Vec::new()),
            Some(s) => base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As upstream's shim marshals it (`json.Marshal(&api.Request{...})`).
    #[test]
    fn requests_as_upstream_writes_them() {
        let go = r#"{"env":{"CNI_COMMAND":"ADD","CNI_IFNAME":"eth0"},"config":"eyJ0eXBlIjoibXVsdHVzLXNoaW0ifQ=="}"#;
        let r: Request = serde_json::from_str(go).unwrap();
        assert_eq!(r.config, br#"{"type":"multus-shim"}"#);
        assert_eq!(r.env["CNI_COMMAND"], "ADD");
        assert_eq!(serde_json::to_string(&r).unwrap(), go);
        let d: Request = serde_json::from_str(
            r#"{"env":{},"config":null,"interfaceAttributes":{"ips":["10.0.0.5/24"],"mac":"02:00:00:00:00:01","cni-args":null}}"#,
        )
        .unwrap();
        let ia = d.interface_attributes.unwrap();
        assert_eq!(ia.ip_request, ["10.0.0.5/24"]);
        assert!(ia.cni_args.is_none());
    }

    #[test]
    fn responses_carry_the_result_under_upstreams_field_name() {
        let r = Response {
            result: Some(serde_json::json!({"cniVersion": "1.0.0"})),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Result":{"cniVersion":"1.0.0"}}"#
        );
        let empty: Response = serde_json::from_str("{}").unwrap();
        assert!(empty.result.is_none());
    }
}

//! CNI errors: the spec's well-known codes and the JSON error object written on stdout.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The CNI spec's well-known error codes (section 2, "Errors"), plus this project's plugin codes (100+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: incompatible CNI version.
    IncompatibleVersion,
    /// 2: unsupported field in the network configuration.
    UnsupportedField,
    /// 3: container unknown or does not exist.
    UnknownContainer,
    /// 4: invalid or missing environment variables.
    InvalidEnvironment,
    /// 5: I/O failure.
    IoFailure,
    /// 6: failed to decode content.
    DecodingFailure,
    /// 7: invalid network configuration.
    InvalidNetworkConfig,
    /// 11: try again later (a transient condition).
    TryAgainLater,
    /// 50: the plugin is not available (STATUS).
    PluginNotAvailable,
    /// 51: the plugin is not available and existing containers may have limited connectivity (STATUS).
    PluginNotAvailableLimitedConnectivity,
    /// 100: a delegate failed without giving a CNI error of its own (it died or was killed).
    DelegateFailed,
    /// 101: a delegate printed something that is not a CNI result or error.
    DelegateBadOutput,
    /// 102: a delegate did not finish within its timeout.
    DelegateTimeout,
    /// 103: a kernel (netlink / sysfs) operation failed.
    KernelOperation,
    /// 104: an IPAM operation failed for another reason (its store, its config, ...).
    IpamFailure,
    /// 105: every address of an IPAM range set is taken.
    IpamExhausted,
    /// 106: a requested address is already taken.
    IpamRequestedTaken,
    /// 107: a requested address is its range's gateway.
    IpamRequestedGateway,
    /// 108: a requested address is in no range set.
    IpamRequestedOutside,
    /// 109: the attachment already holds an address in the range set.
    IpamDuplicateAllocation,
    /// Any other code, as received from a delegate.
    Other(u32),
}

impl ErrorCode {
    /// The numeric code written in the JSON error.
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::IncompatibleVersion => 1,
            ErrorCode::UnsupportedField => 2,
            ErrorCode::UnknownContainer => 3,
            ErrorCode::InvalidEnvironment => 4,
            ErrorCode::IoFailure => 5,
            ErrorCode::DecodingFailure => 6,
            ErrorCode::InvalidNetworkConfig => 7,
            ErrorCode::TryAgainLater => 11,
            ErrorCode::PluginNotAvailable => 50,
            ErrorCode::PluginNotAvailableLimitedConnectivity => 51,
            ErrorCode::DelegateFailed => 100,
            ErrorCode::DelegateBadOutput => 101,
            ErrorCode::DelegateTimeout => 102,
            ErrorCode::KernelOperation => 103,
            ErrorCode::IpamFailure => 104,
            ErrorCode::IpamExhausted => 105,
            ErrorCode::IpamRequestedTaken => 106,
            ErrorCode::IpamRequestedGateway => 107,
            ErrorCode::IpamRequestedOutside => 108,
            ErrorCode::IpamDuplicateAllocation => 109,
            ErrorCode::Other(c) => c,
        }
    }

    /// The code for a number (unknown numbers are kept as [`ErrorCode::Other`]).
    pub fn from_code(code: u32) -> Self {
        match code {
            1 => ErrorCode::IncompatibleVersion,
            2 => ErrorCode::UnsupportedField,
            3 => ErrorCode::UnknownContainer,
            4 => ErrorCode::InvalidEnvironment,
            5 => ErrorCode::IoFailure,
            6 => ErrorCode::DecodingFailure,
            7 => ErrorCode::InvalidNetworkConfig,
            11 => ErrorCode::TryAgainLater,
            50 => ErrorCode::PluginNotAvailable,
            51 => ErrorCode::PluginNotAvailableLimitedConnectivity,
            100 => ErrorCode::DelegateFailed,
            101 => ErrorCode::DelegateBadOutput,
            102 => ErrorCode::DelegateTimeout,
            103 => ErrorCode::KernelOperation,
            104 => ErrorCode::IpamFailure,
            105 => ErrorCode::IpamExhausted,
            106 => ErrorCode::IpamRequestedTaken,
            107 => ErrorCode::IpamRequestedGateway,
            108 => ErrorCode::IpamRequestedOutside,
            109 => ErrorCode::IpamDuplicateAllocation,
            c => ErrorCode::Other(c),
        }
    }

    /// This project's own codes (100 and up), each with what it means: the one table every crate uses
    /// (each crate's errors convert into [`CniError`] through `From`) and README's table shows.
    pub const OURS: [(ErrorCode, &'static str); 10] = [
        (
            ErrorCode::DelegateFailed,
            "a delegate failed without a CNI error of its own (it died or was killed)",
        ),
        (
            ErrorCode::DelegateBadOutput,
            "a delegate printed something that is not a CNI result or error",
        ),
        (
            ErrorCode::DelegateTimeout,
            "a delegate did not finish within its timeout and was killed",
        ),
        (
            ErrorCode::KernelOperation,
            "a kernel operation (netlink, sysfs, a device driver) failed",
        ),
        (
            ErrorCode::IpamFailure,
            "an IPAM operation failed for another reason",
        ),
        (
            ErrorCode::IpamExhausted,
            "every address of an IPAM range set is taken",
        ),
        (
            ErrorCode::IpamRequestedTaken,
            "a requested address is already taken",
        ),
        (
            ErrorCode::IpamRequestedGateway,
            "a requested address is its range's gateway",
        ),
        (
            ErrorCode::IpamRequestedOutside,
            "a requested address is in no range set",
        ),
        (
            ErrorCode::IpamDuplicateAllocation,
            "the attachment already holds an address in the range set",
        ),
    ];
}

/// A CNI error: what a plugin writes on stdout (with exit status 1) when an operation fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The error code.
    pub code: ErrorCode,
    /// A short message naming what failed.
    pub msg: String,
    /// Longer details, possibly empty.
    pub details: String,
}

impl CniError {
    /// A new error with a code and message.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        CniError {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Prefixes the message with context (`"<ctx>: <msg>"`), keeping the code.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.msg = format!("{ctx}: {}", self.msg);
        self
    }

    /// Code 1.
    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::IncompatibleVersion, msg)
    }
    /// Code 2.
    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedField, msg)
    }
    /// Code 3.
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnknownContainer, msg)
    }
    /// Code 4.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidEnvironment, msg)
    }
    /// Code 5.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::IoFailure, msg)
    }
    /// Code 6.
    pub fn decoding(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::DecodingFailure, msg)
    }
    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidNetworkConfig, msg)
    }
    /// Code 11.
    pub fn try_again_later(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::TryAgainLater, msg)
    }
    /// Code 50.
    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::PluginNotAvailable, msg)
    }
    /// Code 103.
    pub fn kernel(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::KernelOperation, msg)
    }

    /// The JSON error object of the given CNI version.
    pub fn to_json(&self, cni_version: &str) -> serde_json::Value {
        let wire = WireError {
            cni_version: Some(cni_version.to_string()),
            code: self.code.code(),
            msg: self.msg.clone(),
            details: if self.details.is_empty() {
                None
            } else {
                Some(self.details.clone())
            },
        };
        serde_json::to_value(wire).unwrap_or(serde_json::Value::Null)
    }

    /// Parses a JSON error object as a plugin writes it; `None` when the bytes are not one.
    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        let wire: WireError = serde_json::from_slice(bytes).ok()?;
        Some(CniError {
            code: ErrorCode::from_code(wire.code),
            msg: wire.msg,
            details: wire.details.unwrap_or_default(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct WireError {
    #[serde(
        rename = "cniVersion",
        skip_serializing_if = "Option::is_none",
        default
    )]
    cni_version: Option<String>,
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    details: Option<String>,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.msg, self.code.code())?;
        if !self.details.is_empty() {
            write!(f, ": {}", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

impl From<serde_json::Error> for CniError {
    fn from(e: serde_json::Error) -> Self {
        CniError::decoding(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_code_and_text() {
        let e = CniError::invalid_config("missing \"type\"").with_details("delegates[1]");
        let v = e.to_json("1.1.0");
        assert_eq!(v["code"], 7);
        assert_eq!(v["cniVersion"], "1.1.0");
        let back = CniError::from_json(v.to_string().as_bytes()).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn our_codes_round_trip_and_readme_shows_the_same_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md at the workspace root");
        for (code, meaning) in ErrorCode::OURS {
            assert_eq!(ErrorCode::from_code(code.code()), code);
            let row = format!("| {} | {} |", code.code(), meaning);
            assert!(readme.contains(&row), "README.md lacks the row {row:?}");
        }
        // And README lists no code of ours that the table lacks.
        let listed = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| 1"))
            .filter(|l| l.as_bytes().get(2) == Some(&b' '))
            .count();
        assert_eq!(listed, ErrorCode::OURS.len());
    }

    #[test]
    fn unknown_codes_are_kept() {
        let e = CniError::from_json(br#"{"code": 999, "msg": "x"}"#).unwrap();
        assert_eq!(e.code.code(), 999);
        assert!(CniError::from_json(b"garbage").is_none());
    }
}

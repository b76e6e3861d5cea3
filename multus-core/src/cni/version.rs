//! CNI spec versions: which ones are understood and how they compare.

use super::error::CniError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The newest spec version this implementation speaks.
pub const CURRENT_VERSION: &str = "1.1.0";

/// Every spec version accepted in configs and rendered in results, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// The version of a config that declares none (no `cniVersion`, or an empty one): libcni reads such a
/// config, a single plugin's or a conflist's, as 0.1.0 ("no version declared == v0.1.0"), so its plugins
/// answer in the 0.1.0 / 0.2.0 result shape and it has no CHECK, STATUS or GC.
pub const IMPLICIT_VERSION: &str = "0.1.0";

/// A parsed spec version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major part.
    pub major: u32,
    /// Minor part.
    pub minor: u32,
    /// Patch part.
    pub patch: u32,
}

impl Version {
    /// 0.1.0
    pub const V0_1_0: Version = Version::new(0, 1, 0);
    /// 0.2.0
    pub const V0_2_0: Version = Version::new(0, 2, 0);
    /// 0.3.0
    pub const V0_3_0: Version = Version::new(0, 3, 0);
    /// 0.4.0
    pub const V0_4_0: Version = Version::new(0, 4, 0);
    /// 1.0.0
    pub const V1_0_0: Version = Version::new(1, 0, 0);
    /// 1.1.0
    pub const V1_1_0: Version = Version::new(1, 1, 0);

    /// A version from its parts.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `x.y.z` (any numbers); see [`Version::parse_supported`] for the supported check.
    pub fn parse(s: &str) -> Result<Self, CniError> {
        let bad =
            || CniError::incompatible_version(format!("invalid cniVersion {s:?}: want x.y.z"));
        let mut it = s.split('.');
        let mut part = || -> Result<u32, CniError> {
            let p = it.next().ok_or_else(bad)?;
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let v = Version::new(part()?, part()?, part()?);
        if it.next().is_some() {
            return Err(bad());
        }
        Ok(v)
    }

    /// Parses a version and checks that it is one of [`SUPPORTED_VERSIONS`] (code 1 otherwise).
    pub fn parse_supported(s: &str) -> Result<Self, CniError> {
        let v = Self::parse(s)?;
        if !SUPPORTED_VERSIONS.contains(&s) {
            return Err(CniError::incompatible_version(format!(
                "incompatible CNI versions: config is {s:?}, plugin supports {:?}",
                SUPPORTED_VERSIONS
            )));
        }
        Ok(v)
    }

    /// True for the 0.1.0 / 0.2.0 result shape (`ip4`, `ip6`, `dns`; no interfaces, one IP per family).
    pub fn is_legacy(self) -> bool {
        self < Version::V0_3_0
    }

    /// True for the 1.x result shape (no `version` in `ips`, `interfaces` etc.).
    pub fn is_1x(self) -> bool {
        self.major >= 1
    }

    /// True when the STATUS and GC verbs exist (1.1.0 and later).
    pub fn has_status_gc(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The reply to `VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// The version the reply is written in (the one of the request, else [`CURRENT_VERSION`]).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Every supported version.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: Vec<String>,
}

impl VersionInfo {
    /// The reply to a `VERSION` request whose stdin held `request` (may be empty).
    pub fn reply(request: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Req {
            #[serde(rename = "cniVersion", default)]
            cni_version: String,
        }
        let asked = serde_json::from_slice::<Req>(request)
            .ok()
            .map(|r| r.cni_version)
            .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
            .unwrap_or_else(|| CURRENT_VERSION.to_string());
        VersionInfo {
            cni_version: asked,
            supported_versions: SUPPORTED_VERSIONS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders() {
        assert!(Version::parse("0.3.1").unwrap() < Version::parse("0.4.0").unwrap());
        assert!(Version::parse("1.0.0").unwrap().is_1x());
        assert!(!Version::parse("0.4.0").unwrap().is_1x());
        assert!(Version::parse("1.1.0").unwrap().has_status_gc());
        assert!(Version::parse("0.2.0").unwrap().is_legacy());
        assert!(Version::parse("0.1.0").unwrap().is_legacy());
        assert!(!Version::parse("0.3.0").unwrap().is_legacy());
        assert_eq!(Version::parse(IMPLICIT_VERSION).unwrap(), Version::V0_1_0);
        for bad in ["", "1", "1.0", "1.0.0.0", "a.b.c", "1..0", "-1.0.0"] {
            assert_eq!(Version::parse(bad).unwrap_err().code.code(), 1, "{bad}");
        }
    }

    #[test]
    fn only_supported_versions_pass() {
        for v in SUPPORTED_VERSIONS {
            Version::parse_supported(v).unwrap();
        }
        assert_eq!(Version::parse_supported("0.2.0").unwrap(), Version::V0_2_0);
        for bad in ["0.0.0", "0.2.1", "0.5.0", "1.2.0", "2.0.0"] {
            assert_eq!(
                Version::parse_supported(bad).unwrap_err().code.code(),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn version_reply_echoes_request() {
        assert_eq!(
            VersionInfo::reply(br#"{"cniVersion":"0.4.0"}"#).cni_version,
            "0.4.0"
        );
        assert_eq!(
            VersionInfo::reply(br#"{"cniVersion":"0.2.0"}"#).cni_version,
            "0.2.0"
        );
        assert_eq!(VersionInfo::reply(b"").cni_version, "1.1.0");
        assert_eq!(
            VersionInfo::reply(b"").supported_versions,
            ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        );
    }
}

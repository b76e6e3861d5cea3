//! The error type of this crate and its one mapping onto CNI error codes: `From<IpamError> for CniError`,
//! onto multus-core's [`ErrorCode`] (the spec's codes, and this project's IPAM codes 105-109 from the one
//! table [`ErrorCode::OURS`]).

use std::net::IpAddr;
use std::path::PathBuf;

use multus_core::cni::names::InvalidName;
use multus_core::cni::{CniError, ErrorCode};

/// Everything that can go wrong in host-local IPAM.
///
/// Each variant converts into a [`CniError`] with its code (`CniError::from`).
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// The network configuration (or a part of it) is not valid JSON of the expected shape.
    #[error("error decoding network config: {0}")]
    Decode(String),
    /// The configuration decodes but is not valid (ranges, gateway, missing keys, ...).
    #[error("{0}")]
    InvalidConfig(String),
    /// The configuration asks for something the CNI version it declares cannot express.
    #[error("{0}")]
    IncompatibleVersion(String),
    /// `CNI_ARGS` or another environment input is malformed.
    #[error("{0}")]
    InvalidArgs(String),
    /// A network name (from the configuration) that is empty or would escape the data directory
    /// ([`multus_core::cni::names::network_name`]); code 7.
    #[error("{0}")]
    InvalidNetworkName(InvalidName),
    /// A container ID or interface name (from the environment) that does not follow the CNI rules
    /// ([`multus_core::cni::names`]); code 4.
    #[error("{0}")]
    InvalidEnvName(InvalidName),
    /// A file system operation on the store failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No address is free in a range set.
    #[error(
        "failed to allocate for range {index}: no IP addresses available in range set: {ranges}"
    )]
    Exhausted {
        /// Index of the range set in the configuration.
        index: usize,
        /// The range set, as `start-end` ranges joined by `,`.
        ranges: String,
    },
    /// A requested address is already reserved.
    #[error("failed to allocate for range {index}: requested IP address {ip} is not available in range set {ranges}")]
    RequestedTaken {
        /// Index of the range set in the configuration.
        index: usize,
        /// The requested address.
        ip: IpAddr,
        /// The range set.
        ranges: String,
    },
    /// A requested address is the gateway of its range.
    #[error("failed to allocate for range {index}: requested ip {ip} is subnet's gateway")]
    RequestedGateway {
        /// Index of the range set in the configuration.
        index: usize,
        /// The requested address.
        ip: IpAddr,
    },
    /// Requested addresses that no range set could fulfil.
    #[error("failed to allocate all requested IPs: {}", join_ips(.0))]
    RequestedOutside(Vec<IpAddr>),
    /// The attachment already holds an address in this range set.
    #[error("failed to allocate for range {index}: {ip} has been allocated to {container_id}, duplicate allocation is not allowed")]
    DuplicateAllocation {
        /// Index of the range set in the configuration.
        index: usize,
        /// The address already held.
        ip: IpAddr,
        /// The container holding it.
        container_id: String,
    },
    /// CHECK found no address for the attachment.
    #[error("host-local: Failed to find address added by container {0}")]
    NotFound(String),
    /// STATUS: the plugin cannot serve ADD now.
    #[error("host-local unavailable: {0}")]
    Unavailable(String),
}

fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The CNI error code of an error (spec codes below 100, this project's IPAM codes from 105).
impl From<&IpamError> for ErrorCode {
    fn from(e: &IpamError) -> Self {
        match e {
            IpamError::Decode(_) => ErrorCode::DecodingFailure,
            IpamError::InvalidConfig(_) | IpamError::InvalidNetworkName(_) => {
                ErrorCode::InvalidNetworkConfig
            }
            IpamError::IncompatibleVersion(_) => ErrorCode::IncompatibleVersion,
            IpamError::InvalidArgs(_) | IpamError::InvalidEnvName(_) => {
                ErrorCode::InvalidEnvironment
            }
            IpamError::Io { .. } => ErrorCode::IoFailure,
            IpamError::Exhausted { .. } => ErrorCode::IpamExhausted,
            IpamError::RequestedTaken { .. } => ErrorCode::IpamRequestedTaken,
            IpamError::RequestedGateway { .. } => ErrorCode::IpamRequestedGateway,
            IpamError::RequestedOutside(_) => ErrorCode::IpamRequestedOutside,
            IpamError::DuplicateAllocation { .. } => ErrorCode::IpamDuplicateAllocation,
            IpamError::NotFound(_) => ErrorCode::UnknownContainer,
            IpamError::Unavailable(_) => ErrorCode::PluginNotAvailable,
        }
    }
}

impl IpamError {
    /// An I/O error on `path` while doing `op`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IpamError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<IpamError> for CniError {
    fn from(e: IpamError) -> Self {
        CniError::new(ErrorCode::from(&e), e.to_string())
    }
}

/// Result alias of this crate.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: IpamError) -> u32 {
        CniError::from(e).code.code()
    }

    #[test]
    fn codes_come_from_the_one_table() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ranges = String::from("10.0.0.2-10.0.0.9");
        assert_eq!(
            code(IpamError::Exhausted {
                index: 0,
                ranges: ranges.clone()
            }),
            105
        );
        assert_eq!(
            code(IpamError::RequestedTaken {
                index: 0,
                ip,
                ranges
            }),
            106
        );
        assert_eq!(code(IpamError::RequestedGateway { index: 0, ip }), 107);
        assert_eq!(code(IpamError::RequestedOutside(vec![ip])), 108);
        let dup = IpamError::DuplicateAllocation {
            index: 0,
            ip,
            container_id: "c".into(),
        };
        assert_eq!(code(dup), 109);
        assert_eq!(code(IpamError::Decode(String::new())), 6);
        assert_eq!(code(IpamError::InvalidConfig(String::new())), 7);
        assert_eq!(code(IpamError::IncompatibleVersion(String::new())), 1);
        assert_eq!(code(IpamError::InvalidArgs(String::new())), 4);
        let io = std::io::Error::other("x");
        assert_eq!(code(IpamError::io("read", "/x", io)), 5);
        assert_eq!(code(IpamError::NotFound(String::new())), 3);
        assert_eq!(code(IpamError::Unavailable(String::new())), 50);
        let bad = multus_core::cni::names::network_name("..").unwrap_err();
        assert_eq!(code(IpamError::InvalidNetworkName(bad)), 7);
        let bad = multus_core::cni::names::ifname("a/b").unwrap_err();
        assert_eq!(code(IpamError::InvalidEnvName(bad)), 4);
        // Every IPAM code is one of the project's table.
        for c in [105, 106, 107, 108, 109] {
            assert!(ErrorCode::OURS.iter().any(|(o, _)| o.code() == c), "{c}");
        }
    }
}

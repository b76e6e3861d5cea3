//! The error type of this crate and its mapping onto CNI error codes.

use std::net::IpAddr;
use std::path::PathBuf;

/// CNI error code: incompatible CNI version.
pub const CODE_INCOMPATIBLE_VERSION: u32 = 1;
/// CNI error code: container unknown or does not exist.
pub const CODE_CONTAINER_UNKNOWN: u32 = 3;
/// CNI error code: invalid necessary environment variables.
pub const CODE_INVALID_ENV: u32 = 4;
/// CNI error code: I/O failure.
pub const CODE_IO: u32 = 5;
/// CNI error code: failed to decode content.
pub const CODE_DECODE: u32 = 6;
/// CNI error code: invalid network config.
pub const CODE_INVALID_CONFIG: u32 = 7;
/// CNI error code: the plugin is not available (STATUS).
pub const CODE_UNAVAILABLE: u32 = 50;
/// Plugin-specific code: every address of a range set is reserved.
pub const CODE_EXHAUSTED: u32 = 100;
/// Plugin-specific code: a requested address is already reserved.
pub const CODE_REQUESTED_TAKEN: u32 = 101;
/// Plugin-specific code: a requested address is the gateway of its range.
pub const CODE_REQUESTED_GATEWAY: u32 = 102;
/// Plugin-specific code: a requested address is in no range set.
pub const CODE_REQUESTED_OUTSIDE: u32 = 103;
/// Plugin-specific code: the attachment already holds an address in this range set.
pub const CODE_DUPLICATE_ALLOCATION: u32 = 104;

/// Everything that can go wrong in host-local IPAM.
///
/// Each variant maps to a CNI error code with [`IpamError::cni_code`].
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
    /// A network name that is empty or would escape the data directory.
    #[error("invalid network name {0:?}: must be non-empty, not `.` or `..`, without `/` or NUL")]
    InvalidNetworkName(String),
    /// A container ID that does not follow the CNI rules.
    #[error("invalid container ID {0:?}: must start with an alphanumeric character, followed by alphanumerics, `_`, `.` or `-`")]
    InvalidContainerId(String),
    /// An interface name that does not follow the CNI rules.
    #[error("invalid interface name {0:?}: 1 to 15 bytes, not `.` or `..`, without `/`, `:` or whitespace")]
    InvalidIfName(String),
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

impl IpamError {
    /// The CNI error code for this error (spec codes below 100, plugin-specific codes from 100).
    pub fn cni_code(&self) -> u32 {
        match self {
            IpamError::Decode(_) => CODE_DECODE,
            IpamError::InvalidConfig(_) | IpamError::InvalidNetworkName(_) => CODE_INVALID_CONFIG,
            IpamError::IncompatibleVersion(_) => CODE_INCOMPATIBLE_VERSION,
            IpamError::InvalidArgs(_)
            | IpamError::InvalidContainerId(_)
            | IpamError::InvalidIfName(_) => CODE_INVALID_ENV,
            IpamError::Io { .. } => CODE_IO,
            IpamError::Exhausted { .. } => CODE_EXHAUSTED,
            IpamError::RequestedTaken { .. } => CODE_REQUESTED_TAKEN,
            IpamError::RequestedGateway { .. } => CODE_REQUESTED_GATEWAY,
            IpamError::RequestedOutside(_) => CODE_REQUESTED_OUTSIDE,
            IpamError::DuplicateAllocation { .. } => CODE_DUPLICATE_ALLOCATION,
            IpamError::NotFound(_) => CODE_CONTAINER_UNKNOWN,
            IpamError::Unavailable(_) => CODE_UNAVAILABLE,
        }
    }

    /// An I/O error on `path` while doing `op`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IpamError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;

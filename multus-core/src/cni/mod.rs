//! The CNI protocol, spec 1.1.0, accepting configs and results of 0.1.0 through 1.1.0; a config without
//! `cniVersion` is read as 0.1.0, as libcni reads it ([`version::IMPLICIT_VERSION`]).
//!
//! - [`config`]: plugin configs and conflists, kept whole.
//! - [`env`](mod@env): the `CNI_*` environment.
//! - [`result`]: results and their conversion between spec versions.
//! - [`error`]: error codes and the JSON error object.
//! - [`keys`]: typed config-key getters whose errors (code 7) name the key and the value.
//! - [`names`]: the one check of container IDs, interface names and network names.
//! - [`version`]: versions and the `VERSION` reply.

pub mod config;
pub mod env;
pub mod error;
pub mod keys;
pub mod names;
pub mod result;
pub mod version;

pub use config::{AttachmentRef, NetConfList, NetworkConfig, PluginConf};
pub use env::{CniArgs, CniEnv, Command};
pub use error::{CniError, ErrorCode};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use version::{Version, VersionInfo, CURRENT_VERSION, IMPLICIT_VERSION, SUPPORTED_VERSIONS};

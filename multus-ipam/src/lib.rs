//! host-local IPAM: addresses from configured ranges, recorded in the same on-disk store as the
//! reference CNI plugin (`containernetworking/plugins`' `host-local`), safe across processes and
//! crashes, with GC and STATUS.
//!
//! - [`config`]: every key of the reference configuration, its defaults and its validation (pure);
//! - [`range`], [`range_set`]: ranges and range sets (pure);
//! - [`allocator`]: allocation in the reference order over any [`Store`] (pure logic);
//! - [`store`]: the [`Store`] trait and [`DiskStore`], byte for byte the reference's files (and
//!   what an empty one, left by a killed writer, means);
//! - [`index`]: the persisted index of a network directory (so that a fresh process does not read
//!   every reservation file), and when it checks the files behind its back;
//! - [`gc`]: release of every reservation not held by a valid attachment;
//! - [`network`]: the library API ([`Network`]) and the CNI operations on a parsed configuration;
//! - [`cni`]: host-local as a multus-core `Delegate` ([`cni::HostLocal`], type `host-local`);
//! - [`error`]: [`IpamError`], which converts into a CNI error with this project's codes (IPAM:
//!   105-109).
//!
//! # Example: addresses for a network, without CNI
//!
//! ```
//! use multus_ipam::{Attachment, Network, RangeSpec};
//!
//! # fn main() -> Result<(), multus_ipam::IpamError> {
//! let data_dir = tempfile::tempdir().map_err(|e| multus_ipam::IpamError::Unavailable(e.to_string()))?;
//! let subnet = "10.10.0.0/24".parse().map_err(|_| multus_ipam::IpamError::InvalidConfig("cidr".into()))?;
//! let mut net = Network::from_specs(data_dir.path(), "mynet", &[vec![RangeSpec::subnet(subnet)]])?;
//!
//! // One address per range set; the gateway (.1) is never handed out.
//! let ips = net.allocate("container-a", "eth0", &[])?;
//! assert_eq!(ips[0].address.to_string(), "10.10.0.2/24");
//! assert_eq!(ips[0].gateway.map(|g| g.to_string()).as_deref(), Some("10.10.0.1"));
//!
//! // A specific address.
//! let wanted = "10.10.0.77".parse().map_err(|_| multus_ipam::IpamError::InvalidConfig("ip".into()))?;
//! net.allocate("container-b", "eth0", &[wanted])?;
//! assert_eq!(net.list()?.len(), 2);
//!
//! // Release is idempotent; GC releases whatever is not in the valid list.
//! net.release("container-a", "eth0")?;
//! net.release("container-a", "eth0")?;
//! let released = net.gc(&[Attachment::new("container-z", "eth0")])?;
//! assert_eq!(released.len(), 1);
//! assert!(net.list()?.is_empty());
//! # Ok(())
//! # }
//! ```
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod allocator;
pub mod cni;
pub mod config;
pub mod error;
pub mod gc;
pub mod index;
pub mod ip;
pub mod network;
pub mod range;
pub mod range_set;
pub mod result;
pub mod store;

pub use config::IpamConfig;
pub use error::{IpamError, Result};
pub use gc::Attachment;
pub use index::{IndexMode, IndexStats};
pub use ip::IpNet;
pub use network::Network;
pub use range::{Range, RangeSpec};
pub use range_set::RangeSet;
pub use result::{Dns, IpConfig, IpamResult, Route};
pub use store::{DiskStore, Durability, Holder, Reservation, Store};

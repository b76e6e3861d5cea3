//! # multus-core
//!
//! The heart of a Rust Multus CNI: the CNI protocol (spec 1.1.0, reading 0.3.0 through 1.1.0), the
//! [`Delegate`](delegate::Delegate) trait that every plugin implements, a [`Registry`](delegate::Registry)
//! resolving plugin types to built-in delegates or plugin binaries, and the attach [`pipeline`] that gives a
//! pod its interfaces in order and takes them away again without leaving anything behind.
//!
//! What an embedder writes: a pod's networks attached in order by the pipeline (built-in delegates run in
//! this process; other types are plugin binaries found in `binDir` / `CNI_PATH`), then detached again.
//!
//! ```no_run
//! use multus_core::cni::NetworkConfig;
//! use multus_core::delegate::Registry;
//! use multus_core::pipeline::{self, Attachment, Attachments, Pod};
//! use std::sync::Arc;
//!
//! # async fn attach() -> Result<(), multus_core::cni::CniError> {
//! let mut registry = Registry::new();
//! registry.register("macvlan", Arc::new(multus_core::plugins::Macvlan));
//! registry.set_bin_dirs(vec!["/opt/cni/bin".into()]); // host-local and the rest, as binaries
//! let net = NetworkConfig::from_slice(br#"{"cniVersion": "1.0.0", "name": "macnet", "type": "macvlan",
//!     "master": "eth0", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}}"#)?;
//! let atts = Attachments::new(vec![Attachment::new(net, "net1")])?; // interface names checked here
//! let pod = Pod::new("container-1", Some("/var/run/netns/pod1".into()), Arc::new(registry));
//! let attached = pipeline::add(&pod, &atts).await?; // in order; a failure undoes the others
//! println!("{:?}", attached[0].result);
//! pipeline::del(&pod, &attached).await?;
//! # Ok(()) }
//! ```
//!
//! The protocol types stand alone:
//!
//! ```
//! use multus_core::cni::{CniResult, NetworkConfig};
//!
//! // A conflist, kept whole: every key reaches the plugin.
//! let net = NetworkConfig::from_slice(br#"{
//!     "cniVersion": "1.0.0", "name": "macnet",
//!     "plugins": [{"type": "macvlan", "master": "eth0", "ipam": {"type": "host-local", "subnet": "10.9.0.0/24"}}]
//! }"#).unwrap();
//! assert_eq!(net.plugins()[0].get("master").unwrap(), "eth0");
//!
//! // Results convert between spec versions.
//! let r = CniResult::from_json(br#"{"cniVersion":"1.0.0","ips":[{"address":"10.9.0.2/24"}]}"#).unwrap();
//! assert_eq!(r.to_value("0.3.1").unwrap()["ips"][0]["version"], "4");
//! ```
//!
//! The toolkit every delegate uses: [`fs`] (the one atomic write), [`record`] (the one per-attachment
//! record store), [`cni::names`] (the one check of names from input), [`cni::ErrorCode`] (one table of
//! codes). The `examples/` of the repository attach a macvlan in-process and run the meta-plugin.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

/// Implements `Serialize` and `Deserialize` for a type that is written as text: serialized through its
/// `Display`, deserialized from a string through its `FromStr` (whose error becomes the decoding error). The
/// one way this project's value types (`MacAddr`, `PciAddress`) go to and from JSON.
///
/// ```
/// #[derive(Debug, PartialEq)]
/// struct Port(u16);
/// impl std::fmt::Display for Port {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "p{}", self.0) }
/// }
/// impl std::str::FromStr for Port {
///     type Err = String;
///     fn from_str(s: &str) -> Result<Self, String> {
///         s.strip_prefix('p').and_then(|n| n.parse().ok()).map(Port).ok_or_else(|| format!("bad port {s:?}"))
///     }
/// }
/// multus_core::serde_as_text!(Port);
/// assert_eq!(serde_json::to_string(&Port(7)).unwrap(), "\"p7\"");
/// assert_eq!(serde_json::from_str::<Port>("\"p7\"").unwrap(), Port(7));
/// assert!(serde_json::from_str::<Port>("\"x\"").is_err());
/// ```
#[macro_export]
macro_rules! serde_as_text {
    ($t:ty) => {
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(
                &self,
                s: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::string::String as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

pub mod cni;
pub mod delegate;
pub mod devinfo;
pub mod fs;
pub mod netlink;
pub mod netns;
pub mod pipeline;
pub mod plugins;
pub mod record;
pub mod skel;
pub mod time;

//! Built-in plugins: the reference `macvlan`, `ipvlan` and `bridge` plugins' behaviour, in-process, over
//! netlink.
//!
//! - [`bridge`]: a veth pair on a Linux bridge (the configs it implements; the others go to the binary).
//! - [`macvlan`], [`ipvlan`]: config parsing and planning (pure, unit-tested), and the [`Delegate`]
//!   implementations.
//! - [`sublink`]: what both share: creating a link on a master in the host (or container) namespace under a
//!   temporary name derived from the attachment (so that DEL finds the link of an ADD killed before its
//!   rename), moving and renaming it, running IPAM, cleaning up on failure, DEL and CHECK.
//! - [`ipam`]: the IPAM plugin run with an explicit verb, its result put into a delegate's result, CHECK's
//!   `prevResult` interface: shared with the SR-IOV delegate.
//! - [`ipam_apply`]: configuring an interface from an IPAM result (addresses, gateway routes, 1.1 route
//!   fields), as the reference `ConfigureIface` does; CHECK's view of it (addresses and routes still there).
//!
//! [`Delegate`]: crate::delegate::Delegate

pub mod bridge;
pub mod ipam;
pub mod ipam_apply;
pub mod ipvlan;
pub mod macvlan;
pub mod sublink;

pub use bridge::Bridge;
pub use ipvlan::Ipvlan;
pub use macvlan::Macvlan;

/// `ipam.type`, owned, for the configs that keep it.
pub(crate) fn ipam_type(conf: &crate::cni::PluginConf) -> Option<String> {
    crate::cni::keys::ipam_type(conf).map(str::to_string)
}

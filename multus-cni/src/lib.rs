//! # multus-cni
//!
//! The Multus meta-plugin as a library, with the delegates this project builds in. The `multus` binary is a
//! thin dispatcher around it; a Rust network tool embeds the same flow:
//!
//! ```no_run
//! use multus_cni::meta::{conf::MultusConf, Meta, PodSource};
//! use multus_core::cni::{CniArgs, CniEnv, Command};
//!
//! # async fn embed() -> Result<(), multus_core::cni::CniError> {
//! // Upstream's kubeconfig-less mode: the first delegate is the pod's eth0, the others net1, net2, ...
//! let conf = MultusConf::parse(br#"{"cniVersion": "1.0.0", "name": "multus", "type": "multus",
//!     "cniDir": "/run/my-tool/multus",
//!     "delegates": [{"name": "pod-net", "type": "bridge", "bridge": "cni0",
//!                    "ipam": {"type": "host-local", "subnet": "10.244.0.0/24"}}]}"#)?;
//! let env = CniEnv {
//!     command: Command::Add,
//!     container_id: "c1".into(),
//!     netns: Some("/var/run/netns/pod1".into()),
//!     ifname: "eth0".into(),
//!     args: CniArgs::default(),
//!     path: vec!["/usr/lib/cni".into()],
//! };
//! let result = Meta::new(&env, &conf, PodSource::None).run().await?;
//! println!("{}", result.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! - [`meta`]: the meta-plugin (ADD/DEL/CHECK/STATUS/GC), one flow for both modes.
//! - [`builtins`]: the registry of built-in delegates (macvlan, ipvlan, bridge, host-local, sriov, dpdk).
//! - [`shim`]: the thick plugin's shim (`multus-shim`) and the wire format it shares with `multus-daemon`.
//! - [`install`], [`demo`], [`devices`]: what the `multus` command line runs.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod builtins;
pub mod demo;
pub mod devices;
pub mod install;
pub mod logging;
pub mod meta;
pub mod shim;

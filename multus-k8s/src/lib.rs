//! # multus-k8s
//!
//! The Kubernetes side of a Rust Multus, apart from `multus-core` so that embedders of the CNI pipeline
//! do not pull in TLS and an API client:
//!
//! - [`annotation`]: the pod's `k8s.v1.cni.cncf.io/networks` annotation in both forms;
//! - [`cache`]: the [`cache::PodCache`] an ADD reads the pod and its NADs from before the API (thick mode);
//! - [`nad`]: NetworkAttachmentDefinitions to network configs, device IDs from the kubelet checkpoint;
//! - [`plan`]: pure planning of a pod's ordered attachments (interface names, runtime config, isolation);
//! - [`default_route`]: the `default-route` request planned against the attachments' results;
//! - [`source`]: where pods and NADs come from (the API, or local manifests for `multus demo`);
//! - [`status`]: the `k8s.v1.cni.cncf.io/network-status` entries built from CNI results;
//! - [`watch`]: LIST and WATCH on the client (the thick daemon's watch cache);
//! - [`client`]: a minimal API client (kubeconfig or in-cluster service account, one reused TLS
//!   connection) for the four REST calls Multus makes;
//!
//! ```
//! use multus_k8s::annotation::parse_networks;
//! use multus_k8s::plan::{self, Pod, PlanConfig, ResolvedNad};
//! use multus_k8s::nad::DevicePool;
//! use multus_core::cni::NetworkConfig;
//! use std::collections::BTreeMap;
//!
//! let sel = parse_networks("macvlan-conf, other/sriov-net@sr0", "default").unwrap();
//! assert_eq!(sel[1].qualified_name(), "other/sriov-net");
//!
//! // A pod asking for the NAD "macvlan-conf", with the cluster network given as a local delegate.
//! let mut pod = Pod { namespace: "default".into(), name: "sample-pod".into(), ..Default::default() };
//! pod.annotations.insert("k8s.v1.cni.cncf.io/networks".into(), "macvlan-conf".into());
//! let cfg = PlanConfig {
//!     delegates: vec![NetworkConfig::from_slice(br#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge"}"#).unwrap()],
//!     multus_namespace: "kube-system".into(),
//!     ..Default::default()
//! };
//! let reqs = plan::requests(&pod, &cfg).unwrap();
//! let mut nads = BTreeMap::new();
//! nads.insert(("default".to_string(), "macvlan-conf".to_string()), ResolvedNad {
//!     network: NetworkConfig::from_slice(br#"{"cniVersion":"0.3.1","name":"macvlan-conf","type":"macvlan"}"#).unwrap(),
//!     resource_name: None,
//! });
//! let p = plan::build(&cfg, &reqs, &nads, &mut DevicePool::default(), "eth0").unwrap();
//! let ifnames: Vec<_> = p.attachments.iter().map(|a| a.ifname.as_str()).collect();
//! assert_eq!(ifnames, ["eth0", "net1"]);
//! assert_eq!(p.attachments[1].name, "default/macvlan-conf");
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod annotation;
pub mod cache;
pub mod client;
pub mod default_route;
pub mod nad;
pub mod plan;
pub mod source;
pub mod status;
pub mod watch;

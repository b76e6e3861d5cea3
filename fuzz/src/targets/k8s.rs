//! Targets of what the meta-plugin reads from its config and from Kubernetes: the Multus config (and the
//! plan it makes for a pod without annotations), the networks and default-network annotations, NADs, pods
//! (their annotations planned), the kubelet's device checkpoint.

use super::cni::plugin_checks;
use super::{outcome, text, valid_ifname, Target, Verdict};
use crate::engine::Shape;
use multus_cni::meta::conf::MultusConf;
use multus_k8s::annotation::{parse_default_network, parse_networks, NetworkSelection};
use multus_k8s::nad::{Checkpoint, DevicePool, Nad};
use multus_k8s::plan::{self, PlanConfig, Pod};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The Multus config (`00-multus.conf`).
pub const MULTUS_CONF: Target = Target {
    name: "multus_conf",
    about: "the Multus config (MultusConf::parse), its logOptions, and the plan it makes for a bare pod",
    shape: Shape::Json,
    check: multus_conf,
};

/// `k8s.v1.cni.cncf.io/networks`.
pub const NETWORKS_ANNOTATION: Target = Target {
    name: "networks_annotation",
    about: "the networks annotation (comma-separated or JSON list)",
    shape: Shape::Text,
    check: networks_annotation,
};

/// `v1.multus-cni.io/default-network`.
pub const DEFAULT_NETWORK_ANNOTATION: Target = Target {
    name: "default_network_annotation",
    about: "the default-network annotation",
    shape: Shape::Text,
    check: default_network_annotation,
};

/// A NetworkAttachmentDefinition as the API returns it.
pub const NAD: Target = Target {
    name: "nad",
    about: "a NetworkAttachmentDefinition object and its spec.config",
    shape: Shape::Json,
    check: nad,
};

/// A pod as the API returns it, planned with a `delegates`-less config.
pub const POD: Target = Target {
    name: "pod",
    about: "a pod object and the plan of its annotations",
    shape: Shape::Json,
    check: pod,
};

/// The kubelet's device manager checkpoint.
pub const KUBELET_CHECKPOINT: Target = Target {
    name: "kubelet_checkpoint",
    about: "the kubelet's kubelet_internal_checkpoint (old and NUMA forms)",
    shape: Shape::Json,
    check: kubelet_checkpoint,
};

/// A directory that does not exist, standing for `confDir`: a fuzzed config never makes the targets read host
/// files, and a fuzz run leaves nothing behind (a file looked up there is simply not found).
fn empty_dir() -> PathBuf {
    std::env::temp_dir().join("multus-fuzz-no-such-dir")
}

/// A network name that would be read as a path is replaced (the fuzzer is not to read the host's files).
fn no_paths(name: &mut String) {
    if name.starts_with('/') {
        *name = "from-a-path".into();
    }
}

fn multus_conf(b: &[u8]) -> Verdict {
    let Some(conf) = outcome("MultusConf::parse", MultusConf::parse(b))? else {
        return Ok(());
    };
    let _ = multus_cni::logging::LogOptions::parse(&conf.log_options);
    for d in &conf.delegates {
        for p in d.plugins() {
            plugin_checks(p)?;
        }
    }
    let mut pcfg = conf.plan_config();
    pcfg.conf_dir = empty_dir();
    if let Some(c) = pcfg.cluster_network.as_mut() {
        no_paths(c);
    }
    pcfg.default_networks.iter_mut().for_each(no_paths);
    plan_pod(&Pod::default(), &pcfg)
}

/// Plans `pod` with `pcfg` without NADs: requests, then the attachments (a NAD request fails cleanly, as
/// "not fetched").
fn plan_pod(pod: &Pod, pcfg: &PlanConfig) -> Verdict {
    let Some(reqs) = outcome("plan::requests", plan::requests(pod, pcfg))? else {
        return Ok(());
    };
    let mut pool = DevicePool::new(Checkpoint::default(), &pod.uid);
    let built = plan::build(pcfg, &reqs, &BTreeMap::new(), &mut pool, "eth0");
    if let Some(p) = outcome("plan::build", built)? {
        for a in p.attachments.as_slice() {
            valid_ifname("planned attachment", Some(&a.ifname))?;
        }
    }
    Ok(())
}

/// What the plan relies on in a selection: an interface name the kernel takes.
fn selection_checks(s: &NetworkSelection) -> Verdict {
    valid_ifname("requested interface", s.interface.as_deref())?;
    if s.name.is_empty() || s.namespace.is_empty() {
        return Err(format!("accepted an empty name: {}", s.qualified_name()));
    }
    Ok(())
}

fn networks_annotation(b: &[u8]) -> Verdict {
    if let Some(list) = outcome("parse_networks", parse_networks(&text(b), "default"))? {
        list.iter().try_for_each(selection_checks)?;
    }
    Ok(())
}

fn default_network_annotation(b: &[u8]) -> Verdict {
    let parsed = parse_default_network(&text(b), "kube-system");
    if let Some(s) = outcome("parse_default_network", parsed)? {
        selection_checks(&s)?;
    }
    Ok(())
}

fn nad(b: &[u8]) -> Verdict {
    let Ok(v) = serde_json::from_slice::<Value>(b) else {
        return Ok(());
    };
    let Some(n) = outcome("Nad::from_json", Nad::from_json(&v, "default", "nad1"))? else {
        return Ok(());
    };
    if let Some(net) = outcome("Nad::network_config", n.network_config(&empty_dir()))? {
        for p in net.plugins() {
            plugin_checks(p)?;
        }
    }
    Ok(())
}

fn pod(b: &[u8]) -> Verdict {
    let Ok(v) = serde_json::from_slice::<Value>(b) else {
        return Ok(());
    };
    let Some(pod) = outcome("Pod::from_json", Pod::from_json(&v))? else {
        return Ok(());
    };
    let delegate = multus_core::cni::NetworkConfig::from_slice(
        br#"{"cniVersion":"1.0.0","name":"podnet","type":"bridge"}"#,
    )
    .map_err(|e| e.to_string())?;
    let pcfg = PlanConfig {
        delegates: vec![delegate],
        multus_namespace: "kube-system".into(),
        conf_dir: empty_dir(),
        ..Default::default()
    };
    plan_pod(&pod, &pcfg)
}

fn kubelet_checkpoint(b: &[u8]) -> Verdict {
    let Some(cp) = outcome("Checkpoint::parse", Checkpoint::parse(b))? else {
        return Ok(());
    };
    let _ = cp.devices("uid", "intel.com/sriov");
    let mut pool = DevicePool::new(cp, "uid");
    let _ = pool.take("intel.com/sriov");
    Ok(())
}

//! A pod's attachments, planned by the same code in both modes: the pod from the [`PodSource`] when there
//! is one (else "no pod": the default networks alone), each NAD it needs read once, the kubelet's device
//! checkpoint when a NAD names a `resourceName`, then [`multus_k8s::plan`] (which also checks the interface
//! names, once) and the device information files.

use super::conf::MultusConf;
use super::devinfo;
use super::source::{PodArgs, PodSource};
use multus_core::cni::CniError;
use multus_k8s::client::RetryPolicy;
use multus_k8s::nad::{Checkpoint, DevicePool, Nad};
use multus_k8s::plan::{self, Plan, Pod as PodObject, ResolvedNad};
use std::collections::BTreeMap;

/// What a plan needs besides the config and the source.
pub struct PlanRequest<'a> {
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME` (the default network's interface).
    pub ifname: &'a str,
    /// How long to wait for the pod to appear in the API.
    pub retry: RetryPolicy,
}

/// The pod, checked against the UID the runtime named.
pub async fn read_pod(
    src: &mut PodSource,
    p: &PodArgs,
    retry: RetryPolicy,
) -> Result<Option<PodObject>, CniError> {
    let Some(pod) = src.pod(p, retry).await? else {
        return Ok(None);
    };
    // A static pod's mirror in the API has a UID of its own (Go Multus' IsStaticPod exemption).
    if !p.uid.is_empty() && !pod.uid.is_empty() && p.uid != pod.uid && !is_static(&pod) {
        return Err(CniError::try_again_later(format!(
            "pod {}/{}: the runtime asked for UID {} but the API has UID {} (a new pod of the same name?)",
            p.namespace, p.name, p.uid, pod.uid
        )));
    }
    Ok(Some(pod))
}

/// Whether the pod is a static pod (its mirror in the API): the kubelet's `kubernetes.io/config.source` is
/// there and not `api`, or it carries `kubernetes.io/config.mirror`.
fn is_static(pod: &PodObject) -> bool {
    pod.annotations.contains_key("kubernetes.io/config.mirror")
        || pod
            .annotations
            .get("kubernetes.io/config.source")
            .is_some_and(|s| s != "api")
}

/// The plan for `pod` (none: the default networks alone).
pub async fn plan_for(
    src: &mut PodSource,
    conf: &MultusConf,
    req: &PlanRequest<'_>,
    pod: Option<PodObject>,
) -> Result<(Plan, Option<PodObject>), CniError> {
    let view = pod.clone().unwrap_or_default();
    let mut pcfg = conf.plan_config();
    if let Some(name) = &conf.auxiliary_cni_chain_name {
        pcfg.auxiliary_chain = multus_k8s::nad::auxiliary_chain(
            name,
            conf.cluster_network.as_deref(),
            &conf.cni_version,
        )?;
    }
    let reqs = plan::requests(&view, &pcfg)?;
    let mut nads: BTreeMap<(String, String), ResolvedNad> = BTreeMap::new();
    for r in &reqs {
        let Some((ns, name)) = r.nad() else { continue };
        let key = (ns.to_string(), name.to_string());
        if nads.contains_key(&key) {
            continue;
        }
        let v = match src.nad(ns, name).await {
            Ok(v) => v,
            Err(e) => {
                if let Some(p) = &pod {
                    let msg = format!(
                        "cannot find a network-attachment-definition ({name}) in namespace ({ns}): {}",
                        e.msg
                    );
                    src.post_event(p, "Warning", "NoNetworkFound", &msg).await;
                }
                return Err(e);
            }
        };
        let nad = Nad::from_json(&v, ns, name)?;
        nads.insert(
            key,
            ResolvedNad {
                network: nad.network_config(&conf.conf_dir)?,
                resource_name: nad.resource_name.clone(),
            },
        );
    }
    let checkpoint = if nads.values().any(|n| n.resource_name.is_some()) {
        Checkpoint::load(&conf.device_checkpoint)?
    } else {
        Checkpoint::default()
    };
    let mut pool = DevicePool::new(checkpoint, &view.uid);
    let mut p = plan::build(&pcfg, &reqs, &nads, &mut pool, req.ifname)?;
    devinfo::assign(&mut p.attachments, &conf.device_info_dir, req.container_id);
    Ok((p, pod))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn static_pods_are_told_by_their_kubelet_annotations() {
        let mut pod = PodObject::default();
        assert!(!is_static(&pod));
        pod.annotations
            .insert("kubernetes.io/config.source".into(), "api".into());
        assert!(!is_static(&pod));
        pod.annotations
            .insert("kubernetes.io/config.source".into(), "file".into());
        assert!(is_static(&pod));
        let mut mirror = PodObject::default();
        mirror
            .annotations
            .insert("kubernetes.io/config.mirror".into(), "abc".into());
        assert!(is_static(&mirror));
    }

    /// The kubeconfig-less mode is "no pod, no NADs" through the same planning: `delegates[0]` is the
    /// default network with `CNI_IFNAME` and the runtime's runtimeConfig, the others `net1`, `net2`, ...
    #[test]
    fn delegates_are_planned_without_a_pod() {
        let c = MultusConf::parse(
            br#"{"cniVersion":"0.3.1","name":"m","type":"multus","runtimeConfig":{"portMappings":[]},
                 "delegates":[{"type":"bridge","name":"a"},{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"macvlan"}]}]}"#,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let req = PlanRequest {
            container_id: "c1",
            ifname: "eth0",
            retry: RetryPolicy::default(),
        };
        let (plan, pod) = rt
            .block_on(plan_for(&mut PodSource::None, &c, &req, None))
            .unwrap();
        assert!(pod.is_none());
        let atts = &plan.attachments;
        assert_eq!(
            atts.iter().map(|a| a.ifname.as_str()).collect::<Vec<_>>(),
            ["eth0", "net1"]
        );
        assert!(atts[0].is_default && !atts[1].is_default);
        assert_eq!(atts[0].network.cni_version(), "0.3.1");
        assert_eq!(atts[1].network.cni_version(), "1.0.0");
        assert!(atts[0].runtime_config.contains_key("portMappings"));
        assert!(atts[1].runtime_config.is_empty());
        assert_eq!(
            c.bin_dirs,
            vec![PathBuf::from(super::super::conf::DEFAULT_BIN_DIR)]
        );
    }
}

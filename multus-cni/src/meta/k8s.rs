//! The Kubernetes mode of the meta-plugin (a config with `kubeconfig`): the pod's networks come from its
//! annotations and NADs through the API, and its `network-status` is written back after ADD.
//!
//! - ADD: wait for `readinessindicatorfile` (bounded) -> GET the pod (bounded retry) -> plan (default network
//!   first, `defaultNetworks`, the networks annotation) -> GET each NAD once -> cache the exact delegate
//!   configs (atomic) -> attach in order (rollback on failure) -> apply `default-route` (the family's other
//!   default routes removed; a failure rolls the pod back) -> record results -> write network-status
//!   (retrying on conflicts; a failure there rolls the pod back, never half-reported).
//! - device-info (device-info spec 1.1, as Go Multus): an attachment with a `deviceID` gets
//!   `runtimeConfig.CNIDeviceInfoFile` (cached with it, so DEL passes the same); the device plugin's file is
//!   copied there before the ADD, and the file's content after the ADD is its `device-info`. DEL (and a
//!   rollback) removes the file once the attachment's delegates are deleted.
//! - DEL: from the cache alone (the pod, the NADs or the whole API server may be gone). A corrupt cache falls
//!   back to the API; when the API cannot say what was attached either, DEL fails (code 11) and keeps the
//!   file rather than report success while something may be left attached (upstream does, #1087).
//!   The cache is removed only when every delegate DEL succeeded.

use super::cache::Cache;
use super::conf::MultusConf;
use multus_core::cni::{CniEnv, CniError, CniResult};
use multus_core::devinfo;
use multus_core::netlink::{link, route, Netlink};
use multus_core::netns::NetNs;
use multus_core::pipeline::{self, Attachment};
use multus_k8s::annotation::NETWORK_STATUS_ANNOTATION;
use multus_k8s::client::{Client, ClientConfig};
use multus_k8s::default_route::{self, GatewayChange};
use multus_k8s::nad::{Checkpoint, DevicePool, Nad};
use multus_k8s::plan::{self, Plan, Pod, ResolvedNad};
use multus_k8s::source::Source;
use multus_k8s::status;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The pod an invocation is for, from `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq)]
pub struct PodArgs {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID` (may be empty with old runtimes).
    pub uid: String,
}

/// The pod named by `CNI_ARGS`, if the runtime gave one.
pub fn pod_args(env: &CniEnv) -> Option<PodArgs> {
    let ns = env
        .args
        .get("K8S_POD_NAMESPACE")
        .filter(|s| !s.is_empty())?;
    let name = env.args.get("K8S_POD_NAME").filter(|s| !s.is_empty())?;
    Some(PodArgs {
        namespace: ns.to_string(),
        name: name.to_string(),
        uid: env.args.get("K8S_POD_UID").unwrap_or_default().to_string(),
    })
}

/// Waits (bounded by `readinessTimeout`) for the readiness indicator file; `err` builds the error.
pub async fn wait_readiness(
    conf: &MultusConf,
    err: fn(String) -> CniError,
) -> Result<(), CniError> {
    let Some(f) = &conf.readiness_indicator_file else {
        return Ok(());
    };
    let deadline = Instant::now() + conf.readiness_timeout;
    loop {
        if f.exists() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(err(format!(
                "the readiness indicator file {} did not appear within {:?} (is the default network up?)",
                f.display(),
                conf.readiness_timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn client(conf: &MultusConf) -> Result<Client, CniError> {
    let path = conf.kubeconfig.as_deref().unwrap_or_default();
    let mut cfg = ClientConfig::from_kubeconfig(std::path::Path::new(path))
        .map_err(|e| e.context("multus config: \"kubeconfig\""))?;
    cfg.request_timeout = conf.api_request_timeout;
    Ok(Client::new(cfg))
}

/// Resolves a pod's attachments from `src` (the pod when the runtime named one, each NAD once).
async fn resolve<S: Source>(
    src: &mut S,
    conf: &MultusConf,
    pod_args: Option<&PodArgs>,
    ifname: &str,
    retry: multus_k8s::client::RetryPolicy,
) -> Result<(Plan, Option<Pod>), CniError> {
    let pod = match pod_args {
        Some(p) => {
            let pod = src.pod(&p.namespace, &p.name, retry).await?;
            if !p.uid.is_empty() && !pod.uid.is_empty() && p.uid != pod.uid {
                return Err(CniError::try_again_later(format!(
                    "pod {}/{}: the runtime asked for UID {} but the API has UID {} (a new pod of the same name?)",
                    p.namespace, p.name, p.uid, pod.uid
                )));
            }
            Some(pod)
        }
        None => None,
    };
    // Without a pod (not run by a Kubernetes runtime): the default networks only.
    let view = pod.clone().unwrap_or_default();
    let pcfg = conf.plan_config();
    let reqs = plan::requests(&view, &pcfg)?;
    let mut nads: BTreeMap<(String, String), ResolvedNad> = BTreeMap::new();
    for r in &reqs {
        let Some((ns, name)) = r.nad() else { continue };
        let key = (ns.to_string(), name.to_string());
        if nads.contains_key(&key) {
            continue;
        }
        let v = src.nad(ns, name).await?;
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
    let p = plan::build(&pcfg, &reqs, &nads, &mut pool, ifname)?;
    Ok((p, pod))
}

/// Gives every attachment with a device (`runtimeConfig.deviceID`) its device information file as
/// `runtimeConfig.CNIDeviceInfoFile` (Go Multus sets it exactly then).
fn assign_device_info_files(atts: &mut [Attachment], conf: &MultusConf, container_id: &str) {
    for a in atts {
        let has_device = a
            .runtime_config
            .get("deviceID")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|d| !d.is_empty());
        if has_device {
            let f = devinfo::cni_path(&conf.device_info_dir, &a.name, container_id, &a.ifname);
            a.runtime_config.insert(
                devinfo::RUNTIME_CONFIG_KEY.into(),
                serde_json::Value::String(f.to_string_lossy().into_owned()),
            );
        }
    }
}

/// An attachment's device information file, when it has one.
fn device_info_file(a: &Attachment) -> Option<PathBuf> {
    a.runtime_config
        .get(devinfo::RUNTIME_CONFIG_KEY)
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
}

/// Before the delegates' ADD: each device plugin's file (resource and device from the checkpoint) is
/// copied to the attachment's device information file, where its plugins (and, after the ADD, Multus)
/// read it.
fn copy_device_plugin_files(plan: &Plan, conf: &MultusConf) {
    for (a, res) in plan.attachments.iter().zip(&plan.device_resources) {
        let (Some(res), Some(cni), Some(dev)) = (
            res,
            device_info_file(a),
            a.runtime_config
                .get("deviceID")
                .and_then(serde_json::Value::as_str),
        ) else {
            continue;
        };
        devinfo::copy_dp_to_cni(&devinfo::dp_path(&conf.device_info_dir, res, dev), &cni);
    }
}

/// Removes the attachments' device information files.
fn remove_device_info_files(atts: &[Attachment]) {
    for f in atts.iter().filter_map(device_info_file) {
        devinfo::remove(&f);
    }
}

/// The network-status entries; `default` goes to the attachment carrying the requested default route, if
/// any, else to the default network; `device-info` is the content of the attachment's device information
/// file after its ADD.
fn statuses(
    atts: &[Attachment],
    results: &[CniResult],
    default_route: Option<&(usize, Vec<IpAddr>)>,
) -> Vec<status::NetworkStatus> {
    atts.iter()
        .zip(results)
        .enumerate()
        .flat_map(|(i, (a, r))| {
            let default = default_route::status_default(i, a, default_route);
            let info = device_info_file(a).and_then(|f| devinfo::load(&f));
            status::from_result(&a.name, &a.ifname, r, default, info.as_ref())
        })
        .collect()
}

/// Carries out the `default-route` changes in the pod's netns: per family, every default route of the main
/// table is deleted (whatever the interface), then one is added via the gateway on the requesting interface.
async fn apply_default_route(netns: &Path, changes: &[GatewayChange]) -> Result<(), CniError> {
    let ns = NetNs::open(netns)?;
    let nl = Netlink::open_in(&ns)?;
    for c in changes {
        let link = link::by_name(&nl, &c.ifname).await?.ok_or_else(|| {
            CniError::kernel(format!(
                "\"default-route\": interface {} is not in the pod",
                c.ifname
            ))
        })?;
        for r in route::defaults(&nl, c.v6).await? {
            match route::del(&nl, &r).await {
                Err(e) if !e.is_gone() => return Err(e.context("\"default-route\"").into()),
                _ => {}
            }
        }
        let spec = route::RouteSpec {
            dst: default_route::default_dst(c.v6),
            gw: Some(c.gateway),
            oif: link.index,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        };
        route::add(&nl, &spec)
            .await
            .map_err(|e| e.context(format!("\"default-route\" on {}", c.ifname)))?;
    }
    Ok(())
}

/// Undoes a successful pipeline ADD (a later step failed): every delegate DEL, then the cache; a failed
/// DEL keeps the cache so that the runtime's DEL can finish the job.
async fn rollback(run: &super::Attached, env: &CniEnv, atts: &[Attachment]) {
    let prev: Vec<Option<CniResult>> = run.results.iter().cloned().map(Some).collect();
    match pipeline::del(
        &run.ctx.with_command(multus_core::cni::Command::Del),
        atts,
        &prev,
    )
    .await
    {
        Ok(()) => {
            remove_device_info_files(atts);
            let _ = run.cache.remove(&env.container_id, &env.ifname);
        }
        Err(de) => tracing::warn!("rollback of {}: {de}", env.container_id),
    }
}

/// ADD in the Kubernetes mode, against the API server of the kubeconfig.
pub async fn add(env: &CniEnv, conf: &MultusConf) -> Result<Option<serde_json::Value>, CniError> {
    let mut client = client(conf)?;
    let r = add_from(env, conf, &mut client).await;
    tracing::debug!(
        "API connections opened for this ADD: {}",
        client.connections_opened()
    );
    r
}

/// ADD in the Kubernetes mode with pods and NADs from `src` (the API, or local manifests for `multus
/// demo`): plan, cache, pipeline, network-status.
pub async fn add_from<S: Source>(
    env: &CniEnv,
    conf: &MultusConf,
    src: &mut S,
) -> Result<Option<serde_json::Value>, CniError> {
    wait_readiness(conf, CniError::try_again_later).await?;
    let netns = super::pod_netns(env)?;
    let pod_args = pod_args(env);
    let (mut plan, _pod) =
        resolve(src, conf, pod_args.as_ref(), &env.ifname, conf.api_retry).await?;
    assign_device_info_files(&mut plan.attachments, conf, &env.container_id);
    let atts = &plan.attachments;
    pipeline::validate(atts)?;
    copy_device_plugin_files(&plan, conf);
    let mut run = match super::attach(env, conf, netns, atts).await {
        Ok(run) => run,
        Err(e) => {
            remove_device_info_files(atts);
            return Err(e);
        }
    };
    if let Some(req) = &plan.default_route {
        let applied = match default_route::plan(req, atts, &run.results) {
            Ok((changes, rewritten)) => apply_default_route(netns, &changes)
                .await
                .map(|()| rewritten),
            Err(e) => Err(e),
        };
        match applied {
            Ok(rewritten) => run.results = rewritten,
            Err(e) => {
                rollback(&run, env, atts).await;
                return Err(e);
            }
        }
    }
    run.record_results();
    if let Some(p) = &pod_args {
        let text = status::render(&statuses(atts, &run.results, plan.default_route.as_ref()));
        let uid = Some(p.uid.as_str()).filter(|u| !u.is_empty());
        if let Err(err) = src
            .set_annotation(&p.namespace, &p.name, uid, NETWORK_STATUS_ANNOTATION, &text)
            .await
        {
            // A pod whose status cannot be written is rolled back: never attached but unreported.
            rollback(&run, env, atts).await;
            return Err(err);
        }
    }
    super::default_result(atts, &run.results, &conf.cni_version).map(Some)
}

async fn del_with_retry(
    ctx: &multus_core::delegate::Context,
    conf: &MultusConf,
    atts: &[Attachment],
    results: &[Option<CniResult>],
) -> Result<(), CniError> {
    let mut res = pipeline::del(ctx, atts, results).await;
    let mut tries = 1;
    while res.is_err() && conf.retry_delete_on_error && tries < 3 {
        tracing::info!(
            "DEL failed ({:?}); retrying (retryDeleteOnError)",
            res.as_ref().err()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        res = pipeline::del(ctx, atts, results).await;
        tries += 1;
    }
    res
}

/// DEL in the Kubernetes mode (the API is asked only when the cache is corrupt).
pub async fn del(env: &CniEnv, conf: &MultusConf) -> Result<(), CniError> {
    del_from(env, conf, || client(conf)).await
}

/// DEL in the Kubernetes mode: from the cache; `src` (made only when needed, so a missing kubeconfig is
/// no obstacle) is asked what was attached when the cache is corrupt.
pub async fn del_from<S: Source>(
    env: &CniEnv,
    conf: &MultusConf,
    src: impl FnOnce() -> Result<S, CniError>,
) -> Result<(), CniError> {
    let ctx = super::del_context(env, conf);
    let cache = Cache::new(&conf.cni_dir);
    match cache.load(&env.container_id, &env.ifname) {
        Ok(Some(entry)) => {
            // Everything needed is in the cache: no API call, so DEL works with the pod, the NADs or the
            // API server gone.
            let (atts, results) = entry.attachments()?;
            del_with_retry(&ctx, conf, &atts, &results).await?;
            remove_device_info_files(&atts);
            cache.remove(&env.container_id, &env.ifname)
        }
        Ok(None) => {
            // Nothing was cached, so no delegate ever ran for this attachment (the cache is written first).
            tracing::info!(
                "DEL of {} ({}): nothing cached, nothing to undo",
                env.container_id,
                env.ifname
            );
            Ok(())
        }
        Err(corrupt) => {
            tracing::warn!("{corrupt}; asking the API what was attached");
            let fallback = async {
                let mut src = src()?;
                let short = multus_k8s::client::RetryPolicy {
                    timeout: conf.api_retry.timeout.min(Duration::from_secs(5)),
                    interval: conf.api_retry.interval,
                };
                let pod_args = pod_args(env).ok_or_else(|| {
                    CniError::invalid_env("no K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS")
                })?;
                resolve(&mut src, conf, Some(&pod_args), &env.ifname, short).await
            }
            .await;
            let (mut plan, _) = fallback.map_err(|e| {
                CniError::try_again_later(format!(
                    "{}; and the API cannot tell what was attached ({}): nothing was deleted, the cache is kept",
                    corrupt.msg, e.msg
                ))
            })?;
            assign_device_info_files(&mut plan.attachments, conf, &env.container_id);
            let n = plan.attachments.len();
            del_with_retry(&ctx, conf, &plan.attachments, &vec![None; n]).await?;
            remove_device_info_files(&plan.attachments);
            cache.remove(&env.container_id, &env.ifname)
        }
    }
}

//! The Multus meta-plugin: reads its config, resolves a pod's attachments, runs them through the attach
//! pipeline, caches what it attached, and answers the runtime with the default network's result.

pub mod cache;
pub mod conf;
pub mod k8s;

use crate::builtins;
use cache::{Cache, CacheEntry};
use conf::MultusConf;
use multus_core::cni::{AttachmentRef, CniEnv, CniError, Command, NetworkConfig, VersionInfo};
use multus_core::delegate::{chain, Context};
use multus_core::netns::NetNs;
use multus_core::pipeline::{self, Attachment};
use multus_core::skel::{error_version, Outcome};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Runs one invocation of the meta-plugin (everything but reading the process environment and stdin).
pub async fn run(env: &CniEnv, stdin: &[u8]) -> Outcome {
    if env.command == Command::Version {
        return Outcome::ok(serde_json::to_value(VersionInfo::reply(stdin)).ok());
    }
    let version = error_version(stdin);
    let conf = match MultusConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e, &version),
    };
    crate::logging::init(
        &conf.log_level,
        conf.log_file.as_deref(),
        conf.log_to_stderr,
    );
    let res = match env.command {
        Command::Add => add(env, &conf).await,
        Command::Del => del(env, &conf).await.map(|_| None),
        Command::Check => check(env, &conf).await.map(|_| None),
        Command::Status => status(env, &conf).await.map(|_| None),
        Command::Gc => gc(env, &conf).await.map(|_| None),
        Command::Version => Ok(None),
    };
    match res {
        Ok(body) => Outcome::ok(body),
        Err(e) => {
            tracing::error!(network = %conf.name, command = %env.command, container = %env.container_id, "{e}");
            Outcome::error(&e, &conf.cni_version)
        }
    }
}

fn context(env: &CniEnv, conf: &MultusConf) -> Context {
    let registry = Arc::new(builtins::registry(
        conf.bin_dirs.clone(),
        conf.delegate_timeout,
    ));
    Context::from_env(env, registry)
}

async fn add(env: &CniEnv, conf: &MultusConf) -> Result<Option<serde_json::Value>, CniError> {
    if conf.kubeconfig.is_some() {
        return k8s::add(env, conf).await;
    }
    let netns = pod_netns(env)?;
    let atts = conf.delegate_attachments(&env.ifname);
    let mut run = attach(env, conf, netns, &atts).await?;
    run.record_results();
    default_result(&atts, &run.results, &conf.cni_version).map(Some)
}

/// The pod's netns of an ADD or CHECK (`CNI_NETNS`), which must exist.
fn pod_netns(env: &CniEnv) -> Result<&std::path::Path, CniError> {
    let netns = env
        .netns
        .as_deref()
        .ok_or_else(|| CniError::invalid_env("CNI_NETNS is missing"))?;
    NetNs::open(netns)?;
    Ok(netns)
}

/// The context of a DEL: a netns that is already gone is no reason to keep IPs, so DEL runs without one,
/// as the spec allows.
fn del_context(env: &CniEnv, conf: &MultusConf) -> Context {
    let mut ctx = context(env, conf);
    if let Some(ns) = &env.netns {
        if NetNs::open(ns).is_err() {
            tracing::info!("netns {} is gone; running DEL without it", ns.display());
            ctx.netns = None;
        }
    }
    ctx
}

/// The delegates of one ADD, attached: what later steps (and their rollback) need.
pub(crate) struct Attached {
    /// The context the delegates ran with.
    pub ctx: Context,
    /// The attachment cache.
    pub cache: Cache,
    /// This attachment's cache entry (already stored, results not yet).
    pub entry: CacheEntry,
    /// One result per attachment.
    pub results: Vec<multus_core::cni::CniResult>,
}

impl Attached {
    /// Records the results in the cache entry (for DEL and CHECK); a failure only costs the prevResults.
    pub fn record_results(&mut self) {
        self.entry.set_results(&self.results);
        if let Err(e) = self.cache.store_results(&self.entry) {
            tracing::warn!("could not record results in the attachment cache: {e}");
        }
    }
}

/// Runs the ADD of `atts` in order: the cache entry is stored before the first delegate runs (whatever
/// happens next, DEL can undo it); when a delegate fails, the pipeline has rolled back the others and the
/// cache entry is removed.
pub(crate) async fn attach(
    env: &CniEnv,
    conf: &MultusConf,
    netns: &std::path::Path,
    atts: &[Attachment],
) -> Result<Attached, CniError> {
    pipeline::validate(atts)?;
    let ctx = context(env, conf);
    let cache = Cache::new(&conf.cni_dir);
    let entry = CacheEntry::new(
        &env.container_id,
        &env.ifname,
        &netns.to_string_lossy(),
        atts,
    );
    cache.store(&entry)?;
    match pipeline::add(&ctx, atts).await {
        Ok(results) => Ok(Attached {
            ctx,
            cache,
            entry,
            results,
        }),
        Err(e) => {
            let _ = cache.remove(&env.container_id, &env.ifname);
            Err(e)
        }
    }
}

/// What Multus answers an ADD with, as upstream does: the default network's result (the first attachment's
/// when none is marked default), in Multus' own cniVersion.
pub(crate) fn default_result(
    atts: &[Attachment],
    results: &[multus_core::cni::CniResult],
    cni_version: &str,
) -> Result<serde_json::Value, CniError> {
    let default = atts
        .iter()
        .zip(results)
        .find(|(a, _)| a.is_default)
        .map(|(_, r)| r)
        .or(results.first())
        .ok_or_else(|| CniError::invalid_config("no attachment"))?;
    default.to_value(cni_version)
}

/// Attachments, their ADD results when known, and whether they came from the cache.
type Known = (
    Vec<Attachment>,
    Vec<Option<multus_core::cni::CniResult>>,
    bool,
);

/// The attachments to DEL or CHECK: the cache when there is one, else the config's delegates.
fn known_attachments(env: &CniEnv, conf: &MultusConf) -> Result<Known, CniError> {
    let cache = Cache::new(&conf.cni_dir);
    match cache.load(&env.container_id, &env.ifname) {
        Ok(Some(entry)) => {
            let (a, r) = entry.attachments()?;
            Ok((a, r, true))
        }
        Ok(None) => {
            let atts = conf.delegate_attachments(&env.ifname);
            let n = atts.len();
            Ok((atts, vec![None; n], false))
        }
        Err(e) => {
            // A corrupt cache: fall back to the config, and say so.
            tracing::warn!("{e}; using the config's delegates");
            let atts = conf.delegate_attachments(&env.ifname);
            let n = atts.len();
            Ok((atts, vec![None; n], false))
        }
    }
}

async fn del(env: &CniEnv, conf: &MultusConf) -> Result<(), CniError> {
    if conf.kubeconfig.is_some() {
        return k8s::del(env, conf).await;
    }
    let (atts, results, _) = known_attachments(env, conf)?;
    let ctx = del_context(env, conf);
    let res = pipeline::del(&ctx, &atts, &results).await;
    let cache = Cache::new(&conf.cni_dir);
    // The cache goes only when every delegate DEL succeeded, so a failed DEL can be retried from it.
    if res.is_ok() {
        cache.remove(&env.container_id, &env.ifname)?;
    }
    res
}

pub(crate) async fn check(env: &CniEnv, conf: &MultusConf) -> Result<(), CniError> {
    pod_netns(env)?;
    let (atts, results, cached) = known_attachments(env, conf)?;
    if !cached {
        return Err(CniError::invalid_config(format!(
            "CHECK: nothing is known of container {} ({}): no attachment cache",
            env.container_id, env.ifname
        )));
    }
    let ctx = context(env, conf);
    pipeline::check(&ctx, &atts, &results).await
}

/// Every network Multus may run: the config's delegates and those of cached attachments, once each by name.
fn all_networks(conf: &MultusConf, entries: &[CacheEntry]) -> Vec<NetworkConfig> {
    let mut by_name: BTreeMap<String, NetworkConfig> = BTreeMap::new();
    for d in &conf.delegates {
        by_name
            .entry(d.name().to_string())
            .or_insert_with(|| d.clone());
    }
    for e in entries {
        if let Ok((atts, _)) = e.attachments() {
            for a in atts {
                by_name
                    .entry(a.network.name().to_string())
                    .or_insert(a.network);
            }
        }
    }
    by_name.into_values().collect()
}

async fn status(env: &CniEnv, conf: &MultusConf) -> Result<(), CniError> {
    k8s::wait_readiness(conf, CniError::not_available).await?;
    let ctx = context(env, conf);
    for net in &conf.delegates {
        chain::status(&ctx, net).await?;
    }
    // The Kubernetes mode's cluster network, when it is a local config (a NAD needs no STATUS here).
    if conf.kubeconfig.is_some() && conf.delegates.is_empty() {
        if let Some(c) = &conf.cluster_network {
            if let Ok(multus_k8s::plan::NetworkSource::Local(net)) =
                multus_k8s::plan::resolve_named(c, &conf.conf_dir, &conf.multus_namespace)
            {
                chain::status(&ctx, &net).await?;
            }
        }
    }
    Ok(())
}

async fn gc(env: &CniEnv, conf: &MultusConf) -> Result<(), CniError> {
    k8s::wait_readiness(conf, CniError::try_again_later).await?;
    let ctx = context(env, conf);
    let valid = &conf.valid_attachments;
    let cache = Cache::new(&conf.cni_dir);
    let (entries, _corrupt) = cache.list();
    let mut failures = Vec::new();
    let mut live = Vec::new();
    for entry in entries {
        let me = AttachmentRef {
            container_id: entry.container_id.clone(),
            ifname: entry.ifname.clone(),
        };
        if valid.contains(&me) {
            live.push(entry);
            continue;
        }
        // A stale attachment: DEL everything it holds, as the runtime would have.
        let (atts, results) = entry.attachments()?;
        let mut dctx = ctx.with_command(Command::Del);
        dctx.container_id = entry.container_id.clone();
        dctx.netns = None;
        match pipeline::del(&dctx, &atts, &results).await {
            Ok(()) => cache.remove(&entry.container_id, &entry.ifname)?,
            Err(e) => failures.push(e),
        }
    }
    // Each network learns which of its attachments (secondaries included) are still valid.
    let mut per_network: BTreeMap<String, Vec<AttachmentRef>> = BTreeMap::new();
    for entry in &live {
        if let Ok((atts, _)) = entry.attachments() {
            for a in atts {
                per_network
                    .entry(a.network.name().to_string())
                    .or_default()
                    .push(a.reference(&entry.container_id));
            }
        }
    }
    for net in all_networks(conf, &live) {
        let valid_here = per_network.get(net.name()).cloned().unwrap_or_default();
        if let Err(e) = chain::gc(&ctx, &net, &valid_here).await {
            failures.push(e);
        }
    }
    pipeline::aggregate("GC", failures.len().max(1), failures)
}

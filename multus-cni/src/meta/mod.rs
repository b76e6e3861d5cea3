//! The Multus meta-plugin, as a library: one flow for both modes, which differ only in their
//! [`PodSource`] (the API with `kubeconfig`, none for upstream's `delegates`, local files for the demo).
//!
//! How an ADD flows (`add.rs`): wait for `readinessindicatorfile` -> plan the pod's attachments (`plan.rs`:
//! the pod and its NADs from the source, or the config's networks alone; interface names checked once) ->
//! device information files (`devinfo.rs`) -> the attachment cache, durably, before any delegate runs
//! (`cache.rs`) -> [`multus_core::pipeline::add`] (in order, rollback on failure) -> `default-route`
//! (`default_route.rs`) -> the results into the cache -> `network-status` when there is a pod -> the default
//! network's result. DEL and GC (`del.rs`) undo what the cache holds (or, with nothing cached, what the
//! source and config say now), with `retryDeleteOnError`, and remove the device information files; CHECK
//! and STATUS are in `check.rs`; taking Multus off a node without leaking is `retire.rs`.
//!
//! ```no_run
//! use multus_cni::meta::{self, conf::MultusConf, Meta, PodSource};
//! use multus_core::cni::CniEnv;
//!
//! # async fn embed(stdin: &[u8]) -> Result<(), multus_core::cni::CniError> {
//! let env = CniEnv::from_process()?;
//! let conf = MultusConf::parse(stdin)?;
//! // The runtime's answer: a result for ADD, nothing for the other verbs.
//! let answer = Meta::new(&env, &conf, PodSource::from_conf(&conf)).run().await?;
//! # let _ = answer; Ok(()) }
//! ```

mod add;
pub mod cache;
mod check;
pub mod conf;
mod default_route;
mod del;
mod devinfo;
mod plan;
mod retire;
pub mod source;

pub use source::{PodArgs, PodSource};

use crate::builtins;
use conf::MultusConf;
use multus_core::cni::{AttachmentRef, CniArgs, CniEnv, CniError, Command, VersionInfo};
use multus_core::delegate::{Context, Registry};
use multus_core::netns::NetNs;
use multus_core::pipeline::{Attached, Pod};
use multus_core::skel::{error_version, Outcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs one invocation of the meta-plugin from its environment and stdin (what the `multus` process does).
pub async fn run(env: &CniEnv, stdin: &[u8]) -> Outcome {
    if env.command == Command::Version {
        return Outcome::ok(serde_json::to_value(VersionInfo::reply(stdin)).ok());
    }
    let conf = match MultusConf::parse(stdin) {
        Ok(c) => c,
        Err(e) => return Outcome::error(&e, &error_version(stdin)),
    };
    crate::logging::init_with_options(
        &conf.log_level,
        conf.log_file.as_deref(),
        conf.log_to_stderr,
        &crate::logging::LogOptions::from_map_or_default(&conf.log_options),
    );
    match Meta::new(env, &conf, PodSource::from_conf(&conf))
        .run()
        .await
    {
        Ok(body) => Outcome::ok(body),
        Err(e) => {
            tracing::error!(network = %conf.name, command = %env.command, container = %env.container_id, "{e}");
            Outcome::error(&e, &conf.cni_version)
        }
    }
}

/// One meta-plugin invocation: the CNI environment, the Multus config and where pods come from.
pub struct Meta<'a> {
    env: &'a CniEnv,
    conf: &'a MultusConf,
    source: PodSource,
    registry: Arc<Registry>,
}

impl<'a> Meta<'a> {
    /// An invocation with the built-in delegates and the config's `binDir`s.
    pub fn new(env: &'a CniEnv, conf: &'a MultusConf, source: PodSource) -> Self {
        let mut registry = builtins::registry(conf.bin_dirs.clone(), conf.delegate_timeout);
        builtins::prefer_node_binaries(&mut registry, &conf.prefer_node_binary);
        let registry = Arc::new(registry);
        Meta {
            env,
            conf,
            source,
            registry,
        }
    }

    /// Runs the verb of the environment: the result for ADD, nothing for the others.
    pub async fn run(&mut self) -> Result<Option<serde_json::Value>, CniError> {
        match self.env.command {
            Command::Add => self.add().await.map(Some),
            Command::Del => self.del().await.map(|()| None),
            Command::Check => self.check().await.map(|()| None),
            Command::Status => self.status().await.map(|()| None),
            Command::Gc => self.gc().await.map(|()| None),
            Command::Version => Ok(serde_json::to_value(VersionInfo::reply(b"{}")).ok()),
        }
    }

    /// The source, given back (the demo reads the network-status it wrote from its files).
    pub fn into_source(self) -> PodSource {
        self.source
    }

    /// This invocation's attachment (container ID, `CNI_IFNAME`): the key of its cache entry.
    fn at(&self) -> AttachmentRef {
        AttachmentRef {
            container_id: self.env.container_id.clone(),
            ifname: self.env.ifname.clone(),
        }
    }

    /// The pipeline's pod; for DEL and GC a netns that is already gone is no reason to keep IPs, so the
    /// delegates run without one, as the spec allows.
    fn pod(&self) -> Pod {
        let mut netns = self.env.netns.clone();
        if matches!(self.env.command, Command::Del | Command::Gc) {
            if let Some(ns) = &netns {
                if NetNs::open(ns).is_err() {
                    tracing::info!("netns {} is gone; running DEL without it", ns.display());
                    netns = None;
                }
            }
        }
        Pod {
            container_id: self.env.container_id.clone(),
            netns,
            args: delegate_args(&self.env.args),
            cni_path: self.env.path.clone(),
            registry: self.registry.clone(),
        }
    }

    /// The context of a per-network verb (STATUS, GC): no container, no netns, no interface.
    fn network_context(&self, command: Command) -> Context {
        Context {
            command,
            container_id: String::new(),
            netns: None,
            ifname: String::new(),
            args: self.env.args.clone(),
            cni_path: self.env.path.clone(),
            registry: self.registry.clone(),
        }
    }

    /// The pod's netns of an ADD or CHECK (`CNI_NETNS`), which must exist.
    fn live_netns(&self) -> Result<&std::path::Path, CniError> {
        let netns = self
            .env
            .netns
            .as_deref()
            .ok_or_else(|| CniError::invalid_env("CNI_NETNS is missing"))?;
        NetNs::open(netns)?;
        Ok(netns)
    }

    /// Waits (bounded by `readinessTimeout`) for `readinessindicatorfile`; `err` builds the error.
    async fn wait_readiness(&self, err: fn(String) -> CniError) -> Result<(), CniError> {
        let Some(f) = &self.conf.readiness_indicator_file else {
            return Ok(());
        };
        let deadline = Instant::now() + self.conf.readiness_timeout;
        while !f.exists() {
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "the readiness indicator file {} did not appear within {:?} (is the default network up?)",
                    f.display(),
                    self.conf.readiness_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// The `CNI_ARGS` of every delegate, as Go Multus builds them (`createRuntimeConf`): `IgnoreUnknown=true` and
/// the pod's `K8S_POD_NAMESPACE`, `K8S_POD_NAME`, `K8S_POD_INFRA_CONTAINER_ID`, `K8S_POD_UID` first, then each
/// pair of the runtime's `CNI_ARGS` (filling one of those keys while it is empty, else appended). So a
/// plugin that refuses unknown keys (the reference bridge) never fails on the runtime's.
fn delegate_args(runtime: &CniArgs) -> CniArgs {
    const KEYS: [&str; 4] = [
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
    ];
    let mut out = vec![("IgnoreUnknown".to_string(), "true".to_string())];
    out.extend(KEYS.iter().map(|k| {
        (
            k.to_string(),
            runtime.get(k).unwrap_or_default().to_string(),
        )
    }));
    for (k, v) in &runtime.0 {
        match out.iter_mut().find(|(ok, ov)| ok == k && ov.is_empty()) {
            Some(slot) if !v.is_empty() => slot.1 = v.clone(),
            _ => out.push((k.clone(), v.clone())),
        }
    }
    CniArgs(out)
}

/// What Multus answers an ADD with, as upstream does: the default network's result (the first attachment's
/// when none is marked default), in Multus' own cniVersion.
fn default_result(attached: &[Attached], cni_version: &str) -> Result<serde_json::Value, CniError> {
    attached
        .iter()
        .find(|a| a.attachment.is_default)
        .or(attached.first())
        .and_then(|a| a.result.as_ref())
        .ok_or_else(|| CniError::invalid_config("no attachment"))?
        .to_value(cni_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the fixture of Go Multus 4.2.2 records them (`results/*`, `cniArgs`).
    #[test]
    fn delegates_get_go_multus_cni_args() {
        let runtime = CniArgs::parse(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod;K8S_POD_INFRA_CONTAINER_ID=9b8a;K8S_POD_UID=5e7a",
        )
        .unwrap();
        assert_eq!(
            delegate_args(&runtime).render(),
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod;K8S_POD_INFRA_CONTAINER_ID=9b8a;\
             K8S_POD_UID=5e7a;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=sample-pod;\
             K8S_POD_INFRA_CONTAINER_ID=9b8a;K8S_POD_UID=5e7a"
        );
        // A kubeconfig-less runtime without pod keys: those stay empty, its own are appended.
        let runtime = CniArgs::parse("FOO=bar").unwrap();
        assert_eq!(
            delegate_args(&runtime).render(),
            "IgnoreUnknown=true;K8S_POD_NAMESPACE=;K8S_POD_NAME=;K8S_POD_INFRA_CONTAINER_ID=;K8S_POD_UID=;FOO=bar"
        );
    }
}

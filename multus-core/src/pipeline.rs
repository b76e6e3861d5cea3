//! The attach pipeline: a pod's ordered attachments, ADDed in order with rollback on failure, DELeted in
//! reverse with every failure collected, CHECKed each.
//!
//! The pipeline knows nothing of where the attachments came from: an [`AttachmentSource`] provides them
//! (a local list of delegates for tests and the demo, the Kubernetes API for the meta-plugin).

use crate::cni::{AttachmentRef, CniError, CniResult, Command, ErrorCode, NetworkConfig};
use crate::delegate::{chain, Context};
use async_trait::async_trait;
use serde_json::{Map, Value};

/// One network to attach to a pod, with the interface it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// A name for logs and network-status (`namespace/nad`, or the network's name).
    pub name: String,
    /// The network's config.
    pub network: NetworkConfig,
    /// The interface name in the pod.
    pub ifname: String,
    /// The runtime config given to this attachment's plugins (filtered by their capabilities).
    pub runtime_config: Map<String, Value>,
    /// `CNI_ARGS` extras for this attachment (for example `IP=`, `MAC=`), added to the invocation's.
    pub extra_args: Vec<(String, String)>,
    /// Whether this is the pod's default network.
    pub is_default: bool,
}

impl Attachment {
    /// An attachment of `network` as `ifname`, named after the network.
    pub fn new(network: NetworkConfig, ifname: &str) -> Self {
        Attachment {
            name: network.name().to_string(),
            network,
            ifname: ifname.to_string(),
            runtime_config: Map::new(),
            extra_args: Vec::new(),
            is_default: false,
        }
    }

    /// A reference (container ID, ifname) to this attachment.
    pub fn reference(&self, container_id: &str) -> AttachmentRef {
        AttachmentRef {
            container_id: container_id.to_string(),
            ifname: self.ifname.clone(),
        }
    }
}

/// Where a pod's attachments come from.
#[async_trait]
pub trait AttachmentSource: Send + Sync {
    /// The ordered attachments for an invocation; the default network first.
    async fn attachments(&self, ctx: &Context) -> Result<Vec<Attachment>, CniError>;
}

/// A fixed list of attachments (from a local config file, or built in code).
#[derive(Debug, Clone, Default)]
pub struct StaticSource(pub Vec<Attachment>);

#[async_trait]
impl AttachmentSource for StaticSource {
    async fn attachments(&self, _ctx: &Context) -> Result<Vec<Attachment>, CniError> {
        Ok(self.0.clone())
    }
}

/// Checks an attachment list before anything is attached: interface names valid and unique.
pub fn validate(attachments: &[Attachment]) -> Result<(), CniError> {
    let mut seen = std::collections::HashSet::new();
    for (i, a) in attachments.iter().enumerate() {
        crate::cni::names::ifname(&a.ifname).map_err(|e| {
            CniError::invalid_config(e.to_string())
                .context(format!("attachment {i} ({:?})", a.name))
        })?;
        if !seen.insert(a.ifname.as_str()) {
            return Err(CniError::invalid_config(format!(
                "attachment {i} ({:?}): interface name {:?} is used twice",
                a.name, a.ifname
            )));
        }
    }
    Ok(())
}

fn ctx_for(base: &Context, a: &Attachment, command: Command) -> Context {
    let mut ctx = base.with_command(command).with_ifname(&a.ifname);
    for (k, v) in &a.extra_args {
        ctx.args.set(k, v);
    }
    ctx
}

/// ADD: attaches each in order. On the first failure, DELs what was already added, in reverse, and returns
/// the original error (naming the attachment). Returns one result per attachment.
pub async fn add(base: &Context, attachments: &[Attachment]) -> Result<Vec<CniResult>, CniError> {
    validate(attachments)?;
    let mut done: Vec<(usize, CniResult)> = Vec::new();
    for (i, a) in attachments.iter().enumerate() {
        let ctx = ctx_for(base, a, Command::Add);
        match chain::add(&ctx, &a.network, &a.runtime_config).await {
            Ok(r) => done.push((i, r)),
            Err(e) => {
                let err = e.context(format!("ADD of {:?} as {}", a.name, a.ifname));
                // Also DEL the failed attachment itself: a plugin may have left part of it behind.
                let failed_del = chain::del(
                    &ctx.with_command(Command::Del),
                    &a.network,
                    &a.runtime_config,
                    None,
                )
                .await;
                if let Err(de) = failed_del {
                    tracing::warn!("cleanup of failed {:?}: {de}", a.name);
                }
                for (j, r) in done.iter().rev() {
                    let b = &attachments[*j];
                    let dctx = ctx_for(base, b, Command::Del);
                    if let Err(de) = chain::del(&dctx, &b.network, &b.runtime_config, Some(r)).await
                    {
                        tracing::warn!("rollback DEL of {:?} failed: {de}", b.name);
                    }
                }
                return Err(err);
            }
        }
    }
    Ok(done.into_iter().map(|(_, r)| r).collect())
}

/// DEL: detaches each in reverse order, going on past failures; one aggregate error names every failure.
/// `prev` holds the ADD results when known (same order as `attachments`).
pub async fn del(
    base: &Context,
    attachments: &[Attachment],
    prev: &[Option<CniResult>],
) -> Result<(), CniError> {
    let mut failures: Vec<CniError> = Vec::new();
    for (i, a) in attachments.iter().enumerate().rev() {
        let ctx = ctx_for(base, a, Command::Del);
        let p = prev.get(i).and_then(Option::as_ref);
        if let Err(e) = chain::del(&ctx, &a.network, &a.runtime_config, p).await {
            failures.push(e.context(format!("DEL of {:?} as {}", a.name, a.ifname)));
        }
    }
    aggregate("DEL", attachments.len(), failures)
}

/// CHECK: checks each attachment against its ADD result.
pub async fn check(
    base: &Context,
    attachments: &[Attachment],
    prev: &[Option<CniResult>],
) -> Result<(), CniError> {
    for (i, a) in attachments.iter().enumerate() {
        let ctx = ctx_for(base, a, Command::Check);
        let p = prev.get(i).and_then(Option::as_ref).ok_or_else(|| {
            CniError::new(
                ErrorCode::InvalidNetworkConfig,
                format!(
                    "CHECK of {:?} as {}: no result of its ADD is known",
                    a.name, a.ifname
                ),
            )
        })?;
        chain::check(&ctx, &a.network, &a.runtime_config, p)
            .await
            .map_err(|e| e.context(format!("CHECK of {:?} as {}", a.name, a.ifname)))?;
    }
    Ok(())
}

/// One error for several: the first one's code, every message.
pub fn aggregate(what: &str, total: usize, mut failures: Vec<CniError>) -> Result<(), CniError> {
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            let code = failures[0].code;
            let msgs: Vec<String> = failures.iter().map(|e| e.msg.clone()).collect();
            Err(CniError::new(
                code,
                format!("{what} failed for {n} of {total}: {}", msgs.join("; ")),
            ))
        }
    }
}

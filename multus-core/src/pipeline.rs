//! The attach pipeline: a pod's ordered attachments, ADDed in order with rollback on failure, DELeted in
//! reverse with every failure collected, CHECKed each.
//!
//! The pipeline knows nothing of where the attachments came from (a Multus config's `delegates`, a pod's
//! NetworkAttachmentDefinitions, code): it takes the [`Pod`] (the sandbox and how to run plugins) and a
//! checked list of [`Attachments`]; [`add`] returns one [`Attached`] per attachment, which [`del`] and
//! [`check`] take back.
//!
//! ```no_run
//! use multus_core::cni::NetworkConfig;
//! use multus_core::delegate::Registry;
//! use multus_core::pipeline::{self, Attachment, Attachments, Pod};
//! use std::sync::Arc;
//!
//! # async fn demo() -> Result<(), multus_core::cni::CniError> {
//! let net = NetworkConfig::from_slice(br#"{"cniVersion":"1.0.0","name":"n","type":"bridge"}"#)?;
//! let atts = Attachments::new(vec![Attachment::new(net, "eth0").default_network()])?;
//! let pod = Pod::new("c1", Some("/var/run/netns/pod1".into()), Arc::new(Registry::new()));
//! let attached = pipeline::add(&pod, &atts).await?;
//! pipeline::check(&pod, &attached).await?;
//! pipeline::del(&pod, &attached).await?;
//! # Ok(()) }
//! ```

use crate::cni::{AttachmentRef, CniArgs, CniError, CniResult, Command, NetworkConfig};
use crate::delegate::{chain, Context, Registry};
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// `CNI_ARGS` extras for this attachment (for example `IP=`, `MAC=`), added to the pod's.
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

    /// The same attachment marked as the pod's default network.
    pub fn default_network(mut self) -> Self {
        self.is_default = true;
        self
    }

    /// A reference (container ID, ifname) to this attachment.
    pub fn reference(&self, container_id: &str) -> AttachmentRef {
        AttachmentRef {
            container_id: container_id.to_string(),
            ifname: self.ifname.clone(),
        }
    }
}

/// A pod's attachments, checked once when made: every interface name valid and used once. [`add`] takes
/// only this, so nothing is attached from an unchecked list and nothing is checked twice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attachments(Vec<Attachment>);

impl Attachments {
    /// Checks `list` (code 7 naming the attachment when an interface name is invalid or used twice).
    pub fn new(list: Vec<Attachment>) -> Result<Self, CniError> {
        let mut seen = std::collections::HashSet::new();
        for (i, a) in list.iter().enumerate() {
            let what = format!("attachment {i} ({:?})", a.name);
            crate::cni::names::ifname(&a.ifname)
                .map_err(|e| CniError::invalid_config(format!("{what}: {e}")))?;
            if !seen.insert(a.ifname.as_str()) {
                return Err(CniError::invalid_config(format!(
                    "{what}: interface name {:?} is used twice",
                    a.ifname
                )));
            }
        }
        Ok(Attachments(list))
    }

    /// The attachments, in attach order.
    pub fn as_slice(&self) -> &[Attachment] {
        &self.0
    }

    /// Edits each attachment's runtime config, given its name and interface (what the check covers cannot
    /// change).
    pub fn edit_runtime_config(&mut self, mut f: impl FnMut(&str, &str, &mut Map<String, Value>)) {
        for a in &mut self.0 {
            f(&a.name, &a.ifname, &mut a.runtime_config);
        }
    }

    /// The attachments, each with no known result (a DEL of what was planned but not recorded).
    pub fn unattached(&self) -> Vec<Attached> {
        self.0
            .iter()
            .map(|a| Attached {
                attachment: a.clone(),
                result: None,
            })
            .collect()
    }
}

impl std::ops::Deref for Attachments {
    type Target = [Attachment];
    fn deref(&self) -> &[Attachment] {
        &self.0
    }
}

/// An attachment and the result of its ADD (none when not known: a DEL planned from config).
#[derive(Debug, Clone, PartialEq)]
pub struct Attached {
    /// What was attached.
    pub attachment: Attachment,
    /// Its ADD result, in its network's `cniVersion`.
    pub result: Option<CniResult>,
}

/// The pod sandbox the pipeline works on, and how plugins are run for it.
#[derive(Clone)]
pub struct Pod {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`; none for a DEL whose netns is gone.
    pub netns: Option<PathBuf>,
    /// `CNI_ARGS` given to every delegate (each attachment may add its own).
    pub args: CniArgs,
    /// `CNI_PATH`: where plugin binaries are looked for after the registry's own directories.
    pub cni_path: Vec<PathBuf>,
    /// Built-in delegates and plugin binaries.
    pub registry: Arc<Registry>,
}

impl Pod {
    /// A pod with no `CNI_ARGS` and no `CNI_PATH`.
    pub fn new(container_id: &str, netns: Option<PathBuf>, registry: Arc<Registry>) -> Self {
        Pod {
            container_id: container_id.to_string(),
            netns,
            args: CniArgs::default(),
            cni_path: Vec::new(),
            registry,
        }
    }

    /// The delegates' context for one attachment and verb.
    fn context(&self, a: &Attachment, command: Command) -> Context {
        let mut args = self.args.clone();
        for (k, v) in &a.extra_args {
            args.set(k, v);
        }
        Context {
            command,
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: a.ifname.clone(),
            args,
            cni_path: self.cni_path.clone(),
            registry: self.registry.clone(),
        }
    }
}

/// ADD: attaches each in order. On the first failure, DELs the failed attachment (a plugin may have left
/// part of it behind) and what was already added, in reverse, and returns the original error naming the
/// attachment.
pub async fn add(pod: &Pod, attachments: &Attachments) -> Result<Vec<Attached>, CniError> {
    let mut done: Vec<Attached> = Vec::new();
    for a in attachments.iter() {
        let ctx = pod.context(a, Command::Add);
        match chain::add(&ctx, &a.network, &a.runtime_config).await {
            Ok(r) => done.push(Attached {
                attachment: a.clone(),
                result: Some(r),
            }),
            Err(e) => {
                let err = e.context(format!("ADD of {:?} as {}", a.name, a.ifname));
                let failed = [Attached {
                    attachment: a.clone(),
                    result: None,
                }];
                for f in failed.iter().chain(done.iter().rev()) {
                    if let Err(de) = del_one(pod, f).await {
                        tracing::warn!("rollback: {de}");
                    }
                }
                return Err(err);
            }
        }
    }
    Ok(done)
}

async fn del_one(pod: &Pod, at: &Attached) -> Result<(), CniError> {
    let a = &at.attachment;
    let ctx = pod.context(a, Command::Del);
    chain::del(&ctx, &a.network, &a.runtime_config, at.result.as_ref())
        .await
        .map_err(|e| e.context(format!("DEL of {:?} as {}", a.name, a.ifname)))
}

/// DEL: detaches each in reverse order, going on past failures; one aggregate error names every failure.
pub async fn del(pod: &Pod, attached: &[Attached]) -> Result<(), CniError> {
    let mut failures: Vec<CniError> = Vec::new();
    for at in attached.iter().rev() {
        if let Err(e) = del_one(pod, at).await {
            failures.push(e);
        }
    }
    aggregate("DEL", attached.len(), failures)
}

/// CHECK: checks each attachment against its ADD result (which must be known).
pub async fn check(pod: &Pod, attached: &[Attached]) -> Result<(), CniError> {
    for at in attached {
        let a = &at.attachment;
        let what = format!("CHECK of {:?} as {}", a.name, a.ifname);
        let prev = at.result.as_ref().ok_or_else(|| {
            CniError::invalid_config(format!("{what}: no result of its ADD is known"))
        })?;
        let ctx = pod.context(a, Command::Check);
        chain::check(&ctx, &a.network, &a.runtime_config, prev)
            .await
            .map_err(|e| e.context(&what))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn att(name: &str, ifname: &str) -> Attachment {
        let net = NetworkConfig::from_slice(
            format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge"}}"#).as_bytes(),
        )
        .unwrap();
        Attachment::new(net, ifname)
    }

    #[test]
    fn attachments_are_checked_once_when_made() {
        Attachments::new(vec![att("a", "eth0"), att("b", "net1")]).unwrap();
        let e = Attachments::new(vec![att("a", "eth0"), att("b", "eth0")]).unwrap_err();
        assert_eq!(e.code.code(), 7);
        assert!(
            e.msg.contains("attachment 1 (\"b\")") && e.msg.contains("twice"),
            "{e}"
        );
        let e = Attachments::new(vec![att("a", "a/b")]).unwrap_err();
        assert!(e.msg.contains("attachment 0"), "{e}");
        assert_eq!(e.code.code(), 7);
    }

    #[test]
    fn each_attachment_gets_its_ifname_and_args_on_the_pods() {
        let mut pod = Pod::new("c1", None, Arc::new(Registry::new()));
        pod.args.set("K8S_POD_NAME", "p");
        let mut a = att("a", "net1");
        a.extra_args.push(("IP".into(), "10.0.0.2".into()));
        let ctx = pod.context(&a, Command::Del);
        assert_eq!(ctx.ifname, "net1");
        assert_eq!(ctx.command, Command::Del);
        assert_eq!(ctx.args.get("K8S_POD_NAME"), Some("p"));
        assert_eq!(ctx.args.get("IP"), Some("10.0.0.2"));
        assert!(pod.args.get("IP").is_none());
    }
}

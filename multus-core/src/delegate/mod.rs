//! Delegates: the plugins Multus runs for each attachment.
//!
//! A [`Delegate`] is one plugin `type`: a built-in one (macvlan, ipvlan, host-local, ...) running in-process,
//! or an [`ExternalPlugin`] binary run exactly as a container runtime would. The [`Registry`] resolves a
//! `type` to a built-in delegate first and to a binary in `binDir` / `CNI_PATH` otherwise, and
//! [`chain`] runs a whole network (a single config or a conflist) through it.

pub mod chain;
pub mod chrooted;
pub mod external;
pub mod known_keys;
pub mod observe;
pub mod registry;

pub use external::ExternalPlugin;
pub use known_keys::KnownKeys;
pub use registry::Registry;

use crate::cni::{CniArgs, CniError, CniResult, Command, PluginConf};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Everything about one invocation except the plugin's own config.
#[derive(Clone)]
pub struct Context {
    /// The verb being run.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for STATUS and GC).
    pub container_id: String,
    /// `CNI_NETNS`, when there is one.
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` for this delegate (empty for STATUS and GC).
    pub ifname: String,
    /// `CNI_ARGS` for this delegate.
    pub args: CniArgs,
    /// `CNI_PATH`: where plugin binaries are looked for (after the registry's own `binDir`s).
    pub cni_path: Vec<PathBuf>,
    /// The registry, so that a delegate can run its IPAM plugin (or any other) through it.
    pub registry: Arc<Registry>,
}

impl Context {
    /// A context for a per-attachment verb.
    pub fn new(
        command: Command,
        container_id: &str,
        netns: Option<PathBuf>,
        ifname: &str,
        registry: Arc<Registry>,
    ) -> Self {
        Context {
            command,
            container_id: container_id.to_string(),
            netns,
            ifname: ifname.to_string(),
            args: CniArgs::default(),
            cni_path: Vec::new(),
            registry,
        }
    }

    /// The context of a plugin invocation: everything from its CNI environment.
    pub fn from_env(env: &crate::cni::CniEnv, registry: Arc<Registry>) -> Self {
        Context {
            command: env.command,
            container_id: env.container_id.clone(),
            netns: env.netns.clone(),
            ifname: env.ifname.clone(),
            args: env.args.clone(),
            cni_path: env.path.clone(),
            registry,
        }
    }

    /// The same context for another verb.
    pub fn with_command(&self, command: Command) -> Self {
        Context {
            command,
            ..self.clone()
        }
    }

    /// The same context for another interface name.
    pub fn with_ifname(&self, ifname: &str) -> Self {
        Context {
            ifname: ifname.to_string(),
            ..self.clone()
        }
    }

    /// The timeout applied to external plugins.
    pub fn timeout(&self) -> Duration {
        self.registry.timeout()
    }

    /// Runs the IPAM plugin named by `conf.ipam.type` for verb `command` (whatever this context's own verb:
    /// a delegate's ADD also runs its IPAM's DEL when it fails), as the reference plugins do: the IPAM plugin
    /// receives the whole parent config on stdin. Returns the result for ADD. See `plugins::ipam` for the
    /// helpers built on it.
    pub async fn ipam(
        &self,
        command: Command,
        conf: &PluginConf,
    ) -> Result<Option<CniResult>, CniError> {
        let ipam_type = crate::cni::keys::ipam_type(conf)
            .ok_or_else(|| CniError::invalid_config("\"ipam.type\" is missing"))?;
        let ipam = self.registry.resolve(ipam_type, &self.cni_path)?;
        let other;
        let ctx = if self.command == command {
            self
        } else {
            other = self.with_command(command);
            &other
        };
        run_verb(ipam.as_ref(), command, ctx, conf).await
    }
}

/// Runs verb `command` of `delegate`: the result for ADD, `None` for the others (VERSION runs nothing).
pub async fn run_verb(
    delegate: &dyn Delegate,
    command: Command,
    ctx: &Context,
    conf: &PluginConf,
) -> Result<Option<CniResult>, CniError> {
    match command {
        Command::Add => delegate.add(ctx, conf).await.map(Some),
        Command::Check => delegate.check(ctx, conf).await.map(|_| None),
        Command::Del => delegate.del(ctx, conf).await.map(|_| None),
        Command::Status => delegate.status(ctx, conf).await.map(|_| None),
        Command::Gc => delegate.gc(ctx, conf).await.map(|_| None),
        Command::Version => Ok(None),
    }
}

/// One CNI plugin type, built-in or external. Each verb receives the plugin's full invocation config
/// (with `name`, `cniVersion`, `runtimeConfig` and `prevResult` already injected).
#[async_trait]
pub trait Delegate: Send + Sync {
    /// A short description for logs (`"built-in macvlan"`, `"/usr/lib/cni/bridge"`).
    fn describe(&self) -> String;

    /// ADD: attach and return the result.
    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError>;

    /// CHECK: verify the attachment against `prevResult`.
    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError>;

    /// DEL: detach; must succeed when there is nothing left to remove.
    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError>;

    /// STATUS: whether the plugin is ready for ADD. The default is the reference main plugins': the
    /// config's IPAM plugin answers when it has one ([`crate::plugins::ipam::status_or_gc`]), else ready.
    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        crate::plugins::ipam::status_or_gc(ctx, Command::Status, conf).await
    }

    /// GC: release what belongs to attachments not in the config's `cni.dev/valid-attachments`. The
    /// default passes it to the config's IPAM plugin when it has one: a delegate whose only state outside
    /// the pod is its IPAM's keeps it.
    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        crate::plugins::ipam::status_or_gc(ctx, Command::Gc, conf).await
    }

    /// The config keys this delegate implements, when it is a built-in one standing in for a node's plugin
    /// binary: a key of the config that it does not implement is logged on ADD, never silently ignored.
    /// `None` (the default, and every plugin binary): nothing is checked.
    fn known_keys(&self) -> Option<KnownKeys> {
        None
    }

    /// Why this built-in delegate does not serve `conf`, when it does not: the config asks for something
    /// it does not implement (the bridge's `vlan`, `ipMasq`, ...), so that the node's plugin binary must run
    /// instead ([`Registry::resolve_for`] then resolves the `type` to the binary). `None` (the default):
    /// it serves every config of its type. The reason names the key, for the error when there is no binary.
    fn declines(&self, _conf: &PluginConf) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::known_keys::tests::Fake;
    use super::*;
    use crate::cni::ErrorCode;
    use std::sync::Mutex;

    /// An IPAM that records the verbs it is run with and fails STATUS.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Command>>);

    #[async_trait]
    impl Delegate for Recorder {
        fn describe(&self) -> String {
            "recorder".into()
        }
        async fn add(&self, c: &Context, _: &PluginConf) -> Result<CniResult, CniError> {
            self.0.lock().unwrap().push(c.command);
            Ok(CniResult::new("1.0.0"))
        }
        async fn check(&self, c: &Context, _: &PluginConf) -> Result<(), CniError> {
            self.0.lock().unwrap().push(c.command);
            Ok(())
        }
        async fn del(&self, c: &Context, _: &PluginConf) -> Result<(), CniError> {
            self.0.lock().unwrap().push(c.command);
            Ok(())
        }
        async fn status(&self, c: &Context, _: &PluginConf) -> Result<(), CniError> {
            self.0.lock().unwrap().push(c.command);
            Err(CniError::new(
                ErrorCode::PluginNotAvailable,
                "no addresses left",
            ))
        }
        async fn gc(&self, c: &Context, _: &PluginConf) -> Result<(), CniError> {
            self.0.lock().unwrap().push(c.command);
            Ok(())
        }
    }

    #[tokio::test]
    async fn status_and_gc_default_to_the_configs_ipam() {
        let rec = Arc::new(Recorder::default());
        let mut reg = Registry::new();
        reg.register("rec", rec.clone());
        let ctx = Context::new(Command::Status, "c1", None, "net1", Arc::new(reg));
        let with_ipam = PluginConf::from_slice(
            br#"{"cniVersion":"1.1.0","name":"n","type":"x","ipam":{"type":"rec"}}"#,
        )
        .unwrap();
        let err = Fake(None).status(&ctx, &with_ipam).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::PluginNotAvailable, "the IPAM's answer");
        Fake(None).gc(&ctx, &with_ipam).await.unwrap();
        assert_eq!(*rec.0.lock().unwrap(), [Command::Status, Command::Gc]);

        let without =
            PluginConf::from_slice(br#"{"cniVersion":"1.1.0","name":"n","type":"x"}"#).unwrap();
        Fake(None).status(&ctx, &without).await.unwrap();
        Fake(None).gc(&ctx, &without).await.unwrap();
        assert_eq!(rec.0.lock().unwrap().len(), 2, "no IPAM, nothing run");
    }
}

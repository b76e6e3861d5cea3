//! The CNI glue: host-local as a multus-core [`Delegate`] (type `host-local`).
//!
//! The IPAM plugin receives its parent's whole configuration (as the reference does). Where its file work
//! runs is the embedder's choice ([`Work`]): on a tokio blocking thread (the default: taking the store's
//! lock may wait, and a process with other tasks keeps them going), or on the calling thread (a plugin
//! process with one attachment, where starting a thread costs more than the few dozen file syscalls).

use std::net::IpAddr;

use async_trait::async_trait;
use ipnetwork::IpNetwork;
use multus_core::cni::{CniError, CniResult, PluginConf};
use multus_core::delegate::{Context, Delegate};

use crate::config::{self, IpamConfig};
use crate::gc::Attachment;
use crate::network;
use crate::result::IpamResult;

/// The plugin type this delegate implements.
pub const PLUGIN_TYPE: &str = "host-local";

fn net(ip: IpAddr, prefix: u8) -> Result<IpNetwork, CniError> {
    IpNetwork::new(ip, prefix).map_err(|e| CniError::invalid_config(e.to_string()))
}

/// Converts an [`IpamResult`] into a CNI result of `cni_version` (1:1 for `ips`, `routes`, `dns`).
pub fn to_cni_result(r: &IpamResult, cni_version: &str) -> Result<CniResult, CniError> {
    let mut out = CniResult::new(cni_version);
    for c in &r.ips {
        out.ips.push(multus_core::cni::IpConfig {
            interface: None,
            address: net(c.address.addr(), c.address.prefix())?,
            gateway: c.gateway,
        });
    }
    for rt in &r.routes {
        out.routes.push(multus_core::cni::Route::new(
            net(rt.dst.addr(), rt.dst.prefix())?,
            rt.gw,
        ));
    }
    out.dns.nameservers = r.dns.nameservers.clone();
    out.dns.domain = r.dns.domain.clone().unwrap_or_default();
    out.dns.search = r.dns.search.clone();
    out.dns.options = r.dns.options.clone();
    Ok(out)
}

/// Where [`HostLocal`] does its file work.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// On a tokio blocking thread (`spawn_blocking`).
    #[default]
    OnThread,
    /// On the calling thread: for a single-attachment plugin process on a current-thread runtime.
    Inline,
    /// On the calling thread, except DEL on a blocking thread: for a plugin whose DEL deletes a link
    /// meanwhile (the release then runs while the kernel tears the link down).
    InlineDelOnThread,
}

/// host-local, built in (type `host-local`); [`HostLocal::default`] works on a blocking thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostLocal {
    work: Work,
}

impl HostLocal {
    /// host-local doing its file work as `work` says.
    pub const fn new(work: Work) -> Self {
        HostLocal { work }
    }

    /// Parses the config (the parent's whole config and `CNI_ARGS`) and runs `f` where [`Work`] says.
    async fn run<T: Send + 'static>(
        &self,
        is_del: bool,
        ctx: &Context,
        conf: &PluginConf,
        f: impl FnOnce(IpamConfig, String, String) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, CniError> {
        let bytes = conf.to_bytes();
        let args = ctx.args.render();
        let (cid, ifname) = (ctx.container_id.clone(), ctx.ifname.clone());
        let work = move || {
            let cfg = config::parse(&bytes, &args)?;
            f(cfg, cid, ifname)
        };
        let inline = match self.work {
            Work::OnThread => false,
            Work::Inline => true,
            Work::InlineDelOnThread => !is_del,
        };
        if inline {
            return work().map_err(CniError::from);
        }
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| CniError::io(format!("host-local worker: {e}")))?
            .map_err(CniError::from)
    }
}

#[async_trait]
impl Delegate for HostLocal {
    fn describe(&self) -> String {
        "built-in host-local".to_string()
    }

    fn known_keys(&self) -> Option<multus_core::delegate::KnownKeys> {
        Some(multus_core::delegate::KnownKeys::Ipam(&[
            "subnet",
            "rangeStart",
            "rangeEnd",
            "gateway",
            "ranges",
            "routes",
            "dataDir",
            "resolvConf",
        ]))
    }

    async fn add(&self, ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
        let version = conf.cni_version().unwrap_or("1.1.0").to_string();
        let r = self
            .run(false, ctx, conf, |cfg, cid, ifname| {
                network::add(&cfg, &cid, &ifname)
            })
            .await?;
        to_cni_result(&r, &version)
    }

    async fn check(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(false, ctx, conf, |cfg, cid, ifname| {
            network::check(&cfg, &cid, &ifname).map(|_| ())
        })
        .await
    }

    async fn del(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(true, ctx, conf, |cfg, cid, ifname| {
            network::del(&cfg, &cid, &ifname).map(|_| ())
        })
        .await
    }

    async fn status(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        self.run(false, ctx, conf, |cfg, _, _| network::status(&cfg))
            .await
    }

    async fn gc(&self, ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
        let valid: Vec<Attachment> = conf
            .valid_attachments()?
            .into_iter()
            .map(|a| Attachment::new(a.container_id, a.ifname))
            .collect();
        self.run(false, ctx, conf, move |cfg, _, _| {
            network::gc_config(&cfg, &valid).map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_core::cni::Command;
    use multus_core::delegate::Registry;
    use std::sync::Arc;

    fn conf(dir: &std::path::Path, extra: &str) -> PluginConf {
        PluginConf::from_slice(
            format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"macvlan","ipam":{{"type":"host-local","dataDir":"{}","subnet":"10.5.0.0/24","routes":[{{"dst":"0.0.0.0/0"}}]}}{extra}}}"#,
                dir.display()
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn ctx(cmd: Command, cid: &str) -> Context {
        Context::new(cmd, cid, None, "eth0", Arc::new(Registry::new()))
    }

    #[tokio::test]
    async fn add_check_del_gc_status_through_the_delegate() {
        let tmp = tempfile::tempdir().unwrap();
        let c = conf(tmp.path(), "");
        let d = HostLocal::default();
        let r = d.add(&ctx(Command::Add, "c1"), &c).await.unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.5.0.2/24");
        assert_eq!(r.ips[0].gateway, Some("10.5.0.1".parse().unwrap()));
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        d.check(&ctx(Command::Check, "c1"), &c).await.unwrap();
        let e = d.add(&ctx(Command::Add, "c1"), &c).await.unwrap_err();
        assert_eq!(e.code.code(), 109);
        d.add(&ctx(Command::Add, "c2"), &c).await.unwrap();
        d.del(&ctx(Command::Del, "c1"), &c).await.unwrap();
        d.del(&ctx(Command::Del, "c1"), &c).await.unwrap();
        assert_eq!(
            d.check(&ctx(Command::Check, "c1"), &c)
                .await
                .unwrap_err()
                .code
                .code(),
            3
        );
        d.status(&ctx(Command::Status, ""), &c).await.unwrap();
        // GC with only c9 valid releases c2.
        let g = conf(
            tmp.path(),
            r#","cni.dev/valid-attachments":[{"containerID":"c9","ifname":"eth0"}]"#,
        );
        d.gc(&ctx(Command::Gc, ""), &g).await.unwrap();
        assert!(!tmp.path().join("n/10.5.0.3").exists());
        // Errors keep their codes.
        let bad = PluginConf::from_slice(br#"{"cniVersion":"1.1.0","name":"n","type":"x","ipam":{"type":"host-local","subnet":"10.5.0.1/24"}}"#).unwrap();
        assert_eq!(
            d.add(&ctx(Command::Add, "c3"), &bad)
                .await
                .unwrap_err()
                .code
                .code(),
            7
        );
    }

    /// Every [`Work`] gives the same allocations, errors and releases through the same store, and each sees
    /// the others' reservations.
    #[test]
    fn every_work_mode_shares_the_store() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let c = conf(tmp.path(), "");
        let threaded = HostLocal::default();
        for work in [Work::Inline, Work::InlineDelOnThread] {
            let d = HostLocal::new(work);
            rt.block_on(async {
                let r = d.add(&ctx(Command::Add, "c1"), &c).await.unwrap();
                assert!(r.ips[0].address.to_string().starts_with("10.5.0."), "{r:?}");
                assert_eq!(r.ips[0].gateway, Some("10.5.0.1".parse().unwrap()));
                // The threaded delegate sees the inline one's reservation, and the other way round.
                let e = threaded
                    .add(&ctx(Command::Add, "c1"), &c)
                    .await
                    .unwrap_err();
                assert_eq!(e.code.code(), 109, "{work:?}");
                let r2 = threaded.add(&ctx(Command::Add, "c2"), &c).await.unwrap();
                assert_ne!(r2.ips[0].address, r.ips[0].address);
                d.check(&ctx(Command::Check, "c2"), &c).await.unwrap();
                d.status(&ctx(Command::Status, ""), &c).await.unwrap();
                for cid in ["c1", "c2"] {
                    d.del(&ctx(Command::Del, cid), &c).await.unwrap();
                    d.del(&ctx(Command::Del, cid), &c).await.unwrap();
                }
                let e = d.check(&ctx(Command::Check, "c1"), &c).await.unwrap_err();
                assert_eq!(e.code.code(), 3, "{work:?}");
            });
        }
    }
}

//! host-local for the standalone plugins, run on the runtime's own thread.
//!
//! `multus_ipam::cni::HostLocal` does its file work on a tokio blocking thread, which suits a process that
//! has other tasks to keep going. A standalone macvlan / ipvlan (one current-thread runtime, one attachment)
//! has none during ADD: starting that thread (and, under load, waiting for a CPU to run it on) costs more
//! than the work itself, a few dozen file syscalls. So ADD, CHECK, STATUS and GC run the same
//! `multus_ipam` functions inline. DEL keeps the thread when the plugin is macvlan / ipvlan: there the
//! release runs while the kernel deletes the link (the caller's request blocks its thread for the whole
//! teardown), so the thread is free time.
//!
//! The same store and the same results as `HostLocal`: only where the work runs differs.

use multus_core::cni::{CniError, CniResult, PluginConf};
use multus_core::delegate::{Context, Delegate};
use multus_ipam::cni::{to_cni_error, to_cni_result, HostLocal};
use std::future::Future;
use std::pin::Pin;

/// What `#[async_trait]` makes of an `async fn` of [`Delegate`] (this crate does not depend on the macro).
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CniError>> + Send + 'a>>;

/// host-local with its work on the calling thread (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct HostLocalInline {
    /// DEL on a blocking thread, as [`HostLocal`] (for a caller that deletes a link meanwhile).
    pub del_on_thread: bool,
}

/// Parses the config (as `HostLocal` does: the whole parent config and `CNI_ARGS`) and runs `f`.
fn run<T>(
    ctx: &Context,
    conf: &PluginConf,
    f: impl FnOnce(multus_ipam::IpamConfig, &str, &str) -> multus_ipam::Result<T>,
) -> Result<T, CniError> {
    let cfg =
        multus_ipam::config::parse(&conf.to_bytes(), &ctx.args.render()).map_err(to_cni_error)?;
    f(cfg, &ctx.container_id, &ctx.ifname).map_err(to_cni_error)
}

impl Delegate for HostLocalInline {
    fn describe(&self) -> String {
        "built-in host-local".to_string()
    }

    fn add<'s, 'c, 'p, 'f>(
        &'s self,
        ctx: &'c Context,
        conf: &'p PluginConf,
    ) -> BoxFuture<'f, CniResult>
    where
        's: 'f,
        'c: 'f,
        'p: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let version = conf.cni_version().unwrap_or("1.1.0").to_string();
            let r = run(ctx, conf, |cfg, cid, ifname| {
                multus_ipam::network::add(&cfg, cid, ifname)
            })?;
            to_cni_result(&r, &version)
        })
    }

    fn check<'s, 'c, 'p, 'f>(&'s self, ctx: &'c Context, conf: &'p PluginConf) -> BoxFuture<'f, ()>
    where
        's: 'f,
        'c: 'f,
        'p: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            run(ctx, conf, |cfg, cid, ifname| {
                multus_ipam::network::check(&cfg, cid, ifname).map(|_| ())
            })
        })
    }

    fn del<'s, 'c, 'p, 'f>(&'s self, ctx: &'c Context, conf: &'p PluginConf) -> BoxFuture<'f, ()>
    where
        's: 'f,
        'c: 'f,
        'p: 'f,
        Self: 'f,
    {
        if self.del_on_thread {
            static THREADED: HostLocal = HostLocal;
            return THREADED.del(ctx, conf);
        }
        Box::pin(async move {
            run(ctx, conf, |cfg, cid, ifname| {
                multus_ipam::network::del(&cfg, cid, ifname).map(|_| ())
            })
        })
    }

    fn status<'s, 'c, 'p, 'f>(&'s self, ctx: &'c Context, conf: &'p PluginConf) -> BoxFuture<'f, ()>
    where
        's: 'f,
        'c: 'f,
        'p: 'f,
        Self: 'f,
    {
        Box::pin(async move { run(ctx, conf, |cfg, _, _| multus_ipam::network::status(&cfg)) })
    }

    fn gc<'s, 'c, 'p, 'f>(&'s self, ctx: &'c Context, conf: &'p PluginConf) -> BoxFuture<'f, ()>
    where
        's: 'f,
        'c: 'f,
        'p: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let valid: Vec<multus_ipam::Attachment> = conf
                .valid_attachments()?
                .into_iter()
                .map(|a| multus_ipam::Attachment::new(a.container_id, a.ifname))
                .collect();
            run(ctx, conf, |cfg, _, _| {
                multus_ipam::network::gc_config(&cfg, &valid).map(|_| ())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use multus_core::cni::Command;
    use multus_core::delegate::Registry;
    use std::sync::Arc;

    /// The same allocations, errors and releases as `HostLocal`, through the same store.
    #[test]
    fn same_store_and_results_as_host_local() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let conf = PluginConf::from_slice(
            format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"macvlan","ipam":{{"type":"host-local","dataDir":"{}","subnet":"10.5.0.0/24","routes":[{{"dst":"0.0.0.0/0"}}]}}}}"#,
                tmp.path().display()
            )
            .as_bytes(),
        )
        .unwrap();
        let ctx = |cmd, cid: &str| Context::new(cmd, cid, None, "eth0", Arc::new(Registry::new()));
        for inline in [
            HostLocalInline {
                del_on_thread: false,
            },
            HostLocalInline {
                del_on_thread: true,
            },
        ] {
            rt.block_on(async {
                let r = inline.add(&ctx(Command::Add, "c1"), &conf).await.unwrap();
                // (host-local goes on from the last address it gave: .2 then .3, then .4 and .5)
                assert!(r.ips[0].address.to_string().starts_with("10.5.0."), "{r:?}");
                assert_eq!(r.ips[0].gateway, Some("10.5.0.1".parse().unwrap()));
                assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
                // The threaded host-local sees the inline one's reservation, and the other way round.
                let e = HostLocal
                    .add(&ctx(Command::Add, "c1"), &conf)
                    .await
                    .unwrap_err();
                assert_eq!(e.code.code(), 104);
                let r2 = HostLocal
                    .add(&ctx(Command::Add, "c2"), &conf)
                    .await
                    .unwrap();
                assert_ne!(r2.ips[0].address, r.ips[0].address);
                inline
                    .check(&ctx(Command::Check, "c2"), &conf)
                    .await
                    .unwrap();
                inline
                    .status(&ctx(Command::Status, ""), &conf)
                    .await
                    .unwrap();
                for c in ["c1", "c2"] {
                    inline.del(&ctx(Command::Del, c), &conf).await.unwrap();
                    inline.del(&ctx(Command::Del, c), &conf).await.unwrap();
                }
                assert_eq!(
                    inline
                        .check(&ctx(Command::Check, "c1"), &conf)
                        .await
                        .unwrap_err()
                        .code
                        .code(),
                    3
                );
            });
        }
    }
}

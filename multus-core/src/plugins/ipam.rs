//! IPAM plumbing every delegate with an `ipam` section shares (macvlan, ipvlan, sriov): the IPAM plugin run
//! with an explicit verb ([`add`], [`release`], [`check`], [`status_or_gc`], over
//! [`Context::ipam`]), the one way an IPAM result goes into the delegate's result ([`into_result`]), and the
//! one way CHECK finds the `prevResult` interface it verifies ([`prev_interface`]).

use crate::cni::keys;
use crate::cni::{CniError, CniResult, Command, Dns, ErrorCode, Interface, IpConfig, PluginConf};
use crate::delegate::Context;

/// The IPAM's ADD: its result, or code 104 when it returned none.
pub async fn add(ctx: &Context, conf: &PluginConf) -> Result<CniResult, CniError> {
    ctx.ipam(Command::Add, conf)
        .await?
        .ok_or_else(|| CniError::new(ErrorCode::IpamFailure, "IPAM plugin returned no result"))
}

/// The IPAM's DEL.
pub async fn del(ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    ctx.ipam(Command::Del, conf).await.map(|_| ())
}

/// The IPAM's DEL after a failed ADD: a failure is logged, as the ADD's error is what is reported.
pub async fn release(ctx: &Context, conf: &PluginConf) {
    if let Err(e) = del(ctx, conf).await {
        tracing::warn!("releasing the IPAM reservation after a failed ADD: {e}");
    }
}

/// The IPAM's CHECK.
pub async fn check(ctx: &Context, conf: &PluginConf) -> Result<(), CniError> {
    ctx.ipam(Command::Check, conf).await.map(|_| ())
}

/// STATUS or GC of a delegate whose only state of that kind is its IPAM's: the verb goes to the IPAM plugin
/// when the config has one, and is a no-op otherwise.
pub async fn status_or_gc(
    ctx: &Context,
    command: Command,
    conf: &PluginConf,
) -> Result<(), CniError> {
    if keys::ipam_type(conf).is_some() {
        ctx.ipam(command, conf).await?;
    }
    Ok(())
}

/// Puts an IPAM result into a delegate's result whose interface 0 is the attachment's: its IPs (each for
/// interface 0) and routes. Returns the IPAM's DNS, for the delegates that report it when the config has
/// none. Code 104 when the IPAM returned no IP.
pub fn into_result(result: &mut CniResult, ipam: CniResult) -> Result<Dns, CniError> {
    if ipam.ips.is_empty() {
        return Err(CniError::new(
            ErrorCode::IpamFailure,
            "IPAM plugin returned missing IP config",
        ));
    }
    result.ips = ipam
        .ips
        .into_iter()
        .map(|ip| IpConfig {
            interface: Some(0),
            ..ip
        })
        .collect();
    result.routes = ipam.routes;
    Ok(ipam.dns)
}

/// The `prevResult` CHECK verifies and its interface for this attachment (named `CNI_IFNAME`, in the sandbox
/// `CNI_NETNS`), with that interface's index. Code 7 when there is no `prevResult` or no such interface.
pub fn prev_interface(
    ctx: &Context,
    conf: &PluginConf,
) -> Result<(CniResult, usize, Interface), CniError> {
    let prev = conf
        .prev_result()?
        .ok_or_else(|| CniError::invalid_config("required prevResult missing"))?;
    let sandbox = ctx
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let (idx, iface) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == ctx.ifname && i.sandbox == sandbox)
        .map(|(i, iface)| (i, iface.clone()))
        .ok_or_else(|| {
            CniError::invalid_config(format!(
                "prevResult has no interface {:?} in sandbox {sandbox:?}",
                ctx.ifname
            ))
        })?;
    Ok((prev, idx, iface))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delegate::Registry;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn results_and_prev_interfaces() {
        let mut r = CniResult::new("1.1.0");
        let ipam = CniResult::from_value(&json!({"cniVersion": "1.1.0",
            "ips": [{"address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}], "dns": {"nameservers": ["10.1.0.53"]}}))
        .unwrap();
        let dns = into_result(&mut r, ipam).unwrap();
        assert_eq!(r.ips[0].interface, Some(0));
        assert_eq!(r.routes.len(), 1);
        assert_eq!(dns.nameservers, ["10.1.0.53"]);
        let e = into_result(&mut r, CniResult::new("1.1.0")).unwrap_err();
        assert_eq!(e.code.code(), 104);

        let ctx = Context::new(
            Command::Check,
            "c1",
            Some("/var/run/netns/p".into()),
            "net1",
            Arc::new(Registry::new()),
        );
        let conf = |prev: serde_json::Value| {
            PluginConf::from_value(json!({"type": "x", "cniVersion": "1.1.0", "prevResult": prev}))
                .unwrap()
        };
        let c = conf(json!({"cniVersion": "1.1.0", "interfaces": [
            {"name": "eth0", "sandbox": "/var/run/netns/p"},
            {"name": "net1", "sandbox": "/var/run/netns/p", "mac": "02:00:00:00:00:01"}]}));
        let (_, idx, iface) = prev_interface(&ctx, &c).unwrap();
        assert_eq!((idx, iface.mac.as_str()), (1, "02:00:00:00:00:01"));
        let other =
            conf(json!({"cniVersion": "1.1.0", "interfaces": [{"name": "net1", "sandbox": "/x"}]}));
        assert_eq!(prev_interface(&ctx, &other).unwrap_err().code.code(), 7);
        let none = PluginConf::from_value(json!({"type": "x"})).unwrap();
        let e = prev_interface(&ctx, &none).unwrap_err();
        assert!(e.msg.contains("prevResult missing"), "{e}");
    }
}

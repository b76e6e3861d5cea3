//! Carrying out a pod's `default-route` request in its netns (the plan is pure,
//! [`multus_k8s::default_route`]): per family, every default route of the main table is deleted (whatever
//! the interface), then one is added via the gateway on the requesting interface; the results are
//! rewritten to say so.

use multus_core::cni::{CniError, CniResult};
use multus_core::netlink::{link, route, Netlink};
use multus_core::netns::NetNs;
use multus_core::pipeline::{Attached, Attachment};
use multus_k8s::default_route::{self, GatewayChange};
use std::net::IpAddr;
use std::path::Path;

/// Plans and applies `request` (attachment index and gateways) to the attached pod, rewriting the results.
pub async fn apply(
    request: &(usize, Vec<IpAddr>),
    netns: &str,
    attached: &mut [Attached],
) -> Result<(), CniError> {
    let atts: Vec<Attachment> = attached.iter().map(|a| a.attachment.clone()).collect();
    let results: Vec<CniResult> = attached
        .iter()
        .map(|a| {
            a.result
                .clone()
                .unwrap_or_else(|| CniResult::new(a.attachment.network.cni_version()))
        })
        .collect();
    let (changes, rewritten) = default_route::plan(request, &atts, &results)?;
    change_routes(Path::new(netns), &changes).await?;
    for (a, r) in attached.iter_mut().zip(rewritten) {
        a.result = Some(r);
    }
    Ok(())
}

async fn change_routes(netns: &Path, changes: &[GatewayChange]) -> Result<(), CniError> {
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

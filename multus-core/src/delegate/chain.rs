//! Running one network (a single plugin config or a conflist chain) the way libcni does: ADD in order,
//! feeding each plugin the previous result; DEL in reverse; CHECK with the cached result; STATUS and GC for
//! networks of spec 1.1 or later.

use super::Context;
use crate::cni::{AttachmentRef, CniError, CniResult, NetworkConfig, PluginConf, Version};
use serde_json::{Map, Value};

fn invocation(
    net: &NetworkConfig,
    plugin: &PluginConf,
    runtime_config: &Map<String, Value>,
    prev: Option<&CniResult>,
) -> Result<PluginConf, CniError> {
    let mut conf = plugin.invocation(net.name(), net.cni_version(), runtime_config, prev)?;
    if net.name().is_empty() {
        conf.remove("name");
    }
    Ok(conf)
}

fn label(net: &NetworkConfig, plugin: &PluginConf) -> String {
    if net.name().is_empty() {
        format!("plugin {:?}", plugin.plugin_type())
    } else {
        format!("network {:?} plugin {:?}", net.name(), plugin.plugin_type())
    }
}

/// Logs the keys a built-in delegate (and its built-in IPAM) would ignore in `conf`.
fn warn_unimplemented_keys(ctx: &Context, conf: &PluginConf, delegate: &dyn super::Delegate) {
    super::known_keys::warn_unimplemented(delegate, conf);
    if let Some(ipam) = crate::cni::keys::ipam_type(conf) {
        if let Ok(d) = ctx.registry.resolve(ipam, &ctx.cni_path) {
            super::known_keys::warn_unimplemented(d.as_ref(), conf);
        }
    }
}

/// ADD: runs every plugin in order and returns the last result (in the network's version).
pub async fn add(
    ctx: &Context,
    net: &NetworkConfig,
    runtime_config: &Map<String, Value>,
) -> Result<CniResult, CniError> {
    let mut prev: Option<CniResult> = None;
    for plugin in net.plugins() {
        let conf = invocation(net, plugin, runtime_config, prev.as_ref())?;
        let delegate = ctx.registry.resolve_for(&conf, &ctx.cni_path)?;
        tracing::debug!(delegate = %delegate.describe(), ifname = %ctx.ifname, "ADD");
        warn_unimplemented_keys(ctx, &conf, delegate.as_ref());
        let r = delegate
            .add(ctx, &conf)
            .await
            .map_err(|e| e.context(label(net, plugin)))?;
        prev = Some(r);
    }
    let result = prev.ok_or_else(|| {
        CniError::invalid_config(format!("network {:?} has no plugins", net.name()))
    })?;
    result.convert(net.cni_version())
}

/// DEL: runs every plugin in reverse order, going on past failures; returns the first failure.
pub async fn del(
    ctx: &Context,
    net: &NetworkConfig,
    runtime_config: &Map<String, Value>,
    prev: Option<&CniResult>,
) -> Result<(), CniError> {
    let mut first_err = None;
    for plugin in net.plugins().into_iter().rev() {
        let res = async {
            let conf = invocation(net, plugin, runtime_config, prev)?;
            let delegate = ctx.registry.resolve_for(&conf, &ctx.cni_path)?;
            tracing::debug!(delegate = %delegate.describe(), ifname = %ctx.ifname, "DEL");
            delegate.del(ctx, &conf).await
        }
        .await;
        if let Err(e) = res {
            let e = e.context(label(net, plugin));
            tracing::warn!("DEL failed: {e}");
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// CHECK: runs every plugin in order with `prevResult` (skipped when the list sets `disableCheck`, and for
/// versions before 0.4.0, which have no CHECK).
pub async fn check(
    ctx: &Context,
    net: &NetworkConfig,
    runtime_config: &Map<String, Value>,
    prev: &CniResult,
) -> Result<(), CniError> {
    if net.disable_check() {
        return Ok(());
    }
    // Versions before 0.4.0 have no CHECK: libcni refuses the call, which would make one old delegate fail
    // the CHECK of a whole pod. There is nothing the plugin could check, so it passes (and we say so).
    if Version::parse(net.cni_version())? < Version::V0_4_0 {
        tracing::info!(
            "network {:?} is cniVersion {}: it has no CHECK, skipped",
            net.name(),
            net.cni_version()
        );
        return Ok(());
    }
    for plugin in net.plugins() {
        let conf = invocation(net, plugin, runtime_config, Some(prev))?;
        let delegate = ctx.registry.resolve_for(&conf, &ctx.cni_path)?;
        delegate
            .check(ctx, &conf)
            .await
            .map_err(|e| e.context(label(net, plugin)))?;
    }
    Ok(())
}

fn supports_status_gc(net: &NetworkConfig) -> bool {
    Version::parse(net.cni_version())
        .map(|v| v.has_status_gc())
        .unwrap_or(false)
}

/// STATUS: asks every plugin of a 1.1 network; older networks have no STATUS and count as ready.
pub async fn status(ctx: &Context, net: &NetworkConfig) -> Result<(), CniError> {
    if !supports_status_gc(net) {
        return Ok(());
    }
    for plugin in net.plugins() {
        let conf = invocation(net, plugin, &Map::new(), None)?;
        let delegate = ctx.registry.resolve_for(&conf, &ctx.cni_path)?;
        delegate
            .status(ctx, &conf)
            .await
            .map_err(|e| e.context(label(net, plugin)))?;
    }
    Ok(())
}

/// GC: gives every plugin of a 1.1 network the list of attachments that are still valid.
pub async fn gc(
    ctx: &Context,
    net: &NetworkConfig,
    valid: &[AttachmentRef],
) -> Result<(), CniError> {
    if !supports_status_gc(net) || net.disable_gc() {
        return Ok(());
    }
    let mut first_err = None;
    for plugin in net.plugins() {
        let res = async {
            let mut conf = invocation(net, plugin, &Map::new(), None)?;
            conf.set_valid_attachments(valid);
            let delegate = ctx.registry.resolve_for(&conf, &ctx.cni_path)?;
            delegate.gc(ctx, &conf).await
        }
        .await;
        if let Err(e) = res {
            first_err.get_or_insert(e.context(label(net, plugin)));
        }
    }
    first_err.map_or(Ok(()), Err)
}

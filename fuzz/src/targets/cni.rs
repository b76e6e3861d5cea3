//! Targets of the CNI protocol layer (`multus_core::cni`) and of the built-in delegates' configs.

use super::{outcome, text, valid_ifname, Target, Verdict};
use crate::engine::Shape;
use multus_core::cni::{
    keys, CniArgs, CniEnv, CniError, CniResult, NetworkConfig, PluginConf, Version, VersionInfo,
    SUPPORTED_VERSIONS,
};
use multus_core::plugins::{ipvlan::IpvlanConf, macvlan::MacvlanConf};
use multus_sriov::config::{SriovConf, VfSelector};
use std::collections::HashMap;

/// One plugin's config (stdin of a plugin, a `delegates` entry, one plugin of a conflist) and what each
/// built-in delegate reads of it.
pub const PLUGIN_CONF: Target = Target {
    name: "plugin_conf",
    about: "a plugin config: PluginConf, and the macvlan/ipvlan/sriov/dpdk config parsers, prevResult, dns",
    shape: Shape::Json,
    check: plugin_conf,
};

/// A network config: one plugin or a conflist (`plugins`).
pub const NETWORK_CONFIG: Target = Target {
    name: "network_config",
    about: "a network config or conflist (NetworkConfig), each of its plugins as plugin_conf",
    shape: Shape::Json,
    check: network_config,
};

/// A CNI result of any version, or a plugin's error object (what a delegate prints).
pub const CNI_RESULT: Target = Target {
    name: "cni_result",
    about: "a CNI result (0.1.0-1.1.0) converted to every version, or a plugin's error object",
    shape: Shape::Json,
    check: cni_result,
};

/// `CNI_ARGS`.
pub const CNI_ARGS: Target = Target {
    name: "cni_args",
    about: "CNI_ARGS (K=V;K=V)",
    shape: Shape::Text,
    check: cni_args,
};

/// The CNI environment, one `NAME=value` a line.
pub const CNI_ENV: Target = Target {
    name: "cni_env",
    about: "the CNI_* environment (one NAME=value a line): CniEnv::from_vars",
    shape: Shape::Text,
    check: cni_env,
};

/// The stdin of a VERSION request, and a version string.
pub const VERSION_REQUEST: Target = Target {
    name: "version_request",
    about: "a VERSION request's stdin (VersionInfo::reply, skel::error_version) and Version::parse",
    shape: Shape::Json,
    check: version_request,
};

fn plugin_conf(b: &[u8]) -> Verdict {
    match outcome("PluginConf::from_slice", PluginConf::from_slice(b))? {
        Some(conf) => plugin_checks(&conf),
        None => Ok(()),
    }
}

/// What every delegate reads of a plugin config, each judged on its own.
pub fn plugin_checks(conf: &PluginConf) -> Verdict {
    let again = PluginConf::from_value(conf.to_value())
        .map_err(|e| format!("its own value does not parse again: {e}"))?;
    if &again != conf {
        return Err("reading its own value gives another config".into());
    }
    let args = CniArgs::default();
    if let Some(c) = outcome("macvlan", MacvlanConf::parse(conf, &args))? {
        valid_ifname("macvlan master", c.master.as_deref())?;
        let _ = c.spec();
    }
    if let Some(c) = outcome("ipvlan", IpvlanConf::parse(conf))? {
        valid_ifname("ipvlan master", c.master.as_deref())?;
        outcome("ipvlan IPs", c.ip_source())?;
    }
    if let Some(c) = outcome("sriov", SriovConf::parse(conf))? {
        if let VfSelector::Pf(pf) = &c.device {
            valid_ifname("sriov PF", Some(pf))?;
        }
    }
    outcome("dpdk", multus_dpdk::DpdkConf::parse(conf))?;
    if let Some(Some(prev)) = outcome("prevResult", conf.prev_result())? {
        result_checks(&prev)?;
    }
    outcome("dns", keys::dns(conf))?;
    outcome("device-info file", multus_core::devinfo::file_of(conf))?;
    outcome("valid attachments", conf.valid_attachments())?;
    let _ = (conf.capabilities(), conf.runtime_config(), conf.ipam());
    Ok(())
}

fn network_config(b: &[u8]) -> Verdict {
    let Some(net) = outcome("NetworkConfig::from_slice", NetworkConfig::from_slice(b))? else {
        return Ok(());
    };
    let again = NetworkConfig::from_value(net.to_value())
        .map_err(|e| format!("its own value does not parse again: {e}"))?;
    if again != net {
        return Err("reading its own value gives another network config".into());
    }
    let _ = (
        net.name(),
        net.cni_version(),
        net.disable_check(),
        net.disable_gc(),
    );
    for p in net.plugins() {
        plugin_checks(p)?;
    }
    Ok(())
}

/// A result converts to every supported version or refuses cleanly; in its own version it reads back
/// the same.
fn result_checks(r: &CniResult) -> Verdict {
    for v in SUPPORTED_VERSIONS {
        outcome(&format!("conversion to {v}"), r.to_value(v))?;
    }
    if SUPPORTED_VERSIONS.contains(&r.cni_version.as_str()) {
        if let Some(own) = outcome("rendering in its own version", r.to_value(&r.cni_version))? {
            let back = CniResult::from_value(&own)
                .map_err(|e| format!("its own rendering does not parse again: {e}"))?;
            let again = back
                .to_value(&r.cni_version)
                .map_err(|e| format!("its second rendering fails: {e}"))?;
            if again != own {
                return Err(format!("rendering is not stable: {own} then {again}"));
            }
        }
    }
    Ok(())
}

fn cni_result(b: &[u8]) -> Verdict {
    if let Some(r) = outcome("CniResult::from_json", CniResult::from_json(b))? {
        result_checks(&r)?;
    }
    if let Some(e) = CniError::from_json(b) {
        // A delegate's own error: any code passes through, rendered in every version.
        for v in SUPPORTED_VERSIONS {
            let _ = e.to_json(v);
        }
    }
    Ok(())
}

fn cni_args(b: &[u8]) -> Verdict {
    let Some(args) = outcome("CniArgs::parse", CniArgs::parse(&text(b)))? else {
        return Ok(());
    };
    let again = CniArgs::parse(&args.render())
        .map_err(|e| format!("its own rendering does not parse again: {e}"))?;
    if again != args {
        return Err(format!("{:?} renders as {:?}", args, args.render()));
    }
    Ok(())
}

fn cni_env(b: &[u8]) -> Verdict {
    let vars: HashMap<String, String> = text(b)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Some(env) = outcome("CniEnv::from_vars", CniEnv::from_vars(&vars))? else {
        return Ok(());
    };
    if env.command.is_per_attachment() {
        multus_core::cni::names::container_id(&env.container_id)
            .map_err(|e| format!("accepted a container ID: {e}"))?;
        valid_ifname("CNI_IFNAME", Some(&env.ifname))?;
    }
    Ok(())
}

fn version_request(b: &[u8]) -> Verdict {
    let reply = VersionInfo::reply(b);
    if !SUPPORTED_VERSIONS.contains(&reply.cni_version.as_str()) {
        return Err(format!("replies in version {:?}", reply.cni_version));
    }
    let v = multus_core::skel::error_version(b);
    if !SUPPORTED_VERSIONS.contains(&v.as_str()) {
        return Err(format!("would write an error in version {v:?}"));
    }
    outcome("Version::parse", Version::parse(&text(b)))?;
    Ok(())
}

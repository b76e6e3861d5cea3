//! `POST /delegate`, as upstream's daemon serves it to hot-plug clients (multus-dynamic-networks-controller):
//! one network config (a plugin config or a conflist) attached to, or detached from, a running pod as
//! `CNI_IFNAME`, with the request's `interfaceAttributes` (`ips` as `IP=`, `mac` as `MAC=` in `CNI_ARGS`,
//! `cni-args` into the plugins' `args.cni`; `IgnoreUnknown=true` and the pod's `K8S_*` keys first, as upstream's
//! runtime config; a config without a `name` is named after the interface). The pod must exist (cache, else one GET). No cache entry and
//! no network-status: the caller keeps those, as with upstream.

use crate::handler::Answer;
use crate::Daemon;
use multus_cni::meta::PodArgs;
use multus_cni::shim::protocol::{InterfaceAttributes, Request, Response};
use multus_core::cni::{CniArgs, CniEnv, CniError, CniResult, Command, NetworkConfig};
use multus_core::pipeline::{self, Attachment, Attachments, Pod};
use multus_k8s::cache::PodCache;
use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Serves one `/delegate` request body; the verb (for metrics) and the answer.
pub async fn serve(d: &Arc<Daemon>, body: &[u8]) -> (String, Answer) {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let e = CniError::decoding(format!(
                "the request is not upstream's delegate request: {e}"
            ));
            return (
                "unknown".into(),
                (400, e.to_json("1.0.0").to_string().into_bytes()),
            );
        }
    };
    let verb = req.env.get("CNI_COMMAND").cloned().unwrap_or_default();
    let version = multus_core::skel::error_version(&req.config);
    match run(d, &req).await {
        Ok(a) => (verb, a),
        Err(e) => {
            tracing::error!(command = %verb, "delegate request: {e}");
            (verb, (400, e.to_json(&version).to_string().into_bytes()))
        }
    }
}

/// The config with `cni-args` merged into each plugin's `args.cni`.
fn with_cni_args(mut conf: Value, ia: Option<&InterfaceAttributes>) -> Value {
    let Some(extra) = ia.and_then(|a| a.cni_args.as_ref()) else {
        return conf;
    };
    let merge = |p: &mut Value| {
        if !p["args"].is_object() {
            p["args"] = Value::Object(Default::default());
        }
        if !p["args"]["cni"].is_object() {
            p["args"]["cni"] = Value::Object(Default::default());
        }
        if let Some(cni) = p["args"]["cni"].as_object_mut() {
            cni.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    };
    match conf.get_mut("plugins").and_then(Value::as_array_mut) {
        Some(plugins) => plugins.iter_mut().for_each(merge),
        None => merge(&mut conf),
    }
    conf
}

/// The delegate's `CNI_ARGS` as upstream's `CreateCNIRuntimeConf` makes them: `IgnoreUnknown=true` and the
/// pod's `K8S_*` keys (`MAC=`, `IP=` are the attachment's own, added after).
fn runtime_args(from: &CniArgs) -> CniArgs {
    let mut out = vec![("IgnoreUnknown".to_string(), "true".to_string())];
    for k in [
        "K8S_POD_NAMESPACE",
        "K8S_POD_NAME",
        "K8S_POD_INFRA_CONTAINER_ID",
        "K8S_POD_UID",
    ] {
        out.push((k.to_string(), from.get(k).unwrap_or_default().to_string()));
    }
    CniArgs(out)
}

async fn pod_exists(d: &Daemon, p: &PodArgs) -> Result<(), CniError> {
    if d.cache.pod(&p.namespace, &p.name).is_some() {
        return Ok(());
    }
    let mut c = d.pool.fresh();
    c.get_pod(&p.namespace, &p.name, Default::default())
        .await
        .map(|_| ())
        .map_err(|e| e.to_cni(&format!("pod {}/{}", p.namespace, p.name)))
}

async fn run(d: &Arc<Daemon>, req: &Request) -> Result<Answer, CniError> {
    let mut vars: HashMap<String, String> = req.env.clone().into_iter().collect();
    vars.entry("CNI_PATH".into())
        .or_insert_with(|| multus_cni::meta::conf::DEFAULT_BIN_DIR.into());
    let env = CniEnv::from_vars(&vars)?;
    let ia = req.interface_attributes.as_ref();
    let conf: Value = serde_json::from_slice(&req.config)
        .map_err(|e| CniError::decoding(format!("the delegate config is not JSON: {e}")))?;
    let mut conf = with_cni_args(conf, ia);
    if conf
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        // A NAD's config may have no name (the flow names it after the NAD): named after the interface.
        conf["name"] = Value::String(env.ifname.clone());
    }
    let network = NetworkConfig::from_value(conf)?;
    if matches!(env.command, Command::Add | Command::Del) {
        let p = PodArgs::from_env(&env).ok_or_else(|| {
            CniError::invalid_env(
                "required CNI variable missing: K8S_POD_NAMESPACE and K8S_POD_NAME",
            )
        })?;
        pod_exists(d, &p).await?;
    }
    let mut att = Attachment::new(network, &env.ifname);
    if let Some(ia) = ia {
        if !ia.mac_request.is_empty() {
            att.extra_args.push(("MAC".into(), ia.mac_request.clone()));
        }
        if !ia.ip_request.is_empty() {
            att.extra_args.push(("IP".into(), ia.ip_request.join(",")));
        }
    }
    let bin_dirs: Vec<PathBuf> = d
        .cfg
        .raw
        .get("binDir")
        .and_then(Value::as_str)
        .unwrap_or(multus_cni::meta::conf::DEFAULT_BIN_DIR)
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect();
    let registry = multus_cni::builtins::registry(bin_dirs, std::time::Duration::from_secs(60));
    let pod = Pod {
        container_id: env.container_id.clone(),
        netns: env.netns.clone(),
        args: runtime_args(&env.args),
        cni_path: env.path.clone(),
        registry: Arc::new(registry),
    };
    let atts = Attachments::new(vec![att])?;
    match env.command {
        Command::Add => {
            let attached = pipeline::add(&pod, &atts).await?;
            let result = attached
                .first()
                .and_then(|a| a.result.as_ref())
                .ok_or_else(|| CniError::invalid_config("the delegate gave no result"))?;
            let resp = Response {
                result: Some(CniResult::to_value(result, "1.0.0")?),
            };
            Ok((200, serde_json::to_vec(&resp).unwrap_or_default()))
        }
        Command::Del => pipeline::del(&pod, &atts.unattached())
            .await
            .map(|()| (200, Vec::new())),
        Command::Check => pipeline::check(&pod, &atts.unattached())
            .await
            .map(|()| (200, Vec::new())),
        _ => Ok((200, Vec::new())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args_reach_every_plugin() {
        let ia = InterfaceAttributes {
            cni_args: Some(serde_json::from_str(r#"{"a":"b"}"#).unwrap()),
            ..Default::default()
        };
        let c = with_cni_args(
            serde_json::json!({"plugins":[{"type":"x"},{"type":"y","args":{"cni":{"k":1}}}]}),
            Some(&ia),
        );
        assert_eq!(c["plugins"][0]["args"]["cni"]["a"], "b");
        assert_eq!(c["plugins"][1]["args"]["cni"]["k"], 1);
        let c = with_cni_args(serde_json::json!({"type":"x"}), Some(&ia));
        assert_eq!(c["args"]["cni"]["a"], "b");
    }
}

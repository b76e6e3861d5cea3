//! A minimal CNI front end for this crate's host-local (ADD, DEL, CHECK, STATUS, VERSION), for
//! benchmarks and manual comparison with the reference binary. The project's real plugin entry
//! point is the `multus` binary; this example prints a CNI 1.0.0-shaped result whatever the
//! configured version.
//!
//! `HOST_LOCAL_INDEX=off|rewrite` (measurements only) picks how the store's index is kept across
//! processes for ADD and DEL: not at all, or a whole snapshot per change; the default is the
//! journal (`IndexMode::Journal`).
#![allow(missing_docs)]

use std::io::Read;
use std::process::ExitCode;

use multus_ipam::{config, network, IndexMode, IpamError, IpamResult, Network};
use serde_json::{json, Value};

fn result_json(r: &IpamResult) -> Value {
    let ips: Vec<Value> = r
        .ips
        .iter()
        .map(|c| {
            let mut v = json!({ "address": c.address.to_string() });
            if let Some(g) = c.gateway {
                v["gateway"] = json!(g.to_string());
            }
            v
        })
        .collect();
    let routes: Vec<Value> = r
        .routes
        .iter()
        .map(|rt| {
            let mut v = json!({ "dst": rt.dst.to_string() });
            if let Some(g) = rt.gw {
                v["gw"] = json!(g.to_string());
            }
            v
        })
        .collect();
    let mut dns = json!({});
    if !r.dns.nameservers.is_empty() {
        dns["nameservers"] = json!(r.dns.nameservers);
    }
    if let Some(d) = &r.dns.domain {
        dns["domain"] = json!(d);
    }
    if !r.dns.search.is_empty() {
        dns["search"] = json!(r.dns.search);
    }
    if !r.dns.options.is_empty() {
        dns["options"] = json!(r.dns.options);
    }
    let mut out = json!({ "cniVersion": "1.0.0", "ips": ips, "dns": dns });
    if !routes.is_empty() {
        out["routes"] = json!(routes);
    }
    out
}

fn run() -> Result<Option<Value>, IpamError> {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let cmd = env("CNI_COMMAND");
    if cmd == "VERSION" {
        return Ok(Some(json!({
            "cniVersion": "1.1.0",
            "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        })));
    }
    let mut stdin = Vec::new();
    std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| IpamError::io("read", "stdin", e))?;
    let cfg = config::parse(&stdin, &env("CNI_ARGS"))?;
    let (cid, ifname) = (env("CNI_CONTAINERID"), env("CNI_IFNAME"));
    let mode = match env("HOST_LOCAL_INDEX").as_str() {
        "off" => Some(IndexMode::Off),
        "rewrite" => Some(IndexMode::Rewrite),
        _ => None,
    };
    let open = |mode: IndexMode| -> Result<Network, IpamError> {
        let mut net = Network::from_config(&cfg)?;
        net.set_index_mode(mode);
        Ok(net)
    };
    match (cmd.as_str(), mode) {
        ("ADD", Some(m)) if cfg.resolv_conf.is_none() => {
            let ips = open(m)?.allocate(&cid, &ifname, &cfg.requested_ips)?;
            Ok(Some(result_json(&IpamResult {
                ips,
                routes: cfg.routes.clone(),
                dns: Default::default(),
            })))
        }
        ("DEL", Some(m)) => open(m)?.release(&cid, &ifname).map(|_| None),
        _ => run_default(&cmd, &cfg, &cid, &ifname),
    }
}

fn run_default(
    cmd: &str,
    cfg: &config::IpamConfig,
    cid: &str,
    ifname: &str,
) -> Result<Option<Value>, IpamError> {
    match cmd {
        "ADD" => Ok(Some(result_json(&network::add(cfg, cid, ifname)?))),
        "DEL" => network::del(cfg, cid, ifname).map(|_| None),
        "CHECK" => network::check(cfg, cid, ifname).map(|_| None),
        "STATUS" => network::status(cfg).map(|_| None),
        other => Err(IpamError::InvalidArgs(format!(
            "unknown CNI_COMMAND {other:?}"
        ))),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(Some(v)) => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{:#}", multus_core::cni::CniError::from(e).to_json("1.0.0"));
            ExitCode::FAILURE
        }
    }
}

//! A minimal CNI front end for this crate's host-local (ADD, DEL, CHECK, STATUS, VERSION), for
//! benchmarks and manual comparison with the reference binary. The project's real plugin entry
//! point is the `multus` binary; this example prints a CNI 1.0.0-shaped result whatever the
//! configured version.
#![allow(missing_docs)]

use std::io::Read;
use std::process::ExitCode;

use multus_ipam::{config, network, IpamError, IpamResult};
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
    match cmd.as_str() {
        "ADD" => Ok(Some(result_json(&network::add(&cfg, &cid, &ifname)?))),
        "DEL" => network::del(&cfg, &cid, &ifname).map(|_| None),
        "CHECK" => network::check(&cfg, &cid, &ifname).map(|_| None),
        "STATUS" => network::status(&cfg).map(|_| None),
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
            println!(
                "{:#}",
                json!({ "cniVersion": "1.0.0", "code": e.cni_code(), "msg": e.to_string() })
            );
            ExitCode::FAILURE
        }
    }
}

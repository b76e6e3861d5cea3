//! Parsing of the network configuration the reference host-local reads (pure: no file access).
//!
//! JSON keys are matched as Go's `encoding/json` does: case-insensitively, the last matching key
//! wins; `null` is the same as absent.

use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::ip::{canonical, parse_ip, IpNet};
use crate::range::RangeSpec;
use crate::range_set::{validate_sets, RangeSet};
use crate::result::Route;
use crate::{IpamError, Result};

/// The reference plugin's default `dataDir`.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// A validated host-local configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamConfig {
    /// The network name (top-level `name`): the store's directory under `data_dir`.
    pub name: String,
    /// Top-level `cniVersion`.
    pub cni_version: String,
    /// The range sets, in allocation order: `runtimeConfig.ipRanges`, then the legacy top-level
    /// range, then `ipam.ranges`.
    pub range_sets: Vec<RangeSet>,
    /// `ipam.routes`.
    pub routes: Vec<Route>,
    /// `ipam.dataDir`, default [`DEFAULT_DATA_DIR`].
    pub data_dir: PathBuf,
    /// `ipam.resolvConf`.
    pub resolv_conf: Option<PathBuf>,
    /// Requested addresses: `CNI_ARGS` `IP=`, then `args.cni.ips`, then `runtimeConfig.ips`.
    pub requested_ips: Vec<IpAddr>,
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn decode_err(what: &str, v: &Value) -> IpamError {
    IpamError::Decode(format!("json: cannot unmarshal {} into {what}", kind(v)))
}

/// The value of `key`, matched like Go: case-insensitively, last one wins, null is absent.
fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.iter()
        .rev()
        .find(|(k, v)| k.eq_ignore_ascii_case(key) && !v.is_null())
        .map(|(_, v)| v)
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| decode_err(what, v))
}

fn array<'a>(v: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    v.as_array().ok_or_else(|| decode_err(what, v))
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(decode_err(&format!("{key} of type string"), v)),
    }
}

/// Go's `net.IP.UnmarshalText`: empty is nil, anything else must parse.
fn ip_text(s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_ip(s)
        .map(Some)
        .ok_or_else(|| IpamError::Decode(format!("invalid IP address: {s}")))
}

fn ip_value(v: &Value, what: &str) -> Result<Option<IpAddr>> {
    match v {
        Value::String(s) => ip_text(s),
        v => Err(decode_err(what, v)),
    }
}

fn ip_field(obj: &Map<String, Value>, key: &str) -> Result<Option<IpAddr>> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => ip_value(v, &format!("{key} of type net.IP")),
    }
}

fn cidr_field(obj: &Map<String, Value>, key: &str) -> Result<Option<IpNet>> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => s
            .parse::<IpNet>()
            .map(Some)
            .map_err(|e| IpamError::Decode(e.0)),
        Some(v) => Err(decode_err(&format!("{key} of type types.IPNet"), v)),
    }
}

fn range_spec(v: &Value) -> Result<RangeSpec> {
    let o = object(v, "allocator.Range")?;
    Ok(RangeSpec {
        subnet: cidr_field(o, "subnet")?,
        range_start: ip_field(o, "rangeStart")?,
        range_end: ip_field(o, "rangeEnd")?,
        gateway: ip_field(o, "gateway")?,
    })
}

fn range_sets(v: &Value) -> Result<Vec<Vec<RangeSpec>>> {
    array(v, "[]allocator.RangeSet")?
        .iter()
        .map(|set| match set {
            Value::Null => Ok(Vec::new()),
            set => array(set, "allocator.RangeSet")?
                .iter()
                .map(range_spec)
                .collect(),
        })
        .collect()
}

fn route(v: &Value) -> Result<Route> {
    let o = object(v, "types.Route")?;
    let dst =
        cidr_field(o, "dst")?.ok_or_else(|| IpamError::Decode("route without \"dst\"".into()))?;
    Ok(Route {
        dst,
        gw: ip_field(o, "gw")?,
    })
}

/// Parses the `IP=` key of `CNI_ARGS` as the reference's `types.LoadArgs` with `IPAMEnvArgs`:
/// `K=V` pairs separated by `;`; keys other than `IP`, `IgnoreUnknown` are refused unless
/// `IgnoreUnknown` is `1`/`true`.
pub fn parse_cni_args(args: &str) -> Result<Option<IpAddr>> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut ip = None;
    let mut ignore_unknown = false;
    let mut unknown = Vec::new();
    for pair in args.split(';') {
        let kv: Vec<&str> = pair.split('=').collect();
        let [k, v] = kv.as_slice() else {
            return Err(IpamError::InvalidArgs(format!(
                "ARGS: invalid pair {pair:?}"
            )));
        };
        match *k {
            "IP" => {
                // As the reference's `ip.ParseIP`: an address, or one in CIDR notation (what Go Multus
                // passes from an annotation's `ips`); the prefix is not used.
                let cidr = v
                    .contains('/')
                    .then(|| v.parse::<ipnetwork::IpNetwork>().map(|n| n.ip().to_string()));
                let v = match cidr {
                    Some(Ok(a)) => a,
                    Some(Err(_)) => String::from("invalid"),
                    None => v.to_string(),
                };
                ip = ip_text(&v).map_err(|_| {
                    IpamError::InvalidArgs(format!(
                        "ARGS: error parsing value of pair {pair:?}: invalid IP address: {v}"
                    ))
                })?;
            }
            "IgnoreUnknown" => {
                ignore_unknown = match v.to_ascii_lowercase().as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => {
                        return Err(IpamError::InvalidArgs(format!(
                            "ARGS: error parsing value of pair {pair:?}: boolean unmarshal error: invalid input {v}"
                        )))
                    }
                }
            }
            _ => unknown.push(pair.to_string()),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(IpamError::InvalidArgs(format!(
            "ARGS: unknown args {unknown:?}"
        )));
    }
    Ok(ip)
}

/// The addresses of `args.cni.ips`.
fn args_ips(root: &Map<String, Value>) -> Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    if let Some(args) = get(root, "args") {
        let args = object(args, "args")?;
        if let Some(cni) = get(args, "cni") {
            let cni = object(cni, "allocator.IPAMArgs")?;
            if let Some(ips) = get(cni, "ips") {
                for v in array(ips, "[]net.IP")? {
                    out.extend(ip_value(v, "net.IP")?);
                }
            }
        }
    }
    Ok(out)
}

/// The addresses (`runtimeConfig.ips`) and range sets (`runtimeConfig.ipRanges`) of the runtime.
fn runtime_config(root: &Map<String, Value>) -> Result<(Vec<IpAddr>, Vec<Vec<RangeSpec>>)> {
    let (mut ips_out, mut ranges) = (Vec::new(), Vec::new());
    if let Some(rc) = get(root, "runtimeConfig") {
        let rc = object(rc, "runtimeConfig")?;
        if let Some(ips) = get(rc, "ips") {
            for v in array(ips, "[]*ip.IP")? {
                // plugins/pkg/ip.IP: a CIDR or a bare address.
                let s = v.as_str().ok_or_else(|| decode_err("ip.IP", v))?;
                let ip = s
                    .parse::<IpNet>()
                    .map(|n| canonical(n.addr()))
                    .ok()
                    .or_else(|| parse_ip(s))
                    .ok_or_else(|| IpamError::Decode(format!("invalid IP address {s}")))?;
                ips_out.push(ip);
            }
        }
        if let Some(r) = get(rc, "ipRanges") {
            ranges = range_sets(r)?;
        }
    }
    Ok((ips_out, ranges))
}

/// Parses and validates a network configuration (stdin of the plugin) and `CNI_ARGS`, with the
/// reference plugin's defaults and checks. Reads no file: `resolvConf` is only recorded.
pub fn parse(stdin: &[u8], cni_args: &str) -> Result<IpamConfig> {
    let root: Value =
        serde_json::from_slice(stdin).map_err(|e| IpamError::Decode(e.to_string()))?;
    let root = object(&root, "allocator.Net")?;
    let name = string(root, "name")?.unwrap_or_default().to_string();
    let cni_version = string(root, "cniVersion")?.unwrap_or_default().to_string();
    let ipam = match get(root, "ipam") {
        None => {
            return Err(IpamError::InvalidConfig(
                "IPAM config missing 'ipam' key".into(),
            ))
        }
        Some(v) => object(v, "allocator.IPAMConfig")?,
    };

    // Requested addresses, in the reference's order.
    let mut requested = Vec::new();
    if let Some(ip) = parse_cni_args(cni_args)? {
        requested.push(ip);
    }
    requested.extend(args_ips(root)?);
    let (runtime_ips, runtime_ranges) = runtime_config(root)?;
    requested.extend(runtime_ips);

    // Range sets: runtime ipRanges, the legacy single range, then `ranges`.
    let mut specs = runtime_ranges;
    let legacy = range_spec(&Value::Object(ipam.clone()))?;
    if legacy.subnet.is_some() {
        specs.push(vec![legacy]);
    }
    if let Some(r) = get(ipam, "ranges") {
        specs.extend(range_sets(r)?);
    }
    let range_sets = validate_sets(&specs, Some(&cni_version))?;

    let routes = match get(ipam, "routes") {
        None => Vec::new(),
        Some(v) => array(v, "[]*types.Route")?
            .iter()
            .map(route)
            .collect::<Result<_>>()?,
    };
    let data_dir = match string(ipam, "dataDir")? {
        None | Some("") => PathBuf::from(DEFAULT_DATA_DIR),
        Some(d) => PathBuf::from(d),
    };
    let resolv_conf = match string(ipam, "resolvConf")? {
        None | Some("") => None,
        Some(p) => Some(PathBuf::from(p)),
    };

    Ok(IpamConfig {
        name,
        cni_version,
        range_sets,
        routes,
        data_dir,
        resolv_conf,
        requested_ips: requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(json: &str) -> Result<IpamConfig> {
        parse(json.as_bytes(), "")
    }

    #[test]
    fn legacy_and_defaults() {
        let c = p(
            r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"host-local","subnet":"10.1.0.0/16",
            "rangeStart":"10.1.0.10","rangeEnd":"10.1.0.20","gateway":"10.1.0.254"}}"#,
        )
        .unwrap();
        assert_eq!(c.name, "n");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cni/networks"));
        assert_eq!(c.range_sets.len(), 1);
        assert_eq!(c.range_sets[0].to_string(), "10.1.0.10-10.1.0.20");
        assert_eq!(
            c.range_sets[0].ranges()[0].gateway().to_string(),
            "10.1.0.254"
        );
        assert!(c.resolv_conf.is_none());
        assert!(c.routes.is_empty());
    }

    #[test]
    fn order_of_range_sets_and_keys_case_insensitive() {
        let c = p(r#"{"cniVersion":"1.0.0","name":"n",
            "runtimeConfig":{"ipRanges":[[{"subnet":"10.3.0.0/24"}]]},
            "ipam":{"SUBNET":"10.1.0.0/24","Ranges":[[{"subnet":"10.2.0.0/24"},{"subnet":"10.2.1.0/24"}],
                [{"subnet":"2001:db8::/64"}]],
            "dataDir":"/tmp/x","resolvConf":"/etc/r","routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.9.9/8","gw":"10.1.0.1"}]}}"#)
        .unwrap();
        let sets: Vec<String> = c.range_sets.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            sets,
            [
                "10.3.0.1-10.3.0.254",
                "10.1.0.1-10.1.0.254",
                "10.2.0.1-10.2.0.254,10.2.1.1-10.2.1.254",
                "2001:db8::1-2001:db8::ffff:ffff:ffff:ffff"
            ]
        );
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/r")));
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].dst.to_string(), "10.9.9.9/8");
        assert_eq!(c.routes[1].gw, Some("10.1.0.1".parse().unwrap()));
    }

    #[test]
    fn requested_ips_from_all_sources() {
        let c = parse(
            br#"{"cniVersion":"1.0.0","name":"n","args":{"cni":{"ips":["10.1.0.5","::ffff:10.1.0.6"]}},
            "runtimeConfig":{"ips":["10.1.0.7/24","10.1.0.8"]},
            "ipam":{"subnet":"10.1.0.0/24"}}"#,
            "IgnoreUnknown=1;IP=10.1.0.4;K8S_POD_NAME=x",
        )
        .unwrap();
        let ips: Vec<String> = c.requested_ips.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            ips,
            ["10.1.0.4", "10.1.0.5", "10.1.0.6", "10.1.0.7", "10.1.0.8"]
        );
    }

    #[test]
    fn cni_args() {
        assert_eq!(parse_cni_args("").unwrap(), None);
        assert_eq!(
            parse_cni_args("IP=10.0.0.1").unwrap(),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_cni_args("IP=").unwrap(), None);
        let e = parse_cni_args("IP=10.0.0.1;FOO=1").unwrap_err();
        assert_eq!(e.to_string(), r#"ARGS: unknown args ["FOO=1"]"#);
        assert_eq!(multus_core::cni::ErrorCode::from(&e).code(), 4);
        assert!(parse_cni_args("IP=10.0.0.1;FOO=1;IgnoreUnknown=true").is_ok());
        // The reference takes an address in CIDR notation too (Go Multus passes `ips` so).
        assert_eq!(
            parse_cni_args("IP=10.0.0.9/24").unwrap(),
            Some("10.0.0.9".parse().unwrap())
        );
        for bad in ["IP=10.0.0.9/", "IP=10.0.0.9/40", "IP=10.0.0/24"] {
            assert!(parse_cni_args(bad).is_err(), "{bad}");
        }
        assert!(parse_cni_args("IP").is_err());
        assert!(parse_cni_args("IP=a=b").is_err());
        assert!(parse_cni_args("IP=300.0.0.1").is_err());
        assert!(parse_cni_args("IgnoreUnknown=maybe").is_err());
    }

    #[test]
    fn errors_and_codes() {
        let cases: &[(&str, u32, &str)] = &[
            ("{", 6, ""),
            ("[]", 6, ""),
            (r#"{"name":"n"}"#, 7, "IPAM config missing 'ipam' key"),
            (r#"{"name":"n","ipam":{}}"#, 7, "no IP ranges specified"),
            (r#"{"name":"n","ipam":{"subnet":5}}"#, 6, ""),
            (r#"{"name":"n","ipam":{"subnet":"10.0.0.0"}}"#, 6, ""),
            (r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","gateway":"x"}}"#, 6, ""),
            (
                r#"{"name":"n","ipam":{"subnet":"10.0.0.1/24"}}"#,
                7,
                "invalid range set 0: Network has host bits set. For a subnet mask of length 24 the network address is 10.0.0.0",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.0.0.0/16"}]]}}"#,
                7,
                "range set 0 overlaps with 1",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"rangeStart":"10.0.0.1"}]]}}"#,
                7,
                "invalid range set 0: IP <nil> not v4 nor v6",
            ),
            (
                r#"{"name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24","rangeEnd":"10.0.1.1"}]]}}"#,
                7,
                "invalid range set 0: 10.0.1.1 not in network 10.0.0.0/24",
            ),
            (
                r#"{"cniVersion":"0.2.0","name":"n","ipam":{"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]}}"#,
                1,
                "CNI version 0.2.0 does not support more than 1 address per family",
            ),
            (r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","routes":[{"gw":"10.0.0.1"}]}}"#, 6, ""),
            (r#"{"name":"n","runtimeConfig":{"ips":["nope"]},"ipam":{"subnet":"10.0.0.0/24"}}"#, 6, ""),
        ];
        for (json, code, msg) in cases {
            let e = p(json).unwrap_err();
            assert_eq!(
                multus_core::cni::ErrorCode::from(&e).code(),
                *code,
                "{json}: {e}"
            );
            if !msg.is_empty() {
                assert_eq!(e.to_string(), *msg, "{json}");
            }
        }
    }

    #[test]
    fn null_is_absent_and_last_key_wins() {
        let c = p(r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","dataDir":null,"datadir":"/a","DATADIR":"/b"}}"#)
            .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        let c = p(r#"{"name":"n","ipam":{"subnet":"10.0.0.0/24","dataDir":null}}"#).unwrap();
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }
}

//! The pod annotation `k8s.v1.cni.cncf.io/networks`, in both of its forms:
//!
//! - a comma-separated list of `[namespace/]name[@ifname]`;
//! - a JSON list of objects with `name`, `namespace`, `interface`, `ips`, `mac`, `infiniband-guid`,
//!   `default-route`, `portMappings`, `bandwidth`, `cni-args` and `deviceID`.
//!
//! Every element is validated (names are DNS-1123 labels, interface names follow the CNI rules, addresses
//! parse) and an invalid one is an error that names the element and says why.

use ipnetwork::IpNetwork;
use multus_core::cni::CniError;
use serde_json::{Map, Value};
use std::net::IpAddr;

/// The annotation naming a pod's additional networks.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
/// The annotation Multus writes with the status of every attached network.
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The pod annotation replacing the cluster's default network for one pod.
pub const DEFAULT_NETWORK_ANNOTATION: &str = "v1.multus-cni.io/default-network";

/// Sets annotation `key` to `value` in a pod object (its `metadata.annotations`, made when absent or not an
/// object). `None` when the pod has no `metadata` object.
pub fn set_in_pod(pod: &mut Value, key: &str, value: &str) -> Option<()> {
    let meta = pod.get_mut("metadata")?.as_object_mut()?;
    let ann = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !ann.is_object() {
        *ann = Value::Object(Map::new());
    }
    ann.as_object_mut()?
        .insert(key.to_string(), Value::String(value.to_string()));
    Some(())
}

/// One element of the networks annotation: a NAD to attach, and what the pod asks of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkSelection {
    /// The NAD's name.
    pub name: String,
    /// The NAD's namespace (the pod's when the element gives none).
    pub namespace: String,
    /// The requested interface name.
    pub interface: Option<String>,
    /// Requested addresses (CIDR notation, as the `ips` capability expects).
    pub ips: Vec<String>,
    /// Requested MAC address.
    pub mac: Option<String>,
    /// Requested InfiniBand GUID.
    pub infiniband_guid: Option<String>,
    /// Gateways this network should give the pod's default route (at most one per family).
    pub default_route: Vec<IpAddr>,
    /// Port mappings (`portMappings` capability), kept as given.
    pub port_mappings: Vec<Value>,
    /// Bandwidth limits (`bandwidth` capability), kept as given.
    pub bandwidth: Option<Value>,
    /// Extra plugin arguments, passed as `args.cni` in the delegate config.
    pub cni_args: Option<Map<String, Value>>,
    /// A device ID chosen by the pod (overrides the kubelet checkpoint).
    pub device_id: Option<String>,
}

impl NetworkSelection {
    /// `namespace/name`: the name of the attachment in logs and network-status.
    pub fn qualified_name(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Checks a DNS-1123 label: 1 to 63 characters of `a-z`, `0-9` and `-`, starting and ending alphanumeric.
pub fn validate_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 63 {
        return Err(format!("{s:?} is longer than 63 characters"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "{s:?} holds {c:?}: a DNS-1123 label has only lower-case letters, digits and '-'"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!(
            "{s:?} must start and end with a letter or a digit (DNS-1123 label)"
        ));
    }
    Ok(())
}

fn elem_err(idx: usize, what: &str, why: impl std::fmt::Display) -> CniError {
    CniError::invalid_config(format!(
        "pod annotation {NETWORKS_ANNOTATION}: element {idx} ({what}): {why}"
    ))
}

/// Parses the networks annotation (either form). `default_namespace` is given to elements without one.
pub fn parse_networks(
    annotation: &str,
    default_namespace: &str,
) -> Result<Vec<NetworkSelection>, CniError> {
    let trimmed = annotation.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let list = if trimmed.starts_with('[') {
        parse_json(trimmed, default_namespace)?
    } else if trimmed.starts_with('{') {
        return Err(CniError::invalid_config(format!(
            "pod annotation {NETWORKS_ANNOTATION}: a JSON value must be a list of objects, not one object"
        )));
    } else {
        parse_text(trimmed, default_namespace)?
    };
    for (i, s) in list.iter().enumerate() {
        validate(i, s)?;
    }
    Ok(list)
}

/// The text form: `[ns/]name[@ifname]`, comma separated.
fn parse_text(s: &str, default_namespace: &str) -> Result<Vec<NetworkSelection>, CniError> {
    let mut out = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        let item = item.trim();
        if item.is_empty() {
            return Err(elem_err(i, "\"\"", "is empty (a stray comma?)"));
        }
        let (rest, interface) = match item.split_once('@') {
            Some((r, ifn)) => (r, Some(ifn.to_string())),
            None => (item, None),
        };
        let (namespace, name) = match rest.split_once('/') {
            Some((ns, n)) => (ns.to_string(), n.to_string()),
            None => (default_namespace.to_string(), rest.to_string()),
        };
        if name.contains('/') {
            return Err(elem_err(
                i,
                &format!("{item:?}"),
                "has more than one '/': the form is [namespace/]name[@interface]",
            ));
        }
        out.push(NetworkSelection {
            name,
            namespace,
            interface,
            ..Default::default()
        });
    }
    Ok(out)
}

fn opt_str(
    o: &Map<String, Value>,
    k: &str,
    i: usize,
    what: &str,
) -> Result<Option<String>, CniError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(elem_err(
            i,
            what,
            format!("\"{k}\" must be a string, not {v}"),
        )),
    }
}

fn str_list(
    o: &Map<String, Value>,
    k: &str,
    i: usize,
    what: &str,
) -> Result<Vec<String>, CniError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                v => Err(elem_err(
                    i,
                    what,
                    format!("\"{k}\" must hold strings, not {v}"),
                )),
            })
            .collect(),
        Some(v) => Err(elem_err(
            i,
            what,
            format!("\"{k}\" must be a list of strings, not {v}"),
        )),
    }
}

/// Keys of a JSON element that this implementation reads.
const KNOWN_KEYS: &[&str] = &[
    "name",
    "namespace",
    "interface",
    "interfaceRequest",
    "ips",
    "mac",
    "infiniband-guid",
    "default-route",
    "portMappings",
    "bandwidth",
    "cni-args",
    "deviceID",
];

/// The JSON form.
fn parse_json(s: &str, default_namespace: &str) -> Result<Vec<NetworkSelection>, CniError> {
    let v: Value = serde_json::from_str(s).map_err(|e| {
        CniError::decoding(format!(
            "pod annotation {NETWORKS_ANNOTATION} is not valid JSON: {e}"
        ))
    })?;
    let Value::Array(items) = v else {
        return Err(CniError::invalid_config(format!(
            "pod annotation {NETWORKS_ANNOTATION}: must be a JSON list"
        )));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(elem_err(i, &item.to_string(), "must be an object"));
        };
        let name = match o.get("name") {
            Some(Value::String(n)) => n.clone(),
            _ => return Err(elem_err(i, "?", "\"name\" is missing or not a string")),
        };
        let what = format!("{name:?}");
        if let Some(k) = o.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            tracing::warn!("networks annotation element {i}: unknown key {k:?} ignored");
        }
        let default_route = str_list(o, "default-route", i, &what)?
            .iter()
            .map(|g| {
                g.parse::<IpAddr>().map_err(|_| {
                    elem_err(
                        i,
                        &what,
                        format!("\"default-route\" gateway {g:?} is not an IP address"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let port_mappings = match o.get("portMappings") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_object) => a.clone(),
            Some(_) => {
                return Err(elem_err(
                    i,
                    &what,
                    "\"portMappings\" must be a list of objects",
                ))
            }
        };
        let bandwidth = match o.get("bandwidth") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(elem_err(i, &what, "\"bandwidth\" must be an object")),
        };
        let cni_args = match o.get("cni-args") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m.clone()),
            Some(_) => return Err(elem_err(i, &what, "\"cni-args\" must be an object")),
        };
        out.push(NetworkSelection {
            namespace: opt_str(o, "namespace", i, &what)?
                .unwrap_or_else(|| default_namespace.to_string()),
            // `interfaceRequest`: the spelling before Multus 3.2, still read by Go Multus.
            interface: match opt_str(o, "interface", i, &what)? {
                Some(i) => Some(i),
                None => opt_str(o, "interfaceRequest", i, &what)?,
            },
            ips: str_list(o, "ips", i, &what)?,
            mac: opt_str(o, "mac", i, &what)?,
            infiniband_guid: opt_str(o, "infiniband-guid", i, &what)?,
            device_id: opt_str(o, "deviceID", i, &what)?,
            default_route,
            port_mappings,
            bandwidth,
            cni_args,
            name,
        });
    }
    Ok(out)
}

fn valid_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn valid_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 8
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn validate(i: usize, s: &NetworkSelection) -> Result<(), CniError> {
    let what = format!("{:?}", s.qualified_name());
    validate_dns1123_label(&s.name).map_err(|e| elem_err(i, &what, format!("name {e}")))?;
    validate_dns1123_label(&s.namespace)
        .map_err(|e| elem_err(i, &what, format!("namespace {e}")))?;
    if let Some(ifn) = &s.interface {
        multus_core::cni::names::ifname(ifn)
            .map_err(|e| elem_err(i, &what, format!("interface: {e}")))?;
    }
    for ip in &s.ips {
        // The `ips` capability takes addresses with a prefix; a bare address is accepted as a host route.
        if ip.parse::<IpNetwork>().is_err() {
            return Err(elem_err(
                i,
                &what,
                format!(
                    "\"ips\" entry {ip:?} is not an IP address (CIDR notation, e.g. 10.1.1.5/24)"
                ),
            ));
        }
    }
    if let Some(m) = &s.mac {
        if !valid_mac(m) {
            return Err(elem_err(
                i,
                &what,
                format!("\"mac\" {m:?} is not a MAC address (six hex pairs separated by ':')"),
            ));
        }
    }
    if let Some(g) = &s.infiniband_guid {
        if !valid_guid(g) {
            return Err(elem_err(
                i,
                &what,
                format!(
                    "\"infiniband-guid\" {g:?} is not a GUID (eight hex pairs separated by ':')"
                ),
            ));
        }
    }
    let v4 = s.default_route.iter().filter(|g| g.is_ipv4()).count();
    let v6 = s.default_route.len() - v4;
    if v4 > 1 || v6 > 1 {
        return Err(elem_err(
            i,
            &what,
            "\"default-route\" names two gateways of one address family",
        ));
    }
    Ok(())
}

/// Parses the `v1.multus-cni.io/default-network` annotation: exactly one network, `[ns/]name` (the
/// namespace defaults to `multus_namespace`, where the cluster's default networks live).
pub fn parse_default_network(
    annotation: &str,
    multus_namespace: &str,
) -> Result<NetworkSelection, CniError> {
    let mut list = parse_networks(annotation, multus_namespace).map_err(|e| {
        CniError::new(
            e.code,
            e.msg
                .replace(NETWORKS_ANNOTATION, DEFAULT_NETWORK_ANNOTATION),
        )
    })?;
    match list.len() {
        1 => Ok(list.remove(0)),
        n => Err(CniError::invalid_config(format!(
            "pod annotation {DEFAULT_NETWORK_ANNOTATION}: names {n} networks; exactly one is allowed"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form() {
        let l = parse_networks(" macvlan-conf, other/net-b@eth7 ,c@x1", "default").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].qualified_name(), "default/macvlan-conf");
        assert_eq!(l[0].interface, None);
        assert_eq!(l[1].qualified_name(), "other/net-b");
        assert_eq!(l[1].interface.as_deref(), Some("eth7"));
        assert_eq!(l[2].interface.as_deref(), Some("x1"));
        assert!(parse_networks("  ", "default").unwrap().is_empty());
    }

    #[test]
    fn json_form() {
        let l = parse_networks(
            r#"[{"name":"macvlan-conf","interface":"mv0","ips":["192.168.1.205/24"],"mac":"c2:b0:57:49:47:f1",
                 "default-route":["192.168.1.1"],"portMappings":[{"hostPort":80,"containerPort":8080}],
                 "bandwidth":{"ingressRate":1000},"cni-args":{"foo":"bar"},"deviceID":"0000:03:00.1",
                 "infiniband-guid":"c2:11:22:33:44:55:66:77"},
                {"name":"b","namespace":"ns2","interfaceRequest":"old0"},
                {"name":"c","interface":"new0","interfaceRequest":"old1"}]"#,
            "pods",
        )
        .unwrap();
        // Before Multus 3.2 the interface was `interfaceRequest`; `interface` wins when both are there.
        assert_eq!(l[1].interface.as_deref(), Some("old0"));
        assert_eq!(l[2].interface.as_deref(), Some("new0"));
        assert_eq!(l[0].namespace, "pods");
        assert_eq!(l[0].interface.as_deref(), Some("mv0"));
        assert_eq!(l[0].ips, ["192.168.1.205/24"]);
        assert_eq!(l[0].mac.as_deref(), Some("c2:b0:57:49:47:f1"));
        assert_eq!(
            l[0].default_route,
            ["192.168.1.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(l[0].port_mappings.len(), 1);
        assert!(l[0].bandwidth.is_some());
        assert_eq!(l[0].cni_args.as_ref().unwrap()["foo"], "bar");
        assert_eq!(l[0].device_id.as_deref(), Some("0000:03:00.1"));
        assert_eq!(l[1].qualified_name(), "ns2/b");
    }

    #[test]
    fn errors_name_the_element_and_why() {
        for (bad, code, words) in [
            ("a,,b", 7, &["element 1", "empty"][..]),
            ("Upper", 7, &["element 0", "'U'"]),
            ("ok,-bad", 7, &["element 1", "start and end"]),
            ("a/b/c", 7, &["element 0", "more than one '/'"]),
            ("ns_x/a", 7, &["element 0", "namespace", "'_'"]),
            ("a@", 7, &["element 0", "interface"]),
            ("a@this-name-is-too-long", 7, &["element 0", "interface"]),
            ("a@x/y", 7, &["element 0", "interface"]),
            (&"x".repeat(64), 7, &["element 0", "63"]),
            ("[{\"name\":", 6, &["not valid JSON"]),
            ("{\"name\":\"a\"}", 7, &["list"]),
            ("[1]", 7, &["element 0", "object"]),
            ("[{\"namespace\":\"a\"}]", 7, &["element 0", "\"name\""]),
            (
                "[{\"name\":\"a\",\"ips\":\"10.0.0.1/24\"}]",
                7,
                &["element 0", "\"ips\""],
            ),
            (
                "[{\"name\":\"a\"},{\"name\":\"b\",\"ips\":[\"10.0.0.300/24\"]}]",
                7,
                &["element 1", "10.0.0.300"],
            ),
            (
                "[{\"name\":\"a\",\"mac\":\"zz:00:00:00:00:00\"}]",
                7,
                &["element 0", "\"mac\""],
            ),
            (
                "[{\"name\":\"a\",\"mac\":5}]",
                7,
                &["element 0", "\"mac\" must be a string"],
            ),
            (
                "[{\"name\":\"a\",\"infiniband-guid\":\"1:2\"}]",
                7,
                &["element 0", "infiniband-guid"],
            ),
            (
                "[{\"name\":\"a\",\"default-route\":[\"gw\"]}]",
                7,
                &["element 0", "\"gw\""],
            ),
            (
                "[{\"name\":\"a\",\"default-route\":[\"10.0.0.1\",\"10.0.1.1\"]}]",
                7,
                &["element 0", "two gateways"],
            ),
            (
                "[{\"name\":\"a\",\"portMappings\":{}}]",
                7,
                &["element 0", "portMappings"],
            ),
            (
                "[{\"name\":\"a\",\"bandwidth\":[]}]",
                7,
                &["element 0", "bandwidth"],
            ),
            (
                "[{\"name\":\"a\",\"cni-args\":\"x\"}]",
                7,
                &["element 0", "cni-args"],
            ),
        ] {
            let e = parse_networks(bad, "default").unwrap_err();
            assert_eq!(e.code.code(), code, "{bad}: {e}");
            for w in words {
                assert!(e.msg.contains(w), "{bad}: {e} should say {w}");
            }
        }
    }

    #[test]
    fn default_network_annotation() {
        let s = parse_default_network("calico", "kube-system").unwrap();
        assert_eq!(s.qualified_name(), "kube-system/calico");
        let e = parse_default_network("a,b", "kube-system").unwrap_err();
        assert!(e.msg.contains(DEFAULT_NETWORK_ANNOTATION) && e.msg.contains("exactly one"));
        let e = parse_default_network("A", "kube-system").unwrap_err();
        assert!(e.msg.contains(DEFAULT_NETWORK_ANNOTATION), "{e}");
    }
}

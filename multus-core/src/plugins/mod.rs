//! Built-in plugins: the reference `macvlan` and `ipvlan` plugins' behaviour, in-process, over netlink.
//!
//! - [`macvlan`], [`ipvlan`]: config parsing and planning (pure, unit-tested), and the [`Delegate`]
//!   implementations.
//! - [`sublink`]: what both share: creating a link on a master in the host (or container) namespace under a
//!   temporary name, moving and renaming it, running IPAM, cleaning up on failure, DEL and CHECK.
//! - [`ipam_apply`]: configuring an interface from an IPAM result (addresses, gateway routes, 1.1 route
//!   fields), as the reference `ConfigureIface` does.
//!
//! [`Delegate`]: crate::delegate::Delegate

pub mod ipam_apply;
pub mod ipvlan;
pub mod macvlan;
pub mod sublink;

pub use ipvlan::Ipvlan;
pub use macvlan::Macvlan;

use crate::cni::{CniError, PluginConf};
use serde_json::Value;

/// A string key of the config; absent, `null` and `""` are `None`.
pub(crate) fn opt_string(conf: &PluginConf, key: &str) -> Result<Option<String>, CniError> {
    match conf.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be a string, not {other}"
        ))),
    }
}

/// A boolean key; absent or `null` is `false`.
pub(crate) fn opt_bool(conf: &PluginConf, key: &str) -> Result<bool, CniError> {
    match conf.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be a boolean, not {other}"
        ))),
    }
}

/// An integer key; absent or `null` is 0.
pub(crate) fn opt_int(conf: &PluginConf, key: &str) -> Result<i64, CniError> {
    match conf.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            CniError::invalid_config(format!("\"{key}\" must be an integer, not {n}"))
        }),
        Some(other) => Err(CniError::invalid_config(format!(
            "\"{key}\" must be an integer, not {other}"
        ))),
    }
}

/// `ipam.type`, when the config has an IPAM section naming one.
pub(crate) fn ipam_type(conf: &PluginConf) -> Option<String> {
    conf.ipam()
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// `dns`, as the result should carry it (the reference plugins copy the config's `dns`).
pub(crate) fn conf_dns(conf: &PluginConf) -> Result<crate::cni::Dns, CniError> {
    match conf.get("dns") {
        None | Some(Value::Null) => Ok(crate::cni::Dns::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| CniError::invalid_config(format!("\"dns\" is not a DNS object: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> PluginConf {
        PluginConf::from_value(v).unwrap()
    }

    #[test]
    fn typed_keys() {
        let c = conf(
            json!({"type": "x", "s": "a", "e": "", "b": true, "n": 5, "bad": 1.5, "ipam": {"type": "host-local"}, "dns": {"nameservers": ["1.1.1.1"]}}),
        );
        assert_eq!(opt_string(&c, "s").unwrap().as_deref(), Some("a"));
        assert_eq!(opt_string(&c, "e").unwrap(), None);
        assert_eq!(opt_string(&c, "none").unwrap(), None);
        assert_eq!(opt_string(&c, "b").unwrap_err().code.code(), 7);
        assert!(opt_bool(&c, "b").unwrap());
        assert!(!opt_bool(&c, "none").unwrap());
        assert_eq!(opt_bool(&c, "s").unwrap_err().code.code(), 7);
        assert_eq!(opt_int(&c, "n").unwrap(), 5);
        assert_eq!(opt_int(&c, "bad").unwrap_err().code.code(), 7);
        assert_eq!(opt_int(&c, "s").unwrap_err().code.code(), 7);
        assert_eq!(ipam_type(&c).as_deref(), Some("host-local"));
        assert_eq!(conf_dns(&c).unwrap().nameservers, vec!["1.1.1.1"]);
        let c = conf(json!({"type": "x", "dns": "x", "ipam": {}}));
        assert_eq!(ipam_type(&c), None);
        assert_eq!(conf_dns(&c).unwrap_err().code.code(), 7);
    }
}

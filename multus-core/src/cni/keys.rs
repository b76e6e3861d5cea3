//! Typed config keys: the one set of getters every delegate reads its config with. A key that is absent or
//! `null` is "not set" (for strings, `""` too, as Go's zero value is for the reference plugins); a key of the
//! wrong type or value is a code-7 error that names the plugin, the key (`runtimeConfig.mac` for a nested
//! one) and the value: `sriov: invalid "vlan" value 4095: must be an integer from 0 to 4094`.
//!
//! ```
//! use multus_core::cni::keys::Keys;
//! use multus_core::cni::PluginConf;
//!
//! let conf = PluginConf::from_slice(br#"{"type":"sriov","vlan":100,"spoofchk":"off",
//!     "runtimeConfig":{"mac":"02:00:00:00:00:09"}}"#).unwrap();
//! let k = Keys::of(&conf).plugin("sriov");
//! assert_eq!(k.uint("vlan", 4094).unwrap(), Some(100));
//! assert_eq!(k.choice("spoofchk", &[("on", true), ("off", false)]).unwrap(), Some(false));
//! let rt = k.nested("runtimeConfig").unwrap();
//! let mac: Option<multus_core::netlink::MacAddr> = rt.parse("mac", "must be a MAC address").unwrap();
//! assert!(mac.is_some());
//! let e = k.uint("vlan", 10).unwrap_err();
//! assert_eq!(e.code.code(), 7);
//! assert_eq!(e.msg, "sriov: invalid \"vlan\" value 100: must be an integer from 0 to 10");
//! ```

use super::{CniError, Dns, PluginConf};
use serde_json::{Map, Value};
use std::str::FromStr;

/// The keys of one config object (the config itself, or a nested object such as `runtimeConfig`), read for
/// one plugin (its name prefixes every error).
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    map: Option<&'a Map<String, Value>>,
    plugin: &'a str,
    parent: Option<&'a str>,
}

impl<'a> Keys<'a> {
    /// The top-level keys of a plugin config.
    pub fn of(conf: &'a PluginConf) -> Self {
        Keys::new(conf.raw())
    }

    /// The keys of a JSON object.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Keys {
            map: Some(map),
            plugin: "",
            parent: None,
        }
    }

    /// The same keys, with errors prefixed by `plugin` (`"sriov"`, `"dpdk"`).
    pub fn plugin(self, plugin: &'a str) -> Self {
        Keys { plugin, ..self }
    }

    /// The raw value of a key.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.and_then(|m| m.get(key))
    }

    /// Whether a key is set (present and not `null`).
    pub fn is_set(&self, key: &str) -> bool {
        !matches!(self.get(key), None | Some(Value::Null))
    }

    /// The name of a key in messages: `runtimeConfig.mac` for a nested one.
    pub fn name(&self, key: &str) -> String {
        match self.parent {
            Some(p) => format!("{p}.{key}"),
            None => key.to_string(),
        }
    }

    /// The code-7 error for key `key` holding `value`: `<plugin>: invalid "<key>" value <value>: <why>`.
    pub fn invalid(&self, key: &str, value: &Value, why: &str) -> CniError {
        let prefix = if self.plugin.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.plugin)
        };
        CniError::invalid_config(format!(
            "{prefix}invalid \"{}\" value {value}: {why}",
            self.name(key)
        ))
    }

    /// A string key; `None` when absent, `null` or empty.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, CniError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.invalid(key, v, "must be a string")),
        }
    }

    /// A boolean key; `None` when absent or `null`.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, CniError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.invalid(key, v, "must be a boolean")),
        }
    }

    /// An integer key; `None` when absent or `null`.
    pub fn int(&self, key: &str) -> Result<Option<i64>, CniError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.invalid(key, v, "must be an integer")),
            Some(v) => Err(self.invalid(key, v, "must be an integer")),
        }
    }

    /// An integer key in `0..=max`; `None` when absent or `null`.
    pub fn uint(&self, key: &str, max: u64) -> Result<Option<u64>, CniError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Number(n)) => match n.as_u64() {
                Some(x) if x <= max => Ok(Some(x)),
                _ => Err(self.invalid(key, v, &format!("must be an integer from 0 to {max}"))),
            },
            Some(v) => Err(self.invalid(key, v, "must be an integer")),
        }
    }

    /// An object key; `None` when absent or `null`.
    pub fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, CniError> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(v) => Err(self.invalid(key, v, "must be an object")),
        }
    }

    /// The keys of an object key (`runtimeConfig`); none when it is absent or `null`.
    pub fn nested(&self, key: &'a str) -> Result<Keys<'a>, CniError> {
        Ok(Keys {
            map: self.object(key)?,
            plugin: self.plugin,
            parent: Some(key),
        })
    }

    /// A string key parsed as `T`; `why` says what it must be when it does not parse.
    pub fn parse<T: FromStr>(&self, key: &str, why: &str) -> Result<Option<T>, CniError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| self.invalid(key, &Value::from(s), why)),
        }
    }

    /// A string key that must be one of `choices` (exact spelling); the error lists them.
    pub fn choice<T: Copy>(&self, key: &str, choices: &[(&str, T)]) -> Result<Option<T>, CniError> {
        self.choice_by(key, choices, |a, b| a == b)
    }

    /// As [`Keys::choice`], in any case (`802.1Q`, `Debug`).
    pub fn choice_any_case<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, CniError> {
        self.choice_by(key, choices, |a, b| a.eq_ignore_ascii_case(b))
    }

    fn choice_by<T: Copy>(
        &self,
        key: &str,
        choices: &[(&str, T)],
        eq: impl Fn(&str, &str) -> bool,
    ) -> Result<Option<T>, CniError> {
        let Some(s) = self.string(key)? else {
            return Ok(None);
        };
        if let Some((_, v)) = choices.iter().find(|(c, _)| eq(c, s)) {
            return Ok(Some(*v));
        }
        let names: Vec<String> = choices.iter().map(|(c, _)| format!("{c:?}")).collect();
        let why = match names.as_slice() {
            [one] => format!("must be {one}"),
            [init @ .., last] => format!("must be {} or {last}", init.join(", ")),
            [] => "is not allowed".into(),
        };
        Err(self.invalid(key, &Value::from(s), &why))
    }
}

/// `ipam.type`, when the config has an IPAM section naming one.
pub fn ipam_type(conf: &PluginConf) -> Option<&str> {
    conf.ipam()
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
}

/// `dns`, as a result carries it (the reference plugins copy the config's `dns`); none when absent.
pub fn dns(conf: &PluginConf) -> Result<Dns, CniError> {
    match conf.get("dns") {
        None | Some(Value::Null) => Ok(Dns::default()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| Keys::of(conf).invalid("dns", v, &format!("is not a DNS object: {e}"))),
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
    fn every_getter_and_its_errors() {
        let c = conf(
            json!({"type": "x", "s": "a", "e": "", "b": true, "n": 5, "neg": -2, "f": 1.5,
            "o": {"k": "v"}, "ipam": {"type": "host-local"}, "dns": {"nameservers": ["1.1.1.1"]}}),
        );
        let k = Keys::of(&c);
        assert_eq!(k.string("s").unwrap(), Some("a"));
        assert_eq!(k.string("e").unwrap(), None);
        assert_eq!(k.string("none").unwrap(), None);
        assert_eq!(k.bool("b").unwrap(), Some(true));
        assert_eq!(k.int("neg").unwrap(), Some(-2));
        assert_eq!(k.uint("n", 5).unwrap(), Some(5));
        assert!(k.is_set("o") && !k.is_set("none"));
        assert_eq!(k.nested("o").unwrap().string("k").unwrap(), Some("v"));
        assert_eq!(k.nested("none").unwrap().string("k").unwrap(), None);
        for e in [
            k.string("b").unwrap_err(),
            k.bool("s").unwrap_err(),
            k.int("f").unwrap_err(),
            k.uint("neg", 9).unwrap_err(),
            k.uint("n", 4).unwrap_err(),
            k.object("s").unwrap_err(),
            k.nested("n").map(|_| ()).unwrap_err(),
            k.parse::<u8>("s", "must be a number").unwrap_err(),
            k.choice("s", &[("x", 1), ("y", 2)]).unwrap_err(),
        ] {
            assert_eq!(e.code.code(), 7, "{e}");
            assert!(e.msg.starts_with("invalid \""), "{e}");
        }
        let e = k.choice("s", &[("x", 1), ("y", 2), ("z", 3)]).unwrap_err();
        assert_eq!(
            e.msg,
            "invalid \"s\" value \"a\": must be \"x\", \"y\" or \"z\""
        );
        assert_eq!(k.choice_any_case("s", &[("A", 1)]).unwrap(), Some(1));
        let rt = k.plugin("p").nested("o").unwrap();
        let e = rt.choice("k", &[("w", 0)]).unwrap_err();
        assert_eq!(e.msg, "p: invalid \"o.k\" value \"v\": must be \"w\"");
        assert_eq!(ipam_type(&c), Some("host-local"));
        assert_eq!(dns(&c).unwrap().nameservers, vec!["1.1.1.1"]);
        let c = conf(json!({"type": "x", "dns": "x", "ipam": {}}));
        assert_eq!(ipam_type(&c), None);
        assert_eq!(dns(&c).unwrap_err().code.code(), 7);
    }
}

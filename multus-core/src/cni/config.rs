//! Network configurations: single plugin configs and conflists, kept as the raw JSON objects they were
//! read from so that a delegate receives every key it may read, with typed accessors on top.

use super::error::CniError;
use super::result::CniResult;
use super::version::{Version, IMPLICIT_VERSION, SUPPORTED_VERSIONS};
use serde_json::{Map, Value};

/// The GC key listing the attachments that are still valid (spec 1.1).
pub const VALID_ATTACHMENTS_KEY: &str = "cni.dev/valid-attachments";
/// The older spelling of [`VALID_ATTACHMENTS_KEY`] that libcni also writes.
pub const ATTACHMENTS_KEY: &str = "cni.dev/attachments";

/// One attachment named in a GC request.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AttachmentRef {
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// The config of one plugin invocation: a JSON object with at least `type`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    raw: Map<String, Value>,
}

fn as_object(v: Value, what: &str) -> Result<Map<String, Value>, CniError> {
    match v {
        Value::Object(m) => Ok(m),
        other => Err(CniError::decoding(format!(
            "{what} must be a JSON object, not {}",
            kind(&other)
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn opt_str<'a>(
    m: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<&'a str>, CniError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(CniError::invalid_config(format!(
            "{what}: \"{key}\" must be a string, not {}",
            kind(other)
        ))),
    }
}

fn check_version(m: &Map<String, Value>, what: &str) -> Result<(), CniError> {
    match opt_str(m, "cniVersion", what)?.filter(|v| !v.is_empty()) {
        Some(v) => Version::parse_supported(v)
            .map(|_| ())
            .map_err(|e| e.context(what)),
        None => Ok(()),
    }
}

impl PluginConf {
    /// Parses the bytes of a plugin config.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("network config is not valid JSON: {e}")))?;
        Self::from_value(v)
    }

    /// Takes a JSON value; checks that it is an object with a non-empty string `type`, and a supported
    /// `cniVersion` when one is given.
    pub fn from_value(v: Value) -> Result<Self, CniError> {
        let raw = as_object(v, "network config")?;
        match opt_str(&raw, "type", "network config")? {
            Some(t) if !t.is_empty() => {}
            _ => {
                return Err(CniError::invalid_config(
                    "network config: \"type\" is missing or empty",
                ))
            }
        }
        opt_str(&raw, "name", "network config")?;
        check_version(&raw, "network config")?;
        Ok(PluginConf { raw })
    }

    /// `type`: the plugin to run.
    pub fn plugin_type(&self) -> &str {
        self.raw
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `name`, if set.
    pub fn name(&self) -> Option<&str> {
        self.raw
            .get("name")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// `cniVersion`, if set (an empty one counts as none; such a config is read as
    /// [`IMPLICIT_VERSION`] where it is run).
    pub fn cni_version(&self) -> Option<&str> {
        self.raw
            .get("cniVersion")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A key of the config.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.raw.get(key)
    }

    /// Sets a key of the config.
    pub fn set(&mut self, key: &str, value: Value) {
        self.raw.insert(key.to_string(), value);
    }

    /// Removes a key.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.raw.remove(key)
    }

    /// The whole object.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }

    /// The whole object as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.raw.clone())
    }

    /// The serialized config, as written on a plugin's stdin.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.raw).unwrap_or_default()
    }

    /// `capabilities`: the names whose value is `true`.
    pub fn capabilities(&self) -> Vec<String> {
        match self.raw.get("capabilities") {
            Some(Value::Object(m)) => m
                .iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `runtimeConfig` (empty when absent).
    pub fn runtime_config(&self) -> Map<String, Value> {
        match self.raw.get("runtimeConfig") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        }
    }

    /// `prevResult`, decoded, if present; one without a `cniVersion` takes the config's (as libcni's
    /// `ParsePrevResult`).
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match self.raw.get("prevResult") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let mut r = CniResult::from_value(v).map_err(|e| e.context("prevResult"))?;
                if r.cni_version.is_empty() {
                    r.cni_version = self.cni_version().unwrap_or(IMPLICIT_VERSION).to_string();
                }
                Ok(Some(r))
            }
        }
    }

    /// `ipam` as an object, if present.
    pub fn ipam(&self) -> Option<&Map<String, Value>> {
        self.raw.get("ipam").and_then(Value::as_object)
    }

    /// The attachments a GC request names as valid (`cni.dev/valid-attachments`, or `cni.dev/attachments`).
    pub fn valid_attachments(&self) -> Result<Vec<AttachmentRef>, CniError> {
        let v = self
            .raw
            .get(VALID_ATTACHMENTS_KEY)
            .or_else(|| self.raw.get(ATTACHMENTS_KEY));
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                CniError::decoding(format!(
                    "\"{VALID_ATTACHMENTS_KEY}\" must be a list of {{containerID, ifname}}: {e}"
                ))
            }),
        }
    }

    /// Sets the GC list of valid attachments (both spellings, as libcni does).
    pub fn set_valid_attachments(&mut self, valid: &[AttachmentRef]) {
        let v = serde_json::to_value(valid).unwrap_or(Value::Array(Vec::new()));
        self.raw
            .insert(VALID_ATTACHMENTS_KEY.to_string(), v.clone());
        self.raw.insert(ATTACHMENTS_KEY.to_string(), v);
    }

    /// Builds the config one plugin receives, as a runtime does (libcni's `buildOneConfig`): `name` and
    /// `cniVersion` from the network, `runtimeConfig` holding only the capabilities this plugin declares,
    /// and `prevResult` converted to the network's version.
    pub fn invocation(
        &self,
        network_name: &str,
        cni_version: &str,
        runtime_config: &Map<String, Value>,
        prev_result: Option<&CniResult>,
    ) -> Result<PluginConf, CniError> {
        let mut out = self.clone();
        out.set("name", Value::String(network_name.to_string()));
        out.set("cniVersion", Value::String(cni_version.to_string()));
        let caps = self.capabilities();
        let rc: Map<String, Value> = runtime_config
            .iter()
            .filter(|(k, _)| caps.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !rc.is_empty() {
            out.set("runtimeConfig", Value::Object(rc));
        }
        match prev_result {
            Some(prev) => out.set("prevResult", prev.to_value(cni_version)?),
            None => {
                out.remove("prevResult");
            }
        }
        Ok(out)
    }
}

/// A conflist: a named network made of a chain of plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfList {
    /// `cniVersion` chosen for the chain, as libcni chooses it: the highest supported version among
    /// `cniVersions` and `cniVersion`; [`IMPLICIT_VERSION`] when the list declares none.
    pub cni_version: String,
    /// `name`.
    pub name: String,
    /// `disableCheck`.
    pub disable_check: bool,
    /// `disableGC`.
    pub disable_gc: bool,
    /// `plugins`, in order.
    pub plugins: Vec<PluginConf>,
    raw: Map<String, Value>,
}

impl NetConfList {
    /// Parses a conflist object.
    pub fn from_value(v: Value) -> Result<Self, CniError> {
        let raw = as_object(v, "network config list")?;
        let what = "network config list";
        let name = opt_str(&raw, "name", what)?.unwrap_or_default().to_string();
        if name.is_empty() {
            return Err(CniError::invalid_config(
                "network config list: \"name\" is missing or empty",
            ));
        }
        // Every version the list declares; the highest supported one wins, none at all is the implicit one.
        let mut declared: Vec<&str> = opt_str(&raw, "cniVersion", what)?
            .filter(|v| !v.is_empty())
            .into_iter()
            .collect();
        if let Some(list) = raw.get("cniVersions") {
            let list = list.as_array().ok_or_else(|| {
                CniError::invalid_config(format!(
                    "{what} {name:?}: \"cniVersions\" must be a list of strings"
                ))
            })?;
            declared.extend(list.iter().filter_map(Value::as_str));
        }
        let best = declared
            .iter()
            .filter(|v| SUPPORTED_VERSIONS.contains(v))
            .filter_map(|v| Version::parse(v).ok().map(|p| (p, *v)))
            .max();
        let cni_version = match (best, declared.first()) {
            (Some((_, v)), _) => v.to_string(),
            // None supported: refused just below, naming the first.
            (None, Some(v)) => v.to_string(),
            (None, None) => IMPLICIT_VERSION.to_string(),
        };
        Version::parse_supported(&cni_version)
            .map_err(|e| e.context(format!("{what} {name:?}")))?;
        let bool_key = |k: &str| -> Result<bool, CniError> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
                Some(other) => Err(CniError::invalid_config(format!(
                    "{what} {name:?}: \"{k}\" must be a boolean, not {}",
                    kind(other)
                ))),
            }
        };
        let disable_check = bool_key("disableCheck")?;
        let disable_gc = bool_key("disableGC")?;
        let plugins = match raw.get("plugins") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    PluginConf::from_value(p.clone())
                        .map_err(|e| e.context(format!("{what} {name:?}: plugins[{i}]")))
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(CniError::invalid_config(format!(
                    "{what} {name:?}: \"plugins\" must be a non-empty list"
                )))
            }
        };
        Ok(NetConfList {
            cni_version,
            name,
            disable_check,
            disable_gc,
            plugins,
            raw,
        })
    }

    /// The whole object.
    pub fn raw(&self) -> &Map<String, Value> {
        &self.raw
    }
}

/// A network configuration as found in a delegate list, a NAD or a file: a single plugin or a conflist.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkConfig {
    /// A single plugin config.
    Single(PluginConf),
    /// A chain of plugins.
    List(NetConfList),
}

impl NetworkConfig {
    /// Parses bytes; an object with `plugins` is a conflist.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CniError> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("network config is not valid JSON: {e}")))?;
        Self::from_value(v)
    }

    /// Parses a JSON value; an object with `plugins` is a conflist. A config without `cniVersion` is read
    /// as libcni reads it, as [`IMPLICIT_VERSION`] (kept without one: see [`NetworkConfig::cni_version`]).
    pub fn from_value(v: Value) -> Result<Self, CniError> {
        if v.get("plugins").is_some() {
            NetConfList::from_value(v).map(NetworkConfig::List)
        } else {
            PluginConf::from_value(v).map(NetworkConfig::Single)
        }
    }

    /// The network's name (may be empty for a single config without one).
    pub fn name(&self) -> &str {
        match self {
            NetworkConfig::Single(c) => c.name().unwrap_or_default(),
            NetworkConfig::List(l) => &l.name,
        }
    }

    /// Sets the network name (of the list, or of the single config).
    pub fn set_name(&mut self, name: &str) {
        match self {
            NetworkConfig::Single(c) => c.set("name", Value::String(name.to_string())),
            NetworkConfig::List(l) => {
                l.name = name.to_string();
                l.raw.insert("name".into(), Value::String(name.to_string()));
            }
        }
    }

    /// The version the network's plugins are run with ([`IMPLICIT_VERSION`] when it declares none).
    pub fn cni_version(&self) -> &str {
        match self {
            NetworkConfig::Single(c) => c.cni_version().unwrap_or(IMPLICIT_VERSION),
            NetworkConfig::List(l) => &l.cni_version,
        }
    }

    /// The plugins in chain order (one for a single config).
    pub fn plugins(&self) -> Vec<&PluginConf> {
        match self {
            NetworkConfig::Single(c) => vec![c],
            NetworkConfig::List(l) => l.plugins.iter().collect(),
        }
    }

    /// Whether CHECK is disabled for this network.
    pub fn disable_check(&self) -> bool {
        matches!(self, NetworkConfig::List(l) if l.disable_check)
    }

    /// Whether GC is disabled for this network.
    pub fn disable_gc(&self) -> bool {
        matches!(self, NetworkConfig::List(l) if l.disable_gc)
    }

    /// The config as a JSON value, exactly as held (nothing dropped).
    pub fn to_value(&self) -> Value {
        match self {
            NetworkConfig::Single(c) => c.to_value(),
            NetworkConfig::List(l) => Value::Object(l.raw.clone()),
        }
    }

    /// Changes every plugin object of the network (the one of a single config, each of a conflist's
    /// `plugins`) with `edit`, then checks the result as [`NetworkConfig::from_value`] does.
    pub fn edit_plugins(
        &mut self,
        mut edit: impl FnMut(&mut Map<String, Value>),
    ) -> Result<(), CniError> {
        let mut v = self.to_value();
        if let Some(plugins) = v.get_mut("plugins").and_then(Value::as_array_mut) {
            plugins
                .iter_mut()
                .filter_map(Value::as_object_mut)
                .for_each(&mut edit);
        } else if let Some(o) = v.as_object_mut() {
            edit(o);
        }
        *self = NetworkConfig::from_value(v)?;
        Ok(())
    }

    /// Whether any plugin of the chain declares a capability.
    pub fn has_capability(&self, cap: &str) -> bool {
        self.plugins()
            .iter()
            .any(|p| p.capabilities().iter().any(|c| c == cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_unknown_keys() {
        let v = json!({"cniVersion": "0.3.1", "name": "n", "type": "sriov", "vlan": 5, "weird": {"x": [1, 2]}});
        let c = PluginConf::from_value(v.clone()).unwrap();
        assert_eq!(c.to_value(), v);
        let inv = c.invocation("n2", "0.3.1", &Map::new(), None).unwrap();
        assert_eq!(inv.get("weird"), v.get("weird"));
        assert_eq!(inv.name(), Some("n2"));
    }

    #[test]
    fn runtime_config_is_filtered_by_capabilities() {
        let c = PluginConf::from_value(
            json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}),
        )
        .unwrap();
        let rc = json!({"portMappings": [{"hostPort": 80}], "bandwidth": {}, "ips": ["1.2.3.4"]});
        let inv = c
            .invocation("n", "1.0.0", rc.as_object().unwrap(), None)
            .unwrap();
        assert_eq!(
            inv.runtime_config().keys().collect::<Vec<_>>(),
            vec!["portMappings"]
        );
    }

    #[test]
    fn conflists() {
        let l = NetworkConfig::from_value(json!({
            "cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.1.0", "9.0.0"], "name": "chain",
            "plugins": [{"type": "bridge"}, {"type": "portmap"}]
        }))
        .unwrap();
        assert_eq!(l.cni_version(), "1.1.0");
        assert_eq!(l.plugins().len(), 2);
        for (bad, code) in [
            (
                json!({"cniVersion": "1.0.0", "name": "x", "plugins": []}),
                7,
            ),
            (
                json!({"cniVersion": "1.0.0", "plugins": [{"type": "a"}]}),
                7,
            ),
            (
                json!({"cniVersion": "0.5.0", "name": "x", "plugins": [{"type": "a"}]}),
                1,
            ),
            (
                json!({"cniVersions": ["0.5.0"], "name": "x", "plugins": [{"type": "a"}]}),
                1,
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "x", "plugins": [{"name": "a"}]}),
                7,
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "x", "disableCheck": 3, "plugins": [{"type": "a"}]}),
                7,
            ),
            (json!({"cniVersion": "0.2.1", "name": "x", "type": "a"}), 1),
            (json!({"cniVersion": 2, "name": "x", "type": "a"}), 7),
            (json!([1]), 6),
        ] {
            let e = NetworkConfig::from_value(bad.clone()).unwrap_err();
            assert_eq!(e.code.code(), code, "{bad}: {e}");
        }
    }

    #[test]
    fn edit_plugins_reaches_every_plugin_and_rechecks() {
        let mut single =
            NetworkConfig::from_value(json!({"cniVersion": "1.0.0", "type": "a"})).unwrap();
        single
            .edit_plugins(|o| {
                o.insert("k".into(), json!(1));
            })
            .unwrap();
        assert_eq!(single.plugins()[0].get("k"), Some(&json!(1)));
        let mut list = NetworkConfig::from_value(json!({
            "cniVersion": "1.0.0", "name": "l", "plugins": [{"type": "a"}, {"type": "b"}]
        }))
        .unwrap();
        list.edit_plugins(|o| {
            o.insert("k".into(), json!(2));
        })
        .unwrap();
        assert!(list.plugins().iter().all(|p| p.get("k") == Some(&json!(2))));
        // An edit that breaks a plugin is refused, and the network is left as it was.
        let before = list.clone();
        assert_eq!(
            list.edit_plugins(|o| {
                o.remove("type");
            })
            .unwrap_err()
            .code
            .code(),
            7
        );
        assert_eq!(list, before);
    }

    #[test]
    fn gc_attachments() {
        let mut c = PluginConf::from_value(json!({"type": "x"})).unwrap();
        let list = vec![AttachmentRef {
            container_id: "c1".into(),
            ifname: "eth0".into(),
        }];
        c.set_valid_attachments(&list);
        assert_eq!(c.valid_attachments().unwrap(), list);
        c.remove(VALID_ATTACHMENTS_KEY);
        assert_eq!(c.valid_attachments().unwrap(), list);
    }

    #[test]
    fn configs_without_a_version_are_0_1_0_as_libcni_reads_them() {
        for v in [
            json!({"name": "n", "type": "bridge"}),
            json!({"cniVersion": "", "name": "n", "type": "bridge"}),
            json!({"cniVersion": null, "name": "n", "type": "bridge"}),
        ] {
            let net = NetworkConfig::from_value(v.clone()).unwrap();
            assert_eq!(net.cni_version(), "0.1.0", "{v}");
            // Kept as given: a cache or a NAD holds what was written.
            assert_eq!(net.to_value(), v);
            // The plugin is run with the version spelled out.
            let inv = net.plugins()[0]
                .invocation(net.name(), net.cni_version(), &Map::new(), None)
                .unwrap();
            assert_eq!(inv.cni_version(), Some("0.1.0"));
        }
        let list = NetworkConfig::from_value(
            json!({"name": "l", "plugins": [{"type": "bridge"}, {"type": "tuning", "cniVersion": "1.0.0"}]}),
        )
        .unwrap();
        assert_eq!(list.cni_version(), "0.1.0");
        let list = NetworkConfig::from_value(
            json!({"cniVersion": "", "name": "l", "plugins": [{"type": "bridge"}]}),
        )
        .unwrap();
        assert_eq!(list.cni_version(), "0.1.0");
        // 0.1.0 and 0.2.0 declared.
        for v in ["0.1.0", "0.2.0"] {
            let net =
                NetworkConfig::from_value(json!({"cniVersion": v, "type": "bridge"})).unwrap();
            assert_eq!(net.cni_version(), v);
            let list = NetworkConfig::from_value(
                json!({"cniVersion": v, "name": "l", "plugins": [{"type": "a"}]}),
            )
            .unwrap();
            assert_eq!(list.cni_version(), v);
        }
    }

    #[test]
    fn cni_versions_and_cni_version_compete() {
        let pick = |v: Value| {
            NetworkConfig::from_value(v)
                .unwrap()
                .cni_version()
                .to_string()
        };
        // The highest supported of both keys, as libcni's sort of the two.
        assert_eq!(
            pick(
                json!({"cniVersion": "1.1.0", "cniVersions": ["0.4.0"], "name": "l", "plugins": [{"type": "a"}]})
            ),
            "1.1.0"
        );
        assert_eq!(
            pick(
                json!({"cniVersions": ["0.2.0", "0.3.1"], "name": "l", "plugins": [{"type": "a"}]})
            ),
            "0.3.1"
        );
        assert_eq!(
            pick(
                json!({"cniVersion": "0.5.0", "cniVersions": ["0.2.0"], "name": "l", "plugins": [{"type": "a"}]})
            ),
            "0.2.0"
        );
        assert_eq!(
            pick(json!({"cniVersions": [], "name": "l", "plugins": [{"type": "a"}]})),
            "0.1.0"
        );
    }

    #[test]
    fn prev_result_without_a_version_takes_the_config_s() {
        let c = PluginConf::from_value(json!({"cniVersion": "0.2.0", "type": "x",
            "prevResult": {"ip4": {"ip": "10.0.0.2/8"}}}))
        .unwrap();
        let r = c.prev_result().unwrap().unwrap();
        assert_eq!((r.cni_version.as_str(), r.ips.len()), ("0.2.0", 1));
        let c = PluginConf::from_value(json!({"type": "x", "prevResult": {"dns": {}}})).unwrap();
        assert_eq!(c.prev_result().unwrap().unwrap().cni_version, "0.1.0");
        // A prevResult handed to a 0.2.0 plugin is written in 0.2.0.
        let inv = c
            .invocation(
                "n",
                "0.2.0",
                &Map::new(),
                Some(
                    &CniResult::from_value(&json!({
                "cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}],
                "ips": [{"interface": 0, "address": "10.0.0.2/8"}]}))
                    .unwrap(),
                ),
            )
            .unwrap();
        assert_eq!(
            inv.get("prevResult"),
            Some(&json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.0.0.2/8"}, "dns": {}}))
        );
    }
}

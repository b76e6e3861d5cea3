//! The warning a user needs when a built-in delegate stands in for a node's plugin binary: every key of the
//! config that the built-in does not implement (a newer reference plugin's `bcqueuelen`, a vendor key) is
//! named in a log line on ADD, with the way out (`preferNodeBinary`), instead of being ignored in silence.

use super::Delegate;
use crate::cni::PluginConf;
use serde_json::{Map, Value};

/// The keys every plugin config may carry, whatever the plugin: the CNI spec's and what Multus injects.
pub const COMMON_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "capabilities",
    "runtimeConfig",
    "prevResult",
    "args",
    "ipam",
    "dns",
    "deviceID",
    "pciBusID",
];

/// Which keys a built-in delegate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownKeys {
    /// Keys of the plugin config itself (besides [`COMMON_KEYS`]), in one or more lists.
    Plugin(&'static [&'static [&'static str]]),
    /// Keys of the config's `ipam` object (an IPAM delegate; `type` always counts).
    Ipam(&'static [&'static str]),
}

fn unknown_in(map: &Map<String, Value>, known: &[&[&str]], common: &[&str]) -> Vec<String> {
    map.keys()
        .filter(|k| !known.iter().any(|l| l.contains(&k.as_str())) && !common.contains(&k.as_str()))
        .filter(|k| !k.starts_with("cni.dev/"))
        .cloned()
        .collect()
}

/// The keys of `conf` that `delegate` declares it does not implement (empty when it declares nothing).
pub fn unimplemented(delegate: &dyn Delegate, conf: &PluginConf) -> Vec<String> {
    match delegate.known_keys() {
        None => Vec::new(),
        Some(KnownKeys::Plugin(known)) => unknown_in(conf.raw(), known, COMMON_KEYS),
        Some(KnownKeys::Ipam(known)) => conf
            .ipam()
            .map(|m| unknown_in(m, &[known], &["type"]))
            .unwrap_or_default(),
    }
}

/// Logs the keys `delegate` would ignore in `conf` (see [`unimplemented()`]).
pub fn warn_unimplemented(delegate: &dyn Delegate, conf: &PluginConf) {
    let keys = unimplemented(delegate, conf);
    if keys.is_empty() {
        return;
    }
    let scope = match delegate.known_keys() {
        Some(KnownKeys::Ipam(_)) => "\"ipam\" key",
        _ => "key",
    };
    tracing::warn!(
        "network {:?}: the {} does not implement the {scope}(s) {:?}, which it ignores (preferNodeBinary runs \
         the node's plugin instead)",
        conf.name().unwrap_or_default(),
        delegate.describe(),
        keys
    );
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::cni::{CniError, CniResult};
    use crate::delegate::Context;
    use async_trait::async_trait;

    /// A delegate that implements the three required verbs (doing nothing) and keeps every default but
    /// `known_keys`; `Fake(None)` keeps them all.
    pub(in crate::delegate) struct Fake(pub Option<KnownKeys>);

    #[async_trait]
    impl Delegate for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        async fn add(&self, _: &Context, _: &PluginConf) -> Result<CniResult, CniError> {
            Ok(CniResult::new("1.0.0"))
        }
        async fn check(&self, _: &Context, _: &PluginConf) -> Result<(), CniError> {
            Ok(())
        }
        async fn del(&self, _: &Context, _: &PluginConf) -> Result<(), CniError> {
            Ok(())
        }
        fn known_keys(&self) -> Option<KnownKeys> {
            self.0
        }
    }

    #[test]
    fn names_the_keys_a_built_in_would_ignore() {
        let conf = PluginConf::from_slice(
            br#"{"cniVersion":"1.0.0","name":"n","type":"macvlan","master":"eth0","bcqueuelen":100,
                 "cni.dev/x":1,"ipam":{"type":"host-local","subnet":"10.0.0.0/24","weird":true}}"#,
        )
        .unwrap();
        let plugin = Fake(Some(KnownKeys::Plugin(&[&["master"], &["mode"]])));
        assert_eq!(unimplemented(&plugin, &conf), ["bcqueuelen"]);
        let ipam = Fake(Some(KnownKeys::Ipam(&["subnet"])));
        assert_eq!(unimplemented(&ipam, &conf), ["weird"]);
        assert!(unimplemented(&Fake(None), &conf).is_empty());
    }
}

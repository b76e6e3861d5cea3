//! The CNI execution environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH`, parsed and validated as the spec says.

use super::error::CniError;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The six CNI verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Add a container to a network.
    Add,
    /// Check a container's networking is as expected.
    Check,
    /// Remove a container from a network.
    Del,
    /// Report whether the plugin is ready for ADD (spec 1.1).
    Status,
    /// Clean up resources of attachments that are no longer valid (spec 1.1).
    Gc,
    /// Report supported spec versions.
    Version,
}

impl Command {
    /// The name as written in `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Check => "CHECK",
            Command::Del => "DEL",
            Command::Status => "STATUS",
            Command::Gc => "GC",
            Command::Version => "VERSION",
        }
    }

    /// Whether this verb acts on one container attachment (needs container ID and ifname).
    pub fn is_per_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Check | Command::Del)
    }
}

impl FromStr for Command {
    type Err = CniError;
    fn from_str(s: &str) -> Result<Self, CniError> {
        Ok(match s {
            "ADD" => Command::Add,
            "CHECK" => Command::Check,
            "DEL" => Command::Del,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            "VERSION" => Command::Version,
            other => {
                return Err(CniError::invalid_env(format!(
                    "CNI_COMMAND {other:?} is not one of ADD, CHECK, DEL, STATUS, GC, VERSION"
                )))
            }
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `CNI_ARGS`: `K=V;K=V` pairs, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs(pub Vec<(String, String)>);

impl CniArgs {
    /// Parses `K=V;K=V`. Empty segments are ignored; a segment without `=` is an error (code 4).
    pub fn parse(s: &str) -> Result<Self, CniError> {
        let mut out = Vec::new();
        for seg in s.split(';') {
            if seg.is_empty() {
                continue;
            }
            let (k, v) = seg.split_once('=').ok_or_else(|| {
                CniError::invalid_env(format!("CNI_ARGS: {seg:?} is not of the form KEY=VALUE"))
            })?;
            if k.is_empty() {
                return Err(CniError::invalid_env(format!(
                    "CNI_ARGS: empty key in {seg:?}"
                )));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(CniArgs(out))
    }

    /// The value of a key (the last one wins, as in the reference plugins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets or replaces a key.
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_string(), value.to_string()));
    }

    /// Renders back to `K=V;K=V`.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// True when no pair is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The validated CNI environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for STATUS, GC and VERSION).
    pub container_id: String,
    /// `CNI_NETNS` (optional for DEL, absent for STATUS, GC and VERSION).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (empty for STATUS, GC and VERSION).
    pub ifname: String,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH`, split on `:`.
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Reads the process environment.
    pub fn from_process() -> Result<Self, CniError> {
        let vars: HashMap<String, String> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        Self::from_vars(&vars)
    }

    /// Parses and validates from a variable map (pure; used by [`CniEnv::from_process`] and tests).
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, CniError> {
        let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let command: Command = get("CNI_COMMAND")
            .ok_or_else(|| {
                CniError::invalid_env("required environment variable CNI_COMMAND is missing")
            })?
            .parse()?;
        let need = |k: &str| {
            get(k).map(str::to_string).ok_or_else(|| {
                CniError::invalid_env(format!(
                    "required environment variable {k} is missing for {command}"
                ))
            })
        };
        let (container_id, ifname) = if command.is_per_attachment() {
            let id = need("CNI_CONTAINERID")?;
            super::names::container_id(&id)
                .map_err(|e| CniError::invalid_env(format!("CNI_CONTAINERID: {e}")))?;
            let ifname = need("CNI_IFNAME")?;
            super::names::ifname(&ifname)
                .map_err(|e| CniError::invalid_env(format!("CNI_IFNAME: {e}")))?;
            (id, ifname)
        } else {
            (String::new(), String::new())
        };
        let netns = match command {
            Command::Add | Command::Check => Some(PathBuf::from(need("CNI_NETNS")?)),
            Command::Del => get("CNI_NETNS").map(PathBuf::from),
            _ => None,
        };
        let path: Vec<PathBuf> = match get("CNI_PATH") {
            Some(p) => p
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect(),
            None if command.is_per_attachment() => {
                return Err(CniError::invalid_env(format!(
                    "required environment variable CNI_PATH is missing for {command}"
                )))
            }
            None => Vec::new(),
        };
        let args = CniArgs::parse(get("CNI_ARGS").unwrap_or(""))?;
        Ok(CniEnv {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn add_needs_everything() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc-1.2_3"),
            ("CNI_NETNS", "/var/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=p"),
        ];
        let env = CniEnv::from_vars(&vars(&full)).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.path.len(), 2);
        assert_eq!(env.args.get("K8S_POD_NAME"), Some("p"));
        for i in 1..5 {
            let mut v = vars(&full);
            v.remove(full[i].0);
            let e = CniEnv::from_vars(&v).unwrap_err();
            assert_eq!(e.code.code(), 4);
            assert!(e.msg.contains(full[i].0), "{e}");
        }
    }

    #[test]
    fn del_netns_is_optional_and_status_needs_little() {
        let v = vars(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/x"),
        ]);
        assert_eq!(CniEnv::from_vars(&v).unwrap().netns, None);
        let v = vars(&[("CNI_COMMAND", "STATUS")]);
        assert_eq!(CniEnv::from_vars(&v).unwrap().command, Command::Status);
        let v = vars(&[("CNI_COMMAND", "FOO")]);
        assert_eq!(CniEnv::from_vars(&v).unwrap_err().code.code(), 4);
    }

    #[test]
    fn cni_args_parse_and_render() {
        let a = CniArgs::parse("A=1;;B=x=y").unwrap();
        assert_eq!(a.get("B"), Some("x=y"));
        assert_eq!(a.render(), "A=1;B=x=y");
        assert!(CniArgs::parse("novalue").is_err());
        assert!(CniArgs::parse("=v").is_err());
    }
}

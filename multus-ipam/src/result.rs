//! The outcome of an ADD: a CNI-version-neutral IPAM result mapping 1:1 onto a CNI result's
//! `ips`, `routes` and `dns`.

use std::net::IpAddr;

use crate::ip::IpNet;

/// One allocated address: the CNI result's `ips[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with the prefix length of its subnet (`address`).
    pub address: IpNet,
    /// The gateway of its range (`gateway`).
    pub gateway: Option<IpAddr>,
}

/// A route: the CNI result's `routes[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination (`dst`), as written (host bits kept).
    pub dst: IpNet,
    /// Next hop (`gw`).
    pub gw: Option<IpAddr>,
}

/// DNS settings: the CNI result's `dns`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dns {
    /// `nameservers`.
    pub nameservers: Vec<String>,
    /// `domain`.
    pub domain: Option<String>,
    /// `search`.
    pub search: Vec<String>,
    /// `options`.
    pub options: Vec<String>,
}

impl Dns {
    /// Parses a resolv.conf as the reference plugin does: `nameserver`, `domain`, `search` and
    /// `options` lines; comments (`#`, `;`), blank lines and lines with one field are skipped.
    pub fn from_resolv_conf(text: &str) -> Dns {
        let mut dns = Dns::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 2 {
                continue;
            }
            let rest = fields[1..].iter().map(|s| s.to_string());
            match fields[0] {
                "nameserver" => dns.nameservers.push(fields[1].to_string()),
                "domain" => dns.domain = Some(fields[1].to_string()),
                "search" => dns.search.extend(rest),
                "options" => dns.options.extend(rest),
                _ => {}
            }
        }
        dns
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// The result of an ADD, in range set order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpamResult {
    /// One address per range set (`ips`).
    pub ips: Vec<IpConfig>,
    /// The configured routes (`routes`).
    pub routes: Vec<Route>,
    /// DNS from `resolvConf` (`dns`).
    pub dns: Dns,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf() {
        let d = Dns::from_resolv_conf(
            "# c\n; c\nnameserver 10.0.0.1\nnameserver  ::1 x\ndomain a.b\nsearch a b\n\nsearch c\noptions ndots:5 edns0\nbogus\n",
        );
        assert_eq!(d.nameservers, ["10.0.0.1", "::1"]);
        assert_eq!(d.domain.as_deref(), Some("a.b"));
        assert_eq!(d.search, ["a", "b", "c"]);
        assert_eq!(d.options, ["ndots:5", "edns0"]);
        assert!(Dns::from_resolv_conf("# only\n").is_empty());
    }
}

//! One range of a range set: a subnet, the first and last allocatable address and a gateway.
//!
//! Pure: the defaults and the validation of the reference plugin's `range.go`.

use std::fmt;
use std::net::IpAddr;

use crate::ip::{bits, canonical, from_u128, to_u128, IpNet};

/// A range as written in a configuration: only the subnet is required.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSpec {
    /// The subnet (`subnet`), host bits as written.
    pub subnet: Option<IpNet>,
    /// The first allocatable address (`rangeStart`), inclusive.
    pub range_start: Option<IpAddr>,
    /// The last allocatable address (`rangeEnd`), inclusive.
    pub range_end: Option<IpAddr>,
    /// The gateway (`gateway`), never handed out.
    pub gateway: Option<IpAddr>,
}

impl RangeSpec {
    /// A range covering a whole subnet, with the default start, end and gateway.
    pub fn subnet(subnet: IpNet) -> Self {
        RangeSpec {
            subnet: Some(subnet),
            ..RangeSpec::default()
        }
    }
}

/// A validated range with its defaults filled in (the reference's `Range.Canonicalize`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    subnet: IpNet,
    start: u128,
    end: u128,
    gateway: IpAddr,
    v4: bool,
}

impl Range {
    /// Validates a range and fills in the defaults: gateway = first address after the network
    /// address, start = the same, end = the last address before the IPv4 broadcast (for IPv6 the
    /// last address of the subnet). Errors carry the reference plugin's messages.
    pub fn new(spec: &RangeSpec) -> Result<Range, String> {
        let subnet = spec
            .subnet
            .ok_or_else(|| "IP <nil> not v4 nor v6".to_string())?;
        let given = subnet.addr();
        let addr = canonical(given);
        if bits(given) == 128 && addr.is_ipv4() {
            // Go: a 4-byte IP with a 16-byte mask.
            return Err("IPNet IP and Mask version mismatch".into());
        }
        let b = bits(addr);
        if subnet.prefix() > b - 2 {
            return Err(format!("Network {subnet} too small to allocate from"));
        }
        if subnet.network() != addr {
            return Err(format!(
                "Network has host bits set. For a subnet mask of length {} the network address is {}",
                subnet.prefix(),
                subnet.network()
            ));
        }
        let v4 = b == 32;
        let net = to_u128(addr);
        let gateway = match spec.gateway.map(canonical) {
            None => from_u128(net + 1, v4),
            Some(gw) => {
                if !subnet.contains(gw) {
                    return Err(format!("gateway {gw} not in network {subnet}"));
                }
                gw
            }
        };
        let mut r = Range {
            subnet,
            start: net + 1,
            end: 0,
            gateway,
            v4,
        };
        if let Some(s) = spec.range_start.map(canonical) {
            r.check_in_subnet_and_bounds(s, None, None)?;
            r.start = to_u128(s);
        }
        match spec.range_end.map(canonical) {
            Some(e) => {
                r.check_in_subnet_and_bounds(e, Some(r.start), None)?;
                r.end = to_u128(e);
            }
            None => {
                let last = to_u128(subnet.broadcast());
                r.end = if v4 { last - 1 } else { last };
            }
        }
        Ok(r)
    }

    fn check_in_subnet_and_bounds(
        &self,
        ip: IpAddr,
        start: Option<u128>,
        end: Option<u128>,
    ) -> Result<(), String> {
        if bits(ip) != bits(self.subnet.addr()) {
            return Err(format!(
                "IP {ip} is not the same protocol as subnet {}",
                self.subnet
            ));
        }
        if !self.subnet.contains(ip) {
            return Err(format!("{ip} not in network {}", self.subnet));
        }
        let v = to_u128(ip);
        if let Some(s) = start {
            if v < s {
                return Err(format!(
                    "{ip} is in network {} but before start {}",
                    self.subnet,
                    from_u128(s, self.v4)
                ));
            }
        }
        if let Some(e) = end {
            if v > e {
                return Err(format!(
                    "{ip} is in network {} but after end {}",
                    self.subnet,
                    from_u128(e, self.v4)
                ));
            }
        }
        Ok(())
    }

    /// The subnet.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The gateway.
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// The first allocatable address.
    pub fn start(&self) -> IpAddr {
        from_u128(self.start, self.v4)
    }

    /// The last allocatable address.
    pub fn end(&self) -> IpAddr {
        from_u128(self.end, self.v4)
    }

    /// Whether the range holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        self.v4
    }

    pub(crate) fn start_u(&self) -> u128 {
        self.start
    }

    pub(crate) fn end_u(&self) -> u128 {
        self.end
    }

    pub(crate) fn gateway_u(&self) -> u128 {
        to_u128(self.gateway)
    }

    /// Whether `ip` is in the subnet and between start and end (the reference's `Contains`).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.subnet.contains(ip) && (self.start..=self.end).contains(&to_u128(ip))
    }

    /// Whether the two ranges share an address (the reference's `Overlaps`).
    pub fn overlaps(&self, other: &Range) -> bool {
        if self.v4 != other.v4 {
            return false;
        }
        self.contains(other.start())
            || self.contains(other.end())
            || other.contains(self.start())
            || other.contains(self.end())
    }

    /// Number of addresses from start to end, the gateway included if inside.
    pub fn len(&self) -> u128 {
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Never true for a validated range; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start(), self.end())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeSpec {
        RangeSpec {
            subnet: Some(s.parse().unwrap()),
            range_start: start.map(|x| x.parse().unwrap()),
            range_end: end.map(|x| x.parse().unwrap()),
            gateway: gw.map(|x| x.parse().unwrap()),
        }
    }

    #[test]
    fn defaults_v4() {
        let r = Range::new(&spec("10.1.2.0/24", None, None, None)).unwrap();
        assert_eq!(r.to_string(), "10.1.2.1-10.1.2.254");
        assert_eq!(r.gateway().to_string(), "10.1.2.1");
        assert_eq!(r.len(), 254);
    }

    #[test]
    fn defaults_v6() {
        let r = Range::new(&spec("2001:db8::/64", None, None, None)).unwrap();
        assert_eq!(r.to_string(), "2001:db8::1-2001:db8::ffff:ffff:ffff:ffff");
        assert_eq!(r.gateway().to_string(), "2001:db8::1");
    }

    #[test]
    fn explicit_values() {
        let r = Range::new(&spec(
            "10.1.2.0/24",
            Some("10.1.2.10"),
            Some("10.1.2.20"),
            Some("10.1.2.254"),
        ))
        .unwrap();
        assert_eq!(r.to_string(), "10.1.2.10-10.1.2.20");
        assert!(r.contains("10.1.2.10".parse().unwrap()));
        assert!(r.contains("10.1.2.20".parse().unwrap()));
        assert!(!r.contains("10.1.2.21".parse().unwrap()));
        assert!(!r.contains("10.1.2.9".parse().unwrap()));
    }

    #[test]
    fn validation_messages() {
        let e = |s: RangeSpec| Range::new(&s).unwrap_err();
        assert_eq!(
            e(spec("10.1.2.3/24", None, None, None)),
            "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0"
        );
        assert_eq!(
            e(spec("10.1.2.0/31", None, None, None)),
            "Network 10.1.2.0/31 too small to allocate from"
        );
        assert_eq!(
            e(spec("10.1.2.0/24", None, None, Some("10.1.3.1"))),
            "gateway 10.1.3.1 not in network 10.1.2.0/24"
        );
        assert_eq!(
            e(spec("10.1.2.0/24", Some("10.1.3.1"), None, None)),
            "10.1.3.1 not in network 10.1.2.0/24"
        );
        assert_eq!(
            e(spec(
                "10.1.2.0/24",
                Some("10.1.2.20"),
                Some("10.1.2.10"),
                None
            )),
            "10.1.2.10 is in network 10.1.2.0/24 but before start 10.1.2.20"
        );
        assert_eq!(
            e(spec("10.1.2.0/24", Some("::1"), None, None)),
            "IP ::1 is not the same protocol as subnet 10.1.2.0/24"
        );
        assert_eq!(e(RangeSpec::default()), "IP <nil> not v4 nor v6");
        assert_eq!(
            e(spec("::ffff:10.0.0.0/104", None, None, None)),
            "IPNet IP and Mask version mismatch"
        );
    }

    #[test]
    fn overlaps() {
        let a = Range::new(&spec("10.1.2.0/24", None, Some("10.1.2.100"), None)).unwrap();
        let b = Range::new(&spec("10.1.2.0/24", Some("10.1.2.101"), None, None)).unwrap();
        let c = Range::new(&spec("10.1.0.0/16", None, None, None)).unwrap();
        let d = Range::new(&spec("2001:db8::/64", None, None, None)).unwrap();
        assert!(!a.overlaps(&b));
        assert!(!b.overlaps(&a));
        assert!(a.overlaps(&c) && c.overlaps(&a));
        assert!(!a.overlaps(&d));
    }
}

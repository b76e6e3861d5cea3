//! Address arithmetic and the textual forms the reference plugin (Go's `net` package) uses.
//!
//! Addresses are canonicalised like Go's `To4()`: an IPv4-mapped IPv6 address is an IPv4 address.
//! `Display` of a canonical [`IpAddr`] equals Go's `net.IP.String()` (RFC 5952), which is also the
//! name of a reservation file.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Canonical form: IPv4-mapped IPv6 addresses become IPv4 (Go's `canonicalizeIP`).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Parses an address as Go's `net.ParseIP` does, then canonicalises it.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    IpAddr::from_str(s).ok().map(canonical)
}

/// The longest text of an address ([`file_name`]'s buffer).
pub const NAME_MAX: usize = 48;

/// An address's reservation file name (Go's `net.IP.String()`, which for IPv4 and for IPv6 is what
/// `Display` writes) into `buf`, without allocating; IPv4 by hand, as a verification formats one
/// name per reservation and `fmt` costs ten times more.
pub fn file_name(ip: IpAddr, buf: &mut [u8; NAME_MAX]) -> &[u8] {
    match ip {
        IpAddr::V4(a) => {
            let mut n = 0;
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                let digits = [o / 100, o / 10 % 10, o % 10];
                let skip = if o >= 100 {
                    0
                } else if o >= 10 {
                    1
                } else {
                    2
                };
                for d in &digits[skip..] {
                    buf[n] = b'0' + d;
                    n += 1;
                }
            }
            &buf[..n]
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let n = match write!(cur, "{ip}") {
                Ok(()) => cur.position() as usize,
                Err(_) => 0,
            };
            &buf[..n]
        }
    }
}

/// Number of bits of the address family.
pub fn bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The address as an integer.
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The address of the given family with this integer value (truncated to the family's width).
pub fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from((v & 0xffff_ffff) as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// Network mask of `prefix` bits in a family of `bits` bits, as an integer.
pub fn mask(prefix: u8, bits: u8) -> u128 {
    let all: u128 = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if prefix == 0 {
        0
    } else if prefix >= bits {
        all
    } else {
        all & !(all >> prefix)
    }
}

/// An address with a prefix length, as Go's `net.IPNet` parsed by the CNI `types.ParseCIDR`:
/// the address keeps its host bits (`10.1.2.3/24` stays `10.1.2.3/24`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// A network from an address and a prefix length; `None` if the prefix is too long for the family.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        (prefix <= bits(addr)).then_some(IpNet { addr, prefix })
    }

    /// The address as given (host bits kept).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        let b = bits(self.addr);
        from_u128(to_u128(self.addr) & mask(self.prefix, b), b == 32)
    }

    /// The last address of the network (all host bits set).
    pub fn broadcast(&self) -> IpAddr {
        let b = bits(self.addr);
        let m = mask(self.prefix, b);
        let all = mask(b, b);
        from_u128((to_u128(self.addr) & m) | (all & !m), b == 32)
    }

    /// Whether `ip` (same family) is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let b = bits(self.addr);
        if bits(ip) != b {
            return false;
        }
        let m = mask(self.prefix, b);
        to_u128(ip) & m == to_u128(self.addr) & m
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Why a CIDR text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for IpNet {
    type Err = CidrError;

    /// Parses `addr/prefix`. An IPv4-mapped IPv6 address keeps its IPv6 family here, as Go's
    /// `net.ParseCIDR` keeps a 16-byte mask for it; range validation refuses it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(format!("invalid CIDR address: {s}"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let addr = IpAddr::from_str(a).map_err(|_| bad())?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        IpNet::new(addr, prefix).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(24, 32), 0xffff_ff00);
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(32, 32), 0xffff_ffff);
        assert_eq!(mask(64, 128), u128::MAX << 64);
        assert_eq!(mask(128, 128), u128::MAX);
    }

    #[test]
    fn ipnet_keeps_host_bits_and_computes_network() {
        let n: IpNet = "10.1.2.3/24".parse().unwrap();
        assert_eq!(n.addr().to_string(), "10.1.2.3");
        assert_eq!(n.network().to_string(), "10.1.2.0");
        assert_eq!(n.broadcast().to_string(), "10.1.2.255");
        assert!(n.contains("10.1.2.200".parse().unwrap()));
        assert!(!n.contains("10.1.3.0".parse().unwrap()));
        assert!(!n.contains("::1".parse().unwrap()));
        let v6: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(v6.broadcast().to_string(), "2001:db8::ffff:ffff:ffff:ffff");
    }

    #[test]
    fn bad_cidrs() {
        for s in [
            "10.1.2.0",
            "10.1.2.0/33",
            "10.1.2.0/",
            "10.1.2.0/+4",
            "x/4",
            "::/129",
            "10.1.2.0/1000",
        ] {
            assert!(s.parse::<IpNet>().is_err(), "{s}");
        }
    }

    #[test]
    fn file_names_are_display() {
        let mut buf = [0u8; NAME_MAX];
        for s in [
            "0.0.0.0",
            "10.0.0.9",
            "192.168.100.255",
            "1.20.3.200",
            "::",
            "2001:db8::5",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(file_name(ip, &mut buf), s.as_bytes());
        }
        for v in (0..=u32::MAX).step_by(7_919_993) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(v));
            assert_eq!(file_name(ip, &mut buf), ip.to_string().as_bytes());
        }
    }

    #[test]
    fn go_formatting_of_v6() {
        // Go's net.IP.String() (RFC 5952): longest zero run compressed, only runs of 2 or more.
        for (i, o) in [
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            (
                "2001:0db8:0000:0000:0001:0000:0000:0001",
                "2001:db8::1:0:0:1",
            ),
            ("::ffff:10.0.0.1", "10.0.0.1"),
            ("::", "::"),
            ("fe80::1", "fe80::1"),
        ] {
            assert_eq!(parse_ip(i).unwrap().to_string(), o);
        }
    }
}

//! [`MacAddr`]: the one hardware (EUI-48) address type of every delegate: parsed from configs and `CNI_ARGS`,
//! written into results and records, sent to and read from the kernel.
//!
//! ```
//! use multus_core::netlink::MacAddr;
//!
//! let m: MacAddr = "02:AB:cd:00:01:ff".parse().unwrap();
//! assert_eq!(m.to_string(), "02:ab:cd:00:01:ff");
//! assert_eq!("02-ab-cd-00-01-ff".parse::<MacAddr>().unwrap(), m);
//! assert!(m.is_unicast());
//! assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:ab:cd:00:01:ff\"");
//! assert_eq!(MacAddr::from_slice(&[2, 0xab, 0xcd, 0, 1, 0xff]), Some(m));
//! ```

use std::fmt;
use std::str::FromStr;

/// A 6-byte hardware address. Parsed from six hex octets separated by `:` or `-` (one separator throughout,
/// as Go's `net.ParseMAC` takes EUI-48), written as `aa:bb:cc:dd:ee:ff`, serialized as that string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// A string that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: want six hex octets like 02:00:00:00:00:01")]
pub struct MacAddrError(pub String);

impl MacAddr {
    /// The address of a kernel attribute, when it is 6 bytes long (an Ethernet one).
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }

    /// The six octets.
    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True for the all-zero address (a VF whose admin MAC was never set reads as this).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 6]
    }

    /// True when the group bit (bit 0 of the first octet) is set.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for an address an interface can own: neither all-zero nor multicast/broadcast.
    pub fn is_unicast(&self) -> bool {
        !self.is_zero() && !self.is_multicast()
    }
}

impl FromStr for MacAddr {
    type Err = MacAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacAddrError(s.chars().take(64).collect());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(sep) {
            if n == 6 || part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(err());
            }
            out[n] = u8::from_str_radix(part, 16).map_err(|_| err())?;
            n += 1;
        }
        if n == 6 {
            Ok(MacAddr(out))
        } else {
            Err(err())
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(b: [u8; 6]) -> Self {
        MacAddr(b)
    }
}

// Serialized as `aa:bb:cc:dd:ee:ff`.
crate::serde_as_text!(MacAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_refuses() {
        let m: MacAddr = "02:AB:cd:00:01:ff".parse().unwrap();
        assert_eq!(m.0, [2, 0xab, 0xcd, 0, 1, 0xff]);
        assert_eq!("02-ab-cd-00-01-ff".parse::<MacAddr>().unwrap(), m);
        assert_eq!(
            MacAddr([2, 0xab, 0, 1, 2, 3]).to_string(),
            "02:ab:00:01:02:03"
        );
        for bad in [
            "",
            "02:ab:cd:00:01",
            "02:ab:cd:00:01:ff:00",
            "0g:ab:cd:00:01:ff",
            "2:ab:cd:00:01:ff",
            "02:00-00:00:00:01",
            "0200.0000.0001",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(MacAddr::default().is_zero() && !MacAddr::default().is_unicast());
        let bcast: MacAddr = "ff:ff:ff:ff:ff:ff".parse().unwrap();
        assert!(bcast.is_multicast() && !bcast.is_unicast());
        assert_eq!(MacAddr::from_slice(&[1, 2, 3]), None);
        let back: MacAddr = serde_json::from_str("\"02:ab:cd:00:01:ff\"").unwrap();
        assert_eq!(back, m);
        assert!(serde_json::from_str::<MacAddr>("\"x\"").is_err());
    }
}

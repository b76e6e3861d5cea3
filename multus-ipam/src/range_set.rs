//! A range set: ranges of one address family tried in order; one address is allocated per set.
//!
//! Pure: the reference's `range_set.go` and the cross-set checks of `config.go`.

use std::fmt;
use std::net::IpAddr;

use crate::ip::canonical;
use crate::range::{Range, RangeSpec};

/// A validated, non-empty list of non-overlapping ranges of one address family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

impl RangeSet {
    /// Validates the ranges of one set (the reference's `RangeSet.Canonicalize`).
    pub fn new(specs: &[RangeSpec]) -> Result<RangeSet, String> {
        if specs.is_empty() {
            return Err("empty range set".into());
        }
        let mut ranges = Vec::with_capacity(specs.len());
        for s in specs {
            let r = Range::new(s)?;
            if let Some(first) = ranges.first() {
                let first: &Range = first;
                if first.is_ipv4() != r.is_ipv4() {
                    return Err("mixed address families".into());
                }
            }
            ranges.push(r);
        }
        for (i, a) in ranges.iter().enumerate() {
            for b in &ranges[i + 1..] {
                if a.overlaps(b) {
                    return Err(format!("subnets {a} and {b} overlap"));
                }
            }
        }
        Ok(RangeSet { ranges })
    }

    /// The ranges, in order.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Whether the set holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(Range::is_ipv4)
    }

    /// The range holding `ip`, if any.
    pub fn range_for(&self, ip: IpAddr) -> Option<&Range> {
        let ip = canonical(ip);
        self.ranges.iter().find(|r| r.contains(ip))
    }

    /// Whether any range holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    /// Whether any range of `self` overlaps any range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|a| other.ranges.iter().any(|b| a.overlaps(b)))
    }
}

impl fmt::Display for RangeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// Validates a list of range sets as the reference's `LoadIPAMConfig` does: each set is valid, at
/// least one set, at most one set per family unless `cni_version` is 0.3.0 or newer (`None` means
/// a current version), no two sets overlap.
pub fn validate_sets(
    specs: &[Vec<RangeSpec>],
    cni_version: Option<&str>,
) -> Result<Vec<RangeSet>, crate::IpamError> {
    use crate::IpamError;
    if specs.is_empty() {
        return Err(IpamError::InvalidConfig("no IP ranges specified".into()));
    }
    let mut sets = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let set = RangeSet::new(s)
            .map_err(|e| IpamError::InvalidConfig(format!("invalid range set {i}: {e}")))?;
        sets.push(set);
    }
    let v4 = sets.iter().filter(|s| s.is_ipv4()).count();
    let v6 = sets.len() - v4;
    if (v4 > 1 || v6 > 1) && !version_at_least_030(cni_version) {
        return Err(IpamError::IncompatibleVersion(format!(
            "CNI version {} does not support more than 1 address per family",
            cni_version.unwrap_or("")
        )));
    }
    for i in 0..sets.len() {
        for j in i + 1..sets.len() {
            if sets[i].overlaps(&sets[j]) {
                return Err(IpamError::InvalidConfig(format!(
                    "range set {i} overlaps with {j}"
                )));
            }
        }
    }
    Ok(sets)
}

/// Whether a CNI version string is 0.3.0 or newer; an empty or unparsable version is older
/// (Go's `version.GreaterThanOrEqualTo` fails on it), `None` is current.
fn version_at_least_030(v: Option<&str>) -> bool {
    let Some(v) = v else { return true };
    let parts: Vec<Option<u64>> = v.split('.').map(|p| p.parse().ok()).collect();
    match parts.as_slice() {
        [Some(a), Some(b), Some(_)] => (*a, *b) >= (0, 3),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(s: &str) -> RangeSpec {
        RangeSpec::subnet(s.parse().unwrap())
    }

    #[test]
    fn set_validation() {
        assert_eq!(RangeSet::new(&[]).unwrap_err(), "empty range set");
        assert_eq!(
            RangeSet::new(&[sub("10.0.0.0/24"), sub("2001:db8::/64")]).unwrap_err(),
            "mixed address families"
        );
        assert_eq!(
            RangeSet::new(&[sub("10.0.0.0/24"), sub("10.0.0.0/16")]).unwrap_err(),
            "subnets 10.0.0.1-10.0.0.254 and 10.0.0.1-10.0.255.254 overlap"
        );
        let s = RangeSet::new(&[sub("10.0.0.0/24"), sub("10.0.1.0/24")]).unwrap();
        assert_eq!(s.to_string(), "10.0.0.1-10.0.0.254,10.0.1.1-10.0.1.254");
        assert!(s.contains("10.0.1.7".parse().unwrap()));
        assert!(!s.contains("10.0.2.7".parse().unwrap()));
    }

    #[test]
    fn sets_validation() {
        let e =
            validate_sets(&[vec![sub("10.0.0.0/24")], vec![sub("10.0.0.0/25")]], None).unwrap_err();
        assert_eq!(e.to_string(), "range set 0 overlaps with 1");
        assert_eq!(multus_core::cni::ErrorCode::from(&e).code(), 7);
        let e = validate_sets(
            &[vec![sub("10.0.0.0/24")], vec![sub("10.0.1.0/24")]],
            Some("0.2.0"),
        )
        .unwrap_err();
        assert_eq!(multus_core::cni::ErrorCode::from(&e).code(), 1);
        assert!(validate_sets(
            &[vec![sub("10.0.0.0/24")], vec![sub("10.0.1.0/24")]],
            Some("1.0.0")
        )
        .is_ok());
        assert!(validate_sets(
            &[vec![sub("10.0.0.0/24")], vec![sub("2001:db8::/64")]],
            Some("0.2.0")
        )
        .is_ok());
        assert_eq!(
            validate_sets(&[], None).unwrap_err().to_string(),
            "no IP ranges specified"
        );
        assert_eq!(
            validate_sets(&[vec![sub("10.0.0.0/24")], vec![]], None)
                .unwrap_err()
                .to_string(),
            "invalid range set 1: empty range set"
        );
    }
}

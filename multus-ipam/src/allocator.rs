//! Allocation in the reference order, over any [`Store`].
//!
//! Each range set is walked from the address after the last one reserved in it (the
//! `last_reserved_ip.<index>` record), through the following ranges, wrapping around, skipping
//! gateways, and stopping when the walk comes back to where it started. The walk itself is pure
//! ([`Candidates`]); each candidate costs one lookup in the store's index, and only a free one
//! costs a file creation, so the cost of an allocation does not grow with how full the range is
//! (only with the length of the run of reserved addresses after the last reserved one).

use std::net::IpAddr;

use crate::ip::{canonical, from_u128, parse_ip, to_u128, IpNet};
use crate::range_set::RangeSet;
use crate::result::IpConfig;
use crate::store::{check_attachment, Held, Store};
use crate::{IpamError, Result};

/// The reference plugin's `RangeIter`: candidate addresses of a range set, in order.
#[derive(Clone, Debug)]
pub struct Candidates<'a> {
    set: &'a RangeSet,
    idx: usize,
    cur: Option<u128>,
    start: Option<u128>,
    done: bool,
}

impl<'a> Candidates<'a> {
    /// Starts after `last_reserved` if a range of the set holds it, else at the first range's start.
    pub fn new(set: &'a RangeSet, last_reserved: Option<IpAddr>) -> Self {
        let mut it = Candidates {
            set,
            idx: 0,
            cur: None,
            start: None,
            done: set.ranges().is_empty(),
        };
        if let Some(last) = last_reserved.map(canonical) {
            if let Some(i) = set.ranges().iter().position(|r| r.contains(last)) {
                it.idx = i;
                it.cur = Some(to_u128(last));
            }
        }
        if it.cur.is_none() {
            it.start = set.ranges().first().map(|r| r.start_u());
        }
        it
    }
}

impl Iterator for Candidates<'_> {
    /// (index of the range in the set, address)
    type Item = (usize, IpAddr);

    fn next(&mut self) -> Option<Self::Item> {
        let ranges = self.set.ranges();
        let n = ranges.len();
        while !self.done {
            let mut r = ranges.get(self.idx)?;
            let cur = match self.cur {
                None => {
                    // First step when not resuming: the range's start is inclusive.
                    let c = r.start_u();
                    self.cur = Some(c);
                    self.start = Some(c);
                    if c == r.gateway_u() {
                        continue;
                    }
                    return Some((self.idx, from_u128(c, r.is_ipv4())));
                }
                Some(c) => c,
            };
            let next = if cur == r.end_u() {
                self.idx = (self.idx + 1) % n;
                r = ranges.get(self.idx)?;
                r.start_u()
            } else {
                cur + 1
            };
            self.cur = Some(next);
            match self.start {
                None => self.start = Some(next),
                Some(s) if s == next => {
                    self.done = true;
                    return None;
                }
                Some(_) => {}
            }
            if next == r.gateway_u() {
                continue;
            }
            return Some((self.idx, from_u128(next, r.is_ipv4())));
        }
        None
    }
}

/// Parses a last-reserved record as the reference does (`net.ParseIP` of the whole content):
/// anything else, including a trailing newline, means "none".
pub fn parse_last_reserved(content: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(content).ok().and_then(parse_ip)
}

/// Assigns each requested address to the first range set holding it, in range set order (one
/// per set); duplicates count once. Fails, before anything is reserved, with the addresses that
/// no set can take.
pub fn assign_requested(sets: &[RangeSet], requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>> {
    let mut left: Vec<IpAddr> = Vec::new();
    for ip in requested.iter().map(|i| canonical(*i)) {
        if !left.contains(&ip) {
            left.push(ip);
        }
    }
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        match left.iter().position(|ip| set.contains(*ip)) {
            Some(i) => out.push(Some(left.remove(i))),
            None => out.push(None),
        }
    }
    if left.is_empty() {
        Ok(out)
    } else {
        Err(IpamError::RequestedOutside(left))
    }
}

/// Undo log of one allocation, so a failure leaves the store as it was.
#[derive(Default)]
struct Undo {
    reserved: Vec<IpAddr>,
    last: Vec<(usize, Option<Vec<u8>>)>,
}

impl Undo {
    fn note_last(&mut self, set: usize, prev: Option<Vec<u8>>) {
        if !self.last.iter().any(|(s, _)| *s == set) {
            self.last.push((set, prev));
        }
    }

    fn roll_back<S: Store>(self, store: &mut S) {
        for ip in self.reserved.into_iter().rev() {
            if let Err(e) = store.release(ip) {
                tracing::error!(%ip, error = %e, "rolling back a reservation");
            }
        }
        for (set, prev) in self.last.into_iter().rev() {
            if let Err(e) = store.set_last_reserved(set, prev.as_deref()) {
                tracing::error!(set, error = %e, "restoring last_reserved_ip");
            }
        }
    }
}

fn config_for(set: &RangeSet, ip: IpAddr) -> Option<IpConfig> {
    let r = set.range_for(ip)?;
    Some(IpConfig {
        address: IpNet::new(ip, r.subnet().prefix())?,
        gateway: Some(r.gateway()),
    })
}

fn allocate_one<S: Store>(
    store: &mut S,
    undo: &mut Undo,
    index: usize,
    set: &RangeSet,
    container_id: &str,
    ifname: &str,
    requested: Option<IpAddr>,
) -> Result<IpConfig> {
    if let Some(ip) = requested {
        let Some(r) = set.range_for(ip) else {
            return Err(IpamError::RequestedOutside(vec![ip]));
        };
        if ip == r.gateway() {
            return Err(IpamError::RequestedGateway { index, ip });
        }
        // A requested orphan is taken (see [`crate::store`]): the reference would refuse it.
        let got = store.reserve(ip, container_id, ifname)?
            || (store.reclaim(ip)? && store.reserve(ip, container_id, ifname)?);
        if !got {
            return Err(IpamError::RequestedTaken {
                index,
                ip,
                ranges: set.to_string(),
            });
        }
        undo.reserved.push(ip);
        let prev = store.last_reserved(index)?;
        undo.note_last(index, prev);
        store.set_last_reserved(index, Some(ip.to_string().as_bytes()))?;
        return config_for(set, ip).ok_or(IpamError::RequestedOutside(vec![ip]));
    }

    let held = store.held_by(container_id, ifname)?;
    if let Some(ip) = held
        .exact
        .iter()
        .chain(held.legacy.iter())
        .find(|ip| set.contains(**ip))
    {
        return Err(IpamError::DuplicateAllocation {
            index,
            ip: *ip,
            container_id: container_id.to_string(),
        });
    }
    let raw = store.last_reserved(index)?;
    let last = raw.as_deref().and_then(parse_last_reserved);
    if raw.is_some() && last.is_none() {
        tracing::warn!(index, "ignoring an unparsable last_reserved_ip record");
    }
    // The reference's walk; only when it finds no free address, the same walk again taking the
    // first orphan (see [`crate::store`]): as long as an address is free, the choice is the
    // reference's, and a lookup per candidate is all it costs.
    let mut found = first(store, set, last, |s, ip| {
        s.reserve(ip, container_id, ifname)
    })?;
    if found.is_none() {
        found = first(store, set, last, |s, ip| {
            Ok(s.reclaim(ip)? && s.reserve(ip, container_id, ifname)?)
        })?;
    }
    let exhausted = || IpamError::Exhausted {
        index,
        ranges: set.to_string(),
    };
    let ip = found.ok_or_else(exhausted)?;
    undo.reserved.push(ip);
    undo.note_last(index, raw);
    store.set_last_reserved(index, Some(ip.to_string().as_bytes()))?;
    config_for(set, ip).ok_or_else(exhausted)
}

/// The first candidate of `set` (walking on from `last`) for which `take` succeeds.
fn first<S: Store>(
    store: &mut S,
    set: &RangeSet,
    last: Option<IpAddr>,
    mut take: impl FnMut(&mut S, IpAddr) -> Result<bool>,
) -> Result<Option<IpAddr>> {
    for (_, ip) in Candidates::new(set, last) {
        if take(store, ip)? {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// Allocates one address per range set for an attachment, honouring requested addresses.
///
/// All or nothing: on any error every reservation made by this call is released and the
/// last-reserved records are restored. The caller holds the store's lock for the whole call.
pub fn allocate<S: Store>(
    store: &mut S,
    sets: &[RangeSet],
    container_id: &str,
    ifname: &str,
    requested: &[IpAddr],
) -> Result<Vec<IpConfig>> {
    check_attachment(container_id, ifname)?;
    let wanted = assign_requested(sets, requested)?;
    let mut undo = Undo::default();
    let mut out = Vec::with_capacity(sets.len());
    for (index, (set, req)) in sets.iter().zip(wanted).enumerate() {
        match allocate_one(store, &mut undo, index, set, container_id, ifname, req) {
            Ok(c) => out.push(c),
            Err(e) => {
                undo.roll_back(store);
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// What an attachment holds. An attachment holds one address per range set (`range_sets`) after
/// a successful ADD; when the store finds fewer, its answer may be short (a file rewritten in place
/// for this attachment, which the index cannot point at), so the store verifies every file and is
/// asked again. More than that is never looked for: see "Files rewritten in place" in
/// [`crate::index`].
pub fn held<S: Store>(
    store: &mut S,
    container_id: &str,
    ifname: &str,
    range_sets: usize,
) -> Result<Held> {
    check_attachment(container_id, ifname)?;
    let held = store.held_by(container_id, ifname)?;
    if held.len() >= range_sets || !store.verify()? {
        return Ok(held);
    }
    store.held_by(container_id, ifname)
}

/// Releases every address held by an attachment (files of the current format; if there are
/// none, files of the legacy format naming only the container ID), found as [`held`] does.
/// Idempotent.
pub fn release<S: Store>(
    store: &mut S,
    container_id: &str,
    ifname: &str,
    range_sets: usize,
) -> Result<Vec<IpAddr>> {
    let held = held(store, container_id, ifname, range_sets)?;
    let ips = if held.exact.is_empty() {
        held.legacy
    } else {
        held.exact
    };
    let mut released = Vec::with_capacity(ips.len());
    for ip in ips {
        if store.release(ip)? {
            released.push(ip);
        }
    }
    Ok(released)
}

/// Whether range set `set` has at least one address an ADD would get: a free one, or else an
/// orphan (see [`crate::store`]).
pub fn has_free<S: Store>(store: &mut S, set: &RangeSet) -> Result<bool> {
    Ok(
        first(store, set, None, |s, ip| Ok(!s.is_reserved(ip)?))?.is_some()
            || first(store, set, None, |s, ip| s.is_orphan(ip))?.is_some(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;

    type Spec<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>);

    fn set(specs: &[Spec<'_>]) -> RangeSet {
        let specs: Vec<RangeSpec> = specs
            .iter()
            .map(|(s, a, b, g)| RangeSpec {
                subnet: Some(s.parse().unwrap()),
                range_start: a.map(|x| x.parse().unwrap()),
                range_end: b.map(|x| x.parse().unwrap()),
                gateway: g.map(|x| x.parse().unwrap()),
            })
            .collect();
        RangeSet::new(&specs).unwrap()
    }

    fn walk(s: &RangeSet, last: Option<&str>) -> Vec<String> {
        Candidates::new(s, last.map(|x| x.parse().unwrap()))
            .map(|(_, ip)| ip.to_string())
            .collect()
    }

    #[test]
    fn fresh_walk_skips_gateway() {
        let s = set(&[("10.0.0.0/29", None, None, None)]);
        assert_eq!(
            walk(&s, None),
            ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
        );
    }

    #[test]
    fn resumes_after_last_and_wraps_last_is_tried_last() {
        let s = set(&[("10.0.0.0/29", None, None, None)]);
        assert_eq!(
            walk(&s, Some("10.0.0.4")),
            ["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
        );
        // Not in the set: start from the beginning.
        assert_eq!(walk(&s, Some("10.9.0.4")).len(), 5);
    }

    #[test]
    fn walks_across_ranges() {
        let s = set(&[
            ("10.0.0.0/29", Some("10.0.0.5"), None, None),
            ("10.0.1.0/29", None, Some("10.0.1.3"), Some("10.0.1.3")),
        ]);
        assert_eq!(
            walk(&s, None),
            ["10.0.0.5", "10.0.0.6", "10.0.1.1", "10.0.1.2"]
        );
        assert_eq!(
            walk(&s, Some("10.0.0.6")),
            ["10.0.1.1", "10.0.1.2", "10.0.0.5", "10.0.0.6"]
        );
    }

    #[test]
    fn gateway_only_range_terminates() {
        let s = set(&[("10.0.0.0/29", Some("10.0.0.1"), Some("10.0.0.1"), None)]);
        assert!(walk(&s, None).is_empty());
    }

    #[test]
    fn v6_walk() {
        let s = set(&[("2001:db8::/126", None, None, None)]);
        assert_eq!(walk(&s, None), ["2001:db8::2", "2001:db8::3"]);
    }

    #[test]
    fn requested_assignment() {
        let a = set(&[("10.0.0.0/24", None, None, None)]);
        let b = set(&[("2001:db8::/64", None, None, None)]);
        let sets = [a, b];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            assign_requested(&sets, &[ip("2001:db8::5"), ip("10.0.0.5"), ip("10.0.0.5")]).unwrap(),
            [Some(ip("10.0.0.5")), Some(ip("2001:db8::5"))]
        );
        let e =
            assign_requested(&sets, &[ip("10.0.0.5"), ip("10.0.0.6"), ip("10.9.0.1")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to allocate all requested IPs: 10.0.0.6 10.9.0.1"
        );
        assert_eq!(multus_core::cni::ErrorCode::from(&e).code(), 108);
    }

    #[test]
    fn last_reserved_parsing() {
        assert_eq!(
            parse_last_reserved(b"10.0.0.1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse_last_reserved(b"10.0.0.1\n"), None);
        assert_eq!(parse_last_reserved(b""), None);
        assert_eq!(parse_last_reserved(b"\xff"), None);
    }
}

//! The sections of a snapshot before they are laid out in pages ([`Columns`]): built from a list of
//! entries (after a scan), or merged from the previous snapshot and the changes since (a
//! compaction, in one linear pass).

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use super::codec::{le, Reader};
use super::layout::{Layout, KEY_LEN, PAGE_U};
use super::stamp::{Entry, ENTRY_LEN};
use super::{Corrupt, Key};

/// The sections of a snapshot, little-endian, before layout.
#[derive(Debug, Default)]
pub(crate) struct Columns {
    /// Sorted IPv4 addresses, 4 bytes each.
    pub v4: Vec<u8>,
    /// Sorted IPv6 addresses, 16 bytes each.
    pub v6: Vec<u8>,
    /// File stamps by entry (IPv4 then IPv6), [`ENTRY_LEN`] bytes each.
    pub cold: Vec<u8>,
    /// (holder hash, entry) sorted.
    pub keys: Vec<(u32, u32)>,
}

/// The sections of a snapshot image, as slices of it.
struct Sections<'a> {
    v4: &'a [u8],
    v6: &'a [u8],
    cold: &'a [u8],
    keys: &'a [u8],
}

/// One address family of the base snapshot.
struct Family<'a> {
    v6: bool,
    /// Its sorted addresses.
    addrs: &'a [u8],
    /// Their stamps.
    cold: &'a [u8],
    /// The entry number of its first address.
    first: usize,
}

impl<'a> Sections<'a> {
    fn of(image: &'a [u8], layout: &Layout) -> Result<Sections<'a>, Corrupt> {
        let sec = |start: u64, len: u64| -> Result<&[u8], Corrupt> {
            let at = usize::try_from(start * PAGE_U).map_err(|_| Corrupt)?;
            let len = usize::try_from(len).map_err(|_| Corrupt)?;
            image
                .get(at..at.checked_add(len).ok_or(Corrupt)?)
                .ok_or(Corrupt)
        };
        let (n4, n6) = (layout.n4, layout.n6);
        Ok(Sections {
            v4: sec(layout.v4_start(), n4 * 4)?,
            v6: sec(layout.v6_start(), n6 * 16)?,
            cold: sec(layout.cold_start(), (n4 + n6) * ENTRY_LEN as u64)?,
            keys: sec(layout.keys_start(), layout.nkeys * KEY_LEN as u64)?,
        })
    }
}

impl Columns {
    /// From entries sorted by address (V4 before V6).
    pub fn from_entries(entries: &[(IpAddr, Entry)]) -> io::Result<Columns> {
        let mut c = Columns::default();
        let mut seen_v6 = false;
        for (idx, (ip, e)) in entries.iter().enumerate() {
            match ip {
                IpAddr::V4(v4) if !seen_v6 => c.v4.extend_from_slice(&u32::from(*v4).to_le_bytes()),
                IpAddr::V6(v6) => {
                    seen_v6 = true;
                    c.v6.extend_from_slice(&u128::from(*v6).to_le_bytes());
                }
                IpAddr::V4(_) => return Err(io::Error::other("index entries not sorted")),
            }
            e.encode(&mut c.cold);
            if e.key != 0 {
                c.keys
                    .push((e.key, u32::try_from(idx).map_err(io::Error::other)?));
            }
        }
        c.keys.sort_unstable();
        Ok(c)
    }

    /// The base snapshot (whole, in memory) with `overlay` applied, in one linear pass: entries
    /// keep their order, so the base's (hash, entry) pairs stay sorted once renumbered, and only
    /// the overlay's few new pairs need sorting.
    pub fn merge(
        image: &[u8],
        layout: &Layout,
        overlay: &BTreeMap<Key, Option<Entry>>,
    ) -> Result<Columns, Corrupt> {
        let s = Sections::of(image, layout)?;
        let mut c = Columns {
            v4: Vec::with_capacity(s.v4.len() + overlay.len() * 4),
            v6: Vec::with_capacity(s.v6.len()),
            cold: Vec::with_capacity(s.cold.len() + overlay.len() * ENTRY_LEN),
            keys: Vec::with_capacity(s.keys.len() / KEY_LEN + overlay.len()),
        };
        let total = usize::try_from(layout.n4 + layout.n6).map_err(|_| Corrupt)?;
        // Old entry -> new entry, u32::MAX if dropped or replaced.
        let mut renumber = vec![u32::MAX; total];
        let mut added: Vec<(u32, u32)> = Vec::new();
        let v6_from = Key { v6: true, value: 0 };
        let (over4, over6) = (overlay.range(..v6_from), overlay.range(v6_from..));
        let n4 = usize::try_from(layout.n4).map_err(|_| Corrupt)?;
        let split = n4.checked_mul(ENTRY_LEN).ok_or(Corrupt)?;
        let (cold4, cold6) = (s.cold.get(..split), s.cold.get(split..));
        let v4 = Family {
            v6: false,
            addrs: s.v4,
            cold: cold4.ok_or(Corrupt)?,
            first: 0,
        };
        c.merge_family(v4, over4, &mut renumber, &mut added)?;
        let v6 = Family {
            v6: true,
            addrs: s.v6,
            cold: cold6.ok_or(Corrupt)?,
            first: n4,
        };
        c.merge_family(v6, over6, &mut renumber, &mut added)?;
        c.merge_keys(s.keys, &renumber, added)?;
        Ok(c)
    }

    /// Appends an entry (its address and stamp bytes); returns its number.
    fn push(&mut self, v6: bool, ip: &[u8], entry: &[u8]) -> u32 {
        if v6 {
            self.v6.extend_from_slice(ip);
        } else {
            self.v4.extend_from_slice(ip);
        }
        self.cold.extend_from_slice(entry);
        (self.cold.len() / ENTRY_LEN - 1) as u32
    }

    /// Merges one family of the base with that family's changes, in address order.
    fn merge_family<'o>(
        &mut self,
        Family {
            v6,
            addrs: sec,
            cold,
            first,
        }: Family<'_>,
        overlay: impl Iterator<Item = (&'o Key, &'o Option<Entry>)>,
        renumber: &mut [u32],
        added: &mut Vec<(u32, u32)>,
    ) -> Result<(), Corrupt> {
        let mut over = overlay.peekable();
        let width = if v6 { 16 } else { 4 };
        let value = |i: usize| -> Result<u128, Corrupt> {
            let v = if v6 {
                le::<u128>(sec, i * 16)
            } else {
                le::<u32>(sec, i * 4).map(u128::from)
            };
            v.ok_or(Corrupt)
        };
        let (n, mut i) = (sec.len() / width, 0usize);
        let mut scratch = Vec::with_capacity(ENTRY_LEN);
        loop {
            let b = if i < n { Some(value(i)?) } else { None };
            let o = over.peek().map(|(k, _)| k.value);
            let take_base = match (b, o) {
                (None, None) => return Ok(()),
                (Some(bv), Some(ov)) => bv < ov,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_base {
                let e = cold
                    .get(i * ENTRY_LEN..(i + 1) * ENTRY_LEN)
                    .ok_or(Corrupt)?;
                let slot = renumber.get_mut(first + i).ok_or(Corrupt)?;
                *slot = self.push(v6, &sec[i * width..(i + 1) * width], e);
                i += 1;
                continue;
            }
            if b.is_some() && b == o {
                i += 1; // replaced or removed by the overlay
            }
            if let Some((k, Some(e))) = over.next() {
                scratch.clear();
                e.encode(&mut scratch);
                let bytes = k.value.to_le_bytes();
                let idx = self.push(v6, &bytes[..width], &scratch);
                if e.key != 0 {
                    added.push((e.key, idx));
                }
            }
        }
    }

    /// The base's (hash, entry) pairs renumbered (dropping those of replaced or removed entries)
    /// and merged with the pairs `added` by the overlay.
    fn merge_keys(
        &mut self,
        keys: &[u8],
        renumber: &[u32],
        mut added: Vec<(u32, u32)>,
    ) -> Result<(), Corrupt> {
        added.sort_unstable();
        let mut added = added.into_iter().peekable();
        for k in keys.chunks_exact(KEY_LEN) {
            let mut r = Reader::new(k);
            let (key, old) = (
                r.get::<u32>().ok_or(Corrupt)?,
                r.get::<u32>().ok_or(Corrupt)?,
            );
            let new = *renumber.get(old as usize).ok_or(Corrupt)?;
            if new == u32::MAX {
                continue;
            }
            while let Some(a) = added.next_if(|a| *a < (key, new)) {
                self.keys.push(a);
            }
            self.keys.push((key, new));
        }
        self.keys.extend(added);
        Ok(())
    }
}

//! Where everything sits in a snapshot: the header page, the page layout derived from its counts
//! ([`Layout`]) and the fences that point a lookup at one page ([`Fences`]).
//!
//! A snapshot is 4 KiB pages: the header (page 0: magic, version, page size, a random nonce, the
//! counts, the directory stamp, the checksums of the page-checksum table and of the fences, the
//! network name, and the header's own checksum in its last 8 bytes), then sections of fixed-size
//! little-endian records, each starting on a page: the IPv4 addresses (sorted `u32`), the IPv6
//! addresses (sorted `u128`), the holder hashes (sorted `(hash, entry)` pairs) and the file stamps
//! (by entry); then one 64-bit checksum per data page, and the fences (the first element of every
//! page of the three sorted sections). The journal follows the last page ([`super::journal`]).

use super::codec::{le, sum64, Le, Reader};
use super::stamp::{Stamp, ENTRY_LEN};

/// The page size of a snapshot.
pub(crate) const PAGE: usize = 4096;
/// [`PAGE`] as a file offset.
pub(crate) const PAGE_U: u64 = PAGE as u64;
/// Bytes of one `(hash, entry)` pair of the holder-hash section.
pub(crate) const KEY_LEN: usize = 8;
/// Seed of the checksum of the page-checksum table.
pub(crate) const SUMS_SEED: u64 = 0x7375_6d73_2d74_6162;
/// Seed of the checksum of the fences.
pub(crate) const FENCES_SEED: u64 = 0x6665_6e63_6573_2d31;

const MAGIC: &[u8; 8] = b"MLTSHLIX";
const VERSION: u32 = 1;
const HEADER_SEED: u64 = 0x6865_6164_6572_2d31;

/// Page layout of a snapshot, derived from its counts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// IPv4 addresses.
    pub n4: u64,
    /// IPv6 addresses.
    pub n6: u64,
    /// `(hash, entry)` pairs (entries with a holder key).
    pub nkeys: u64,
}

fn pages(bytes: u64) -> u64 {
    bytes.div_ceil(PAGE_U)
}

impl Layout {
    pub fn v4_start(&self) -> u64 {
        1
    }
    pub fn v6_start(&self) -> u64 {
        self.v4_start() + self.v4_pages()
    }
    pub fn keys_start(&self) -> u64 {
        self.v6_start() + self.v6_pages()
    }
    pub fn cold_start(&self) -> u64 {
        self.keys_start() + self.keys_pages()
    }
    pub fn sums_start(&self) -> u64 {
        self.cold_start() + pages((self.n4 + self.n6) * ENTRY_LEN as u64)
    }
    /// Data pages: 1 .. sums_start.
    pub fn data_pages(&self) -> u64 {
        self.sums_start() - 1
    }
    pub fn fences_start(&self) -> u64 {
        self.sums_start() + pages(self.data_pages() * 8)
    }
    fn v4_pages(&self) -> u64 {
        pages(self.n4 * 4)
    }
    fn v6_pages(&self) -> u64 {
        pages(self.n6 * 16)
    }
    fn keys_pages(&self) -> u64 {
        pages(self.nkeys * KEY_LEN as u64)
    }
    /// Bytes of fences: the first element of each page of the three sorted sections.
    pub fn fences_len(&self) -> u64 {
        self.v4_pages() * 4 + self.v6_pages() * 16 + self.keys_pages() * 4
    }
    /// Where the snapshot ends (and the journal starts).
    pub fn body_end(&self) -> u64 {
        (self.fences_start() + pages(self.fences_len())) * PAGE_U
    }
}

/// The header page's content.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub nonce: u64,
    pub layout: Layout,
    /// The directory stamp the snapshot describes.
    pub stamp: Stamp,
    /// Checksum of the page-checksum table.
    pub sums_sum: u64,
    /// Checksum of the fences.
    pub fences_sum: u64,
}

impl Header {
    /// The header page of `network`'s snapshot; `None` if the name does not fit in it.
    pub fn encode(&self, network: &str) -> Option<[u8; PAGE]> {
        let mut hdr = Vec::with_capacity(PAGE);
        hdr.extend_from_slice(MAGIC);
        VERSION.put(&mut hdr);
        (PAGE as u32).put(&mut hdr);
        self.nonce.put(&mut hdr);
        for n in [self.layout.n4, self.layout.n6, self.layout.nkeys] {
            n.put(&mut hdr);
        }
        self.stamp.encode(&mut hdr);
        self.sums_sum.put(&mut hdr);
        self.fences_sum.put(&mut hdr);
        u16::try_from(network.len()).ok()?.put(&mut hdr);
        hdr.extend_from_slice(network.as_bytes());
        if hdr.len() > PAGE - 8 {
            return None;
        }
        let mut page = [0u8; PAGE];
        page[..hdr.len()].copy_from_slice(&hdr);
        let sum = sum64(HEADER_SEED, &page[..PAGE - 8]);
        page[PAGE - 8..].copy_from_slice(&sum.to_le_bytes());
        Some(page)
    }

    /// Decodes a header page; `None` unless it verifies, is of this version and names `network`.
    pub fn decode(page: &[u8], network: &str) -> Option<Header> {
        let body = page.get(..PAGE - 8)?;
        if le::<u64>(page, PAGE - 8)? != sum64(HEADER_SEED, body) {
            return None;
        }
        let mut r = Reader::new(body);
        if r.bytes(MAGIC.len())? != MAGIC
            || r.get::<u32>()? != VERSION
            || r.get::<u32>()? != PAGE as u32
        {
            return None;
        }
        let nonce = r.get()?;
        let layout = Layout {
            n4: r.get()?,
            n6: r.get()?,
            nkeys: r.get()?,
        };
        let stamp = Stamp::decode(&mut r)?;
        let (sums_sum, fences_sum) = (r.get()?, r.get()?);
        let name_len = usize::from(r.get::<u16>()?);
        if r.bytes(name_len)? != network.as_bytes() {
            return None;
        }
        Some(Header {
            nonce,
            layout,
            stamp,
            sums_sum,
            fences_sum,
        })
    }
}

/// The first element of each page of the sorted sections, in memory: a lookup reads one page.
#[derive(Debug, Default)]
pub(crate) struct Fences {
    pub v4: Vec<u32>,
    pub v6: Vec<u128>,
    pub keys: Vec<u32>,
}

impl Fences {
    /// The fences of sorted sections (`v4`, `v6`: encoded addresses, `keys`: `(hash, entry)`
    /// pairs).
    pub fn of(v4: &[u8], v6: &[u8], keys: &[(u32, u32)]) -> Fences {
        Fences {
            v4: v4.chunks(PAGE).filter_map(|p| le(p, 0)).collect(),
            v6: v6.chunks(PAGE).filter_map(|p| le(p, 0)).collect(),
            keys: keys
                .iter()
                .step_by(PAGE / KEY_LEN)
                .map(|(k, _)| *k)
                .collect(),
        }
    }

    /// Appends their encoding: the IPv4, IPv6, then hash fences.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.v4.iter().for_each(|v| v.put(out));
        self.v6.iter().for_each(|v| v.put(out));
        self.keys.iter().for_each(|v| v.put(out));
    }

    /// Decodes the fences of a snapshot laid out as `layout`.
    pub fn decode(b: &[u8], layout: &Layout) -> Option<Fences> {
        let mut r = Reader::new(b);
        let n = |pages: u64| usize::try_from(pages).ok();
        let (n4, n6, nk) = (
            n(layout.v4_pages())?,
            n(layout.v6_pages())?,
            n(layout.keys_pages())?,
        );
        Some(Fences {
            v4: (0..n4).map(|_| r.get()).collect::<Option<_>>()?,
            v6: (0..n6).map(|_| r.get()).collect::<Option<_>>()?,
            keys: (0..nk).map(|_| r.get()).collect::<Option<_>>()?,
        })
    }
}

/// The indices `[lo, hi)` of a sorted section within which the first element not less than `t`
/// lies (or is `hi`), from the section's fences (`per_page` elements per page, `n` in all).
pub(crate) fn window<T: Ord>(fences: &[T], per_page: u64, n: u64, t: &T) -> (u64, u64) {
    let below = fences.partition_point(|f| f < t) as u64;
    let upto = fences.partition_point(|f| f <= t) as u64;
    let lo = (below.saturating_sub(1) * per_page).min(n);
    let hi = (upto * per_page).clamp(lo, n);
    (lo, hi)
}

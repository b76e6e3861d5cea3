//! The index's byte-level codec: one way to read and write the little-endian integers that every
//! section, header and journal record of the index is made of ([`Le`], [`Reader`]), and the hashes
//! and checksums that guard them.
//!
//! Everything read here comes from a file that anyone could have written: a read past the end is
//! `None`, never a panic, and nothing is allocated from a length before the caller bounds it.

use crate::store::Holder;

/// A fixed-width little-endian integer, as the index stores every number.
pub(crate) trait Le: Copy + Ord {
    /// Its width in bytes.
    const LEN: usize;
    /// Decodes the first [`Le::LEN`] bytes of `b` (`None` if `b` is shorter).
    fn read(b: &[u8]) -> Option<Self>;
    /// Appends its encoding to `out`.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const LEN: usize = std::mem::size_of::<$t>();
            fn read(b: &[u8]) -> Option<Self> {
                b.get(..Self::LEN)?.try_into().ok().map(<$t>::from_le_bytes)
            }
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

le_int!(u8, u16, u32, u64, u128);

/// The integer at byte `at` of `b`, `None` past the end.
pub(crate) fn le<T: Le>(b: &[u8], at: usize) -> Option<T> {
    T::read(b.get(at..)?)
}

/// A cursor over bytes: each read takes the next bytes, `None` once past the end (and then the
/// cursor is of no further use).
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        Reader { b, at: 0 }
    }

    /// The next integer.
    pub fn get<T: Le>(&mut self) -> Option<T> {
        let v = le(self.b, self.at)?;
        self.at += T::LEN;
        Some(v)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    /// Where the cursor is.
    pub fn pos(&self) -> usize {
        self.at
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.at == self.b.len()
    }
}

/// A bijective 64-bit mixer (splitmix64's finaliser).
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-bit checksum: each 8-byte word goes through a bijection of the state, so any change
/// confined to one word always changes the result; other changes do with probability 1 - 2^-64.
pub(crate) fn sum64(seed: u64, data: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let mut h = mix(seed ^ (data.len() as u64).wrapping_mul(K));
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        h = step(h, le::<u64>(c, 0).unwrap_or(0));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(w));
    }
    mix(h)
}

const KEY_SEED: u64 = 0x686f_6c64_6572_2d6b;

/// The hash of a holder key kept in the index: never 0 (0 means "no key").
pub(crate) fn key_hash(key: &str) -> u32 {
    ((sum64(KEY_SEED, key.as_bytes()) >> 32) as u32) | 1
}

/// The index hash of a holder (0 for one without a key, [`Holder::Unknown`]).
pub(crate) fn holder_hash(h: &Holder) -> u32 {
    h.key().map(|k| key_hash(&k)).unwrap_or(0)
}

/// The checksum seed of data page `page` of the snapshot with `nonce`.
pub(crate) fn page_seed(nonce: u64, page: u64) -> u64 {
    nonce ^ mix(page.wrapping_add(1))
}

/// A value that differs between snapshots (time, process, counter): it seeds every checksum, so
/// a page or record copied from another snapshot does not verify.
pub(crate) fn nonce() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    mix(t ^ (u64::from(std::process::id()) << 40) ^ mix(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_detects_single_word_changes() {
        let data = vec![7u8; 4096];
        let s = sum64(1, &data);
        for i in (0..4096).step_by(97) {
            let mut d = data.clone();
            d[i] ^= 0x10;
            assert_ne!(sum64(1, &d), s, "{i}");
        }
        assert_ne!(sum64(2, &data), s);
        assert_ne!(sum64(1, &vec![0u8; 4096]), sum64(1, &vec![0u8; 4095]));
    }

    #[test]
    fn reads_stop_at_the_end() {
        let mut out = Vec::new();
        7u32.put(&mut out);
        u128::MAX.put(&mut out);
        let mut r = Reader::new(&out);
        assert_eq!(r.get::<u32>(), Some(7));
        assert_eq!(r.bytes(3).map(<[u8]>::len), Some(3));
        assert!(r.get::<u128>().is_none());
        assert_eq!(le::<u128>(&out, 4), Some(u128::MAX));
        assert_eq!(le::<u64>(&out, 13), None);
        assert_eq!(le::<u64>(&out, usize::MAX), None);
        assert!(Reader::new(&out).bytes(usize::MAX).is_none());
    }
}

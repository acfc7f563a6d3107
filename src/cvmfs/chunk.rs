//! Content-defined chunking of large files with upstream's default xor32
//! detector (cvmfs-format.md section 7), so a change inside a big file
//! re-uploads only the chunks around it.

use std::ops::Range;

/// Files larger than this are chunked; it is also the minimal chunk size.
pub const MIN: usize = 4 << 20;
/// Upstream's average chunk size: sets the cut probability.
pub const AVG: usize = 8 << 20;
/// A cut is forced after this many bytes.
pub const MAX: usize = 16 << 20;

/// Bytes that influence the rolling hash (it shifts one bit per byte).
const WINDOW: usize = 32;
const MAGIC: i32 = 0x7fff_ffff;

/// Whether a file of `size` bytes is stored as chunks.
pub fn is_chunked(size: u64) -> bool {
    size > MIN as u64
}

/// The chunk boundaries of `data`: contiguous ranges covering it.
pub fn cuts(data: &[u8]) -> Vec<Range<usize>> {
    let threshold = u32::MAX / AVG as u32;
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        let end = next_cut(data, start, threshold);
        out.push(start..end);
        start = end;
    }
    out
}

fn next_cut(data: &[u8], start: usize, threshold: u32) -> usize {
    let first_check = start + MIN;
    if first_check >= data.len() {
        return data.len();
    }
    let limit = (start + MAX).min(data.len());
    let mut x: u32 = 0;
    for &b in &data[first_check - WINDOW..first_check] {
        x = (x << 1) ^ b as u32;
    }
    for (i, &b) in data[first_check..limit].iter().enumerate() {
        x = (x << 1) ^ b as u32;
        if (x as i32).wrapping_sub(MAGIC).unsigned_abs() < threshold {
            return first_check + i + 1;
        }
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_cover_the_file_within_bounds_and_are_content_defined() {
        // Pseudo-random bytes (xorshift) so cut marks occur.
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..40 << 20)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        let c = cuts(&data);
        assert_eq!(c.first().unwrap().start, 0);
        assert_eq!(c.last().unwrap().end, data.len());
        for w in c.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        for r in &c[..c.len() - 1] {
            assert!(r.len() > MIN && r.len() <= MAX, "{r:?}");
        }
        // A change near the end leaves every earlier cut where it was.
        let mut changed = data.clone();
        *changed.last_mut().unwrap() ^= 0xff;
        let c2 = cuts(&changed);
        assert_eq!(c[..c.len() - 1], c2[..c2.len() - 1]);
    }
}

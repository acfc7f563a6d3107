//! Structural pre-validation of an RPM file's lead, signature header and
//! main header, before the bytes are handed to the `rpm` crate.
//!
//! This is pre-validation on our side, not a patch of upstream: the `rpm`
//! crate (0.30) trusts the header's own numbers. An index entry whose
//! offset lies past the end of the data store makes it slice out of
//! bounds and panic; an entry count of 0xFFFFFFFF (or an entry claiming
//! billions of integers) makes it allocate tens of gigabytes before it
//! notices the data is not there, and the process aborts. Checking every
//! number against the real file size here keeps the crate on inputs it
//! handles, whatever a mirror sends, and the checks are the ones rpm
//! itself applies (`headerVerifyInfo`, `hdrchkTags`, `hdrchkData`).

use std::io::{Read, Seek, SeekFrom};

/// rpm's own bounds on a header: at most 0xffff index entries and 256 MiB
/// of data (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX` in rpm's header.c).
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 0x0fff_ffff;
const LEAD_SIZE: u64 = 96;
const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
const HEADER_MAGIC: [u8; 3] = [0x8e, 0xad, 0xe8];

/// What is wrong with the structure, naming the part of the file.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("not an RPM file (no lead magic)")]
    NotRpm,
    #[error("{part}: truncated: it needs {need} bytes from offset {at}, the file has {size}")]
    Truncated {
        part: &'static str,
        at: u64,
        need: u64,
        size: u64,
    },
    #[error("{part}: bad header magic at offset {at}")]
    Magic { part: &'static str, at: u64 },
    #[error("{part}: {count} index entries, more than rpm's limit of {MAX_ENTRIES}")]
    TooManyEntries { part: &'static str, count: u32 },
    #[error("{part}: {len} bytes of data, more than rpm's limit of {MAX_DATA}")]
    TooMuchData { part: &'static str, len: u32 },
    #[error("{part}: index entry {index} (tag {tag}): {reason}")]
    Entry {
        part: &'static str,
        index: u32,
        tag: u32,
        reason: String,
    },
}

/// Checks the lead, the signature header and the main header of `file`:
/// sizes against the file's real size, every index entry's type, offset
/// and count against its header's data store, and that string entries are
/// NUL-terminated inside it. Reads at most the two headers (bounded by
/// rpm's limits) and leaves the file position unspecified.
pub fn check<F: Read + Seek>(file: &mut F) -> Result<(), HeaderError> {
    let size = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    if size < LEAD_SIZE {
        return Err(HeaderError::NotRpm);
    }
    let mut lead = [0u8; LEAD_SIZE as usize];
    file.read_exact(&mut lead)?;
    if lead[..4] != LEAD_MAGIC {
        return Err(HeaderError::NotRpm);
    }
    let sig_end = check_header(file, "signature header", LEAD_SIZE, size)?;
    // The signature header is padded to a multiple of 8 bytes.
    let main = sig_end.div_ceil(8) * 8;
    check_header(file, "header", main, size)?;
    Ok(())
}

/// Checks one header starting at `at`; returns the offset just past it.
fn check_header<F: Read + Seek>(
    file: &mut F,
    part: &'static str,
    at: u64,
    size: u64,
) -> Result<u64, HeaderError> {
    let truncated = |need: u64| HeaderError::Truncated {
        part,
        at,
        need,
        size,
    };
    if size.saturating_sub(at) < 16 {
        return Err(truncated(16));
    }
    file.seek(SeekFrom::Start(at))?;
    let mut intro = [0u8; 16];
    file.read_exact(&mut intro)?;
    if intro[..3] != HEADER_MAGIC || intro[3] != 1 {
        return Err(HeaderError::Magic { part, at });
    }
    let count = be32(&intro[8..]);
    let data_len = be32(&intro[12..]);
    if count > MAX_ENTRIES {
        return Err(HeaderError::TooManyEntries { part, count });
    }
    if data_len > MAX_DATA {
        return Err(HeaderError::TooMuchData {
            part,
            len: data_len,
        });
    }
    let need = 16 + u64::from(count) * 16 + u64::from(data_len);
    if size - at < need {
        return Err(truncated(need));
    }
    // Both are bounded by rpm's limits above: at most 1 MiB + 256 MiB.
    let mut index = vec![0u8; count as usize * 16];
    file.read_exact(&mut index)?;
    let mut data = vec![0u8; data_len as usize];
    file.read_exact(&mut data)?;
    // Overlapping string entries could make the NUL scans quadratic; no
    // real header needs more scanning than a few times its data.
    let mut budget = 4 * u64::from(data_len) + (1 << 20);
    for (i, e) in index.chunks_exact(16).enumerate() {
        let (tag, kind, offset, n) = (be32(e), be32(&e[4..]), be32(&e[8..]), be32(&e[12..]));
        check_entry(&data, kind, offset, n, &mut budget).map_err(|reason| HeaderError::Entry {
            part,
            index: i as u32,
            tag,
            reason,
        })?;
    }
    Ok(at + need)
}

/// Checks one index entry against the data store.
fn check_entry(
    data: &[u8],
    kind: u32,
    offset: u32,
    count: u32,
    budget: &mut u64,
) -> Result<(), String> {
    let len = data.len() as u64;
    // The offset is signed in the file format; a negative one is as far
    // out of the store as one past its end.
    let signed = offset as i32;
    if signed < 0 || u64::from(offset) > len {
        return Err(format!(
            "offset {signed} is outside the {len}-byte data store"
        ));
    }
    let rest = &data[offset as usize..];
    let width: u64 = match kind {
        0 => return Ok(()), // NULL: no data
        1 | 2 | 7 => 1,     // CHAR, INT8, BIN
        3 => 2,             // INT16
        4 => 4,             // INT32
        5 => 8,             // INT64
        6 | 8 | 9 => {
            // STRING (one), STRING_ARRAY and I18NSTRING (count of them):
            // each NUL-terminated inside the store.
            let strings = if kind == 6 { 1 } else { count };
            if u64::from(strings) > rest.len() as u64 {
                return Err(format!(
                    "{strings} strings cannot fit in the {} bytes after offset {offset}",
                    rest.len()
                ));
            }
            let mut pos = 0usize;
            for k in 0..strings {
                let nul = memchr::memchr(0, &rest[pos..]).ok_or_else(|| {
                    format!(
                        "string {k} at offset {offset} is not NUL-terminated inside the data store"
                    )
                })?;
                let scanned = nul as u64 + 1;
                *budget = budget.checked_sub(scanned).ok_or_else(|| {
                    "string entries overlap far more than any real header's".to_string()
                })?;
                pos += nul + 1;
            }
            return Ok(());
        }
        other => return Err(format!("unknown data type {other}")),
    };
    let bytes = u64::from(count) * width;
    if bytes > rest.len() as u64 {
        return Err(format!(
            "{count} items of {width} bytes at offset {offset} run past the end of the {len}-byte data store"
        ));
    }
    Ok(())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed header with one entry of `kind` and `count` at offset 0.
    fn one_entry(kind: u32, count: u32, data: &[u8]) -> Result<(), String> {
        let mut budget = 1 << 20;
        check_entry(data, kind, 0, count, &mut budget)
    }

    #[test]
    fn entries_are_checked_against_the_store() {
        assert!(one_entry(4, 2, &[0; 8]).is_ok());
        assert!(one_entry(4, 3, &[0; 8]).unwrap_err().contains("run past"));
        assert!(one_entry(5, u32::MAX, &[0; 8]).is_err());
        assert!(one_entry(8, 2, b"a\0b\0").is_ok());
        assert!(one_entry(8, 3, b"a\0b\0").is_err());
        assert!(one_entry(6, 1, b"abc")
            .unwrap_err()
            .contains("not NUL-terminated"));
        assert!(one_entry(8, u32::MAX, b"a\0").is_err());
        assert!(one_entry(42, 1, b"a\0")
            .unwrap_err()
            .contains("unknown data type 42"));
        let mut budget = 100;
        assert!(check_entry(&[0; 8], 7, 9, 0, &mut budget)
            .unwrap_err()
            .contains("outside the 8-byte"));
        assert!(check_entry(&[0; 8], 7, u32::MAX, 1, &mut budget)
            .unwrap_err()
            .contains("offset -1"));
        let mut tiny = 1;
        assert!(check_entry(b"ab\0", 6, 0, 1, &mut tiny)
            .unwrap_err()
            .contains("overlap"));
    }
}

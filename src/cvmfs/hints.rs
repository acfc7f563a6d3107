//! Which objects a store blob became, remembered between publishes.
//!
//! An object's name is the SHA-1 of its *compressed* bytes, so without a
//! memo a republish has to read and compress every file of the tree again
//! just to learn the names of objects that are already there (most of the
//! time of a one-package republish). The memo maps a store blob (blake3) to
//! its object (or chunk objects) and lives with the repository's keys, not
//! in the served directory.
//!
//! It is only a hint: a hinted object is used after it is found present
//! with the right SHA-1 (the check every reused object gets); a missing one
//! makes the publisher compress the blob as if there were no hint. The file
//! ends with the blake3 of everything before it, so a damaged memo is
//! ignored as a whole rather than misread.
//!
//! Format, one line per blob, sorted: `BLAKE3 W SHA1` for a whole-file
//! object, `BLAKE3 C OFFSET:SIZE:SHA1,...` for a chunked file; then
//! `end BLAKE3-OF-THE-LINES-ABOVE`.

use super::catalog::Chunk;
pub(crate) use super::object::Stored;
use super::object::{from_hex, hex};
use super::{Error, Result};
use crate::store::Hash;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The memo of one repository.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    map: HashMap<Hash, Stored>,
}

impl Hints {
    /// The memo file of `fqrn` in `keys_dir`.
    pub fn path(keys_dir: &Path, fqrn: &str) -> PathBuf {
        keys_dir.join(format!("{fqrn}.objects"))
    }

    /// Reads the memo; a missing, unreadable or damaged file is an empty
    /// memo (the publish then compresses everything, as the first one did).
    pub fn load(path: &Path) -> Hints {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| parse(&text))
            .map(|map| Hints { map })
            .unwrap_or_default()
    }

    pub fn get(&self, blob: &Hash) -> Option<&Stored> {
        self.map.get(blob)
    }

    pub fn insert(&mut self, blob: Hash, stored: Stored) {
        self.map.insert(blob, stored);
    }

    /// Writes the memo through a temporary file renamed into place.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut keys: Vec<&Hash> = self.map.keys().collect();
        keys.sort();
        let mut text = String::new();
        for k in keys {
            let _ = match &self.map[k] {
                Stored::Whole(d) => writeln!(text, "{k} W {}", hex(d)),
                Stored::Chunks(cs) => {
                    let list: Vec<String> = cs
                        .iter()
                        .map(|c| format!("{}:{}:{}", c.offset, c.size, hex(&c.digest)))
                        .collect();
                    writeln!(text, "{k} C {}", list.join(","))
                }
            };
        }
        let sum = blake3::hash(text.as_bytes());
        let _ = writeln!(text, "end {sum}");
        let tmp = path.with_extension(format!("objects.tmp-{}", std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                }
            })
    }
}

fn parse(text: &str) -> Option<HashMap<Hash, Stored>> {
    let body_len = text.trim_end_matches('\n').rfind('\n').map_or(0, |i| i + 1);
    let (body, last) = text.split_at(body_len);
    let sum = last.trim_end().strip_prefix("end ")?;
    if blake3::hash(body.as_bytes()).to_hex().as_str() != sum {
        return None;
    }
    let mut map = HashMap::new();
    for line in body.lines() {
        let mut f = line.split(' ');
        let (blob, kind, rest) = (f.next()?, f.next()?, f.next()?);
        let stored = match kind {
            "W" => Stored::Whole(from_hex(rest)?),
            "C" => Stored::Chunks(
                rest.split(',')
                    .map(|c| {
                        let mut p = c.split(':');
                        Some(Chunk {
                            offset: p.next()?.parse().ok()?,
                            size: p.next()?.parse().ok()?,
                            digest: from_hex(p.next()?)?,
                        })
                    })
                    .collect::<Option<_>>()?,
            ),
            _ => return None,
        };
        map.insert(Hash::from_hex(blob)?, stored);
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_a_damaged_memo() {
        let dir = tempfile::tempdir().unwrap();
        let path = Hints::path(dir.path(), "t.cern.ch");
        assert!(Hints::load(&path).map.is_empty());
        let mut h = Hints::default();
        h.insert(Hash::of(b"a"), Stored::Whole([7; 20]));
        let chunks = vec![
            Chunk {
                offset: 0,
                size: 10,
                digest: [1; 20],
            },
            Chunk {
                offset: 10,
                size: 5,
                digest: [2; 20],
            },
        ];
        h.insert(Hash::of(b"b"), Stored::Chunks(chunks.clone()));
        h.save(&path).unwrap();
        let back = Hints::load(&path);
        assert_eq!(back.get(&Hash::of(b"a")), Some(&Stored::Whole([7; 20])));
        assert_eq!(back.get(&Hash::of(b"b")), Some(&Stored::Chunks(chunks)));
        assert_eq!(back.map.len(), 2);

        // One flipped digit anywhere: the whole memo is dropped.
        let text = std::fs::read_to_string(&path).unwrap();
        let i = text.find(" W ").unwrap() + 3;
        let mut bad = text.clone().into_bytes();
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        std::fs::write(&path, bad).unwrap();
        assert!(Hints::load(&path).map.is_empty());
        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        assert!(Hints::load(&path).map.is_empty());
    }
}

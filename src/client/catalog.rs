//! Reading file catalogs (cvmfs-format.md section 6): rows by the MD5 of
//! their full path, directory listings by the parent's, chunk lists and
//! nested catalog references. The catalog is an SQLite file in the cache,
//! opened read-only and immutable.
//!
//! A verified catalog can still be nonsense (a garbled publisher, a path
//! cycle): every row is checked against the path it was asked for, so a
//! row claiming to be its own ancestor is refused instead of walked.

use super::fetch::Digest;
use super::Error;
use md5::{Digest as _, Md5};
use rusqlite::{params, Connection, OpenFlags};
use std::path::Path;
use std::sync::Mutex;

pub const FLAG_DIR: u32 = 1;
pub const FLAG_NESTED_MOUNTPOINT: u32 = 2;
pub const FLAG_CHUNKED: u32 = 64;
/// Bits 8–10: content hash algorithm minus one (0 = SHA-1).
const HASH_ALGO_MASK: u32 = 7 << 8;
/// Bits 11–13: compression (0 = zlib, 1 = none).
const COMPRESSION_SHIFT: u32 = 11;

/// Longest path accepted (Linux's PATH_MAX).
pub const MAX_PATH: usize = 4096;

/// One catalog row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub hash: Option<Digest>,
    pub size: u64,
    pub mode: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub flags: u32,
    pub symlink: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    /// `(group << 32) | link count`.
    pub hardlinks: u64,
    pub xattr: Option<Vec<u8>>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.flags & FLAG_DIR != 0
    }
    pub fn is_mountpoint(&self) -> bool {
        self.flags & FLAG_NESTED_MOUNTPOINT != 0
    }
    pub fn is_chunked(&self) -> bool {
        self.flags & FLAG_CHUNKED != 0
    }
    /// Whether the content object is zlib-compressed (else stored plain).
    pub fn compressed(&self) -> bool {
        (self.flags >> COMPRESSION_SHIFT) & 7 == 0
    }
}

/// One piece of a chunked file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub offset: u64,
    pub size: u64,
    pub hash: Digest,
}

/// A reference to a nested catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nested {
    pub path: Vec<u8>,
    pub hash: String,
    pub size: u64,
}

/// An open catalog.
pub struct Catalog {
    db: Mutex<Connection>,
    /// Its mountpoint ("" for the root catalog).
    pub prefix: Vec<u8>,
    pub revision: u64,
    /// What it is, for messages: `catalog <hash>`.
    pub what: String,
}

/// The MD5 halves of a full path, as rows are keyed.
pub fn md5path(path: &[u8]) -> (i64, i64) {
    let d = Md5::digest(path);
    (
        i64::from_le_bytes(d[..8].try_into().expect("8 bytes")),
        i64::from_le_bytes(d[8..].try_into().expect("8 bytes")),
    )
}

const COLUMNS: &str =
    "name, hash, size, mode, mtime, mtimens, flags, symlink, uid, gid, hardlinks, xattr, md5path_1, md5path_2";

impl Catalog {
    /// Opens the catalog file at `path`, expected to be mounted at
    /// `prefix`.
    pub fn open(path: &Path, prefix: &[u8], what: String) -> Result<Catalog, Error> {
        let bad = |m: String| Error::Corrupt(format!("{what}: {m}"));
        let sql = |e: rusqlite::Error| bad(format!("not a CernVM-FS catalog: {e}"));
        // A URI, for `immutable` (no locking, no journal: the file never
        // changes); the few characters a URI path cannot hold are escaped.
        let escaped: String = path
            .to_string_lossy()
            .chars()
            .map(|c| match c {
                '%' => "%25".to_string(),
                '?' => "%3f".to_string(),
                '#' => "%23".to_string(),
                c => c.to_string(),
            })
            .collect();
        let uri = format!("file:{escaped}?immutable=1");
        let db = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        let prop = |k: &str| -> Result<Option<Vec<u8>>, Error> {
            db.query_row(
                "SELECT CAST(value AS BLOB) FROM properties WHERE key = ?1",
                [k],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(sql(e)),
            })
        };
        let revision = prop("revision")?
            .and_then(|v| String::from_utf8(v).ok()?.parse().ok())
            .ok_or_else(|| bad("no revision property".into()))?;
        let own_prefix = prop("root_prefix")?.unwrap_or_default();
        if own_prefix != prefix {
            return Err(bad(format!(
                "describes {:?}, but is referenced for {:?}",
                String::from_utf8_lossy(&own_prefix),
                String::from_utf8_lossy(prefix)
            )));
        }
        // The tables a reader needs, with the columns it selects.
        for q in [
            format!("SELECT {COLUMNS} FROM catalog LIMIT 0"),
            "SELECT offset, size, hash FROM chunks LIMIT 0".into(),
            "SELECT path, sha1, size FROM nested_catalogs LIMIT 0".into(),
        ] {
            db.prepare(&q).map_err(sql)?;
        }
        Ok(Catalog {
            db: Mutex::new(db),
            prefix: prefix.to_vec(),
            revision,
            what,
        })
    }

    fn bad(&self, m: String) -> Error {
        Error::Corrupt(format!("{}: {m}", self.what))
    }

    /// The row of `path`, if this catalog has it.
    pub fn lookup(&self, path: &[u8]) -> Result<Option<Entry>, Error> {
        let (a, b) = md5path(path);
        let db = self.db.lock().expect("catalog lock");
        let mut q = db
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM catalog WHERE md5path_1 = ?1 AND md5path_2 = ?2"
            ))
            .map_err(|e| self.bad(e.to_string()))?;
        let mut rows = q
            .query(params![a, b])
            .map_err(|e| self.bad(e.to_string()))?;
        let Some(r) = rows.next().map_err(|e| self.bad(e.to_string()))? else {
            return Ok(None);
        };
        let (e, _) = self.row(r)?;
        let want = path.rsplit(|c| *c == b'/').next().unwrap_or(b"");
        if e.name != want {
            return Err(self.bad(format!(
                "the row of {:?} is named {:?}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(&e.name)
            )));
        }
        Ok(Some(e))
    }

    /// The rows of directory `dir`'s entries, sorted by name. Each row's
    /// key must be the MD5 of `dir/name` (else the catalog is inconsistent
    /// or loops).
    pub fn list(&self, dir: &[u8]) -> Result<Vec<Entry>, Error> {
        let (a, b) = md5path(dir);
        let db = self.db.lock().expect("catalog lock");
        let mut q = db
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM catalog WHERE parent_1 = ?1 AND parent_2 = ?2 ORDER BY name"
            ))
            .map_err(|e| self.bad(e.to_string()))?;
        let mut rows = q
            .query(params![a, b])
            .map_err(|e| self.bad(e.to_string()))?;
        let mut out: Vec<Entry> = Vec::new();
        while let Some(r) = rows.next().map_err(|e| self.bad(e.to_string()))? {
            let (e, key) = self.row(r)?;
            if e.name.is_empty() {
                return Err(self.bad(format!(
                    "an entry of {:?} has an empty name",
                    String::from_utf8_lossy(dir)
                )));
            }
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(&e.name);
            if full.len() > MAX_PATH {
                return Err(self.bad(format!(
                    "a path longer than {MAX_PATH} bytes under {:?}",
                    String::from_utf8_lossy(dir)
                )));
            }
            if md5path(&full) != key {
                return Err(self.bad(format!(
                    "entry {:?} of {:?} is not keyed by its own path (a path cycle or a corrupt catalog)",
                    String::from_utf8_lossy(&e.name),
                    String::from_utf8_lossy(dir)
                )));
            }
            out.push(e);
        }
        // SQLite sorts TEXT by its own collation; readers want bytes.
        out.sort_by(|x, y| x.name.cmp(&y.name));
        Ok(out)
    }

    fn row(&self, r: &rusqlite::Row) -> Result<(Entry, (i64, i64)), Error> {
        let e = (|| -> rusqlite::Result<(Entry, (i64, i64))> {
            let text = |i: usize| -> rusqlite::Result<Vec<u8>> {
                Ok(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        t.to_vec()
                    }
                    _ => Vec::new(),
                })
            };
            let hash: Option<Vec<u8>> = r.get(1)?;
            Ok((
                Entry {
                    name: text(0)?,
                    hash: match hash {
                        Some(h) if h.len() == 20 => Some(h.try_into().expect("20 bytes")),
                        Some(_) => None,
                        None => None,
                    },
                    size: r.get::<_, i64>(2)? as u64,
                    mode: r.get::<_, i64>(3)? as u32,
                    mtime: r.get(4)?,
                    mtime_ns: r
                        .get::<_, Option<i64>>(5)?
                        .unwrap_or(0)
                        .clamp(0, 999_999_999) as u32,
                    flags: r.get::<_, i64>(6)? as u32,
                    symlink: text(7)?,
                    uid: r.get::<_, i64>(8)? as u32,
                    gid: r.get::<_, i64>(9)? as u32,
                    hardlinks: r.get::<_, Option<i64>>(10)?.unwrap_or(0) as u64,
                    xattr: r.get(11)?,
                },
                (r.get(12)?, r.get(13)?),
            ))
        })()
        .map_err(|e| self.bad(format!("malformed row: {e}")))?;
        let entry = &e.0;
        if entry.name.contains(&b'/')
            || entry.name.contains(&0)
            || entry.name == b"."
            || entry.name == b".."
        {
            return Err(self.bad(format!(
                "invalid entry name {:?}",
                String::from_utf8_lossy(&entry.name)
            )));
        }
        if entry.flags & HASH_ALGO_MASK != 0 {
            return Err(self.bad(format!(
                "{:?} uses a content hash other than SHA-1 (not supported)",
                String::from_utf8_lossy(&entry.name)
            )));
        }
        if entry.hash.is_none()
            && entry.mode & libc::S_IFMT == libc::S_IFREG
            && !entry.is_chunked()
            && entry.size > 0
        {
            return Err(self.bad(format!(
                "regular file {:?} has no content hash",
                String::from_utf8_lossy(&entry.name)
            )));
        }
        Ok(e)
    }

    /// The chunks of chunked file `path`, in order, checked to cover it.
    pub fn chunks(&self, path: &[u8], size: u64) -> Result<Vec<Chunk>, Error> {
        let (a, b) = md5path(path);
        let db = self.db.lock().expect("catalog lock");
        let mut q = db
            .prepare_cached(
                "SELECT offset, size, hash FROM chunks WHERE md5path_1 = ?1 AND md5path_2 = ?2 ORDER BY offset",
            )
            .map_err(|e| self.bad(e.to_string()))?;
        let chunks = q
            .query_map(params![a, b], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.bad(e.to_string()))?;
        let mut out = Vec::new();
        let mut next = 0u64;
        for (off, sz, h) in chunks {
            let hash: Digest = h
                .try_into()
                .map_err(|_| self.bad("a chunk hash is not 20 bytes".into()))?;
            if off as u64 != next || sz <= 0 {
                return Err(self.bad(format!(
                    "the chunks of {:?} do not tile the file",
                    String::from_utf8_lossy(path)
                )));
            }
            next += sz as u64;
            out.push(Chunk {
                offset: off as u64,
                size: sz as u64,
                hash,
            });
        }
        if next != size {
            return Err(self.bad(format!(
                "the chunks of {:?} cover {next} of {size} bytes",
                String::from_utf8_lossy(path)
            )));
        }
        Ok(out)
    }

    /// Every nested catalog referenced here.
    pub fn nested(&self) -> Result<Vec<Nested>, Error> {
        let db = self.db.lock().expect("catalog lock");
        let mut q = db
            .prepare_cached(
                "SELECT CAST(path AS BLOB), sha1, size FROM nested_catalogs ORDER BY path",
            )
            .map_err(|e| self.bad(e.to_string()))?;
        let rows = q
            .query_map([], |r| {
                Ok(Nested {
                    path: r.get(0)?,
                    hash: r.get(1)?,
                    size: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.bad(e.to_string()))?;
        Ok(rows)
    }

    /// Every content object this catalog references, with its suffix and
    /// whether it is compressed (for replication).
    pub fn objects(&self) -> Result<Vec<(Digest, &'static str)>, Error> {
        let db = self.db.lock().expect("catalog lock");
        let mut out = Vec::new();
        let err = |e: rusqlite::Error| self.bad(e.to_string());
        let mut q = db
            .prepare("SELECT hash FROM catalog WHERE hash IS NOT NULL")
            .map_err(err)?;
        for h in q.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(err)? {
            if let Ok(d) = Digest::try_from(h.map_err(err)?) {
                out.push((d, ""));
            }
        }
        let mut q = db.prepare("SELECT hash FROM chunks").map_err(err)?;
        for h in q.query_map([], |r| r.get::<_, Vec<u8>>(0)).map_err(err)? {
            if let Ok(d) = Digest::try_from(h.map_err(err)?) {
                out.push((d, "P"));
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// One extended attribute: name, value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// Parses the `xattr` column: version 1, count, then per attribute name
/// length, value length, name, value (one byte each for the lengths).
pub fn parse_xattrs(blob: &[u8]) -> Result<Vec<Xattr>, String> {
    let bad = || "malformed extended attribute list".to_string();
    let (&version, rest) = blob.split_first().ok_or_else(bad)?;
    if version != 1 {
        return Err(format!(
            "extended attribute list version {version} (only 1 is known)"
        ));
    }
    let (&count, mut rest) = rest.split_first().ok_or_else(bad)?;
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let [kl, vl, tail @ ..] = rest else {
            return Err(bad());
        };
        let (kl, vl) = (*kl as usize, *vl as usize);
        if tail.len() < kl + vl || kl == 0 {
            return Err(bad());
        }
        out.push((tail[..kl].to_vec(), tail[kl..kl + vl].to_vec()));
        rest = &tail[kl + vl..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5path_matches_the_publisher() {
        for p in ["", "/usr", "/usr/bin/bash"] {
            assert_eq!(md5path(p.as_bytes()), crate::cvmfs::md5path(p));
        }
    }

    #[test]
    fn xattr_blobs_round_trip() {
        let mut m = std::collections::BTreeMap::new();
        m.insert("security.capability".to_string(), vec![1, 2, 3]);
        m.insert("user.x".to_string(), b"y".to_vec());
        let blob = crate::cvmfs::xattr_blob(&m).unwrap().unwrap();
        let got = parse_xattrs(&blob).unwrap();
        assert_eq!(
            got,
            vec![
                (b"security.capability".to_vec(), vec![1, 2, 3]),
                (b"user.x".to_vec(), b"y".to_vec())
            ]
        );
        assert!(parse_xattrs(&blob[..blob.len() - 1]).is_err());
        assert!(parse_xattrs(&[2, 0]).is_err());
    }
}

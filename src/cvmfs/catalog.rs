//! File catalogs: SQLite databases, schema 2.5 revision 7
//! (cvmfs-format.md section 6). One catalog describes a subtree; nested
//! catalogs are referenced from their parent by path and hash.

pub use super::object::Chunk;
use super::object::Digest20;
use super::{Error, Result};
use md5::{Digest as _, Md5};
use rusqlite::{params, Connection};
use std::path::Path;

pub const FLAG_DIR: u32 = 1;
pub const FLAG_NESTED_MOUNTPOINT: u32 = 2;
pub const FLAG_FILE: u32 = 4;
pub const FLAG_SYMLINK: u32 = 8;
pub const FLAG_SPECIAL: u32 = 16;
pub const FLAG_NESTED_ROOT: u32 = 32;
pub const FLAG_CHUNKED: u32 = 64;

/// Default TTL of the root catalog, in seconds (upstream's).
pub const TTL: u64 = 240;

/// The exact upstream schema. Column order does not matter to readers, but
/// names, types and keys do.
const SCHEMA: &str = "
CREATE TABLE catalog (md5path_1 INTEGER, md5path_2 INTEGER, parent_1 INTEGER, parent_2 INTEGER,
  hardlinks INTEGER, hash BLOB, size INTEGER, mode INTEGER, mtime INTEGER, mtimens INTEGER,
  flags INTEGER, name TEXT, symlink TEXT, uid INTEGER, gid INTEGER, xattr BLOB,
  CONSTRAINT pk_catalog PRIMARY KEY (md5path_1, md5path_2));
CREATE INDEX idx_catalog_parent ON catalog (parent_1, parent_2);
CREATE TABLE chunks (md5path_1 INTEGER, md5path_2 INTEGER, offset INTEGER, size INTEGER, hash BLOB,
  CONSTRAINT pk_chunks PRIMARY KEY (md5path_1, md5path_2, offset, size),
  FOREIGN KEY (md5path_1, md5path_2) REFERENCES catalog(md5path_1, md5path_2));
CREATE TABLE nested_catalogs (path TEXT, sha1 TEXT, size INTEGER,
  CONSTRAINT pk_nested_catalogs PRIMARY KEY (path));
CREATE TABLE bind_mountpoints (path TEXT, sha1 TEXT, size INTEGER,
  CONSTRAINT pk_bind_mountpoints PRIMARY KEY (path));
CREATE TABLE statistics (counter TEXT, value INTEGER,
  CONSTRAINT pk_statistics PRIMARY KEY (counter));
CREATE TABLE properties (key TEXT, value TEXT,
  CONSTRAINT pk_properties PRIMARY KEY (key));
";

/// The two signed 64-bit halves of the MD5 of a full path, as the catalog
/// keys rows by them. The repository root is the empty path.
pub fn md5path(path: &str) -> (i64, i64) {
    let d = Md5::digest(path.as_bytes());
    (
        i64::from_le_bytes(d[..8].try_into().expect("8 bytes")),
        i64::from_le_bytes(d[8..].try_into().expect("8 bytes")),
    )
}

/// The parent of a full path (`/usr` -> ``, `/usr/bin` -> `/usr`).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// One catalog row, before it is written.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Row {
    /// Full path ("" for the repository root).
    pub path: String,
    pub digest: Option<Digest20>,
    pub size: u64,
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    pub mtime: i64,
    pub flags: u32,
    pub symlink: String,
    pub uid: u32,
    pub gid: u32,
    /// `(hardlink group << 32) | link count`.
    pub hardlinks: u64,
    pub chunks: Vec<Chunk>,
    /// The `xattr` column: [`xattr_blob`] of the entry's attributes.
    pub xattr: Option<Vec<u8>>,
}

/// Version byte of upstream's small extended attribute list (names and
/// values of at most 255 bytes each, readable by every cvmfs client).
const XATTR_VERSION: u8 = 1;

/// Serialises extended attributes for the `xattr` column as upstream's
/// `XattrList` does: version, count, then per attribute (sorted by name)
/// name length, value length, name, value, one byte each for the lengths.
/// `None` for no attributes (the column is NULL). Fails, saying why, for
/// what that form cannot hold.
pub fn xattr_blob(
    attrs: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Option<Vec<u8>>, String> {
    if attrs.is_empty() {
        return Ok(None);
    }
    let count = u8::try_from(attrs.len()).map_err(|_| {
        format!(
            "{} extended attributes (a catalog holds at most 255)",
            attrs.len()
        )
    })?;
    let mut out = vec![XATTR_VERSION, count];
    for (k, v) in attrs {
        let (Ok(kl), Ok(vl)) = (u8::try_from(k.len()), u8::try_from(v.len())) else {
            return Err(format!(
                "extended attribute {k} has a {}-byte value (a catalog holds at most 255)",
                v.len()
            ));
        };
        out.extend_from_slice(&[kl, vl]);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v);
    }
    Ok(Some(out))
}

impl Row {
    fn name(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(_, n)| n)
    }
}

/// The twelve statistics counters of one catalog.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub regular: i64,
    pub symlink: i64,
    pub special: i64,
    pub dir: i64,
    pub nested: i64,
    pub chunked: i64,
    pub chunks: i64,
    pub file_size: i64,
    pub chunked_size: i64,
    pub xattr: i64,
    pub external: i64,
    pub external_file_size: i64,
}

impl Counters {
    const NAMES: [&'static str; 12] = [
        "regular",
        "symlink",
        "special",
        "dir",
        "nested",
        "chunked",
        "chunks",
        "file_size",
        "chunked_size",
        "xattr",
        "external",
        "external_file_size",
    ];

    fn values(&self) -> [i64; 12] {
        [
            self.regular,
            self.symlink,
            self.special,
            self.dir,
            self.nested,
            self.chunked,
            self.chunks,
            self.file_size,
            self.chunked_size,
            self.xattr,
            self.external,
            self.external_file_size,
        ]
    }

    fn from_values(v: [i64; 12]) -> Counters {
        Counters {
            regular: v[0],
            symlink: v[1],
            special: v[2],
            dir: v[3],
            nested: v[4],
            chunked: v[5],
            chunks: v[6],
            file_size: v[7],
            chunked_size: v[8],
            xattr: v[9],
            external: v[10],
            external_file_size: v[11],
        }
    }

    pub fn add(&mut self, o: &Counters) {
        let (a, b) = (self.values(), o.values());
        *self = Counters::from_values(std::array::from_fn(|i| a[i] + b[i]));
    }

    fn count(&mut self, r: &Row) {
        if r.xattr.is_some() {
            self.xattr += 1;
        }
        if r.flags & FLAG_DIR != 0 {
            self.dir += 1;
        } else if r.flags & FLAG_SYMLINK != 0 {
            self.symlink += 1;
        } else if r.flags & FLAG_SPECIAL != 0 {
            self.special += 1;
        } else {
            self.regular += 1;
            self.file_size += r.size as i64;
            if r.flags & FLAG_CHUNKED != 0 {
                self.chunked += 1;
                self.chunked_size += r.size as i64;
                self.chunks += r.chunks.len() as i64;
            }
        }
    }
}

/// A reference from a parent catalog to a nested one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NestedRef {
    pub path: String,
    /// Hash text of the nested catalog object (no `C`).
    pub hash: String,
    /// Uncompressed size of the nested catalog.
    pub size: u64,
}

/// Everything that goes into one catalog.
pub struct Catalog<'a> {
    /// Mountpoint path ("" for the root catalog).
    pub prefix: &'a str,
    /// Rows in the order they are inserted (the order fixes inode numbers
    /// and the file's bytes).
    pub rows: &'a [Row],
    pub nested: &'a [NestedRef],
    /// Sum of the nested catalogs' self and subtree counters.
    pub subtree: Counters,
    pub revision: u64,
    pub last_modified: u64,
    pub previous_revision: Option<&'a str>,
    /// A digest of the content (rows and nested references), stored as the
    /// `cvmbuild_content` property so a later publish can tell whether the
    /// catalog changed without comparing rows.
    pub content: &'a str,
}

/// What writing a catalog produced.
pub struct Written {
    /// The uncompressed SQLite file.
    pub bytes: Vec<u8>,
    pub own: Counters,
}

impl Catalog<'_> {
    /// Writes the catalog as an SQLite file at `scratch` (removed afterwards)
    /// and returns its bytes.
    pub fn write(&self, scratch: &Path) -> Result<Written> {
        let _ = std::fs::remove_file(scratch);
        let r = self.write_db(scratch);
        let bytes = r.and_then(|own| {
            let bytes = std::fs::read(scratch).map_err(|e| Error::io(scratch, e))?;
            Ok(Written { bytes, own })
        });
        let _ = std::fs::remove_file(scratch);
        bytes
    }

    fn write_db(&self, scratch: &Path) -> Result<Counters> {
        let mut db = Connection::open(scratch)?;
        db.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA foreign_keys=ON;")?;
        db.execute_batch(SCHEMA)?;
        let tx = db.transaction()?;
        let mut own = Counters::default();
        {
            let mut ins = tx.prepare(
                "INSERT INTO catalog (md5path_1, md5path_2, parent_1, parent_2, hardlinks, hash,
                 size, mode, mtime, mtimens, flags, name, symlink, uid, gid, xattr)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?;
            let mut chunk = tx.prepare(
                "INSERT INTO chunks (md5path_1, md5path_2, offset, size, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in self.rows {
                let (m1, m2) = md5path(&r.path);
                // The repository root has the null parent hash.
                let (p1, p2) = if r.path.is_empty() {
                    (0, 0)
                } else {
                    md5path(parent(&r.path))
                };
                ins.execute(params![
                    m1,
                    m2,
                    p1,
                    p2,
                    r.hardlinks as i64,
                    r.digest.as_ref().map(|d| d.as_slice()),
                    r.size as i64,
                    r.mode,
                    r.mtime,
                    r.flags,
                    r.name(),
                    r.symlink,
                    r.uid,
                    r.gid,
                    r.xattr,
                ])?;
                for c in &r.chunks {
                    chunk.execute(params![
                        m1,
                        m2,
                        c.offset as i64,
                        c.size as i64,
                        c.digest.as_slice()
                    ])?;
                }
                own.count(r);
            }
            let mut nest =
                tx.prepare("INSERT INTO nested_catalogs (path, sha1, size) VALUES (?1, ?2, ?3)")?;
            for n in self.nested {
                nest.execute(params![n.path, n.hash, n.size as i64])?;
            }
            own.nested = self.nested.len() as i64;
            let mut stat = tx.prepare("INSERT INTO statistics (counter, value) VALUES (?1, ?2)")?;
            for (name, v) in Counters::NAMES.iter().zip(own.values()) {
                stat.execute(params![format!("self_{name}"), v])?;
            }
            for (name, v) in Counters::NAMES.iter().zip(self.subtree.values()) {
                stat.execute(params![format!("subtree_{name}"), v])?;
            }
            let mut prop = tx.prepare("INSERT INTO properties (key, value) VALUES (?1, ?2)")?;
            prop.execute(params!["schema", 2.5f64])?;
            prop.execute(params!["schema_revision", 7])?;
            prop.execute(params!["revision", self.revision as i64])?;
            prop.execute(params!["last_modified", self.last_modified as i64])?;
            prop.execute(params!["cvmbuild_content", self.content])?;
            if !self.prefix.is_empty() {
                prop.execute(params!["root_prefix", self.prefix])?;
            } else {
                prop.execute(params!["TTL", TTL as i64])?;
            }
            if let Some(p) = self.previous_revision {
                prop.execute(params!["previous_revision", p])?;
            }
        }
        tx.commit()?;
        db.close().map_err(|(_, e)| e)?;
        Ok(own)
    }
}

/// What a later publish needs to know about an existing catalog.
pub struct Existing {
    pub content: Option<String>,
    /// `root_prefix`: the mountpoint of a nested catalog; `None` for a root
    /// catalog.
    pub root_prefix: Option<String>,
    pub own: Counters,
    pub subtree: Counters,
    pub nested: Vec<NestedRef>,
}

/// Reads properties, counters and nested references of a catalog file.
pub fn read(bytes: &[u8], scratch: &Path) -> Result<Existing> {
    std::fs::write(scratch, bytes).map_err(|e| Error::io(scratch, e))?;
    let r = read_db(scratch);
    let _ = std::fs::remove_file(scratch);
    r
}

/// The regular files directly in directory `dir` of a catalog file, with
/// their content hashes (name, SHA-1), sorted by name.
pub fn files_in(bytes: &[u8], scratch: &Path, dir: &str) -> Result<Vec<(String, Vec<u8>)>> {
    std::fs::write(scratch, bytes).map_err(|e| Error::io(scratch, e))?;
    let r = (|| -> Result<Vec<(String, Vec<u8>)>> {
        let db = Connection::open_with_flags(scratch, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (p1, p2) = md5path(dir);
        let mut q = db.prepare(
            "SELECT name, hash FROM catalog WHERE parent_1 = ?1 AND parent_2 = ?2 \
             AND flags & ?3 != 0 ORDER BY name",
        )?;
        let rows = q
            .query_map(params![p1, p2, FLAG_FILE], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    })();
    let _ = std::fs::remove_file(scratch);
    r
}

fn read_db(path: &Path) -> Result<Existing> {
    let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let prop = |k: &str| -> Result<Option<String>> {
        let mut q = db.prepare("SELECT CAST(value AS TEXT) FROM properties WHERE key = ?1")?;
        let mut rows = q.query([k])?;
        Ok(match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        })
    };
    let counter = |prefix: &str| -> Result<Counters> {
        let mut v = [0i64; 12];
        for (i, name) in Counters::NAMES.iter().enumerate() {
            v[i] = db.query_row(
                "SELECT value FROM statistics WHERE counter = ?1",
                [format!("{prefix}_{name}")],
                |r| r.get(0),
            )?;
        }
        Ok(Counters::from_values(v))
    };
    let mut q = db.prepare("SELECT path, sha1, size FROM nested_catalogs ORDER BY path")?;
    let nested = q
        .query_map([], |r| {
            Ok(NestedRef {
                path: r.get(0)?,
                hash: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Existing {
        content: prop("cvmbuild_content")?,
        root_prefix: prop("root_prefix")?,
        own: counter("self")?,
        subtree: counter("subtree")?,
        nested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5path_vectors() {
        assert_eq!(md5path(""), (338333539836370388, 9098107892288553193));
        assert_eq!(md5path("/usr"), (4261349461019561853, 8805651796865472228));
        assert_eq!(
            md5path("/usr/bin/bash"),
            (5447899406954305397, -3072467430493135652)
        );
        assert_eq!(parent("/usr"), "");
        assert_eq!(parent("/usr/bin"), "/usr");
    }
}

//! An rpm database written the way rpm ≥ 4.16 writes one: the sqlite
//! backend's `rpmdb.sqlite`, with the `Packages` table holding each
//! installed header and one index table per tag rpm indexes.
//!
//! An installed header is the package's own header (its signed, immutable
//! region, byte for byte) followed by entries rpm adds at install time:
//! the signature header's legacy tags (`SIGSIZE`, `SIGMD5`, `SHA1HEADER`,
//! ...) and `INSTALLTIME`, `FILESTATES`, `INSTALLCOLOR`, `INSTALLTID`. We
//! add the same entries in the same layout, with the install time taken
//! from `SOURCE_DATE_EPOCH`, so the blobs equal rpm's own but for the time.
//!
//! Deterministic: the same headers in the same order give the same bytes
//! (fixed page size, no journal, rows inserted in one order).

use std::io::Read;
use std::path::Path;

/// Header entry types (rpm's `rpmTagType`).
const CHAR: u32 = 1;
const INT8: u32 = 2;
const INT16: u32 = 3;
const INT32: u32 = 4;
const INT64: u32 = 5;
const STRING: u32 = 6;
const BIN: u32 = 7;
const STRING_ARRAY: u32 = 8;
const I18NSTRING: u32 = 9;

const LEAD_SIZE: usize = 96;
const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
/// rpm's bounds on a header (`HEADER_TAGS_MAX`, `HEADER_DATA_MAX`).
const MAX_ENTRIES: usize = 0xffff;
const MAX_DATA: usize = 0x0fff_ffff;

/// rpm's tag numbers used here.
mod tag {
    pub const NAME: u32 = 1000;
    pub const GROUP: u32 = 1016;
    pub const INSTALLTIME: u32 = 1008;
    pub const FILESTATES: u32 = 1029;
    pub const REQUIREFLAGS: u32 = 1048;
    pub const REQUIRENAME: u32 = 1049;
    pub const PROVIDENAME: u32 = 1047;
    pub const CONFLICTNAME: u32 = 1054;
    pub const TRIGGERNAME: u32 = 1066;
    pub const OBSOLETENAME: u32 = 1090;
    pub const BASENAMES: u32 = 1117;
    pub const DIRNAMES: u32 = 1118;
    pub const INSTALLCOLOR: u32 = 1127;
    pub const INSTALLTID: u32 = 1128;
    pub const SIGMD5: u32 = 261;
    pub const SHA1HEADER: u32 = 269;
    pub const RECOMMENDNAME: u32 = 5046;
    pub const SUGGESTNAME: u32 = 5049;
    pub const SUPPLEMENTNAME: u32 = 5052;
    pub const ENHANCENAME: u32 = 5055;
    pub const FILETRIGGERNAME: u32 = 5069;
    pub const TRANSFILETRIGGERNAME: u32 = 5079;
}

/// The transaction colour rpm records on x86_64 (`INSTALLCOLOR`).
const INSTALL_COLOR: u32 = 3;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RpmdbError {
    #[error("{what}: malformed RPM header: {why}")]
    #[diagnostic(code(rpmdb::header))]
    Header { what: String, why: String },
    #[error("{what}: cannot read the RPM headers: {source}")]
    #[diagnostic(code(rpmdb::read))]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the rpm database: {0}")]
    #[diagnostic(code(rpmdb::sqlite))]
    Sqlite(#[from] rusqlite::Error),
    #[error("writing the rpm database: {0}")]
    #[diagnostic(code(rpmdb::io))]
    Io(#[from] std::io::Error),
}

fn bad(what: &str, why: impl Into<String>) -> RpmdbError {
    RpmdbError::Header {
        what: what.to_string(),
        why: why.into(),
    }
}

/// The signature header and the main header of an RPM file, each as
/// rpm's blob form (entry count, data length, index, data: the header
/// without its 8-byte magic). `what` names the package in errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpmHeaders {
    pub signature: Vec<u8>,
    pub main: Vec<u8>,
}

impl RpmHeaders {
    /// Reads the lead and both headers from the start of an RPM file.
    pub fn read(r: &mut dyn Read, what: &str) -> Result<RpmHeaders, RpmdbError> {
        let io = |source| RpmdbError::Read {
            what: what.to_string(),
            source,
        };
        let mut lead = [0u8; LEAD_SIZE];
        r.read_exact(&mut lead).map_err(io)?;
        if lead[..4] != [0xed, 0xab, 0xee, 0xdb] {
            return Err(bad(what, "not an RPM file (no lead magic)"));
        }
        let signature = read_header(r, what)?;
        // The signature header is padded to a multiple of 8 bytes.
        let sig_len = 8 + signature.len();
        let pad = sig_len.div_ceil(8) * 8 - sig_len;
        let mut skip = vec![0u8; pad];
        r.read_exact(&mut skip).map_err(io)?;
        let main = read_header(r, what)?;
        Ok(RpmHeaders { signature, main })
    }

    /// The two blobs as one: the signature blob's length (u32, big
    /// endian), the signature blob, the main blob. How `extract` stores
    /// them.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.signature.len() + self.main.len());
        out.extend_from_slice(&(self.signature.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.main);
        out
    }

    pub fn decode(bytes: &[u8], what: &str) -> Result<RpmHeaders, RpmdbError> {
        let n = bytes
            .get(..4)
            .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| bad(what, "stored headers truncated"))?;
        let signature = bytes
            .get(4..4 + n)
            .ok_or_else(|| bad(what, "stored headers truncated"))?
            .to_vec();
        let main = bytes[4 + n..].to_vec();
        Blob::parse(&signature, what)?;
        Blob::parse(&main, what)?;
        Ok(RpmHeaders { signature, main })
    }

    /// The header as rpm stores it in its database after installing the
    /// package at `install_time`.
    pub fn installed(&self, install_time: u32, what: &str) -> Result<Vec<u8>, RpmdbError> {
        let main = Blob::parse(&self.main, what)?;
        let sig = Blob::parse(&self.signature, what)?;
        let mut extra: Vec<(u32, u32, u32, Vec<u8>)> = Vec::new();
        // headerMergeLegacySigs: signature tags copied under their
        // header names, unless the header already has the tag.
        for e in &sig.entries {
            let to = match e.tag {
                1000 => 257,  // SIZE -> SIGSIZE
                1002 => 259,  // PGP -> SIGPGP
                1004 => 261,  // MD5 -> SIGMD5
                1005 => 262,  // GPG -> SIGGPG
                1006 => 263,  // PGP5 -> SIGPGP5
                1007 => 1046, // PAYLOADSIZE -> ARCHIVESIZE
                274 => 5090,  // FILESIGNATURES
                275 => 5091,  // FILESIGNATURELENGTH
                276 => 5099,  // VERITYSIGNATURES
                277 => 5100,  // VERITYSIGNATUREALGO
                t if (256..1000).contains(&t) => t,
                _ => continue,
            };
            if main.find(to).is_some() || extra.iter().any(|x| x.0 == to) {
                continue;
            }
            extra.push((to, e.ty, e.count, sig.entry_bytes(e, what)?.to_vec()));
        }
        let files = main.find(tag::BASENAMES).map_or(0, |e| e.count);
        let be = |v: u32| v.to_be_bytes().to_vec();
        for (t, ty, count, bytes) in [
            (tag::INSTALLTIME, INT32, 1, be(install_time)),
            (tag::FILESTATES, CHAR, files, vec![0u8; files as usize]),
            (tag::INSTALLCOLOR, INT32, 1, be(INSTALL_COLOR)),
            (tag::INSTALLTID, INT32, 1, be(install_time)),
        ] {
            if count == 0 || main.find(t).is_some() {
                continue;
            }
            extra.push((t, ty, count, bytes));
        }
        extra.sort_by_key(|x| x.0);

        let mut index = self.main[8..8 + main.entries.len() * 16].to_vec();
        let mut data = main.data.to_vec();
        for (t, ty, count, bytes) in &extra {
            let align = match *ty {
                INT16 => 2,
                INT32 => 4,
                INT64 => 8,
                _ => 1,
            };
            while data.len() % align != 0 {
                data.push(0);
            }
            for v in [*t, *ty, data.len() as u32, *count] {
                index.extend_from_slice(&v.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        let mut out = Vec::with_capacity(8 + index.len() + data.len());
        out.extend_from_slice(&((index.len() / 16) as u32).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&index);
        out.extend_from_slice(&data);
        Ok(out)
    }
}

fn read_header(r: &mut dyn Read, what: &str) -> Result<Vec<u8>, RpmdbError> {
    let io = |source| RpmdbError::Read {
        what: what.to_string(),
        source,
    };
    let mut intro = [0u8; 16];
    r.read_exact(&mut intro).map_err(io)?;
    if intro[..8] != HEADER_MAGIC {
        return Err(bad(what, "bad header magic"));
    }
    let il = be32(&intro[8..]) as usize;
    let dl = be32(&intro[12..]) as usize;
    if il > MAX_ENTRIES || dl > MAX_DATA {
        return Err(bad(what, "header larger than rpm allows"));
    }
    let mut blob = intro[8..].to_vec();
    blob.resize(8 + il * 16 + dl, 0);
    r.read_exact(&mut blob[8..]).map_err(io)?;
    Ok(blob)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

struct Ent {
    tag: u32,
    ty: u32,
    offset: usize,
    count: u32,
}

/// A parsed header blob (borrowing its data).
pub(crate) struct Blob<'a> {
    entries: Vec<Ent>,
    data: &'a [u8],
}

impl<'a> Blob<'a> {
    pub(crate) fn parse(b: &'a [u8], what: &str) -> Result<Blob<'a>, RpmdbError> {
        if b.len() < 8 {
            return Err(bad(what, "header truncated"));
        }
        let il = be32(b) as usize;
        let dl = be32(&b[4..]) as usize;
        if il > MAX_ENTRIES || dl > MAX_DATA || b.len() != 8 + il * 16 + dl {
            return Err(bad(what, "header sizes do not match its length"));
        }
        let entries = (0..il)
            .map(|i| {
                let e = &b[8 + i * 16..];
                Ent {
                    tag: be32(e),
                    ty: be32(&e[4..]),
                    offset: be32(&e[8..]) as usize,
                    count: be32(&e[12..]),
                }
            })
            .collect();
        Ok(Blob {
            entries,
            data: &b[8 + il * 16..],
        })
    }

    fn find(&self, tag: u32) -> Option<&Ent> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// The bytes of an entry's value.
    fn entry_bytes(&self, e: &Ent, what: &str) -> Result<&'a [u8], RpmdbError> {
        let rest = self
            .data
            .get(e.offset..)
            .ok_or_else(|| bad(what, format!("tag {} lies outside the header", e.tag)))?;
        let fixed = |size: usize| -> Result<usize, RpmdbError> {
            (e.count as usize)
                .checked_mul(size)
                .filter(|n| *n <= rest.len())
                .ok_or_else(|| bad(what, format!("tag {} overruns the header", e.tag)))
        };
        let len = match e.ty {
            CHAR | INT8 | BIN => fixed(1)?,
            INT16 => fixed(2)?,
            INT32 => fixed(4)?,
            INT64 => fixed(8)?,
            STRING | STRING_ARRAY | I18NSTRING => {
                let n = if e.ty == STRING { 1 } else { e.count as usize };
                let mut at = 0;
                for _ in 0..n {
                    let nul = rest[at..].iter().position(|&c| c == 0).ok_or_else(|| {
                        bad(what, format!("tag {} has an unterminated string", e.tag))
                    })?;
                    at += nul + 1;
                }
                at
            }
            _ => 0,
        };
        Ok(&rest[..len])
    }

    pub(crate) fn strings(&self, tag: u32, what: &str) -> Result<Vec<&'a [u8]>, RpmdbError> {
        let Some(e) = self.find(tag) else {
            return Ok(vec![]);
        };
        if !matches!(e.ty, STRING | STRING_ARRAY | I18NSTRING) {
            return Ok(vec![]);
        }
        let bytes = self.entry_bytes(e, what)?;
        let mut v: Vec<&[u8]> = bytes.split(|&c| c == 0).collect();
        v.pop(); // after the last NUL
        if e.ty == I18NSTRING {
            v.truncate(1); // rpm indexes the untranslated string
        }
        Ok(v)
    }

    pub(crate) fn u32s(&self, tag: u32, what: &str) -> Result<Vec<u32>, RpmdbError> {
        match self.find(tag) {
            Some(e) if e.ty == INT32 => {
                Ok(self.entry_bytes(e, what)?.chunks(4).map(be32).collect())
            }
            _ => Ok(vec![]),
        }
    }
}

/// What ordering a transaction needs from an installed header.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deps {
    pub name: String,
    /// Provided capability names (the package's own name among them).
    pub provides: Vec<String>,
    /// Required capability names, `rpmlib(...)` ones left out, each with
    /// whether it is a prerequisite (`Requires(pre)`, `(post)`, ...).
    pub requires: Vec<(String, bool)>,
    /// Every file path.
    pub files: Vec<String>,
}

/// The [`Deps`] of an installed (or package) header blob.
pub fn deps(blob: &[u8], what: &str) -> Result<Deps, RpmdbError> {
    let h = Blob::parse(blob, what)?;
    let s = |v: Vec<&[u8]>| -> Vec<String> {
        v.into_iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    };
    let name = s(h.strings(tag::NAME, what)?).pop().unwrap_or_default();
    let flags = h.u32s(tag::REQUIREFLAGS, what)?;
    let requires = s(h.strings(tag::REQUIRENAME, what)?)
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.starts_with("rpmlib("))
        .map(|(i, r)| {
            let f = flags.get(i).copied().unwrap_or(0);
            (r, f & (INSTALL_ONLY | (1 << 6)) != 0)
        })
        .collect();
    let dirs = s(h.strings(tag::DIRNAMES, what)?);
    let index = h.u32s(1116, what)?; // DIRINDEXES
    let files = s(h.strings(tag::BASENAMES, what)?)
        .into_iter()
        .zip(index)
        .map(|(b, i)| format!("{}{b}", dirs.get(i as usize).map_or("", String::as_str)))
        .collect();
    Ok(Deps {
        name,
        provides: s(h.strings(tag::PROVIDENAME, what)?),
        requires,
        files,
    })
}

/// rpm's index tables: name, tag, and whether it has an index on `hnum`.
const INDEXES: &[(&str, u32, bool)] = &[
    ("Name", tag::NAME, false),
    ("Basenames", tag::BASENAMES, true),
    ("Group", tag::GROUP, false),
    ("Requirename", tag::REQUIRENAME, true),
    ("Providename", tag::PROVIDENAME, true),
    ("Conflictname", tag::CONFLICTNAME, true),
    ("Obsoletename", tag::OBSOLETENAME, true),
    ("Triggername", tag::TRIGGERNAME, true),
    ("Dirnames", tag::DIRNAMES, true),
    ("Installtid", tag::INSTALLTID, false),
    ("Sigmd5", tag::SIGMD5, false),
    ("Sha1header", tag::SHA1HEADER, false),
    ("Filetriggername", tag::FILETRIGGERNAME, true),
    ("Transfiletriggername", tag::TRANSFILETRIGGERNAME, true),
    ("Recommendname", tag::RECOMMENDNAME, true),
    ("Suggestname", tag::SUGGESTNAME, true),
    ("Supplementname", tag::SUPPLEMENTNAME, true),
    ("Enhancename", tag::ENHANCENAME, true),
];

/// Dependency flags that make a require install-time only (rpm's
/// `_INSTALL_ONLY_MASK`: `%pre`, `%post`, `rpmlib()`, keyring, pretrans,
/// posttrans) and erase-time ones (`%preun`, `%postun`).
const INSTALL_ONLY: u32 = (1 << 9) | (1 << 10) | (1 << 24) | (1 << 26) | (1 << 7) | (1 << 5);
const ERASE_ONLY: u32 = (1 << 11) | (1 << 12);

/// One index row: key (text or blob) and the element's index in the tag.
enum Key<'a> {
    Text(&'a [u8]),
    Blob(Vec<u8>),
}

fn index_keys<'a>(
    h: &Blob<'a>,
    table: &str,
    tag: u32,
    what: &str,
) -> Result<Vec<(Key<'a>, u32)>, RpmdbError> {
    let mut out = Vec::new();
    match table {
        "Installtid" => {
            for (i, v) in h.u32s(tag, what)?.into_iter().enumerate() {
                // rpm keys integers by their in-memory bytes (x86_64: LE).
                out.push((Key::Blob(v.to_le_bytes().to_vec()), i as u32));
            }
        }
        "Sigmd5" => {
            if let Some(e) = h.find(tag).filter(|e| e.ty == BIN && e.count > 0) {
                out.push((Key::Blob(h.entry_bytes(e, what)?.to_vec()), 0));
            }
        }
        _ => {
            let strs = h.strings(tag, what)?;
            let flags = if tag == tag::REQUIRENAME {
                h.u32s(tag::REQUIREFLAGS, what)?
            } else {
                vec![]
            };
            let dedup = matches!(
                tag,
                tag::TRIGGERNAME | tag::FILETRIGGERNAME | tag::TRANSFILETRIGGERNAME
            );
            for (i, s) in strs.iter().enumerate() {
                if s.is_empty() {
                    continue;
                }
                if let Some(&f) = flags.get(i) {
                    if f & INSTALL_ONLY != 0 && f & ERASE_ONLY == 0 {
                        continue;
                    }
                }
                if dedup && strs[..i].contains(s) {
                    continue;
                }
                out.push((Key::Text(s), i as u32));
            }
        }
    }
    Ok(out)
}

/// Writes `rpmdb.sqlite` at `path` (which must not exist) holding the
/// installed headers in this order (`hnum` 1, 2, ...).
pub fn write_sqlite(path: &Path, headers: &[(String, Vec<u8>)]) -> Result<(), RpmdbError> {
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;",
    )?;
    let tx = db.unchecked_transaction()?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT,blob BLOB NOT NULL);",
    )?;
    for (name, tag, by_hnum) in INDEXES {
        let ty = if matches!(*tag, tag::INSTALLTID | tag::SIGMD5) {
            "BLOB"
        } else {
            "TEXT"
        };
        tx.execute_batch(&format!(
            "CREATE TABLE IF NOT EXISTS '{name}' (key '{ty}' NOT NULL, hnum INTEGER NOT NULL, \
             idx INTEGER NOT NULL, FOREIGN KEY (hnum) REFERENCES 'Packages'(hnum));"
        ))?;
        if ty == "TEXT" {
            tx.execute_batch(&format!(
                "CREATE INDEX '{name}_key_idx' ON '{name}'(key ASC);"
            ))?;
            if *by_hnum {
                tx.execute_batch(&format!(
                    "CREATE INDEX '{name}_hnum_idx' ON '{name}'(hnum ASC);"
                ))?;
            }
        }
    }
    for (i, (what, blob)) in headers.iter().enumerate() {
        let hnum = i as i64 + 1;
        tx.execute(
            "INSERT INTO 'Packages' (hnum, blob) VALUES (?1, ?2)",
            rusqlite::params![hnum, blob],
        )?;
        let h = Blob::parse(blob, what)?;
        for (name, tag, _) in INDEXES {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO '{name}' (key, hnum, idx) VALUES (?1, ?2, ?3)"
            ))?;
            for (key, idx) in index_keys(&h, name, *tag, what)? {
                match key {
                    Key::Text(s) => {
                        let s = std::str::from_utf8(s)
                            .map_err(|_| bad(what, format!("{name}: a value is not UTF-8")))?;
                        stmt.execute(rusqlite::params![s, hnum, idx])?
                    }
                    Key::Blob(b) => stmt.execute(rusqlite::params![b, hnum, idx])?,
                };
            }
        }
    }
    tx.commit()?;
    db.close().map_err(|(_, e)| e)?;
    Ok(())
}

/// The database file's bytes for these installed headers.
pub fn sqlite_bytes(headers: &[(String, Vec<u8>)]) -> Result<Vec<u8>, RpmdbError> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("rpmdb.sqlite");
    write_sqlite(&path, headers)?;
    Ok(std::fs::read(&path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta_rpm() -> Vec<u8> {
        crate::builders::meta_rpm::MetaRpm {
            name: "cernvm-system".into(),
            version: "1".into(),
            release: "1".into(),
            branch: "b".into(),
            epoch: 1_700_000_000,
            requires: vec!["bash = 0:4.1-1".into()],
        }
        .build()
        .unwrap()
    }

    #[test]
    fn installed_header_keeps_the_region_and_appends_install_tags() {
        let rpm = meta_rpm();
        let h = RpmHeaders::read(&mut rpm.as_slice(), "m").unwrap();
        assert_eq!(RpmHeaders::decode(&h.encode(), "m").unwrap(), h);
        let inst = h.installed(1_700_000_000, "m").unwrap();
        let b = Blob::parse(&inst, "m").unwrap();
        let main = Blob::parse(&h.main, "m").unwrap();
        // The region is unchanged, entries and data.
        assert_eq!(
            &inst[8..8 + main.entries.len() * 16],
            &h.main[8..8 + main.entries.len() * 16]
        );
        assert_eq!(&b.data[..main.data.len()], main.data);
        assert_eq!(b.u32s(tag::INSTALLTIME, "m").unwrap(), [1_700_000_000]);
        assert_eq!(b.u32s(tag::INSTALLTID, "m").unwrap(), [1_700_000_000]);
        assert_eq!(b.strings(tag::NAME, "m").unwrap(), [b"cernvm-system"]);
    }

    #[test]
    fn database_is_deterministic() {
        let rpm = meta_rpm();
        let h = RpmHeaders::read(&mut rpm.as_slice(), "m").unwrap();
        let hs = vec![("m".to_string(), h.installed(1, "m").unwrap())];
        assert_eq!(sqlite_bytes(&hs).unwrap(), sqlite_bytes(&hs).unwrap());
    }
}

//! The trust chain, as upstream's `manifest_fetch.cc`, `whitelist.cc` and
//! `signature.cc` check it (cvmfs-format.md sections 3–5 and 8): the
//! manifest is signed by the repository certificate, the whitelist (signed
//! by a master key the user trusts) lists that certificate, and the
//! history database, named by the signed manifest, maps tags and dates to
//! root catalogs.

use super::fetch::{self, Digest, Network};
use super::Error;
use crate::cvmfs::signed::{self, Signed};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::DecodePublicKey;
use rsa::RsaPublicKey;
use sha1::{Digest as _, Sha1};
use std::path::PathBuf;
use x509_cert::der::{DecodePem, Encode};

/// MD5 of the empty root path, which `R` must be.
const ROOT_PATH_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";
/// Upper bounds of the signed files and small objects (upstream's
/// manifest and whitelist are a few hundred bytes).
const MAX_SIGNED: u64 = 1 << 20;
const MAX_CERTIFICATE: u64 = 1 << 20;
pub const MAX_HISTORY: u64 = 256 << 20;

/// The fields of a manifest a client uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub catalog: String,
    pub catalog_size: Option<u64>,
    pub revision: u64,
    pub fqrn: String,
    pub certificate: String,
    pub history: Option<String>,
    pub meta_info: Option<String>,
    pub timestamp: u64,
}

/// A signed file cut in three: body, hash line, signature.
/// The signed envelope split, or an error naming the file.
fn split_signed<'a>(bytes: &'a [u8], what: &str) -> Result<Signed<'a>, Error> {
    signed::split(bytes).map_err(|m| {
        Error::Untrusted(format!(
            "{what}: {}",
            match m {
                signed::Malformed::NoSeparator => "no `--` line: not a signed CernVM-FS file",
                signed::Malformed::NoHashLine => "no hash line after `--`",
            }
        ))
    })
}

/// The hash line must be the SHA-1 of the body, in hex.
fn check_hash(s: &Signed, what: &str) -> Result<(), Error> {
    if !s.hash_matches() {
        return Err(Error::Untrusted(format!(
            "{what}: the hash line does not match the body (the file was altered)"
        )));
    }
    Ok(())
}

/// Parses a manifest's body; later lines overwrite earlier ones, unknown
/// letters are ignored (as upstream's parser does).
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest, Error> {
    let signed = split_signed(bytes, what)?;
    let bad = |m: String| Error::Untrusted(format!("{what}: {m}"));
    let mut fields = std::collections::HashMap::new();
    for line in signed.body.split(|b| *b == b'\n') {
        if let Some((&k, v)) = line.split_first() {
            let v = std::str::from_utf8(v).map_err(|_| bad("body is not text".into()))?;
            fields.insert(k, v.to_string());
        }
    }
    let get = |k: u8| {
        fields
            .get(&k)
            .cloned()
            .ok_or_else(|| bad(format!("no `{}` line: not a CernVM-FS manifest", k as char)))
    };
    let num = |k: u8| -> Result<u64, Error> {
        get(k)?
            .parse()
            .map_err(|_| bad(format!("`{}` is not a number", k as char)))
    };
    if get(b'R')? != ROOT_PATH_MD5 {
        return Err(bad("`R` is not the MD5 of the root path".into()));
    }
    Ok(Manifest {
        catalog: get(b'C')?,
        catalog_size: fields.get(&b'B').and_then(|v| v.parse().ok()),
        revision: num(b'S')?,
        fqrn: get(b'N')?,
        certificate: get(b'X')?,
        history: fields.get(&b'H').cloned(),
        meta_info: fields.get(&b'M').cloned(),
        timestamp: fields.get(&b'T').and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// Loads the trusted master public keys (PEM `BEGIN PUBLIC KEY`, or
/// PKCS#1 `BEGIN RSA PUBLIC KEY`).
pub fn load_keys(paths: &[PathBuf]) -> Result<Vec<RsaPublicKey>, Error> {
    if paths.is_empty() {
        return Err(Error::Config(
            "no trusted master key given (--key FILE.pub): every repository's whitelist must be verified".into(),
        ));
    }
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read(p).map_err(|e| Error::io(p, e))?;
            let text = String::from_utf8(text).map_err(|_| Error::Key {
                path: p.clone(),
                reason: "not a PEM file".into(),
            })?;
            RsaPublicKey::from_public_key_pem(&text)
                .or_else(|_| RsaPublicKey::from_pkcs1_pem(&text))
                .map_err(|e| Error::Key {
                    path: p.clone(),
                    reason: format!("not an RSA public key in PEM: {e}"),
                })
        })
        .collect()
}

/// Checks the manifest's hash line and signature with the certificate
/// (PEM); returns the certificate's SHA-1 fingerprint (of its DER).
fn verify_manifest(bytes: &[u8], cert_pem: &[u8], what: &str) -> Result<Digest, Error> {
    let signed = split_signed(bytes, what)?;
    check_hash(&signed, what)?;
    let bad = |m: String| Error::Untrusted(format!("{what}: {m}"));
    let cert = x509_cert::Certificate::from_pem(cert_pem)
        .map_err(|e| bad(format!("the certificate X is not a PEM certificate: {e}")))?;
    let der = cert.to_der().map_err(|e| bad(e.to_string()))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| bad(e.to_string()))?;
    let key = RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| bad(format!("the certificate's key is not RSA: {e}")))?;
    if !signed.signed_by_certificate(&key) {
        return Err(bad(
            "the signature does not verify with the repository certificate".into(),
        ));
    }
    Ok(Sha1::digest(&der).into())
}

/// Checks the whitelist: signed by one of `keys`, unexpired at `now`
/// (hour precision, as upstream), for `fqrn`, listing `fingerprint`.
pub(crate) fn verify_whitelist(
    bytes: &[u8],
    keys: &[RsaPublicKey],
    fqrn: &str,
    fingerprint: &Digest,
    now: u64,
    what: &str,
) -> Result<(), Error> {
    let signed = split_signed(bytes, what)?;
    check_hash(&signed, what)?;
    let bad = |m: String| Error::Untrusted(format!("{what}: {m}"));
    let verified = keys.iter().any(|k| signed.signed_by_master(k));
    if !verified {
        return Err(bad(
            "the signature does not verify with any trusted master key (--key)".into(),
        ));
    }
    let body = std::str::from_utf8(signed.body).map_err(|_| bad("body is not text".into()))?;
    let mut lines = body.lines();
    let _created = lines.next();
    let expiry = lines
        .next()
        .and_then(|l| l.strip_prefix('E'))
        .filter(|e| e.len() == 14)
        .and_then(stamp_hours)
        .ok_or_else(|| bad("no `E` expiry line".into()))?;
    // Upstream keeps only the hour of `E` and compares with the current
    // time: a whitelist "expiring at 10:59" is expired from 10:00:01.
    if now > expiry {
        return Err(bad(format!(
            "expired at {} (hour precision); the repository must re-sign its whitelist",
            &body.lines().nth(1).unwrap_or("")[1..]
        )));
    }
    let name = lines
        .next()
        .and_then(|l| l.strip_prefix('N'))
        .ok_or_else(|| bad("no `N` line".into()))?;
    if name != fqrn {
        return Err(bad(format!("names repository {name:?}, not {fqrn:?}")));
    }
    let listed = lines.any(|l| {
        let fp = l.split([' ', '\t', '#']).next().unwrap_or("");
        let hex: String = fp.split(':').collect();
        hex::decode(hex).is_ok_and(|d| d == fingerprint)
    });
    if !listed {
        return Err(bad(format!(
            "does not list the repository certificate {}",
            hex::encode_upper(fingerprint)
        )));
    }
    Ok(())
}

/// `YYYYMMDDhh....` (UTC) as Unix seconds, minutes and seconds dropped.
fn stamp_hours(s: &str) -> Option<u64> {
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let (y, m, d, h) = (n(0..4)?, n(4..6)?, n(6..8)?, n(8..10)?);
    (1..=12).contains(&m).then_some(())?;
    (1..=31).contains(&d).then_some(())?;
    (h < 24).then_some(())?;
    Some(days_from_civil(y as i64, m, d)? * 86400 + u64::from(h) * 3600)
}

/// Days since 1970-01-01 of a Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> Option<u64> {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    u64::try_from(era * 146_097 + doe - 719_468).ok()
}

/// Parses `--date` as upstream's `CVMFS_REPOSITORY_DATE`:
/// `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn parse_date(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?}: expected a UTC time like 2014-05-13T16:53:20Z");
    let b = s.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return Err(bad());
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| bad());
    let (y, mo, d, h, mi, se) = (
        n(0..4)?,
        n(5..7)?,
        n(8..10)?,
        n(11..13)?,
        n(14..16)?,
        n(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    let days = days_from_civil(y as i64, mo, d).ok_or_else(bad)?;
    Ok(days * 86400 + u64::from(h) * 3600 + u64::from(mi) * 60 + u64::from(se))
}

/// A verified head of a repository: the manifest and everything that
/// vouches for it, as fetched.
pub struct Head {
    pub manifest: Manifest,
    /// The files as received, for caching or replication.
    pub manifest_bytes: Vec<u8>,
    pub whitelist_bytes: Vec<u8>,
    /// The certificate object's digest, and its bytes as stored
    /// (compressed) unless it came from `cached_cert`.
    pub certificate: (Digest, Option<Vec<u8>>),
}

/// Fetches and verifies manifest, certificate and whitelist of `fqrn`.
/// `cached` is the manifest of an earlier verified open: a manifest older
/// than it (`T`) is refused, as a replay of an old, possibly vulnerable
/// release would otherwise go unnoticed.
pub fn fetch_head(
    net: &Network,
    fqrn: &str,
    keys: &[RsaPublicKey],
    cached: Option<&Manifest>,
    cached_cert: &dyn Fn(&Digest) -> Option<Vec<u8>>,
    now: u64,
) -> Result<Head, Error> {
    let mf_what = net.describe(".cvmfspublished");
    let manifest_bytes = net.get(".cvmfspublished", MAX_SIGNED, &|b| {
        // A torn or garbled answer (not a proxy's error page) is worth
        // another try elsewhere; a well-formed wrong one is not.
        split_signed(b, ".cvmfspublished")
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    let manifest = parse_manifest(&manifest_bytes, &mf_what)?;
    if manifest.fqrn != fqrn {
        return Err(Error::Untrusted(format!(
            "{mf_what}: the manifest is for repository {:?}, not {fqrn:?}",
            manifest.fqrn
        )));
    }
    if let Some(old) = cached {
        if manifest.timestamp < old.timestamp {
            return Err(Error::Untrusted(format!(
                "{mf_what}: the manifest (revision {}, published {}) is older than the one already cached (revision {}, published {}): a replayed or stale copy",
                manifest.revision, manifest.timestamp, old.revision, old.timestamp
            )));
        }
    }
    let cert_digest = fetch::parse_hash(&manifest.certificate)
        .map_err(|e| Error::Untrusted(format!("{mf_what}: `X`: {e}")))?;
    let (cert_pem, cert_stored) = match cached_cert(&cert_digest) {
        Some(pem) => (pem, None),
        None => {
            let stored = net.get_object(&cert_digest, "X", MAX_CERTIFICATE)?;
            let mut pem = Vec::new();
            fetch::inflate_into(&stored, MAX_CERTIFICATE, &mut pem).map_err(|e| {
                Error::Corrupt(format!(
                    "{}: certificate: {e}",
                    net.describe(&fetch::object_path(&cert_digest, "X"))
                ))
            })?;
            (pem, Some(stored))
        }
    };
    let fingerprint = verify_manifest(&manifest_bytes, &cert_pem, &mf_what)?;
    let wl_what = net.describe(".cvmfswhitelist");
    let whitelist_bytes = net.get(".cvmfswhitelist", MAX_SIGNED, &|b| {
        split_signed(b, ".cvmfswhitelist")
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    verify_whitelist(&whitelist_bytes, keys, fqrn, &fingerprint, now, &wl_what)?;
    Ok(Head {
        manifest,
        manifest_bytes,
        whitelist_bytes,
        certificate: (cert_digest, cert_stored),
    })
}

/// One tag of the history database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    pub hash: String,
    pub revision: u64,
    pub timestamp: u64,
    pub branch: String,
    /// Uncompressed root catalog size (0 if unknown).
    pub size: u64,
}

/// A history database, read from its (inflated) file.
pub struct History {
    pub tags: Vec<Tag>,
    /// The history object this one replaced, as upstream chains them.
    pub previous: Option<String>,
}

impl History {
    pub fn read(path: &std::path::Path, what: &str) -> Result<History, Error> {
        let bad = |e: rusqlite::Error| {
            Error::Corrupt(format!("{what}: not a CernVM-FS history database: {e}"))
        };
        let db = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(bad)?;
        let mut q = db
            .prepare("SELECT name, hash, revision, timestamp, branch, size FROM tags ORDER BY name")
            .map_err(bad)?;
        let tags = q
            .query_map([], |r| {
                Ok(Tag {
                    name: r.get(0)?,
                    hash: r.get(1)?,
                    revision: r.get::<_, i64>(2)? as u64,
                    timestamp: r.get::<_, i64>(3)? as u64,
                    branch: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    size: r.get::<_, Option<i64>>(5)?.unwrap_or(0).max(0) as u64,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(bad)?;
        let previous = db
            .query_row(
                "SELECT CAST(value AS TEXT) FROM properties WHERE key = 'previous_revision'",
                [],
                |r| r.get::<_, String>(0),
            )
            .ok();
        Ok(History { tags, previous })
    }

    /// The root hash of tag `name`; an unknown tag names the known ones.
    pub fn by_tag(&self, name: &str) -> Result<&Tag, Error> {
        self.tags
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::NoSnapshot {
                what: format!("the repository has no tag {name:?}"),
                help: format!(
                    "tags: {}",
                    self.tags
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The newest trunk snapshot published at or before `when` (upstream
    /// searches the default branch only).
    pub fn by_date(&self, when: u64) -> Result<&Tag, Error> {
        self.tags
            .iter()
            .filter(|t| t.branch.is_empty() && t.timestamp <= when)
            .max_by_key(|t| (t.revision, t.timestamp))
            .ok_or_else(|| Error::NoSnapshot {
                what: format!("no snapshot was published at or before Unix time {when}"),
                help: match self.tags.iter().map(|t| t.timestamp).min() {
                    Some(t) => format!("the oldest snapshot is from Unix time {t}"),
                    None => "the history has no tags".into(),
                },
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_date("2014-05-13T16:53:20Z").unwrap(), 1_400_000_000);
        assert_eq!(parse_date("1970-01-01T00:00:00Z").unwrap(), 0);
        assert!(parse_date("2014-05-13 16:53:20").is_err());
        assert!(parse_date("2014-13-13T16:53:20Z").is_err());
        assert_eq!(
            stamp_hours("20140513165320"),
            Some(1_400_000_000 / 3600 * 3600)
        );
        assert_eq!(stamp_hours("20000229000000"), Some(951_782_400));
    }

    #[test]
    fn signed_files_are_split() {
        let s = split_signed(b"Cabc\nSx\n--\nhash\nSIG\n--\n", "m").unwrap();
        assert_eq!(s.body, b"Cabc\nSx\n");
        assert_eq!(s.hash, b"hash");
        assert_eq!(s.signature, b"SIG\n--\n");
        assert!(split_signed(b"<html>hello</html>", "m").is_err());
    }
}

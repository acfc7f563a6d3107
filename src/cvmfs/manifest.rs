//! The signed entry points: `.cvmfspublished` (manifest) and
//! `.cvmfswhitelist` (cvmfs-format.md sections 3 and 4).

use super::keys::{fingerprint_text, Keys};
use super::{Error, Result};
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::Pkcs1v15Sign;
use sha1::{Digest, Sha1};

/// MD5 of the empty root path, which the client requires in `R`.
const ROOT_PATH_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The fields of a manifest this publisher writes and reads back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Root catalog hash text (no `C`).
    pub catalog: String,
    /// Uncompressed size of the root catalog.
    pub catalog_size: u64,
    pub ttl: u64,
    pub revision: u64,
    pub fqrn: String,
    pub certificate: String,
    pub history: Option<String>,
    /// Publish time, Unix seconds.
    pub timestamp: u64,
}

impl Manifest {
    fn body(&self) -> String {
        let mut s = format!(
            "C{}\nB{}\nR{ROOT_PATH_MD5}\nD{}\nS{}\nGno\nAno\nN{}\nX{}\n",
            self.catalog, self.catalog_size, self.ttl, self.revision, self.fqrn, self.certificate
        );
        if let Some(h) = &self.history {
            s.push_str(&format!("H{h}\n"));
        }
        s.push_str(&format!("T{}\n", self.timestamp));
        s
    }

    /// The whole file: body, `--`, hash line, signature by the repository key
    /// (PKCS#1 v1.5 with SHA-1 DigestInfo over the hash's hex text).
    pub fn signed(&self, keys: &Keys) -> Vec<u8> {
        let body = self.body();
        let hash = hex::encode(Sha1::digest(body.as_bytes()));
        let sig = SigningKey::<Sha1>::new(keys.repository.clone()).sign(hash.as_bytes());
        let mut out = format!("{body}--\n{hash}\n").into_bytes();
        out.extend_from_slice(&sig.to_bytes());
        out
    }

    /// Parses the body of a manifest file (the signature is this
    /// publisher's own and is not re-checked here).
    pub fn parse(bytes: &[u8], what: &std::path::Path) -> Result<Manifest> {
        let bad = |m: &str| Error::Repo(format!("{}: {m}", what.display()));
        let mut fields = std::collections::BTreeMap::new();
        for line in bytes.split(|b| *b == b'\n') {
            if line == b"--" {
                break;
            }
            let line = std::str::from_utf8(line).map_err(|_| bad("body is not UTF-8"))?;
            if let Some(c) = line.chars().next() {
                fields.insert(c, line[c.len_utf8()..].to_string());
            }
        }
        let get = |k: char| {
            fields
                .get(&k)
                .cloned()
                .ok_or_else(|| bad(&format!("no `{k}` line")))
        };
        let num = |k: char| -> Result<u64> {
            get(k)?
                .parse()
                .map_err(|_| bad(&format!("`{k}` is not a number")))
        };
        Ok(Manifest {
            catalog: get('C')?,
            catalog_size: num('B')?,
            ttl: num('D')?,
            revision: num('S')?,
            fqrn: get('N')?,
            certificate: get('X')?,
            history: fields.get(&'H').cloned(),
            timestamp: num('T')?,
        })
    }
}

/// A whitelist valid from `now` for `days`, listing the repository
/// certificate, signed with the master key (raw PKCS#1 v1.5 type 1 over the
/// hash's hex text, no DigestInfo).
pub fn whitelist(fqrn: &str, keys: &Keys, now: u64, days: u64) -> Result<Vec<u8>> {
    let body = format!(
        "{}\nE{}\nN{fqrn}\n{}\n",
        stamp(now),
        stamp(now + days * 86400),
        fingerprint_text(&keys.fingerprint)
    );
    let hash = hex::encode(Sha1::digest(body.as_bytes()));
    let sig = keys
        .master
        .sign(Pkcs1v15Sign::new_unprefixed(), hash.as_bytes())
        .map_err(|e| Error::Key(format!("signing the whitelist: {e}")))?;
    let mut out = format!("{body}--\n{hash}\n").into_bytes();
    out.extend_from_slice(&sig);
    Ok(out)
}

/// `YYYYMMDDhhmmss` in UTC.
fn stamp(t: u64) -> String {
    let (days, secs) = ((t / 86400) as i64, t % 86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamps() {
        assert_eq!(super::stamp(0), "19700101000000");
        assert_eq!(super::stamp(1_400_000_000), "20140513165320");
        assert_eq!(super::stamp(951_782_400), "20000229000000");
    }
}

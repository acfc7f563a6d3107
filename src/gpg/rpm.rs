//! RPM package signatures, checked as `rpmkeys --checksig` checks them
//! (rpm 4.18, v4 OpenPGP signatures), before anything of the package is
//! extracted or stored.
//!
//! An RPM file is a 96-byte lead, the *signature header*, the *main
//! header* and the payload. The signature header holds OpenPGP signatures
//! over the main header alone (`RSAHEADER`, `DSAHEADER`: what
//! `rpmsign --addsign` makes since rpm 4.14, RSA in the first, EdDSA and
//! ECDSA in the second) or over main header plus payload (`PGP`, `GPG`:
//! the v3 signatures of older packages and `rpmsign --rpmv3`), and plain
//! digests. A header-only signature covers the payload through the main
//! header's `PAYLOADDIGEST`, so that digest is checked too.
//!
//! The policy: at least one OpenPGP signature; every one present verifies
//! with a key of the repository; every digest present matches; and the
//! payload is covered by a signature (directly, or through a signed payload
//! digest), so a header-only signature over a header without a payload
//! digest is refused rather than trusted with an unprotected payload.
//!
//! The headers are read here, not by the `rpm` crate, because the signed
//! bytes are the main header exactly as stored; sizes from the file are
//! checked against the file's length before anything is allocated.

use super::{Keyring, SigError, Signer};
use md5::Md5;
use pgp::composed::{Deserializable, DetachedSignature};
use sha1::Sha1;
use sha2::digest::DynDigest;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

const LEAD: u64 = 96;
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// rpm's own limits (`hdrchkTags`, `hdrchkData`): at most 0xffff entries
/// and 256 MiB of data in a header.
const MAX_ENTRIES: u32 = 0xffff;
const MAX_DATA: u32 = 256 << 20;

// Signature header tags.
const SIG_DSA: u32 = 267;
const SIG_RSA: u32 = 268;
const SIG_SHA1: u32 = 269;
const SIG_SHA256: u32 = 273;
const SIG_PGP: u32 = 1002;
const SIG_MD5: u32 = 1004;
const SIG_GPG: u32 = 1005;
// Main header tags.
const PAYLOAD_DIGEST: u32 = 5092;
const PAYLOAD_DIGEST_ALGO: u32 = 5093;

/// The OpenPGP signature tags in the order their signers count: header
/// signatures first, then header+payload ones. The first present names
/// the package's signer.
const HEADER_SIGNATURES: [u32; 2] = [SIG_RSA, SIG_DSA];
const FULL_SIGNATURES: [u32; 2] = [SIG_PGP, SIG_GPG];

const TYPE_INT32: u32 = 4;
const TYPE_STRING: u32 = 6;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;

/// What a package's signatures say, when they all verified.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The signer of the first signature (header signature first).
    pub signer: Signer,
    /// How many OpenPGP signatures verified.
    pub signatures: usize,
}

/// Verifies the signatures and digests of the RPM file `f` (read from its
/// start; left at an unspecified position).
pub fn verify(keys: &Keyring, f: &mut File) -> Result<Verified, SigError> {
    let len = f.metadata()?.len();
    let sig = signature_header(f, len)?;
    // The signature header is padded to a multiple of 8 bytes.
    let pad = (8 - sig.raw.len() % 8) % 8;
    f.seek(SeekFrom::Current(pad as i64))?;
    let main = Header::read(f, len, "main")?;
    let payload_start = f.stream_position()?;

    let header_sigs: Vec<_> = HEADER_SIGNATURES
        .iter()
        .filter_map(|&t| sig.bin(t).transpose())
        .collect::<Result<_, _>>()?;
    let full_sigs: Vec<_> = FULL_SIGNATURES
        .iter()
        .filter_map(|&t| sig.bin(t).transpose())
        .collect::<Result<_, _>>()?;
    if header_sigs.is_empty() && full_sigs.is_empty() {
        return Err(SigError::Unsigned {
            keys: keys.describe(),
        });
    }
    let mut signers = Vec::new();
    for s in &header_sigs {
        signers.push(keys.verify(&packet(s)?, main.raw.as_slice())?);
    }
    for (tag, algo, what) in [
        (SIG_SHA256, 8, "header SHA256"),
        (SIG_SHA1, 2, "header SHA1"),
    ] {
        if let Some(want) = sig.string(tag)? {
            let got = hex::encode(hash(algo, &[&main.raw])?);
            if !got.eq_ignore_ascii_case(want.trim()) {
                return Err(SigError::Digest {
                    what,
                    part: "header",
                });
            }
        }
    }
    for s in &full_sigs {
        f.seek(SeekFrom::Start(payload_start))?;
        let data = main.raw.as_slice().chain(&mut *f);
        signers.push(keys.verify(&packet(s)?, data)?);
    }
    let payload_digest = match main.string_array_first(PAYLOAD_DIGEST)? {
        Some(hex) => Some((main.int32(PAYLOAD_DIGEST_ALGO)?.unwrap_or(8), hex)),
        None => None,
    };
    if payload_digest.is_none() && full_sigs.is_empty() {
        return Err(SigError::Malformed(
            "the payload is covered by no signature (header signature without a payload digest)"
                .into(),
        ));
    }
    let md5 = sig.bin(SIG_MD5)?;
    if payload_digest.is_some() || md5.is_some() {
        f.seek(SeekFrom::Start(payload_start))?;
        let mut payload = payload_digest
            .as_ref()
            .map(|(algo, _)| hasher(*algo))
            .transpose()?;
        let mut whole = Md5::new();
        Digest::update(&mut whole, &main.raw);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            if let Some(h) = payload.as_mut() {
                h.update(&buf[..n]);
            }
            if md5.is_some() {
                Digest::update(&mut whole, &buf[..n]);
            }
        }
        if let (Some(h), Some((_, want))) = (payload, &payload_digest) {
            if !hex::encode(h.finalize()).eq_ignore_ascii_case(want.trim()) {
                return Err(SigError::Digest {
                    what: "payload",
                    part: "payload",
                });
            }
        }
        if let Some(want) = md5 {
            if whole.finalize().as_slice() != want {
                return Err(SigError::Digest {
                    what: "MD5",
                    part: "header or payload",
                });
            }
        }
    }
    Ok(Verified {
        signatures: signers.len(),
        signer: signers.swap_remove(0),
    })
}

/// Reads the lead and the signature header of `f` (of `len` bytes) from
/// its start.
fn signature_header(f: &mut File, len: u64) -> Result<Header, SigError> {
    f.rewind()?;
    let mut lead = [0u8; LEAD as usize];
    f.read_exact(&mut lead)
        .map_err(|_| SigError::Malformed("shorter than an RPM lead".into()))?;
    if lead[..4] != [0xed, 0xab, 0xee, 0xdb] {
        return Err(SigError::Malformed(
            "not an RPM file (bad lead magic)".into(),
        ));
    }
    Header::read(f, len, "signature")
}

/// Bytes of a package's start that hold its lead and signature header:
/// rpm reserves 4 KiB for signatures (rpm 4.16 and later) and a 4096-bit
/// RSA signature with the digests is well under that; a signature header
/// that does not fit is refused, not read further.
pub const SIGNATURE_PREFIX: u64 = 64 << 10;

/// The repository key a package *claims* as its signer, from the lead and
/// signature header alone (`f` may hold just the package's first
/// [`SIGNATURE_PREFIX`] bytes): the primary key fingerprint of the issuer
/// of its first OpenPGP signature, the one [`verify`] reports as signer.
/// Nothing is verified here (that needs the whole package and is the
/// fetch's job); `eval` records the claim in the lock and the fetch then
/// refuses a package whose verified signer is another key. Unsigned, or
/// signed by a key that is not the repository's: an error, as `verify`
/// would say.
pub fn claimed_signer(keys: &Keyring, f: &mut File) -> Result<String, SigError> {
    let len = f.metadata()?.len();
    let sig = signature_header(f, len)?;
    for tag in HEADER_SIGNATURES.iter().chain(&FULL_SIGNATURES) {
        if let Some(bytes) = sig.bin(*tag)? {
            return keys.issuer_of(&packet(bytes)?);
        }
    }
    Err(SigError::Unsigned {
        keys: keys.describe(),
    })
}

fn packet(bytes: &[u8]) -> Result<pgp::packet::Signature, SigError> {
    DetachedSignature::from_bytes(bytes)
        .map(|d| d.signature)
        .map_err(|e| SigError::Bad {
            key_id: "?".into(),
            reason: format!("not an OpenPGP signature packet: {e}"),
        })
}

/// A digest by OpenPGP hash algorithm id, as rpm's `*DIGESTALGO` tags
/// give them.
fn hasher(algo: u32) -> Result<Box<dyn DynDigest>, SigError> {
    Ok(match algo {
        1 => Box::new(Md5::new()),
        2 => Box::new(Sha1::new()),
        8 => Box::new(Sha256::new()),
        9 => Box::new(Sha384::new()),
        10 => Box::new(Sha512::new()),
        11 => Box::new(Sha224::new()),
        other => {
            return Err(SigError::Malformed(format!(
                "unknown digest algorithm {other}"
            )))
        }
    })
}

fn hash(algo: u32, parts: &[&[u8]]) -> Result<Box<[u8]>, SigError> {
    let mut h = hasher(algo)?;
    for p in parts {
        h.update(p);
    }
    Ok(h.finalize())
}

/// One header as stored: its raw bytes (magic to end of data, what a
/// header signature covers) and where its index and data are in them.
struct Header {
    raw: Vec<u8>,
    entries: u32,
    which: &'static str,
}

impl Header {
    fn read(f: &mut File, file_len: u64, which: &'static str) -> Result<Header, SigError> {
        let mut intro = [0u8; 16];
        f.read_exact(&mut intro)
            .map_err(|_| SigError::Malformed(format!("truncated in the {which} header")))?;
        if intro[..4] != HEADER_MAGIC {
            return Err(SigError::Malformed(format!("bad {which} header magic")));
        }
        let entries = be32(&intro[8..]);
        let data = be32(&intro[12..]);
        if entries > MAX_ENTRIES || data > MAX_DATA {
            return Err(SigError::Malformed(format!(
                "{which} header declares {entries} entries and {data} bytes, over rpm's limits"
            )));
        }
        let size = 16 + 16 * u64::from(entries) + u64::from(data);
        let here = f.stream_position()? - 16;
        if here + size > file_len {
            return Err(SigError::Malformed(format!(
                "{which} header declares {size} bytes, past the end of the file"
            )));
        }
        let mut raw = vec![0u8; size as usize];
        raw[..16].copy_from_slice(&intro);
        f.read_exact(&mut raw[16..])?;
        Ok(Header {
            raw,
            entries,
            which,
        })
    }

    /// The (type, offset, count) of `tag`, offsets checked to be inside
    /// the data.
    fn entry(&self, tag: u32) -> Option<(u32, usize, usize)> {
        let index = &self.raw[16..16 + 16 * self.entries as usize];
        index.chunks_exact(16).find_map(|e| {
            (be32(e) == tag).then(|| {
                (
                    be32(&e[4..]),
                    be32(&e[8..]) as usize,
                    be32(&e[12..]) as usize,
                )
            })
        })
    }

    fn data(&self) -> &[u8] {
        &self.raw[16 + 16 * self.entries as usize..]
    }

    fn bad(&self, tag: u32) -> SigError {
        SigError::Malformed(format!("{} header: tag {tag} is malformed", self.which))
    }

    fn bin(&self, tag: u32) -> Result<Option<&[u8]>, SigError> {
        let Some((ty, off, count)) = self.entry(tag) else {
            return Ok(None);
        };
        if ty != TYPE_BIN {
            return Err(self.bad(tag));
        }
        self.data()
            .get(off..off.checked_add(count).ok_or_else(|| self.bad(tag))?)
            .map(Some)
            .ok_or_else(|| self.bad(tag))
    }

    fn cstr(&self, tag: u32, off: usize) -> Result<&str, SigError> {
        let rest = self.data().get(off..).ok_or_else(|| self.bad(tag))?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.bad(tag))?;
        std::str::from_utf8(&rest[..end]).map_err(|_| self.bad(tag))
    }

    fn string(&self, tag: u32) -> Result<Option<&str>, SigError> {
        match self.entry(tag) {
            None => Ok(None),
            Some((TYPE_STRING, off, _)) => self.cstr(tag, off).map(Some),
            Some(_) => Err(self.bad(tag)),
        }
    }

    fn string_array_first(&self, tag: u32) -> Result<Option<&str>, SigError> {
        match self.entry(tag) {
            None => Ok(None),
            Some((TYPE_STRING_ARRAY, off, count)) if count >= 1 => self.cstr(tag, off).map(Some),
            Some(_) => Err(self.bad(tag)),
        }
    }

    fn int32(&self, tag: u32) -> Result<Option<u32>, SigError> {
        match self.entry(tag) {
            None => Ok(None),
            Some((TYPE_INT32, off, count)) if count >= 1 => self
                .data()
                .get(off..off + 4)
                .map(|b| Some(be32(b)))
                .ok_or_else(|| self.bad(tag)),
            Some(_) => Err(self.bad(tag)),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ring() -> Keyring {
        Keyring::empty()
    }

    fn verdict(bytes: &[u8]) -> String {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        verify(&ring(), &mut f).unwrap_err().to_string()
    }

    fn lead() -> Vec<u8> {
        let mut v = vec![0u8; LEAD as usize];
        v[..4].copy_from_slice(&[0xed, 0xab, 0xee, 0xdb]);
        v
    }

    fn header(entries: u32, data: u32) -> Vec<u8> {
        let mut v = HEADER_MAGIC.to_vec();
        v.extend([0; 4]);
        v.extend(entries.to_be_bytes());
        v.extend(data.to_be_bytes());
        v
    }

    /// Sizes come from the file: they are checked against its length and
    /// rpm's limits before anything is allocated.
    #[test]
    fn hostile_headers_are_refused_before_allocating() {
        assert!(verdict(b"short").contains("shorter than an RPM lead"));
        assert!(verdict(&[0u8; 200]).contains("bad lead magic"));
        let mut huge = lead();
        huge.extend(header(0xffff, MAX_DATA));
        assert!(
            verdict(&huge).contains("past the end of the file"),
            "{}",
            verdict(&huge)
        );
        let mut over = lead();
        over.extend(header(u32::MAX, u32::MAX));
        assert!(verdict(&over).contains("over rpm's limits"));
        let mut bad_magic = lead();
        bad_magic.extend([0u8; 16]);
        assert!(verdict(&bad_magic).contains("bad signature header magic"));
    }

    /// An entry whose offset points past the data is malformed, not a panic.
    #[test]
    fn entries_outside_the_data_are_malformed() {
        let mut bytes = lead();
        bytes.extend(header(1, 4));
        bytes.extend(SIG_RSA.to_be_bytes());
        bytes.extend(TYPE_BIN.to_be_bytes());
        bytes.extend(2u32.to_be_bytes()); // offset 2
        bytes.extend(100u32.to_be_bytes()); // 100 bytes: past the 4 of data
        bytes.extend([0u8; 4]);
        bytes.extend([0u8; 4]); // padding to 8
        bytes.extend(header(0, 0));
        let v = verdict(&bytes);
        assert!(v.contains("tag 268 is malformed"), "{v}");
        // No signature at all: unsigned.
        let mut unsigned = lead();
        unsigned.extend(header(0, 0));
        unsigned.extend(header(0, 0));
        assert!(verdict(&unsigned).contains("unsigned"));
    }

    /// The signer claim reads the signature header alone, with the same
    /// checks: a bare lead and signature header (no main header, no
    /// payload) is enough to say "unsigned" or "malformed".
    #[test]
    fn claims_need_only_the_signature_header() {
        let claim = |bytes: &[u8]| {
            let mut f = tempfile::tempfile().unwrap();
            f.write_all(bytes).unwrap();
            claimed_signer(&ring(), &mut f).unwrap_err().to_string()
        };
        let mut unsigned = lead();
        unsigned.extend(header(0, 0));
        assert!(
            claim(&unsigned).contains("unsigned"),
            "{}",
            claim(&unsigned)
        );
        let mut garbage = lead();
        garbage.extend(header(1, 4));
        garbage.extend(SIG_RSA.to_be_bytes());
        garbage.extend(TYPE_BIN.to_be_bytes());
        garbage.extend(0u32.to_be_bytes());
        garbage.extend(4u32.to_be_bytes());
        garbage.extend([0xff; 4]);
        let c = claim(&garbage);
        assert!(c.contains("not an OpenPGP signature packet"), "{c}");
        let mut cut = lead();
        cut.extend(header(1, 4000));
        assert!(claim(&cut).contains("past the end"), "{}", claim(&cut));
    }
}

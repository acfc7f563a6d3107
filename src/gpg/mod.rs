//! OpenPGP trust: the public keys a repository names (`gpgkey`), and the
//! signatures checked against them: every RPM's ([`rpm`]) and, with
//! `repo_gpgcheck`, the detached signature of `repomd.xml`
//! ([`Keyring::verify_detached`]).
//!
//! The OpenPGP work itself (packet parsing, RSA/EdDSA/ECDSA verification,
//! key binding signatures) is rpgp's (`pgp` crate); this module decides
//! *which* key may have made a signature and *when*, the way rpm does: the
//! signature's issuer must be a key of the repository (a primary key or a
//! signing subkey whose binding verifies), and the signature must have been
//! made while that key was valid. A key that has expired since still
//! verifies what it signed while it was valid (rpm 4.18 and gpg agree).
//! Revoked keys are refused when read, revoked subkeys never match.

pub mod fetch;
pub mod repomd;
pub mod rpm;
pub mod signers;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

/// Key files are small (a 4096-bit RSA key with a few user ids is about
/// 3 KB armored); anything above this is not a key file.
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// Why a key file or a signature was refused.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SigError {
    #[error("not an OpenPGP public key: {0}")]
    #[diagnostic(
        code(gpg::not_a_key),
        help("export it with `gpg --export --armor KEYID`")
    )]
    NotAKey(String),
    #[error("no OpenPGP signature (the package is unsigned; repository keys: {keys})")]
    #[diagnostic(
        code(gpg::unsigned),
        help("sign it with `rpmsign --addsign`, or set `gpgcheck = false` on the repository")
    )]
    Unsigned { keys: String },
    #[error("signed by key {key_id}, which is not a key of this repository (its keys: {keys})")]
    #[diagnostic(
        code(gpg::unknown_key),
        help("add the signer's public key to the repository's `gpgkey`")
    )]
    UnknownKey { key_id: String, keys: String },
    #[error("bad signature by key {key_id}: {reason}")]
    #[diagnostic(code(gpg::bad_signature))]
    Bad { key_id: String, reason: String },
    #[error("signature by key {key_id} was made {when}, outside the key's validity")]
    #[diagnostic(code(gpg::key_not_valid))]
    NotValid { key_id: String, when: String },
    #[error("{what} digest mismatch (the {part} was altered after it was built or signed)")]
    #[diagnostic(code(gpg::digest))]
    Digest {
        what: &'static str,
        part: &'static str,
    },
    #[error("malformed package: {0}")]
    #[diagnostic(code(gpg::malformed))]
    Malformed(String),
    #[error("reading the package: {0}")]
    #[diagnostic(code(gpg::io))]
    Io(#[from] std::io::Error),
}

/// The public keys of one repository, each with its self-signatures
/// checked when it was read.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
}

/// Who made a signature that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    /// Fingerprint (upper-case hex) of the primary key, the one a
    /// repository's `gpgkey` names and the lock records.
    pub primary: String,
    /// Key id (16 hex digits) of the key or subkey that signed.
    pub key_id: String,
}

impl Keyring {
    /// Parses one or more public keys, ASCII-armored (possibly several
    /// armor blocks in one file, as `RPM-GPG-KEY-*` files have) or binary.
    /// Every key's user-id and subkey binding signatures must verify.
    pub fn parse(bytes: &[u8]) -> Result<Keyring, SigError> {
        let not_a_key = |e: pgp::errors::Error| SigError::NotAKey(e.to_string());
        let mut keys = Vec::new();
        let text = std::str::from_utf8(bytes).ok();
        match text.filter(|t| t.trim_start().starts_with("-----BEGIN")) {
            Some(text) => {
                const BEGIN: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
                if !text.contains(BEGIN) {
                    return Err(SigError::NotAKey(
                        "the armor is not a PUBLIC KEY BLOCK".into(),
                    ));
                }
                for block in text.split(BEGIN).skip(1) {
                    let armored = format!("{BEGIN}{block}");
                    let (iter, _) =
                        SignedPublicKey::from_armor_many(armored.as_bytes()).map_err(not_a_key)?;
                    for k in iter {
                        keys.push(k.map_err(not_a_key)?);
                    }
                }
            }
            None => {
                for k in SignedPublicKey::from_bytes_many(bytes).map_err(not_a_key)? {
                    keys.push(k.map_err(not_a_key)?);
                }
            }
        }
        if keys.is_empty() {
            return Err(SigError::NotAKey("no public key in it".into()));
        }
        for k in &keys {
            k.verify_bindings().map_err(|e| {
                SigError::NotAKey(format!(
                    "key {}: its self-signatures do not verify: {e}",
                    fingerprint(k)
                ))
            })?;
            // A revoked key signs nothing we accept; saying so here is
            // clearer than refusing every package later.
            let revoked = k.details.revocation_signatures.iter().any(|r| {
                r.typ() == Some(SignatureType::KeyRevocation)
                    && r.verify_key(&k.primary_key).is_ok()
            });
            if revoked {
                return Err(SigError::NotAKey(format!(
                    "key {} is revoked",
                    fingerprint(k)
                )));
            }
        }
        Ok(Keyring { keys })
    }

    /// A keyring without keys, for reading a package's signatures without
    /// trusting any (every signature is by an unknown key): the fuzz
    /// targets' view of a hostile package.
    pub fn empty() -> Keyring {
        Keyring { keys: Vec::new() }
    }

    /// Adds the keys of another key file.
    pub fn extend(&mut self, other: Keyring) {
        for k in other.keys {
            if !self
                .keys
                .iter()
                .any(|have| have.fingerprint() == k.fingerprint())
            {
                self.keys.push(k);
            }
        }
    }

    /// Primary key fingerprints, sorted: what identifies the keyring in
    /// derivation ids and the lock.
    pub fn fingerprints(&self) -> Vec<String> {
        let mut v: Vec<String> = self.keys.iter().map(fingerprint).collect();
        v.sort();
        v
    }

    fn describe(&self) -> String {
        self.keys
            .iter()
            .map(|k| hex::encode_upper(k.legacy_key_id()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Verifies an ASCII-armored or binary detached signature (such as
    /// `repomd.xml.asc`) of `data`.
    pub fn verify_detached(&self, data: &[u8], signature: &[u8]) -> Result<Signer, SigError> {
        let bad = |e: pgp::errors::Error| SigError::Bad {
            key_id: "?".into(),
            reason: format!("not an OpenPGP signature: {e}"),
        };
        let armored = signature.trim_ascii_start().starts_with(b"-----BEGIN");
        let sig = if armored {
            DetachedSignature::from_armor_single(signature)
                .map_err(bad)?
                .0
        } else {
            DetachedSignature::from_bytes(signature).map_err(bad)?
        };
        self.verify(&sig.signature, data)
    }

    /// Verifies one signature packet over what `data` yields: finds the
    /// issuing key, checks the signature cryptographically, then checks the
    /// key was valid when the signature was made.
    pub fn verify(&self, sig: &Signature, data: impl Read) -> Result<Signer, SigError> {
        let key_id = issuer(sig);
        let (primary, candidate) = self.find(sig).ok_or_else(|| SigError::UnknownKey {
            key_id: key_id.clone(),
            keys: self.describe(),
        })?;
        let bad = |e: pgp::errors::Error| SigError::Bad {
            key_id: key_id.clone(),
            reason: e.to_string(),
        };
        let validity = match candidate {
            Candidate::Primary => {
                sig.verify(&primary.primary_key, data).map_err(bad)?;
                // Only the key's own signatures state its expiration, not
                // third parties' certifications.
                let own = |s: &&Signature| {
                    s.issuer_key_id()
                        .iter()
                        .any(|i| **i == primary.legacy_key_id())
                        || s.issuer_fingerprint()
                            .iter()
                            .any(|f| **f == primary.fingerprint())
                };
                let selfsigs = primary
                    .details
                    .direct_signatures
                    .iter()
                    .chain(primary.details.users.iter().flat_map(|u| &u.signatures))
                    .filter(own);
                Validity::of(primary.primary_key.created_at().as_secs(), selfsigs)
            }
            Candidate::Subkey(i) => {
                let sub = &primary.public_subkeys[i];
                sig.verify(&sub.key, data).map_err(bad)?;
                let bindings = sub
                    .signatures
                    .iter()
                    .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding));
                Validity::of(sub.key.created_at().as_secs(), bindings)
            }
        };
        let made = sig.created().map_or(0, |t| t.as_secs());
        if !validity.contains(made) {
            return Err(SigError::NotValid {
                key_id,
                when: format!("at {made} (Unix time)"),
            });
        }
        if let Some(exp) = sig.signature_expiration_time() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if exp.as_secs() != 0 && u64::from(made) + u64::from(exp.as_secs()) <= now {
                return Err(SigError::Bad {
                    key_id,
                    reason: "the signature has expired".into(),
                });
            }
        }
        Ok(Signer {
            primary: fingerprint(primary),
            key_id,
        })
    }

    /// The primary key fingerprint of the repository key that `sig` names
    /// as its issuer, without verifying the signature.
    pub fn issuer_of(&self, sig: &Signature) -> Result<String, SigError> {
        self.find(sig)
            .map(|(k, _)| fingerprint(k))
            .ok_or_else(|| SigError::UnknownKey {
                key_id: issuer(sig),
                keys: self.describe(),
            })
    }

    /// The key that may have made `sig`: named by its issuer fingerprint or
    /// key id; a subkey only if it is a signing key.
    fn find(&self, sig: &Signature) -> Option<(&SignedPublicKey, Candidate)> {
        let fps = sig.issuer_fingerprint();
        let ids = sig.issuer_key_id();
        let named = |k: &dyn KeyDetails| {
            fps.iter().any(|f| **f == k.fingerprint())
                || ids.iter().any(|i| **i == k.legacy_key_id())
        };
        for k in &self.keys {
            if named(&k.primary_key) {
                return Some((k, Candidate::Primary));
            }
            for (i, sub) in k.public_subkeys.iter().enumerate() {
                let revoked = sub
                    .signatures
                    .iter()
                    .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation));
                let signs = !revoked && sub.signatures.iter().any(|s| s.key_flags().sign());
                if signs && named(&sub.key) {
                    return Some((k, Candidate::Subkey(i)));
                }
            }
        }
        None
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Keyring) -> bool {
        self.fingerprints() == other.fingerprints()
    }
}

impl Eq for Keyring {}

enum Candidate {
    Primary,
    Subkey(usize),
}

/// When a key may sign: from its creation to its expiration, which the
/// newest self-signature (binding or certification) states relative to the
/// key's creation; no expiration means forever.
struct Validity {
    from: u32,
    until: Option<u64>,
}

impl Validity {
    fn of<'a>(created: u32, selfsigs: impl Iterator<Item = &'a Signature>) -> Validity {
        let newest = selfsigs.max_by_key(|s| s.created().map_or(0, |t| t.as_secs()));
        let until = newest
            .and_then(Signature::key_expiration_time)
            .map(|d| d.as_secs())
            .filter(|&d| d != 0)
            .map(|d| u64::from(created) + u64::from(d));
        Validity {
            from: created,
            until,
        }
    }

    fn contains(&self, t: u32) -> bool {
        t >= self.from && self.until.is_none_or(|u| u64::from(t) < u)
    }
}

fn fingerprint(k: &SignedPublicKey) -> String {
    format!("{:X}", k.fingerprint())
}

/// The signature's issuer as a 16-digit key id (from the issuer
/// fingerprint when there is one), for messages.
fn issuer(sig: &Signature) -> String {
    if let Some(id) = sig.issuer_key_id().first() {
        return hex::encode_upper(id);
    }
    match sig.issuer_fingerprint().first() {
        Some(fp) => {
            let hex = format!("{fp:X}");
            hex[hex.len().saturating_sub(16)..].to_string()
        }
        None => "(none)".into(),
    }
}

/// Reads a key file named by a spec: a regular file of at most
/// [`MAX_KEY_FILE`] bytes.
pub fn read_key_file(path: &std::path::Path) -> Result<Keyring, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(format!(
            "{} is {} bytes, more than a key file can be ({MAX_KEY_FILE})",
            path.display(),
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Keyring::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Fetches a key file named by URL (`gpgkey = "https://…/RPM-GPG-KEY"`)
/// with the repository reader's HTTP client.
pub fn fetch_key(repo: &str, url: &str) -> Result<Keyring, String> {
    let (dir, file) = url
        .rsplit_once('/')
        .filter(|(d, f)| !f.is_empty() && d.contains("://") && !d.ends_with('/'))
        .ok_or_else(|| format!("`{url}` does not name a key file"))?;
    let loc = crate::repo::fetch::Location::parse(repo, dir).map_err(|e| e.to_string())?;
    let bytes = loc
        .read(repo, file, MAX_KEY_FILE)
        .map_err(|e| e.to_string())?;
    Keyring::parse(&bytes).map_err(|e| format!("{url}: {e}"))
}

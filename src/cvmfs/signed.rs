//! The signed-file envelope of `.cvmfspublished` and `.cvmfswhitelist`
//! (cvmfs-format.md sections 3 and 4): a body, a `--` line, the SHA-1 of
//! the body in hex, and the signature over that hash line.
//!
//! Both readers of signed files use this: the publisher when it checks the
//! repository it builds on, the client when it mounts one. They word their
//! errors differently (a damaged Stratum-0 of ours, an untrusted remote),
//! so this module only answers yes or no.

use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::{Digest as _, Sha1};

/// A signed file split into its three parts.
pub(crate) struct Signed<'a> {
    /// Everything before the `--` line, through its last newline.
    pub body: &'a [u8],
    /// The hash line (without its newline).
    pub hash: &'a [u8],
    /// The raw signature bytes after the hash line.
    pub signature: &'a [u8],
}

/// Why a file is not a signed file at all.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Malformed {
    NoSeparator,
    NoHashLine,
}

/// Splits at the first `--` line.
pub(crate) fn split(bytes: &[u8]) -> Result<Signed<'_>, Malformed> {
    let at = if bytes.starts_with(b"--\n") {
        0
    } else {
        bytes
            .windows(4)
            .position(|w| w == b"\n--\n")
            .ok_or(Malformed::NoSeparator)?
            + 1
    };
    let rest = &bytes[at + 3..];
    let nl = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(Malformed::NoHashLine)?;
    Ok(Signed {
        body: &bytes[..at],
        hash: &rest[..nl],
        signature: &rest[nl + 1..],
    })
}

impl Signed<'_> {
    /// Whether the hash line is the SHA-1 of the body (lower-case hex).
    pub fn hash_matches(&self) -> bool {
        self.hash == hex::encode(Sha1::digest(self.body)).as_bytes()
    }

    /// A manifest's signature: PKCS#1 v1.5 over SHA-1 of the hash line,
    /// made with the repository certificate's key.
    pub fn signed_by_certificate(&self, key: &RsaPublicKey) -> bool {
        use rsa::signature::Verifier;
        rsa::pkcs1v15::Signature::try_from(self.signature).is_ok_and(|s| {
            rsa::pkcs1v15::VerifyingKey::<Sha1>::new(key.clone())
                .verify(self.hash, &s)
                .is_ok()
        })
    }

    /// A whitelist's signature: the hash line itself, unprefixed (as
    /// `openssl rsautl -sign` makes it), with a master key.
    pub fn signed_by_master(&self, key: &RsaPublicKey) -> bool {
        key.verify(Pkcs1v15Sign::new_unprefixed(), self.hash, self.signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_the_first_separator_line() {
        let s = split(b"Cabc\nRxyz\n--\nHASH\nSIG--\nNATURE").unwrap();
        assert_eq!(s.body, b"Cabc\nRxyz\n");
        assert_eq!(s.hash, b"HASH");
        assert_eq!(s.signature, b"SIG--\nNATURE");
        assert_eq!(split(b"--\nH\n").unwrap().body, b"");
        assert_eq!(split(b"Cabc\n").err(), Some(Malformed::NoSeparator));
        assert_eq!(split(b"Cabc\n--\nH").err(), Some(Malformed::NoHashLine));
        // `--` inside a line is not the separator.
        assert_eq!(split(b"C--\n").err(), Some(Malformed::NoSeparator));
    }

    #[test]
    fn the_hash_line_must_be_the_bodys_sha1() {
        let body = b"Cabc\n";
        let good = [
            &body[..],
            b"--\n",
            hex::encode(Sha1::digest(body)).as_bytes(),
            b"\n",
        ]
        .concat();
        assert!(split(&good).unwrap().hash_matches());
        let mut edited = good.clone();
        edited[1] = b'x';
        assert!(!split(&edited).unwrap().hash_matches());
    }
}

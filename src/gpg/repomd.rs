//! `repo_gpgcheck`: the repository's `repomd.xml` must carry a valid
//! detached signature (`repomd.xml.asc`, as `gpg --detach-sign --armor`
//! makes it) by one of its keys before anything it lists is trusted.
//!
//! repomd.xml checksums every other metadata file, so verifying it is
//! enough; the caller identifies the verified bytes by their blake3 hash,
//! and the repository loader refuses metadata whose repomd.xml has a
//! different hash (see `eval::pin`), so what is parsed is what was
//! verified even if the mirror changes in between.

use super::{Keyring, SigError};
use crate::repo::fetch::Location;
use crate::repo::RepoError;

const REPOMD: &str = "repodata/repomd.xml";
const SIGNATURE: &str = "repodata/repomd.xml.asc";
/// A detached signature is a few hundred bytes; more is not one.
const MAX_SIGNATURE: u64 = 64 << 10;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RepomdError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Read(#[from] RepoError),
    #[error("repository `{repo}`: repo_gpgcheck is on, but there is no signature {url}")]
    #[diagnostic(
        code(gpg::repomd_unsigned),
        help("sign it with `gpg --detach-sign --armor repodata/repomd.xml`, or set `repo_gpgcheck = false`")
    )]
    Unsigned { repo: String, url: String },
    #[error("repository `{repo}`: the signature {url} of repomd.xml does not verify: {source}")]
    #[diagnostic(
        code(gpg::repomd),
        help("the mirror's metadata is not what the repository's keys signed; with `repo_gpgcheck = false` it is not checked")
    )]
    Signature {
        repo: String,
        url: String,
        #[source]
        source: SigError,
    },
}

/// Reads `repomd.xml` and its signature, verifies the signature with
/// `keys`, and returns the blake3 (hex) of the verified repomd.xml, the
/// same hash `repo::metadata_hash` gives.
pub fn verified_hash(repo: &str, url: &str, keys: &Keyring) -> Result<String, RepomdError> {
    let loc = Location::parse(repo, url)?;
    let repomd = loc.read(repo, REPOMD, crate::repo::fetch::REPOMD_MAX)?;
    let signature = match loc.read(repo, SIGNATURE, MAX_SIGNATURE) {
        Err(RepoError::Missing { .. }) => {
            return Err(RepomdError::Unsigned {
                repo: repo.to_string(),
                url: loc.display(SIGNATURE),
            })
        }
        other => other?,
    };
    let refuse = |source| RepomdError::Signature {
        repo: repo.to_string(),
        url: loc.display(SIGNATURE),
        source,
    };
    keys.verify_detached(&repomd, &signature).map_err(refuse)?;
    Ok(blake3::hash(&repomd).to_hex().to_string())
}

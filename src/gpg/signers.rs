//! The signer of each package in the lock (`signer = "FPR"`).
//!
//! A repository's `gpgkey` may hold several keys, and any of them may sign
//! any package. Which one did is part of what was pinned: a package that a
//! second trusted key starts to sign (a rotation, or one key stolen) must
//! show in review as a lock change, and must not slip through a
//! `--locked` build. So `eval`, when it pins a package from a repository
//! with `gpgcheck`, reads the package's lead and signature header (the
//! first [`rpm::SIGNATURE_PREFIX`] bytes, never the payload) and records
//! the repository key its first signature names; the package's fetch
//! verifies the whole package and refuses it unless that key made the
//! signature. The signer is a function of the package's bytes, which the
//! checksum pins, so an entry kept from the previous lock keeps its signer
//! without reading anything.

use super::{rpm, Keyring};
use crate::eval::spec::Repo;
use crate::lock::{BranchLock, LockedPackage};
use std::collections::{BTreeMap, BTreeSet};

/// A package whose signer could not be determined when it was pinned.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{nevra} from repository `{repo}` ({url}): {reason}")]
#[diagnostic(
    code(gpg::signer),
    help("with `gpgcheck`, every package must be signed by a key of the repository's `gpgkey`")
)]
pub struct SignerError {
    pub nevra: String,
    pub repo: String,
    pub url: String,
    pub reason: String,
}

/// A package the new lock says another key signed than the old lock did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignerChange {
    /// `name.arch`.
    pub package: String,
    /// The fingerprints the old lock recorded for it (several only for
    /// several locked versions).
    pub old: Vec<String>,
    pub new: String,
}

impl std::fmt::Display for SignerChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} was signed by {}, now by {}",
            self.package,
            self.old.join(" and "),
            self.new
        )
    }
}

/// Sets `signer` of every package from a repository of `repos` with
/// `gpgcheck`: taken over from the identical entry of `current` when it has
/// one, else read from the package.
pub fn record(
    repos: &[Repo],
    current: Option<&BranchLock>,
    packages: &mut [LockedPackage],
) -> Result<(), SignerError> {
    let checked: BTreeMap<&str, (&Repo, &Keyring)> = repos
        .iter()
        .filter(|r| r.gpgcheck)
        .filter_map(|r| Some((r.name.as_str(), (r, r.keys.as_deref()?))))
        .collect();
    let known: BTreeMap<LockedPackage, &str> = current
        .iter()
        .flat_map(|c| &c.package)
        .filter_map(|p| {
            let s = p.signer.as_deref()?;
            Some((
                LockedPackage {
                    signer: None,
                    ..p.clone()
                },
                s,
            ))
        })
        .collect();
    // One read per package new to the lock (its first 64 KiB, a request
    // each over HTTP), in parallel; the first failure in package order is
    // the one reported.
    use rayon::prelude::*;
    let signers: Vec<Result<Option<String>, SignerError>> = packages
        .par_iter()
        .map(|p| {
            let Some((repo, keys)) = checked.get(p.repo.as_str()) else {
                return Ok(None);
            };
            let unsigned = LockedPackage {
                signer: None,
                ..p.clone()
            };
            Ok(Some(match known.get(&unsigned) {
                Some(s) => (*s).to_string(),
                None => read(repo, keys, p)?,
            }))
        })
        .collect();
    for (p, signer) in packages.iter_mut().zip(signers) {
        p.signer = signer?;
    }
    Ok(())
}

/// The signer `p`'s signature header names, read from the repository.
fn read(repo: &Repo, keys: &Keyring, p: &LockedPackage) -> Result<String, SignerError> {
    let source = repo.location.as_source();
    let fail = |url: String, reason: String| SignerError {
        nevra: p.nevra(),
        repo: repo.name.clone(),
        url,
        reason,
    };
    let loc = crate::repo::fetch::Location::parse(&repo.name, &source)
        .map_err(|e| fail(source.clone(), e.to_string()))?;
    let url = loc.display(&p.location);
    let mut head = tempfile::tempfile().map_err(|e| fail(url.clone(), e.to_string()))?;
    loc.copy_to(&repo.name, &p.location, rpm::SIGNATURE_PREFIX, &mut head)
        .map_err(|e| fail(url.clone(), e.to_string()))?;
    rpm::claimed_signer(keys, &mut head).map_err(|e| fail(url, e.to_string()))
}

/// The packages of `new` signed by another key than `old` recorded for a
/// package of the same name and arch, by name. Packages new to the lock,
/// and entries without a signer on either side, are no change of signer.
pub fn changes(old: &BranchLock, new: &BranchLock) -> Vec<SignerChange> {
    let mut before: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for p in &old.package {
        if let Some(s) = &p.signer {
            before
                .entry(format!("{}.{}", p.name, p.arch))
                .or_default()
                .insert(s);
        }
    }
    let mut out: BTreeMap<String, SignerChange> = BTreeMap::new();
    for p in &new.package {
        let package = format!("{}.{}", p.name, p.arch);
        let (Some(s), Some(was)) = (&p.signer, before.get(&package)) else {
            continue;
        };
        if !was.contains(s.as_str()) {
            out.insert(
                package.clone(),
                SignerChange {
                    package,
                    old: was.iter().map(|s| s.to_string()).collect(),
                    new: s.clone(),
                },
            );
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, release: &str, signer: Option<&str>) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            epoch: 0,
            version: "1".into(),
            release: release.into(),
            arch: "noarch".into(),
            repo: "os".into(),
            location: format!("{name}.rpm"),
            checksum: format!("sha256:{name}{release}"),
            size: 1,
            signer: signer.map(str::to_string),
        }
    }

    fn branch(package: Vec<LockedPackage>) -> BranchLock {
        BranchLock {
            solve: "s".into(),
            spec: "h".into(),
            optimal: true,
            repo: vec![],
            package,
        }
    }

    /// A new version by the same key, a new package and a package that
    /// lost its signer (gpgcheck turned off) are no change of signer; a
    /// package now signed by another key is, naming both keys.
    #[test]
    fn changes_are_per_package_and_name_both_keys() {
        let old = branch(vec![
            p("a", "1", Some("AAAA")),
            p("b", "1", Some("AAAA")),
            p("c", "1", Some("AAAA")),
        ]);
        let new = branch(vec![
            p("a", "2", Some("AAAA")),
            p("b", "1", Some("BBBB")),
            p("c", "1", None),
            p("d", "1", Some("BBBB")),
        ]);
        let got = changes(&old, &new);
        assert_eq!(
            got,
            vec![SignerChange {
                package: "b.noarch".into(),
                old: vec!["AAAA".into()],
                new: "BBBB".into(),
            }]
        );
        assert_eq!(
            got[0].to_string(),
            "b.noarch was signed by AAAA, now by BBBB"
        );
        assert!(changes(&new, &new).is_empty());
    }
}

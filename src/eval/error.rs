//! What can stop an evaluation, typed so that `cli` alone decides how it
//! is printed and which exit code it gets.
//!
//! Errors of the stages below (the language, the lock file, repositories,
//! signatures) pass through unchanged, codes and help included; the
//! variants here are the ones only evaluation can tell.

use crate::gpg::repomd::RepomdError;
use crate::lang;
use crate::lock::LockError;
use crate::repo::RepoError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lang(#[from] lang::Error),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Repomd(#[from] RepomdError),
    /// Reading one repository's metadata (hashing it, or its file lists).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Repo(Box<RepoError>),
    /// Loading the repositories of a branch for a solve: says which branch.
    #[error("loading repositories for branch `{branch}`")]
    #[diagnostic(forward(source))]
    Load {
        branch: String,
        #[source]
        source: Box<RepoError>,
    },
    #[error("{spec} has no branch `{branch}`")]
    #[diagnostic(code("eval::no-such-branch"), help("branches in this spec: {names}"))]
    NoSuchBranch {
        spec: PathBuf,
        branch: String,
        /// The spec's branches, comma-separated.
        names: String,
    },
    #[error("{lock} is out of date for branch(es) {}, and --locked forbids changing it", branches.join(", "))]
    #[diagnostic(
        code(eval::locked),
        help("run `cvmbuild eval` (or `cvmbuild update`) and commit the lock file")
    )]
    Locked {
        lock: PathBuf,
        branches: Vec<String>,
    },
    /// With `--locked`, a re-pin would record another signer for packages
    /// (a package re-signed, or a new version signed by another key).
    #[error("{lock} is out of date: the signer of {} changed, and --locked forbids changing it: {}", plural(changes.len()), changes.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    #[diagnostic(
        code(eval::signer),
        help("if the new key is expected, run `cvmbuild eval` and commit the lock file")
    )]
    SignerChanged {
        lock: PathBuf,
        changes: Vec<crate::gpg::signers::SignerChange>,
    },
    /// A package of a repository with `gpgcheck` whose signer could not be
    /// read when it was pinned.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Signer(#[from] crate::gpg::signers::SignerError),
    #[error("cannot write {path}: {source}")]
    #[diagnostic(code("eval::write-lock"))]
    WriteLock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("branch `{branch}` has no lock entry and --offline forbids reading repositories")]
    #[diagnostic(code(eval::offline))]
    NoLockEntry { branch: String },
    /// Offline, the lock no longer answers the spec.
    #[error("the lock of branch `{branch}` is out of date: the spec changed {what} since it was solved, and --offline forbids reading repositories")]
    #[diagnostic(
        code(eval::offline),
        help("run `cvmbuild eval` without --offline to solve again")
    )]
    StaleOffline { branch: String, what: &'static str },
    /// With `--locked`, the lock no longer answers the spec.
    #[error("the lock of branch `{branch}` is out of date: the spec changed {what} since it was solved, and --locked forbids changing it")]
    #[diagnostic(
        code(eval::locked),
        help("run `cvmbuild eval` (or `cvmbuild update`) and commit the lock file")
    )]
    StaleLocked { branch: String, what: &'static str },
    #[error("repository `{repo}` changed while it was being read; run again")]
    #[diagnostic(code("eval::repo-changed"))]
    RepoChanged { repo: String },
    #[error("`{name}` is not in the locked closure of branch `{branch}`")]
    #[diagnostic(code("eval::update-unknown"))]
    UpdateUnknown { name: String, branch: String },
}

/// Repository errors are large; boxed, they keep every `Result` of
/// evaluation small.
impl From<RepoError> for Error {
    fn from(e: RepoError) -> Error {
        Error::Repo(Box::new(e))
    }
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 package".into()
    } else {
        format!("{n} packages")
    }
}

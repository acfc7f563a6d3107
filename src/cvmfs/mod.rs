//! Publishing OS trees as CernVM-FS repositories (docs/cvmfs.md).
//!
//! A repository directory is a Stratum-0 that any static HTTP server can
//! serve: signed manifest and whitelist, and zlib objects named by the
//! SHA-1 of their stored bytes (file contents, chunks, catalogs, history,
//! certificate). Every publish adds a revision and tags it; promote moves a
//! branch tag to an existing release without touching the catalogs.
//!
//! `../shared/cvmfs-format.md` is the format reference; each submodule says
//! which section it implements.

pub(crate) mod catalog;
mod chunk;
mod hints;
mod history;
pub(crate) mod keys;
pub(crate) mod manifest;
mod object;
mod publish;
mod repo;
pub(crate) mod signed;
mod walk;

pub use catalog::{md5path, xattr_blob, TTL};
pub use history::{Tag, TRUNK, TRUNK_PREVIOUS};
pub use keys::master_public_key;
pub(crate) use manifest::civil_from_days;
pub use object::inflate;
pub use publish::{
    promote, publish, release_files, tags, Options, Published, Request, CVMBUILD_DIR, UNKNOWN_ID,
};

use std::path::PathBuf;

/// Everything that can go wrong while publishing.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    Input(String),
    #[error("{path}: existing object is tampered with: its bytes hash to {actual}")]
    Tampered { path: PathBuf, actual: String },
    #[error("keys: {0}")]
    Key(String),
    #[error("repository: {0}")]
    Repo(String),
    /// What an existing repository holds does not check out (signatures,
    /// object names, a missing manifest): the publisher refuses to build on
    /// it rather than sign what it cannot vouch for.
    #[error("repository damaged: {0}")]
    #[diagnostic(
        code(cvmfs::damaged),
        help("restore the repository from a backup or a replica (or its keys, if they were replaced); see docs/cvmfs.md, \"What the publisher checks\"")
    )]
    Damaged(String),
    /// A promote that would move a tag that never moves, or start a
    /// branch nobody asked for.
    #[error("promote to `{target}`: {reason}")]
    #[diagnostic(code(cvmfs::promote))]
    Promote {
        target: String,
        reason: String,
        #[help]
        help: Option<String>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

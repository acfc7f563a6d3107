//! The CernVM-FS client: reads any published release back over HTTP,
//! verified end to end (`../shared/cvmfs-format.md` sections 3–5), cached
//! on local disk, through a ring of servers and a chain of proxies.
//!
//! This is the other half of [`crate::cvmfs`] (the publisher): the
//! publisher writes a Stratum-0, the client mounts any revision of it.
//! It is kept free of the solver, builders and image code so that a small
//! binary built from it fits in the μCernVM initrd.
//!
//! [`vfs`] is the read-only file-system interface the FUSE layer and the
//! FUSE-less commands (`ls`, `cat`) are written against; [`open`] gives a
//! [`Repository`] implementing it. The parts: [`fetch`] (HTTP through
//! servers and proxies), [`trust`] (manifest, whitelist, history),
//! [`catalog`] (reading catalogs), [`cache`] (the local object cache),
//! [`repo`] (the tree), [`replicate`] (Stratum-1 snapshots).

pub mod cache;
pub mod catalog;
pub mod fetch;
pub mod fuse;
mod http;
pub mod replicate;
pub mod repo;
pub mod trust;
pub mod vfs;

pub use fetch::Timeouts;
pub use repo::{Repository, Resolved};

use std::path::PathBuf;

/// Which revision of the repository to mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// The newest revision, as the manifest names it.
    Head,
    /// A named snapshot from the history database (`CVMFS_REPOSITORY_TAG`).
    Tag(String),
    /// The newest trunk snapshot published at or before this Unix time
    /// (`CVMFS_REPOSITORY_DATE`).
    Date(u64),
    /// This root catalog, directly (`CVMFS_ROOT_HASH`).
    RootHash(String),
}

/// Everything needed to open a repository.
#[derive(Clone, Debug)]
pub struct Config {
    /// Fully qualified repository name, e.g. `cernvm-prod.cern.ch`.
    pub fqrn: String,
    /// Base URLs of the servers, tried in order (`@fqrn@` already
    /// substituted).
    pub servers: Vec<String>,
    /// The proxy chain in upstream's `CVMFS_HTTP_PROXY` syntax: `|`
    /// separates a load-balance group, `;` fail-over groups, `DIRECT`
    /// means no proxy.
    pub proxies: String,
    /// Trusted master public keys (PEM), one of which must have signed the
    /// whitelist.
    pub keys: Vec<PathBuf>,
    pub pin: Pin,
    /// The local cache directory.
    pub cache: PathBuf,
    /// Upper bound of the cache in bytes; cleanup goes down to half.
    pub quota: Option<u64>,
    pub timeouts: Timeouts,
}

/// Opens the repository: fetches and verifies the manifest, the
/// whitelist and (for a tag or date) the history, and the root catalog.
/// Nothing else is fetched until it is looked up or read.
pub fn open(cfg: &Config) -> Result<Repository, Error> {
    Repository::open(cfg)
}

/// Verifies the head and resolves `cfg.pin` (a tag, a date or the head)
/// to its root catalog, fetching no catalog: the update check's question
/// "where does this tag point now?".
pub fn resolve(cfg: &Config) -> Result<Resolved, Error> {
    Repository::resolve_only(cfg)
}

/// Everything that can go wrong while reading a repository.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// No server/proxy combination delivered a verified copy.
    #[error("{0}")]
    #[diagnostic(
        code(client::fetch),
        help("check --server and --proxy; every URL and proxy tried is listed")
    )]
    Fetch(String),
    /// The trust chain failed: the repository is not what it claims.
    #[error("{0}")]
    #[diagnostic(code(client::untrusted))]
    Untrusted(String),
    /// An object that verified but does not make sense (garbage catalog,
    /// absurd size, path cycle).
    #[error("{0}")]
    #[diagnostic(code(client::corrupt))]
    Corrupt(String),
    /// The requested snapshot does not exist.
    #[error("{what}")]
    #[diagnostic(code(client::no_snapshot), help("{help}"))]
    NoSnapshot { what: String, help: String },
    /// A trusted key file could not be used.
    #[error("{path}: {reason}")]
    #[diagnostic(
        code(client::key),
        help("--key takes a master public key in PEM (BEGIN PUBLIC KEY), like CVMFS_PUBLIC_KEY")
    )]
    Key { path: PathBuf, reason: String },
    /// Bad configuration (a server URL that is not http://, a bad proxy).
    #[error("{0}")]
    #[diagnostic(code(client::config))]
    Config(String),
    #[error("{path}: {source}")]
    #[diagnostic(code(client::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
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

impl From<Error> for vfs::FsError {
    fn from(e: Error) -> vfs::FsError {
        vfs::FsError::Io(e.to_string())
    }
}

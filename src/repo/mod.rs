//! Repositories and RPM semantics: reading yum/dnf repodata into a package
//! [`Pool`], version comparison and dependency matching exactly as rpm does.
//!
//! [`load`] reads repositories (local paths, `file://` or `http(s)://`),
//! verifies every checksum repomd.xml gives, streams primary into one pool
//! and caches the parsed result by the blake3 of repomd.xml.
//! [`load_filelists`] adds file paths that only filelists knows.

mod cache;
mod decode;
pub mod error;
pub mod evr;
pub mod fetch;
pub(crate) mod filelists;
pub mod label;
mod load;
pub mod model;
pub(crate) mod primary;
pub(crate) mod repomd;
pub mod rich;
mod xml;

pub use cache::{prune as prune_cache, Pruned};
pub use error::RepoError;
pub use evr::{rpmvercmp, Evr, Op, Range};
pub use label::Label;
pub use load::{load, load_filelists, metadata_hash, unprovided_file_requires, RepoSource};
pub use model::{
    arch_compatible, Checksum, Dep, Interner, NameId, Package, PackageId, Pool, RepoId, RepoInfo,
    Rich, SimpleDep,
};
pub use rich::{parse_rich, RichError};

//! Repositories and RPM semantics: reading yum/dnf repodata into a package
//! [`Pool`], version comparison and dependency matching exactly as rpm does.

pub mod evr;
pub mod model;

pub use evr::{rpmvercmp, Evr, Op, Range};
pub use model::{
    arch_compatible, Checksum, Dep, NameId, Package, PackageId, Pool, RepoId, RepoInfo, Rich,
    SimpleDep,
};

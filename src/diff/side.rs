//! One side of a diff: what was loaded for it (spec, lock, recorded
//! derivations), whichever way it was given ([`super::input`]), and where
//! sides that are not files are looked up ([`Lookup`]).

use crate::eval::{Graph, Release};
use crate::lang::{SourceMap, Value};
use crate::lock::{BranchLock, LockedPackage};
use std::path::PathBuf;

/// One side of a diff.
pub struct Side {
    /// The argument as given, for messages and the report.
    pub label: String,
    pub branch: String,
    /// `spec`, `lock`, `drv` or `tag`.
    pub kind: &'static str,
    /// Present for specs and locks.
    pub lock: Option<BranchLock>,
    /// The pinned closure: the lock's, or derived from recorded derivations.
    pub packages: Vec<LockedPackage>,
    /// Present when the side was given as a spec.
    pub spec: Option<SpecSide>,
    /// Present when the side was given as a derivation id or a tag: the
    /// recorded derivations reachable from it, with its outputs as roots.
    pub recorded: Option<Graph>,
}

impl Side {
    /// The derivation graph, from the spec or from the store's records.
    pub fn graph(&self) -> Option<&Graph> {
        self.spec
            .as_ref()
            .map(|s| &s.graph)
            .or(self.recorded.as_ref())
    }
}

/// What only a spec provides: the typed release, its graph, and the
/// evaluated branch value whose spans point at spec lines.
pub struct SpecSide {
    pub release: Release,
    pub graph: Graph,
    pub sources: SourceMap,
    pub value: Value,
}

/// Where the sides that are not files are found.
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    /// The store that recorded derivation ids (and, under `cvmfs/`, the
    /// repositories it published).
    pub store: Option<PathBuf>,
    /// How to reach and trust a repository given by URL
    /// (`cvmfs:http://HOST/cvmfs/FQRN@TAG`): the client's configuration
    /// without the repository name, servers and pin, which the argument gives.
    pub remote: Option<crate::client::Config>,
}

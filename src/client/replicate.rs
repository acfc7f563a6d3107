//! Stratum-1 replication, as `cvmfs_server snapshot` does it.

use super::Error;
use std::path::{Path, PathBuf};

/// What a replication run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Base URL of the source repository (`http://host/cvmfs/FQRN`).
    pub source: String,
    pub proxies: String,
    pub keys: Vec<PathBuf>,
    pub timeouts: super::Timeouts,
}

/// What a run copied.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub fqrn: String,
    pub revision: u64,
    pub objects_copied: u64,
    pub bytes_copied: u64,
    pub objects_present: u64,
}

/// Replicates the source into `dir`.
pub fn replicate(_opts: &Options, _dir: &Path) -> Result<Report, Error> {
    Err(Error::Config("replicate: not implemented yet".into()))
}

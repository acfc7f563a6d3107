//! Where the store lives when the user does not say.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::{Error, Result};

/// Resolves the store directory: `--store DIR` wins, then `CVMBUILD_STORE`,
/// then `$XDG_CACHE_HOME/cvmbuild/store`, then `$HOME/.cache/cvmbuild/store`.
///
/// `env` looks up an environment variable; it is a parameter so callers and
/// tests decide what the environment is (the CLI passes `std::env::var_os`).
/// Empty values count as unset, and a relative `XDG_CACHE_HOME` is ignored as
/// the XDG base directory specification requires.
pub fn resolve_store_dir(
    cli: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf> {
    if let Some(dir) = cli {
        return Ok(dir.to_path_buf());
    }
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("CVMBUILD_STORE") {
        return Ok(dir);
    }
    if let Some(cache) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(cache.join("cvmbuild").join("store"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".cache").join("cvmbuild").join("store"));
    }
    Err(Error::NoLocation)
}

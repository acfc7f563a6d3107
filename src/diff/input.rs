//! The two things being compared: `SPEC.cvm[#BRANCH]`, `FILE.lock[#BRANCH]`,
//! a recorded derivation id (or unique prefix), or `cvmfs:REPO@TAG` (a
//! repository this machine published, or any one over HTTP).
//!
//! A spec is evaluated offline from its lock (diff never reads repositories
//! and never rewrites a lock); a lock that no longer answers its spec is an
//! error, because comparing it would describe a release nobody can build.
//! A lock alone gives the closure and the repository and spec hashes, but no
//! derivation graph (that needs the spec). An id or a tag gives the graph
//! recorded in the store (see [`super::records`]) but no spec lines.

use super::side::{Lookup, Side, SpecSide};
use super::Error;
use crate::eval;
use crate::lang;
use crate::lock::LockFile;
use std::path::{Path, PathBuf};

type Result<T, E = Error> = std::result::Result<T, E>;

/// Loads `PATH[#BRANCH]` (the branch may be omitted when there is only
/// one), a derivation id or prefix recorded in the store, or
/// `cvmfs:REPO@TAG`.
pub fn load(arg: &str, lookup: &Lookup) -> Result<Side> {
    let store = lookup.store.as_deref();
    if let Some(rest) = arg.strip_prefix("cvmfs:") {
        return super::records::load_tag(arg, rest, lookup);
    }
    let (path, branch) = match arg.rsplit_once('#') {
        Some((p, b)) if !b.is_empty() && !b.contains('/') => (PathBuf::from(p), Some(b)),
        _ => (PathBuf::from(arg), None),
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("cvm") => load_spec(arg, &path, branch),
        Some("lock") => load_lock(arg, &path, branch),
        _ if arg.len() >= 4
            && arg.len() <= 64
            && arg.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            super::records::load_drv(arg, store)
        }
        _ => Err(Error::Unrecognised { arg: arg.into() }),
    }
}

fn load_spec(arg: &str, path: &Path, branch: Option<&str>) -> Result<Side> {
    let spec = lang::load(path)?;
    let branch = pick_branch(
        arg,
        branch,
        spec.branches.iter().map(|b| b.name.as_str()).collect(),
    )?;
    let opts = eval::Options {
        branch: Some(branch.clone()),
        offline: true,
        ..Default::default()
    };
    let ev = eval::evaluate(path, &opts).map_err(|source| Error::Eval {
        arg: arg.into(),
        spec: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let b = ev
        .branches
        .into_iter()
        .next()
        .expect("evaluate returns the one branch asked for");
    // Offline evaluation takes the lock as it is; it answers this spec only
    // if it was solved for the same solve derivation.
    if b.graph.roots.get("solve").map(|id| id.0.as_str()) != Some(b.lock.solve.as_str()) {
        return Err(Error::StaleLock {
            arg: arg.into(),
            spec: path.to_path_buf(),
        });
    }
    let value = spec
        .branches
        .into_iter()
        .find(|x| x.name == branch)
        .expect("picked from this list")
        .value;
    Ok(Side {
        label: arg.to_string(),
        branch,
        kind: "spec",
        packages: b.lock.package.clone(),
        lock: Some(b.lock),
        recorded: None,
        spec: Some(SpecSide {
            release: b.release,
            graph: b.graph,
            sources: ev.sources,
            value,
        }),
    })
}

fn load_lock(arg: &str, path: &Path, branch: Option<&str>) -> Result<Side> {
    if !path.is_file() {
        return Err(Error::NoLockFile {
            path: path.to_path_buf(),
        });
    }
    let mut lock = LockFile::read(path)?;
    let branch = pick_branch(
        arg,
        branch,
        lock.branch.keys().map(String::as_str).collect(),
    )?;
    let entry = lock.branch.remove(&branch).expect("picked from this list");
    Ok(Side {
        label: arg.to_string(),
        branch,
        kind: "lock",
        packages: entry.package.clone(),
        lock: Some(entry),
        spec: None,
        recorded: None,
    })
}

fn pick_branch(arg: &str, asked: Option<&str>, names: Vec<&str>) -> Result<String> {
    match asked {
        Some(b) if names.contains(&b) => Ok(b.to_string()),
        Some(b) => Err(Error::NoSuchBranch {
            arg: arg.into(),
            branch: b.into(),
            names: names.join(", "),
        }),
        None => match names.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err(Error::NoBranch { arg: arg.into() }),
            many => Err(Error::SeveralBranches {
                arg: arg.into(),
                names: many.join(", "),
            }),
        },
    }
}

//! Evaluation: a spec file and its lock -> one derivation graph per branch.
//!
//! For each branch: convert the release value into a typed [`Release`],
//! hash each repository's metadata, compute the solve derivation, take the
//! closure from the lock when the lock's solve id matches (or solve afresh),
//! and plan the graph.

mod error;
pub mod graph;
pub mod pinning;
pub mod plan;
pub mod spec;

pub use crate::drv::{Builder, Derivation, DrvId, Input};
pub use error::Error;
pub use graph::{Edge, Graph};
pub use spec::Release;

use crate::lock::{BranchLock, LockFile, LockedPackage, RepoLock};
use crate::{lang, lock};
use std::path::{Path, PathBuf};

/// How `eval` may treat the lock file.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Only this branch (default: all).
    pub branch: Option<String>,
    /// Fail instead of changing the lock (CI).
    pub locked: bool,
    /// `cvmbuild update`: re-pin even if the lock is current. Empty: every
    /// package may move; names: only those, the rest held at their locked
    /// versions.
    pub update: Option<Vec<String>>,
    /// Use the lock as it is without reading repositories (no network).
    pub offline: bool,
    pub solve_timeout: Option<std::time::Duration>,
    /// Directory for the repository metadata cache.
    pub cache: Option<PathBuf>,
    /// The CernVM-FS keys directory (`<fqrn>.pub`, ...): where an
    /// `initrd.boot` without `key` takes the repository's master public
    /// key from, making the key set first if the repository has none yet
    /// (as the first publish would).
    pub keys_dir: Option<PathBuf>,
}

/// One evaluated branch.
pub struct BranchEval {
    pub release: Release,
    pub graph: Graph,
    pub lock: BranchLock,
    /// Whether this evaluation re-pinned (the lock entry changed).
    pub repinned: bool,
}

pub struct Evaluation {
    pub spec_path: PathBuf,
    pub sources: lang::SourceMap,
    pub branches: Vec<BranchEval>,
    pub lock_path: PathBuf,
    /// Whether the lock file on disk was rewritten.
    pub lock_written: bool,
    /// Packages the rewritten lock records another signer for.
    pub signer_changes: Vec<crate::gpg::signers::SignerChange>,
}

/// Evaluates a spec: loads it, pins each branch, plans each graph, and
/// updates the lock file when (and only when) a branch was re-pinned.
pub fn evaluate(spec_path: &Path, opts: &Options) -> Result<Evaluation, Error> {
    let spec = lang::load(spec_path)?;
    let releases = spec::releases(&spec)?;
    let selected: Vec<Release> = match &opts.branch {
        None => releases,
        Some(b) => {
            let names: Vec<&str> = releases.iter().map(|r| r.branch.as_str()).collect();
            let found = releases.iter().find(|r| &r.branch == b).cloned();
            vec![found.ok_or_else(|| Error::NoSuchBranch {
                spec: spec_path.to_path_buf(),
                branch: b.clone(),
                names: names.join(", "),
            })?]
        }
    };
    let lock_path = lock::path_for(spec_path);
    let mut lockfile = LockFile::read(&lock_path)?;
    let mut out = Vec::new();
    let mut changed = false;
    let mut signer_changes = Vec::new();
    for rel in selected {
        let (lock, repinned) = pin(&rel, &spec.sources, lockfile.branch.get(&rel.branch), opts)?;
        let metadata: Vec<String> = lock.repo.iter().map(|r| r.metadata.clone()).collect();
        let solve = plan::solve_derivation(&rel, &metadata);
        let graph = plan::plan(
            &rel,
            solve,
            &lock.package,
            &spec.sources,
            opts.keys_dir.as_deref(),
        )?;
        if repinned {
            if let Some(old) = lockfile.branch.get(&rel.branch) {
                signer_changes.extend(crate::gpg::signers::changes(old, &lock));
            }
            changed = true;
            lockfile.branch.insert(rel.branch.clone(), lock.clone());
        }
        out.push(BranchEval {
            release: rel,
            graph,
            lock,
            repinned,
        });
    }
    if changed {
        if opts.locked && !signer_changes.is_empty() {
            return Err(Error::SignerChanged {
                lock: lock_path,
                changes: signer_changes,
            });
        }
        if opts.locked {
            return Err(Error::Locked {
                lock: lock_path,
                branches: out
                    .iter()
                    .filter(|b| b.repinned)
                    .map(|b| b.release.branch.clone())
                    .collect(),
            });
        }
        lockfile.version = lock::VERSION;
        lockfile
            .write(&lock_path)
            .map_err(|source| Error::WriteLock {
                path: lock_path.clone(),
                source,
            })?;
    }
    Ok(Evaluation {
        spec_path: spec_path.to_path_buf(),
        sources: spec.sources,
        branches: out,
        lock_path,
        lock_written: changed,
        signer_changes,
    })
}

/// Returns the branch's lock entry, re-solving when the current one does not
/// answer the current solve derivation.
fn pin(
    rel: &Release,
    sources: &lang::SourceMap,
    current: Option<&BranchLock>,
    opts: &Options,
) -> Result<(BranchLock, bool), Error> {
    if opts.offline {
        let lock = current.cloned().ok_or_else(|| Error::NoLockEntry {
            branch: rel.branch.clone(),
        })?;
        check_offline(rel, &lock, opts)?;
        return Ok((lock, false));
    }
    let repo_sources = repo_sources(rel);
    let mut metadata = Vec::new();
    for (r, s) in rel.repos.iter().zip(&repo_sources) {
        metadata.push(match (&r.keys, r.repo_gpgcheck) {
            (Some(keys), true) => crate::gpg::repomd::verified_hash(&s.name, &s.url, keys)?,
            _ => crate::repo::metadata_hash(s)?,
        });
    }
    let solve = plan::solve_derivation(rel, &metadata);
    let solve_id = solve.id();
    if let Some(cur) = current {
        if cur.solve == solve_id.0 && opts.update.is_none() {
            return Ok((cur.clone(), false));
        }
    }
    let mut pool =
        crate::repo::load(&repo_sources, opts.cache.as_deref()).map_err(|source| Error::Load {
            branch: rel.branch.clone(),
            source: Box::new(source),
        })?;
    // The solve is keyed on the hashes read above; a mirror that changed
    // since then would pin a closure under the wrong key.
    for (info, hash) in pool.repos.iter().zip(&metadata) {
        if &info.metadata_hash != hash {
            return Err(Error::RepoChanged {
                repo: info.name.clone(),
            });
        }
    }
    // File dependencies that primary's file subset does not cover need the
    // full file lists (yum does the same); most solves need none.
    let missing = crate::repo::unprovided_file_requires(&pool);
    if !missing.is_empty() {
        let paths: Vec<&str> = missing.iter().map(String::as_str).collect();
        crate::repo::load_filelists(&mut pool, &paths)?;
    }
    let hold: Vec<LockedPackage> = match (&opts.update, current) {
        (Some(names), Some(cur)) if !names.is_empty() => {
            for n in names {
                if !cur.package.iter().any(|p| &p.name == n) {
                    return Err(Error::UpdateUnknown {
                        name: n.clone(),
                        branch: rel.branch.clone(),
                    });
                }
            }
            cur.package
                .iter()
                .filter(|p| !names.contains(&p.name))
                .cloned()
                .collect()
        }
        _ => Vec::new(),
    };
    let closure = pinning::solve(rel, &pool, sources, opts.solve_timeout, &hold)?;
    let mut packages: Vec<LockedPackage> = closure
        .packages
        .iter()
        .map(|&id| {
            let p = pool.package(id);
            LockedPackage {
                name: pool.name(p.name).to_string(),
                epoch: p.evr.epoch,
                version: p.evr.version.to_string(),
                release: p.evr.release.as_deref().unwrap_or("").to_string(),
                arch: pool.name(p.arch).to_string(),
                repo: pool.repos[p.repo.0 as usize].name.clone(),
                location: p.location.to_string(),
                checksum: format!("{}:{}", p.checksum.kind, p.checksum.hex),
                size: p.size_package,
                signer: None,
            }
        })
        .collect();
    crate::gpg::signers::record(&rel.repos, current, &mut packages)?;
    let lock = BranchLock {
        solve: solve_id.0,
        spec: plan::spec_hash(&solve),
        optimal: closure.optimal,
        repo: rel
            .repos
            .iter()
            .zip(&metadata)
            .map(|(r, m)| RepoLock {
                name: r.name.clone(),
                url: r.url_as_written.clone(),
                metadata: m.clone(),
                gpgkeys: plan::package_signers(r),
            })
            .collect(),
        package: packages,
    };
    // Freeing a parsed universe is hundreds of thousands of small frees, a
    // fifth of a warm `eval`; nothing waits for them, so they happen on a
    // thread of their own (which a CLI process may well exit before).
    std::thread::spawn(move || drop(pool));
    let repinned = current != Some(&lock);
    Ok((lock, repinned))
}

/// Offline, the repositories are not read, but the lock must still answer
/// the spec: the solve derivation computed from the spec and the lock's own
/// metadata hashes must be the one the lock was solved for. Otherwise the
/// spec's packages, pins or repositories changed under the lock, and using
/// the old closure would build something the spec no longer says.
fn check_offline(rel: &Release, lock: &BranchLock, opts: &Options) -> Result<(), Error> {
    let same_repos = lock.repo.len() == rel.repos.len()
        && lock
            .repo
            .iter()
            .zip(&rel.repos)
            .all(|(l, r)| l.name == r.name && l.url == r.url_as_written);
    let metadata: Vec<String> = lock.repo.iter().map(|r| r.metadata.clone()).collect();
    if same_repos && plan::solve_derivation(rel, &metadata).id().0 == lock.solve {
        return Ok(());
    }
    let what = if same_repos {
        "its packages, pins or excludes"
    } else {
        "its repositories"
    };
    let branch = rel.branch.clone();
    Err(if opts.locked {
        Error::StaleLocked { branch, what }
    } else {
        Error::StaleOffline { branch, what }
    })
}

/// The repository reader's view of a release's repositories.
pub fn repo_sources(rel: &Release) -> Vec<crate::repo::RepoSource> {
    rel.repos
        .iter()
        .map(|r| crate::repo::RepoSource {
            name: r.name.clone(),
            url: r.location.as_source(),
            priority: r.priority,
            cost: r.cost,
        })
        .collect()
}

//! The lock file: the pinned closure of every branch, written next to the
//! spec by `cvmbuild eval` (`SPEC.lock` for `SPEC.cvm`).
//!
//! It is TOML with one table per package, in a fixed field order and sorted
//! by name and arch, so it is deterministic and reads well in a diff. A
//! branch's entry is valid while its `solve` id equals the solve
//! derivation's id computed from the current spec and repository metadata;
//! `eval` rewrites the lock only when that id changes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockFile {
    pub version: u32,
    #[serde(default)]
    pub branch: BTreeMap<String, BranchLock>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BranchLock {
    /// Id of the solve derivation this closure answers.
    pub solve: String,
    /// blake3 of the branch's solver inputs taken from the spec (shopping
    /// list, pins, excludes, arch), so a reader can tell a spec change from
    /// a repository change without re-evaluating.
    pub spec: String,
    /// Whether the solver proved this closure optimal.
    pub optimal: bool,
    #[serde(default)]
    pub repo: Vec<RepoLock>,
    #[serde(default)]
    pub package: Vec<LockedPackage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoLock {
    pub name: String,
    pub url: String,
    /// blake3 of the repository's repomd.xml when the closure was solved.
    pub metadata: String,
    /// Fingerprints of the keys its packages must be signed with
    /// (`gpgkey` with `gpgcheck`); absent without, so locks written before
    /// signatures were checked read unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpgkeys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockedPackage {
    pub name: String,
    pub epoch: u64,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub repo: String,
    /// Path of the `.rpm` relative to the repository base.
    pub location: String,
    /// `ALGO:HEX` as the repository lists it (normally `sha256:...`).
    pub checksum: String,
    pub size: u64,
    /// Fingerprint of the primary key whose signature the package carries
    /// (its first OpenPGP signature, header signature first), for
    /// packages of a repository with `gpgcheck`; read by `eval` when it
    /// pins the package, enforced by the package's fetch. Absent without
    /// `gpgcheck`, and in locks written before signers were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

impl LockedPackage {
    /// `name-[epoch:]version-release.arch`.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr(), self.arch)
    }

    /// `[epoch:]version-release`.
    pub fn evr(&self) -> String {
        if self.epoch == 0 {
            format!("{}-{}", self.version, self.release)
        } else {
            format!("{}:{}-{}", self.epoch, self.version, self.release)
        }
    }
}

/// Where the lock for a spec lives: `foo.cvm` -> `foo.lock`.
pub fn path_for(spec: &Path) -> PathBuf {
    spec.with_extension("lock")
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("cannot read lock file {path}")]
    #[diagnostic(code(lock::io))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lock file {path} is not valid: {message}")]
    #[diagnostic(
        code(lock::parse),
        help("delete it and run `cvmbuild eval` to pin again")
    )]
    Parse { path: PathBuf, message: String },
}

impl LockFile {
    /// Reads a lock file; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<LockFile, LockError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LockFile {
                    version: VERSION,
                    branch: BTreeMap::new(),
                })
            }
            Err(source) => {
                return Err(LockError::Io {
                    path: path.into(),
                    source,
                })
            }
        };
        let lock: LockFile = toml::from_str(&text).map_err(|e| LockError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        if lock.version != VERSION {
            return Err(LockError::Parse {
                path: path.into(),
                message: format!("version {} (this cvmbuild writes {VERSION})", lock.version),
            });
        }
        Ok(lock)
    }

    /// The canonical text: header comment, sorted packages.
    pub fn render(&self) -> String {
        let mut sorted = self.clone();
        for b in sorted.branch.values_mut() {
            b.package.sort();
        }
        let body = toml::to_string(&sorted).expect("lock data is plain TOML");
        format!("# Generated by `cvmbuild eval`; edit the spec, not this file.\n{body}")
    }

    /// Writes atomically (temp file + rename), so an interrupted eval never
    /// leaves a half-written lock.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, self.render())?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_sorted_and_roundtrips() {
        let p = |n: &str| LockedPackage {
            name: n.into(),
            epoch: 0,
            version: "1".into(),
            release: "1".into(),
            arch: "x86_64".into(),
            repo: "os".into(),
            location: format!("{n}.rpm"),
            checksum: "sha256:00".into(),
            size: 1,
            signer: None,
        };
        let mut lock = LockFile {
            version: VERSION,
            branch: BTreeMap::new(),
        };
        lock.branch.insert(
            "prod".into(),
            BranchLock {
                solve: "s".into(),
                spec: "h".into(),
                optimal: true,
                repo: vec![],
                package: vec![p("zsh"), p("bash")],
            },
        );
        let text = lock.render();
        assert!(text.find("name = \"bash\"").unwrap() < text.find("name = \"zsh\"").unwrap());
        let back: LockFile = toml::from_str(&text).unwrap();
        assert_eq!(back.render(), text);
    }

    /// Locks written before signatures were checked have no `gpgkeys`:
    /// they read, and a repository without keys renders without the field,
    /// so such locks do not change.
    #[test]
    fn repo_keys_are_optional() {
        let old = "version = 1\n[branch.b]\nsolve = \"s\"\nspec = \"h\"\noptimal = true\n\
                   [[branch.b.repo]]\nname = \"os\"\nurl = \"u\"\nmetadata = \"m\"\n";
        let lock: LockFile = toml::from_str(old).unwrap();
        let repo = &lock.branch["b"].repo[0];
        assert!(repo.gpgkeys.is_empty());
        assert!(!lock.render().contains("gpgkeys"));
        let mut signed = lock.clone();
        signed.branch.get_mut("b").unwrap().repo[0].gpgkeys = vec!["ABCD".into()];
        let text = signed.render();
        assert!(text.contains("gpgkeys = [\"ABCD\"]"), "{text}");
        assert_eq!(toml::from_str::<LockFile>(&text).unwrap(), signed);
    }
}

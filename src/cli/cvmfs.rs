//! `tag` and `promote`: published CernVM-FS repositories.

use super::Global;
use clap::Args;
use miette::{miette, Result};
use std::path::PathBuf;

/// Where published CernVM-FS repositories and their keys live.
#[derive(Args, Debug, Clone)]
pub struct PublishDirs {
    /// Directory of published CernVM-FS repositories, one Stratum-0 per
    /// `<DIR>/<fqrn>`; serve DIR as `/cvmfs/` (default: STORE/cvmfs).
    #[arg(long, value_name = "DIR", env = "CVMBUILD_PUBLISH_DIR")]
    pub publish_dir: Option<PathBuf>,
    /// Directory of repository keys `<fqrn>.masterkey|pub|key|crt`, created on
    /// first publish if absent (default: STORE/cvmfs-keys; never served).
    #[arg(long, value_name = "DIR", env = "CVMBUILD_KEYS_DIR")]
    pub keys_dir: Option<PathBuf>,
}

impl PublishDirs {
    pub(super) fn repos_dir(&self, g: &Global) -> Result<PathBuf> {
        match &self.publish_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(g.store_dir()?.join("cvmfs")),
        }
    }

    pub(super) fn keys_dir(&self, g: &Global) -> Result<PathBuf> {
        match &self.keys_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(g.store_dir()?.join("cvmfs-keys")),
        }
    }

    /// The repository directory: `--repository`, else the only one published.
    fn repo(&self, g: &Global, fqrn: Option<&str>) -> Result<(String, PathBuf)> {
        let dir = self.repos_dir(g)?;
        if let Some(f) = fqrn {
            return Ok((f.to_string(), dir.join(f)));
        }
        let mut found: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| {
                miette!(
                    code = "cli::no-repository",
                    "cannot read {}: {e}",
                    dir.display()
                )
            })?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(".cvmfspublished").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        match found.as_slice() {
            [one] => Ok((one.clone(), dir.join(one))),
            [] => Err(miette!(
                code = "cli::no-repository",
                "no published repository in {}",
                dir.display()
            )),
            many => Err(miette!(
                code = "cli::ambiguous-repository",
                help = format!("repositories: {}", many.join(", ")),
                "{} repositories in {}; pass --repository",
                many.len(),
                dir.display()
            )),
        }
    }
}

#[derive(Args, Debug)]
pub struct TagArgs {
    #[command(subcommand)]
    pub command: TagCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum TagCommand {
    /// List the tags (releases, branch heads, trunk) of a published repository.
    List {
        /// Repository name (default: the only one in the publish directory).
        #[arg(long, value_name = "FQRN")]
        repository: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dirs: PublishDirs,
    },
}

pub(super) fn tag_cmd(g: &Global, a: TagArgs) -> Result<i32> {
    let TagCommand::List {
        repository,
        json,
        dirs,
    } = a.command;
    let (_, dir) = dirs.repo(g, repository.as_deref())?;
    let tags = crate::cvmfs::tags(&dir)?;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&tags).expect("plain data")
        );
        return Ok(0);
    }
    let rows: Vec<[String; 5]> = tags
        .iter()
        .map(|t| {
            [
                t.name.clone(),
                t.revision.to_string(),
                utc(t.timestamp),
                t.hash.clone(),
                if t.branch.is_empty() { "-" } else { &t.branch }.to_string(),
            ]
        })
        .collect();
    let header = ["TAG", "REVISION", "PUBLISHED", "ROOT CATALOG", "BRANCH"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
    Ok(0)
}

/// RFC 3339 UTC (`YYYY-MM-DDThh:mm:ssZ`) of seconds since the epoch: one
/// word, so the table splits on whitespace.
fn utc(t: u64) -> String {
    let (days, secs) = ((t / 86400) as i64, t % 86400);
    let (y, m, d) = crate::cvmfs::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The release tag to promote (`NAME-VERSION`).
    pub release: String,
    /// The branch whose tag moves to the release.
    #[arg(long = "to", value_name = "BRANCH")]
    pub to: String,
    /// Start the branch if the repository does not have it yet (without
    /// this, an unknown branch is an error that suggests the nearest one).
    #[arg(long)]
    pub create: bool,
    /// Repository name (default: the only one in the publish directory).
    #[arg(long, value_name = "FQRN")]
    pub repository: Option<String>,
    /// Machine-readable result on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: PublishDirs,
}

pub(super) fn promote_cmd(g: &Global, a: PromoteArgs) -> Result<i32> {
    let (fqrn, dir) = a.dirs.repo(g, a.repository.as_deref())?;
    let opts = crate::cvmfs::Options {
        repo_dir: dir,
        keys_dir: a.dirs.keys_dir(g)?,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        whitelist_days: 30,
    };
    let t = crate::cvmfs::promote(&fqrn, &a.release, &a.to, a.create, &opts)?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "repository": fqrn, "branch": t.name, "release": a.release,
                "revision": t.revision, "root_catalog": t.hash,
            }))
            .expect("plain data")
        );
    } else {
        outln!(
            "{fqrn}: {} -> {} (revision {}, {})",
            t.name,
            a.release,
            t.revision,
            t.hash
        );
    }
    Ok(0)
}

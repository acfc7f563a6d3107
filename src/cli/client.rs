//! `ls`, `cat` and `replicate`: the CernVM-FS client without FUSE. The
//! shared options ([`ClientArgs`]) are also those of `mount`.

use crate::client::vfs::{Attr, Kind, ReadOnlyFs};
use crate::client::{self, Config, Pin, Timeouts};
use clap::Args;
use miette::{miette, IntoDiagnostic, Result};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Network limits.
#[derive(Args, Debug, Clone)]
pub struct TimeoutArgs {
    /// Seconds to connect to a proxy or server.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub connect_timeout: f64,
    /// Seconds to wait for the first byte of an answer (and between reads).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// Seconds for one whole download.
    #[arg(long, value_name = "SECS", default_value_t = 120.0)]
    pub total_timeout: f64,
}

impl TimeoutArgs {
    pub fn to_timeouts(&self) -> Result<Timeouts> {
        let d = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    miette!(
                        code = "cli::usage",
                        "--{what} must be a positive number of seconds"
                    )
                })
        };
        Ok(Timeouts {
            connect: d(self.connect_timeout, "connect-timeout")?,
            first_byte: d(self.timeout, "timeout")?,
            overall: d(self.total_timeout, "total-timeout")?,
        })
    }
}

/// How to reach and trust a repository, and which revision to read.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Server base URL, `@fqrn@` replaced by the repository name; repeat
    /// or separate with `;` for a ring of servers tried in order
    /// (like CVMFS_SERVER_URL).
    #[arg(long = "server", value_name = "URL", required = true)]
    pub servers: Vec<String>,
    /// Proxy chain as CVMFS_HTTP_PROXY: `|` load-balance group, `;`
    /// fail-over groups, DIRECT for none.
    #[arg(long, value_name = "PROXIES", default_value = "DIRECT")]
    pub proxy: String,
    /// Trusted master public key (PEM), repeatable (like CVMFS_PUBLIC_KEY).
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// Read this named snapshot (CVMFS_REPOSITORY_TAG).
    #[arg(long, value_name = "NAME", group = "pin")]
    pub tag: Option<String>,
    /// Read the newest snapshot at or before this UTC time,
    /// YYYY-MM-DDTHH:MM:SSZ (CVMFS_REPOSITORY_DATE).
    #[arg(long, value_name = "TIME", group = "pin")]
    pub date: Option<String>,
    /// Read this root catalog directly (CVMFS_ROOT_HASH); no manifest is
    /// needed, the hash is the trust.
    #[arg(long, value_name = "HASH", group = "pin")]
    pub root_hash: Option<String>,
    /// Local object cache (default: $XDG_CACHE_HOME/cvmbuild/client, else
    /// ~/.cache/cvmbuild/client).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Cache size limit in MB; least recently used objects go first.
    #[arg(long, value_name = "MB")]
    pub quota: Option<u64>,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
}

impl ClientArgs {
    /// The client configuration for repository `fqrn`.
    pub fn to_config(&self, fqrn: &str) -> Result<Config> {
        let servers = self
            .servers
            .iter()
            .flat_map(|s| s.split(';'))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.replace("@fqrn@", fqrn))
            .collect();
        let pin = match (&self.tag, &self.date, &self.root_hash) {
            (Some(t), _, _) => Pin::Tag(t.clone()),
            (_, Some(d), _) => Pin::Date(
                client::trust::parse_date(d)
                    .map_err(|e| miette!(code = "cli::usage", "--date {e}"))?,
            ),
            (_, _, Some(h)) => Pin::RootHash(h.clone()),
            _ => Pin::Head,
        };
        let cache = cache_dir(self.cache.as_deref())?;
        Ok(Config {
            fqrn: fqrn.to_string(),
            servers,
            proxies: self.proxy.clone(),
            keys: self.keys.clone(),
            pin,
            cache,
            quota: self.quota.map(|mb| mb.saturating_mul(1 << 20)),
            timeouts: self.timeouts.to_timeouts()?,
        })
    }
}

/// The client's object cache: `--cache DIR`, else
/// `$XDG_CACHE_HOME/cvmbuild/client`, else `~/.cache/cvmbuild/client`.
pub(super) fn cache_dir(given: Option<&std::path::Path>) -> Result<PathBuf> {
    match given {
        Some(c) => Ok(c.to_path_buf()),
        None => Ok(std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .ok_or_else(|| miette!(code = "cli::usage", "no --cache and no $HOME"))?
            .join("cvmbuild/client")),
    }
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Repository name, e.g. cernvm-prod.cern.ch.
    pub fqrn: String,
    /// Absolute path inside the repository.
    #[arg(default_value = "/")]
    pub path: String,
    /// Long listing: mode, links, owner, size, mtime, name, symlink target.
    #[arg(short = 'l', long)]
    pub long: bool,
    /// JSON array of entries, with extended attributes (hex values).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    pub fqrn: String,
    /// Absolute path of a regular file inside the repository.
    pub path: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// Base URL of the source repository, e.g. http://stratum0/cvmfs/FQRN.
    pub source: String,
    /// Directory of the replica (served as the same URL path by a web server).
    pub dir: PathBuf,
    /// Trusted master public key (PEM), repeatable.
    #[arg(long = "key", value_name = "FILE", required = true)]
    pub keys: Vec<PathBuf>,
    /// Proxy chain (as for ls/cat).
    #[arg(long, value_name = "PROXIES", default_value = "DIRECT")]
    pub proxy: String,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
}

fn fs_err(path: &str) -> impl Fn(client::vfs::FsError) -> miette::Report + '_ {
    move |e| miette!(code = "client::read", "{path}: {e}")
}

fn open(fqrn: &str, a: &ClientArgs) -> Result<client::Repository> {
    Ok(client::open(&a.to_config(fqrn)?)?)
}

pub fn ls_cmd(a: LsArgs) -> Result<i32> {
    let repo = open(&a.fqrn, &a.client)?;
    let err = fs_err(&a.path);
    let target = repo.resolve_path(&a.path).map_err(&err)?;
    let entries = if target.kind == Kind::Directory {
        repo.readdir(target.ino).map_err(&err)?
    } else {
        let name = a.path.rsplit('/').next().unwrap_or("").as_bytes().to_vec();
        vec![(name, target)]
    };
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut list = Vec::new();
        for (name, attr) in &entries {
            list.push(entry_json(&repo, name, attr).map_err(&err)?);
        }
        serde_json::to_writer_pretty(&mut out, &list).into_diagnostic()?;
        writeln!(out).into_diagnostic()?;
    } else {
        for (name, attr) in &entries {
            let name = String::from_utf8_lossy(name);
            if a.long {
                let link = if attr.kind == Kind::Symlink {
                    let t = repo.readlink(attr.ino).map_err(&err)?;
                    format!(" -> {}", String::from_utf8_lossy(&t))
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "{:07o} {:>3} {:>5} {:>5} {:>10} {:>11} {name}{link}",
                    attr.mode, attr.nlink, attr.uid, attr.gid, attr.size, attr.mtime
                )
                .into_diagnostic()?;
            } else {
                writeln!(out, "{name}").into_diagnostic()?;
            }
        }
    }
    Ok(0)
}

fn entry_json(
    repo: &client::Repository,
    name: &[u8],
    a: &Attr,
) -> Result<serde_json::Value, client::vfs::FsError> {
    let kind = match a.kind {
        Kind::Directory => "dir",
        Kind::File => "file",
        Kind::Symlink => "symlink",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
        Kind::CharDevice => "char",
        Kind::BlockDevice => "block",
    };
    let mut xattrs = serde_json::Map::new();
    for k in repo.listxattr(a.ino)? {
        let v = repo.getxattr(a.ino, &k)?;
        xattrs.insert(
            String::from_utf8_lossy(&k).into_owned(),
            hex::encode(v).into(),
        );
    }
    let target = if a.kind == Kind::Symlink {
        Some(String::from_utf8_lossy(&repo.readlink(a.ino)?).into_owned())
    } else {
        None
    };
    Ok(serde_json::json!({
        "name": String::from_utf8_lossy(name),
        "kind": kind,
        "mode": a.mode,
        "size": a.size,
        "uid": a.uid,
        "gid": a.gid,
        "nlink": a.nlink,
        "ino": a.ino,
        "mtime": a.mtime,
        "rdev": a.rdev,
        "target": target,
        "xattrs": xattrs,
    }))
}

pub fn cat_cmd(a: CatArgs) -> Result<i32> {
    let repo = open(&a.fqrn, &a.client)?;
    let err = fs_err(&a.path);
    let attr = repo.resolve_path(&a.path).map_err(&err)?;
    if attr.kind != Kind::File {
        return Err(miette!(
            code = "client::read",
            "{}: not a regular file",
            a.path
        ));
    }
    let mut out = std::io::stdout().lock();
    repo.copy_to(attr.ino, &mut out).map_err(&err)?;
    out.flush().into_diagnostic()?;
    Ok(0)
}

pub fn replicate_cmd(a: ReplicateArgs) -> Result<i32> {
    let opts = client::replicate::Options {
        source: a.source.clone(),
        proxies: a.proxy.clone(),
        keys: a.keys.clone(),
        timeouts: a.timeouts.to_timeouts()?,
    };
    let r = client::replicate::replicate(&opts, &a.dir)?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r).into_diagnostic()?);
    } else {
        outln!(
            "{} revision {}: {} objects copied ({} bytes), {} already present",
            r.fqrn,
            r.revision,
            r.objects_copied,
            r.bytes_copied,
            r.objects_present
        );
    }
    Ok(0)
}

//! `realize` and `log`: build a branch's outputs and export them.

use super::cvmfs::PublishDirs;
use super::Global;
use crate::eval::{self};
use clap::Args;
use miette::{miette, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct RealizeArgs {
    /// The spec file (`.cvm`).
    pub spec: PathBuf,
    #[arg(long, short)]
    pub branch: Option<String>,
    /// Outputs to build (default: os-tree and meta-rpm).
    #[arg(long = "root", value_name = "NAME")]
    pub roots: Vec<String>,
    /// Materialise the OS tree into this directory (hardlinks from the store
    /// where possible); with one other `--root`, write that output here
    /// (an image or initrd as a file).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With `--out`: if the directory holds something other than this tree,
    /// build the tree beside it and swap the two atomically (without it,
    /// such a directory is refused; one holding exactly this tree is left
    /// as it is).
    #[arg(long, requires = "out")]
    pub replace: bool,
    /// Write the OS tree as a reproducible tarball (times clamped to $SOURCE_DATE_EPOCH, else the release's epoch).
    #[arg(long, value_name = "FILE")]
    pub tar: Option<PathBuf>,
    /// Print what would be fetched and built, with sizes, and build nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Build what does not depend on a failure instead of stopping at the first one.
    #[arg(long)]
    pub keep_going: bool,
    /// Fail instead of changing the lock file.
    #[arg(long)]
    pub locked: bool,
    /// Use the lock file as is; do not read repository metadata.
    #[arg(long)]
    pub offline: bool,
    /// Machine-readable summary on stdout; no progress on stderr.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub publish: PublishDirs,
    /// A binary cache (http[s]://… or s3://BUCKET[/PREFIX], store-layout.md 2.11) asked for each
    /// derivation's output before building it; repeatable, tried in order.
    #[arg(
        long = "substituter",
        value_name = "URL",
        env = "CVMBUILD_SUBSTITUTERS",
        value_delimiter = ' '
    )]
    pub substituters: Vec<String>,
    /// A public key file (NAME:BASE64) whose signatures on a cache's
    /// output records are trusted; repeatable.
    #[arg(
        long = "trusted-key",
        value_name = "FILE",
        env = "CVMBUILD_TRUSTED_KEYS",
        value_delimiter = ' '
    )]
    pub trusted_keys: Vec<PathBuf>,
    /// Build nothing that a substituter could supply: a derivation no
    /// substituter has, or whose substitute is refused, fails (naming it)
    /// instead of being built here. `publish` still runs.
    #[arg(long)]
    pub substitute_only: bool,
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// A derivation id, the hash of its output (unique prefixes of either),
    /// a GC root name, or an output name (`os-tree`) realized on one branch.
    pub drv: String,
    /// Print `{"drv": ID, "log": TEXT}`.
    #[arg(long)]
    pub json: bool,
}

/// `--substituter` URLs with the `--trusted-key`s every one of them is
/// checked against (also what `copy --from` pulls with).
pub(super) fn substituters(
    urls: &[String],
    keys: &[PathBuf],
) -> Result<Vec<crate::store::remote::Substituter>> {
    let urls: Vec<&String> = urls.iter().filter(|u| !u.is_empty()).collect();
    if urls.is_empty() {
        return Ok(Vec::new());
    }
    let trusted = keys
        .iter()
        .filter(|k| !k.as_os_str().is_empty())
        .map(|k| crate::store::remote::PublicKey::load(k))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if trusted.is_empty() {
        return Err(miette!(
            code = "cli::no-trusted-key",
            help = "pass the cache signer's public key with --trusted-key FILE (or CVMBUILD_TRUSTED_KEYS)",
            "--substituter needs at least one trusted key: unsigned or untrusted outputs are never used"
        ));
    }
    urls.into_iter()
        .map(|u| {
            Ok(crate::store::remote::Substituter::new(
                crate::store::remote::Remote::new(u)?,
                trusted.clone(),
            ))
        })
        .collect()
}

const DEFAULT_ROOTS: &[&str] = &["os-tree", "meta-rpm", "publish"];

pub(super) fn realize_cmd(g: &Global, a: RealizeArgs) -> Result<i32> {
    let mut opts = g.eval_options(a.branch, a.offline);
    opts.locked = a.locked;
    // The key an `initrd.boot` without `key` bakes in is the one this
    // realize publishes with.
    opts.keys_dir = Some(a.publish.keys_dir(g)?);
    let ev = eval::evaluate(&a.spec, &opts)?;
    super::eval::report_signers(&ev);
    let substituters = substituters(&a.substituters, &a.trusted_keys)?;
    if a.substitute_only && substituters.is_empty() {
        return Err(miette!(
            code = "cli::no-substituter",
            help = "pass --substituter URL (or CVMBUILD_SUBSTITUTERS) with --trusted-key FILE",
            "--substitute-only needs a substituter: without one, nothing could be realized"
        ));
    }
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    if (a.out.is_some() || a.tar.is_some()) && ev.branches.len() > 1 {
        return Err(miette!(
            code = "cli::branch",
            "--out and --tar need one branch; pass --branch"
        ));
    }
    // Held until the roots are registered: `gc` waits for it, so nothing
    // this run writes can be collected before a root reaches it.
    let _builds = store.lock_builds()?;
    let jobs = g
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let progress = super::progress::Progress::new(a.json);
    let mut summaries = Vec::new();
    let mut failed = false;
    for b in &ev.branches {
        let names: Vec<&str> = if a.roots.is_empty() {
            // `publish` exists only when the spec has a `cvmfs` block.
            DEFAULT_ROOTS
                .iter()
                .copied()
                .filter(|n| b.graph.roots.contains_key(*n))
                .collect()
        } else {
            a.roots.iter().map(String::as_str).collect()
        };
        // What `--out` writes: the OS tree when it is built, else the one
        // root asked for (an image or initrd is a file, a tree a directory).
        let out_root = match &a.out {
            None => None,
            Some(_) if names.contains(&"os-tree") => Some("os-tree"),
            Some(_) if names.len() == 1 => Some(names[0]),
            Some(dir) => {
                return Err(miette!(
                    code = "cli::out",
                    help = "add `--root os-tree`, or realize one root at a time",
                    "--out {} needs the `os-tree` root or a single root, not {}",
                    dir.display(),
                    names.join(", ")
                ))
            }
        };
        let mut wanted = Vec::new();
        for n in &names {
            let id = b.graph.roots.get(*n).ok_or_else(|| {
                miette!(
                    code = "cli::no-root",
                    help = format!(
                        "outputs of this branch: {}",
                        b.graph.roots.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                    "branch `{}` has no output `{n}`",
                    b.release.branch
                )
            })?;
            wanted.push(id.clone());
        }
        let env = crate::builders::Env {
            repos: b
                .release
                .repos
                .iter()
                .map(|r| {
                    crate::repo::fetch::Location::parse(&r.name, &r.location.as_source())
                        .map(|l| (r.name.clone(), l))
                })
                .collect::<std::result::Result<_, _>>()?,
            signing_keys: b
                .release
                .repos
                .iter()
                .filter(|r| r.gpgcheck)
                .filter_map(|r| Some((r.name.clone(), r.keys.clone()?)))
                .collect(),
            spec_dir: ev.spec_path.parent().map(PathBuf::from).unwrap_or_default(),
            publish_dir: Some(a.publish.repos_dir(g)?),
            keys_dir: Some(a.publish.keys_dir(g)?),
        };
        crate::build::records::record_graph(&store, &b.graph)?;
        let bopts = crate::build::Options {
            jobs,
            keep_going: a.keep_going,
            dry_run: a.dry_run,
            substitute_only: a.substitute_only,
        };
        let started = std::time::Instant::now();
        let registry = crate::builders::Registry::standard();
        let layered = crate::store::Substituting::new(&store, &substituters);
        let realizer = crate::build::Realizer {
            store: &layered,
            state: &store,
            registry: &registry,
            env: &env,
            reporter: &progress,
            opts: bopts,
        };
        let before: Vec<_> = substituters.iter().map(|s| s.remote.fetched()).collect();
        let mut report = realizer.realize(&b.graph, &wanted)?;
        for (id, why) in std::mem::take(&mut report.refused) {
            let name = b.graph.get(&id).map_or("?", |d| d.name.as_str());
            let instead = if a.substitute_only {
                "not building it (--substitute-only)"
            } else {
                "building it locally"
            };
            eprintln!(
                "warning: not substituting {name} ({}): {why}; {instead}",
                id.short()
            );
        }
        if a.dry_run {
            let mut bytes = 0u64;
            for id in &report.plan {
                let d = b.graph.get(id).expect("planned ids are in the graph");
                let size = d.params.get("size").and_then(|s| s.as_u64());
                bytes += size.unwrap_or(0);
                if !a.json {
                    match size {
                        Some(s) => outln!("would build {} ({s} bytes)", d.name),
                        None => outln!("would build {}", d.name),
                    }
                }
            }
            if !a.json {
                outln!(
                    "branch {}: {} to build, {} cached, {bytes} bytes to fetch",
                    b.release.branch,
                    report.plan.len(),
                    report.cached
                );
            }
            summaries.push(json!({"branch": b.release.branch, "plan": report.plan, "cached": report.cached, "fetch_bytes": bytes}));
            continue;
        }
        let fetched: Vec<_> = substituters
            .iter()
            .zip(&before)
            .map(|(s, b)| {
                let now = s.remote.fetched();
                let t = crate::store::remote::Transfer {
                    objects: now.objects - b.objects,
                    bytes: now.bytes - b.bytes,
                    present: 0,
                };
                (s.remote.url(), t)
            })
            .collect();
        if !a.json && !report.substituted.is_empty() {
            for (url, t) in &fetched {
                if t.objects > 0 {
                    eprintln!(
                        "substituted from {url}: {} objects, {} bytes",
                        t.objects, t.bytes
                    );
                }
            }
        }
        let n_failed = report.failed.len();
        let failed_ids: Vec<_> = report.failed.iter().map(|(id, _)| id.clone()).collect();
        for (id, cause) in std::mem::take(&mut report.failed) {
            let name = b.graph.get(&id).map_or("?", |d| d.name.as_str());
            let failed = BuildFailed {
                name: name.to_string(),
                short: id.short().to_string(),
                cause,
            };
            eprintln!("{:?}", miette::Report::new(failed));
        }
        if !report.skipped.is_empty() {
            eprintln!(
                "{} derivations not built: an input failed, or the run stopped at the first failure (--keep-going builds what it can)",
                report.skipped.len()
            );
        }
        failed |= n_failed > 0;
        let mut outs = BTreeMap::new();
        for (n, id) in names.iter().zip(&wanted) {
            if let Some(out) = report.outputs.get(id) {
                // Keep realized outputs alive across `gc` (roots/).
                let root_name = format!("{}-{n}", root_prefix(&ev.spec_path, &b.release.branch));
                store.add_gc_root(
                    &root_name.replace(':', "-"),
                    &crate::store::GcRoot::Drv(id.0.clone()),
                )?;
                outs.insert(n.to_string(), out.clone());
            }
        }
        let mut exported = serde_json::Value::Null;
        if let (Some(dest), Some(out)) = (&a.out, out_root.and_then(|n| outs.get(n))) {
            let what = out_root.unwrap_or_default();
            match out.root {
                crate::store::Root::Tree { hash } => {
                    let if_different = if a.replace {
                        crate::store::IfDifferent::Replace
                    } else {
                        crate::store::IfDifferent::Refuse
                    };
                    let epoch = output_epoch(b.release.epoch)?;
                    let r =
                        crate::store::export_tree_with(&store, &hash, dest, epoch, if_different)?;
                    if !a.json {
                        print_export(what, dest, &r);
                    }
                    exported = json!({"path": dest, "output": what, "unchanged": r.unchanged,
                        "hardlinked": r.hardlinked, "copied": r.copied,
                        "setid_dropped": r.setid_dropped, "xattrs_dropped": r.xattrs_dropped,
                        "skipped": r.skipped.iter().map(|s| json!({"path": s.path, "reason": s.reason})).collect::<Vec<_>>()});
                }
                crate::store::Root::Blob { hash, .. } => {
                    let n = crate::store::export_blob(&store, &hash, dest)?;
                    exported = json!({"path": dest, "output": what, "bytes": n});
                    if !a.json {
                        eprintln!("exported {what} to {} ({n} bytes)", dest.display());
                    }
                }
            }
        }
        if let (Some(file), Some(out)) = (&a.tar, outs.get("os-tree")) {
            if let crate::store::Root::Tree { hash } = out.root {
                write_tar(&store, &hash, file, b.release.epoch, a.json)?;
            }
        }
        if a.json {
            let built: std::collections::BTreeSet<&crate::eval::DrvId> =
                report.built.iter().collect();
            let found: Vec<_> = report
                .outputs
                .keys()
                .filter(|id| !built.contains(id))
                .collect();
            let roots: BTreeMap<&str, &crate::eval::DrvId> =
                names.iter().copied().zip(&wanted).collect();
            summaries.push(json!({"branch": b.release.branch, "built": report.built.len(), "cached": report.cached,
                "substituted": report.substituted.len(),
                "substituters": fetched.iter().map(|(url, t)| json!({"url": url, "objects": t.objects, "bytes": t.bytes})).collect::<Vec<_>>(),
                "failed": n_failed, "outputs": outs, "roots": roots,
                "derivations": {"built": report.built, "found": found, "substituted": report.substituted, "failed": failed_ids, "skipped": report.skipped},
                "out": exported}));
        } else {
            outln!(
                "branch {}: {} built, {} cached, {} substituted, {} failed in {:.2} s",
                b.release.branch,
                report.built.len(),
                report.cached,
                report.substituted.len(),
                n_failed,
                started.elapsed().as_secs_f64()
            );
            for (n, out) in &outs {
                let what = match out.root {
                    crate::store::Root::Tree { hash } => format!("tree {hash}"),
                    crate::store::Root::Blob { hash, .. } => format!("blob {hash}"),
                };
                outln!("  {n:<12} {what}{}", boot_note(out));
            }
        }
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&summaries).expect("plain data")
        );
    }
    Ok(if failed { 1 } else { 0 })
}

/// `--out`'s summary on stderr, with every entry the export could not
/// apply (store-layout.md: they are reported, not silently dropped).
fn print_export(what: &str, dest: &std::path::Path, r: &crate::store::ExportReport) {
    if r.unchanged {
        eprintln!(
            "{} already holds this {what}; nothing written",
            dest.display()
        );
    } else {
        let mut said = format!("({} hardlinked, {} copied", r.hardlinked, r.copied);
        if r.linked > 0 {
            said += &format!(
                ", {} names linked to another name of the same file",
                r.linked
            );
        }
        eprintln!("exported {what} to {} {said})", dest.display());
    }
    for p in &r.setid_dropped {
        eprintln!("note: {p}: setuid/setgid bits not applied (--tar keeps them)");
    }
    for p in &r.xattrs_dropped {
        eprintln!(
            "note: {p}: file capabilities (extended attributes) not applied (--tar keeps them)"
        );
    }
    for s in &r.skipped {
        eprintln!("note: {}: not exported: {}", s.path, s.reason);
    }
}

/// A derivation's failure as the user sees it: once, on one line with the
/// builder's own message, under the builder's diagnostic code, with its
/// help and the way to the full log.
#[derive(Debug, thiserror::Error)]
#[error("{name} ({short}) failed: {cause}")]
struct BuildFailed {
    name: String,
    short: String,
    cause: crate::builders::Error,
}

impl miette::Diagnostic for BuildFailed {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.cause.code()
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        let log = format!("the full build log: cvmbuild log {}", self.short);
        Some(Box::new(match self.cause.help() {
            Some(h) => format!("{h}\n{log}"),
            None => log,
        }))
    }
}

/// What the boot outputs hold, from their metadata: the kernel's module
/// trimming (the "size before and after"), an initrd's entries,
/// an image's size. Empty for other outputs.
fn boot_note(out: &crate::store::Output) -> String {
    let mib = |b: &str| b.parse::<f64>().unwrap_or(0.0) / f64::from(1 << 20);
    let m = |k: &str| out.meta.get(k).map(String::as_str);
    if let (Some(v), Some(kept), Some(before), Some(after)) = (
        m("version"),
        m("modules"),
        m("modules-bytes-before"),
        m("modules-bytes-after"),
    ) {
        let n = kept.split(',').filter(|s| !s.is_empty()).count();
        return format!(
            "  (kernel {v}; modules {:.1} MiB -> {:.1} MiB, {n} kept)",
            mib(before),
            mib(after)
        );
    }
    match (out.root, m("entries"), m("compression")) {
        (crate::store::Root::Blob { size, .. }, Some(e), Some(c)) => {
            format!("  ({e} entries, {c}, {size} bytes)")
        }
        (crate::store::Root::Blob { size, .. }, None, _) if out.meta.contains_key("format") => {
            format!("  ({size} bytes)")
        }
        _ => String::new(),
    }
}

/// `SPECSTEM-BRANCH`: what the GC roots of a branch's outputs are named
/// by (`copy --from --spec` names what it pulls the same way).
pub(super) fn root_prefix(spec: &std::path::Path, branch: &str) -> String {
    format!("{}-{branch}", file_stem(spec))
}

fn file_stem(p: &std::path::Path) -> String {
    p.file_stem()
        .map_or("spec".into(), |s| s.to_string_lossy().into_owned())
}

pub(super) fn log_cmd(g: &Global, a: LogArgs) -> Result<i32> {
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    let id = super::ids::resolve(&store, &a.drv, None)?;
    let path = store.log_path(&id.0)?;
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if a.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"drv": id, "log": text}))
                        .expect("plain data")
                );
            } else {
                out!("{text}");
            }
            Ok(0)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(miette!(
            code = "cli::no-log",
            help = "a derivation has a log once `realize` has built it in this store",
            "derivation {id} has no build log in {}",
            store.root().display()
        )),
        Err(e) => Err(miette!("{}: {e}", path.display())),
    }
}

/// The epoch `--out` and `--tar` clamp times to: `$SOURCE_DATE_EPOCH`,
/// else the release's.
fn output_epoch(release_epoch: i64) -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.parse::<u64>().map_err(|_| {
            miette!(
                code = "cli::source-date-epoch",
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            )
        }),
        _ => u64::try_from(release_epoch)
            .map_err(|_| miette!("the release's epoch {release_epoch} is before 1970")),
    }
}

/// `realize --tar`: the OS tree as a reproducible tarball.
fn write_tar(
    store: &crate::store::FsStore,
    tree: &crate::store::Hash,
    file: &std::path::Path,
    epoch: i64,
    quiet: bool,
) -> Result<()> {
    let mtime = output_epoch(epoch)?;
    let owners = crate::store::Owners::from_tree(store, tree)?;
    let r = crate::store::export_tar(store, tree, file, mtime, &owners)?;
    if !quiet {
        eprintln!(
            "wrote {} ({} entries, {} bytes, mtime {mtime})",
            file.display(),
            r.entries,
            r.bytes
        );
        for (name, path) in &r.unknown_names {
            eprintln!("warning: {name} (e.g. {path}) is not in the tree's /etc/passwd or /etc/group; written as 0");
        }
        for (path, why) in &r.skipped {
            eprintln!("note: {path} not in the tarball: {why}");
        }
    }
    Ok(())
}

//! One function per subcommand.

use super::{Cli, Command};
use crate::eval::{self, BranchEval, Evaluation};
use clap::{Args, ValueEnum};
use miette::{miette, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The spec file (`.cvm`).
    pub spec: PathBuf,
    /// Only this branch.
    #[arg(long, short)]
    pub branch: Option<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Fail instead of changing the lock file.
    #[arg(long)]
    pub locked: bool,
    /// Use the lock file as is; do not read repositories.
    #[arg(long)]
    pub offline: bool,
    /// Give the solver at most this many seconds; it then returns the best closure found.
    #[arg(long, value_name = "SECONDS")]
    pub solve_timeout: Option<f64>,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// The spec file (`.cvm`), or a derivation id (unique prefix) recorded in the store.
    pub spec: PathBuf,
    /// A derivation: root name (`os-tree`), derivation name (`extract:bash-...`) or id prefix.
    /// Without it, every derivation of the branch.
    pub drv: Option<String>,
    #[arg(long, short)]
    pub branch: Option<String>,
    /// Use the lock file as is; do not read repositories.
    #[arg(long)]
    pub offline: bool,
    /// Print JSON (`{id: derivation}`) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Json,
}

#[derive(Args, Debug)]
pub struct GraphArgs {
    pub spec: PathBuf,
    #[arg(long, short)]
    pub branch: Option<String>,
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
    /// Use the lock file as is; do not read repositories.
    #[arg(long)]
    pub offline: bool,
}

pub fn run(cli: Cli) -> Result<i32> {
    let g = Global {
        store: cli.store,
        jobs: cli.jobs,
    };
    match cli.command {
        Command::Eval(a) => eval_cmd(&g, a),
        Command::Show(a) => show_cmd(&g, a),
        Command::Graph(a) => graph_cmd(&g, a),
        Command::Why(a) => why_cmd(&g, a),
        Command::Update(a) => update_cmd(&g, a),
        Command::Realize(a) => realize_cmd(&g, a),
        Command::Log(a) => log_cmd(&g, a),
        Command::Gc(a) => gc_cmd(&g, a),
        Command::Root(c) => root_cmd(&g, c),
        Command::Store(c) => store_cmd(&g, c),
        Command::Diff(a) => diff_cmd(&g, a),

        Command::Tag(a) => tag_cmd(&g, a),
        Command::Promote(a) => promote_cmd(&g, a),
    }
}

/// Options every subcommand may use.
struct Global {
    store: Option<PathBuf>,
    jobs: Option<usize>,
}

impl Global {
    fn store_dir(&self) -> Result<PathBuf> {
        crate::store::resolve_store_dir(self.store.as_deref(), |k| std::env::var_os(k))
            .map_err(|e| miette!(code = "cli::store", "{e}"))
    }

    /// Evaluation options; the parsed-metadata cache lives in the store
    /// (store-layout.md) so `--store` moves it too.
    fn eval_options(&self, branch: Option<String>, offline: bool) -> eval::Options {
        eval::Options {
            branch,
            offline,
            cache: self
                .store_dir()
                .ok()
                .map(|d| d.join("cache").join("repodata")),
            ..Default::default()
        }
    }
}

fn eval_cmd(g: &Global, a: EvalArgs) -> Result<i32> {
    let mut opts = g.eval_options(a.branch, a.offline);
    opts.locked = a.locked;
    opts.solve_timeout = a.solve_timeout.map(std::time::Duration::from_secs_f64);
    let ev = eval::evaluate(&a.spec, &opts)?;
    record_evaluation(g, &ev);
    if a.json {
        let branches: Vec<_> = ev.branches.iter().map(branch_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "spec": ev.spec_path, "lock": ev.lock_path, "lock_written": ev.lock_written,
                "branches": branches,
            }))
            .expect("plain data")
        );
    } else {
        for b in &ev.branches {
            print_branch(b);
        }
        report_lock(&ev);
    }
    Ok(0)
}

/// Tells on stderr whether evaluation rewrote the lock file.
fn report_lock(ev: &Evaluation) {
    let what = if ev.lock_written {
        "wrote"
    } else {
        "unchanged:"
    };
    eprintln!("{what} {}", ev.lock_path.display());
}

fn builder_counts(b: &BranchEval) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, d) in b.graph.topo() {
        let kind = match &d.builder {
            eval::Builder::Builtin { name, .. } => name.clone(),
            eval::Builder::External { tool, .. } => tool.clone(),
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}

fn branch_json(b: &BranchEval) -> serde_json::Value {
    let r = &b.release;
    json!({
        "branch": r.branch, "name": r.name, "version": r.version, "arch": r.arch,
        "packages": b.lock.package.len(), "optimal": b.lock.optimal, "repinned": b.repinned,
        "solve": b.lock.solve,
        "derivations": b.graph.len(), "builders": builder_counts(b),
        "roots": b.graph.roots,
        "closure": b.lock.package.iter().map(|p| p.nevra()).collect::<Vec<_>>(),
    })
}

fn print_branch(b: &BranchEval) {
    let r = &b.release;
    println!("branch {}: {} {} ({})", r.branch, r.name, r.version, r.arch);
    println!(
        "  closure: {} packages from {} repositories{}{}",
        b.lock.package.len(),
        b.lock.repo.len(),
        if b.lock.optimal {
            ", proven optimal"
        } else {
            ", NOT proven optimal"
        },
        if b.repinned { " (re-pinned)" } else { "" }
    );
    let counts: Vec<String> = builder_counts(b)
        .iter()
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    println!(
        "  graph: {} derivations ({})",
        b.graph.len(),
        counts.join(", ")
    );
    for (name, id) in &b.graph.roots {
        println!("  {name:<12} {}", id.short());
    }
}

fn one_branch(ev: &Evaluation) -> Result<&BranchEval> {
    match ev.branches.as_slice() {
        [b] => Ok(b),
        many => Err(miette!(
            code = "cli::branch",
            help = format!(
                "pass --branch, one of: {}",
                many.iter()
                    .map(|b| b.release.branch.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "{} has several branches",
            ev.spec_path.display()
        )),
    }
}

fn show_cmd(g: &Global, a: ShowArgs) -> Result<i32> {
    if a.drv.is_none() && !a.spec.is_file() {
        return show_recorded(g, &a.spec.to_string_lossy(), a.json);
    }
    let ev = eval::evaluate(&a.spec, &g.eval_options(a.branch, a.offline))?;
    let b = one_branch(&ev)?;
    let g = &b.graph;
    let selected: Vec<(&eval::DrvId, &eval::Derivation)> = match &a.drv {
        None => g.topo(),
        Some(key) => {
            let id = match g.roots.get(key) {
                Some(id) => id,
                None => match g.find(key).as_slice() {
                    [id] => *id,
                    [] => {
                        return Err(miette!(
                            code = "cli::no-drv",
                            "no derivation matches `{key}`"
                        ))
                    }
                    many => {
                        return Err(miette!(
                            code = "cli::ambiguous-drv",
                            "`{key}` matches {} derivations; give more of the id",
                            many.len()
                        ))
                    }
                },
            };
            vec![(id, g.get(id).expect("found ids are in the graph"))]
        }
    };
    if a.json {
        let map: BTreeMap<&str, &eval::Derivation> =
            selected.iter().map(|(id, d)| (id.0.as_str(), *d)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&map).expect("plain data")
        );
    } else {
        for (id, d) in selected {
            println!("{id}  {}", d.name);
            println!("  builder: {}", d.builder);
            for (role, input) in &d.inputs {
                match input {
                    eval::Input::Drv { id } => {
                        let name = g.get(id).map_or("?", |d| d.name.as_str());
                        println!("  input {role}: {} ({name})", id.short());
                    }
                    eval::Input::Source { hash, origin } => {
                        println!(
                            "  input {role}: {origin} (blake3 {})",
                            &hash[..12.min(hash.len())]
                        )
                    }
                }
            }
            println!("  params: {}", d.params);
        }
    }
    Ok(0)
}

fn graph_cmd(g: &Global, a: GraphArgs) -> Result<i32> {
    let ev = eval::evaluate(&a.spec, &g.eval_options(a.branch, a.offline))?;
    let b = one_branch(&ev)?;
    match a.format {
        GraphFormat::Dot => print!("{}", b.graph.to_dot()),
        GraphFormat::Json => {
            let nodes: BTreeMap<&str, &eval::Derivation> = b
                .graph
                .topo()
                .into_iter()
                .map(|(id, d)| (id.0.as_str(), d))
                .collect();
            let edges: Vec<_> = b
                .graph
                .edges()
                .into_iter()
                .map(|(f, t, k)| json!({"from": f, "to": t, "kind": k}))
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({"nodes": nodes, "edges": edges, "roots": b.graph.roots})
                )
                .expect("plain data")
            );
        }
    }
    Ok(0)
}

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
    /// Write the OS tree as a reproducible tarball (mtime: $SOURCE_DATE_EPOCH, else the release's epoch).
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
}

#[derive(Args, Debug)]
pub struct LogArgs {
    /// Derivation id or unique prefix.
    pub drv: String,
}

const DEFAULT_ROOTS: &[&str] = &["os-tree", "meta-rpm", "publish"];

fn realize_cmd(g: &Global, a: RealizeArgs) -> Result<i32> {
    let mut opts = g.eval_options(a.branch, a.offline);
    opts.locked = a.locked;
    let ev = eval::evaluate(&a.spec, &opts)?;
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
    let progress = crate::build::Progress::new(a.json);
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
        let env = crate::build::Env {
            repos: b
                .release
                .repos
                .iter()
                .map(|r| {
                    crate::repo::fetch::Location::parse(&r.name, &r.location.as_source())
                        .map(|l| (r.name.clone(), l))
                })
                .collect::<std::result::Result<_, _>>()?,
            spec_dir: ev.spec_path.parent().map(PathBuf::from).unwrap_or_default(),
            publish_dir: Some(a.publish.repos_dir(g)?),
            keys_dir: Some(a.publish.keys_dir(g)?),
        };
        crate::build::records::record_graph(&store, &b.graph)?;
        let bopts = crate::build::Options {
            jobs,
            keep_going: a.keep_going,
            dry_run: a.dry_run,
        };
        let started = std::time::Instant::now();
        let report = crate::build::realize(&b.graph, &wanted, &store, &env, &bopts, &progress)
            .map_err(|e| miette!("{e}"))?;
        if a.dry_run {
            let mut bytes = 0u64;
            for id in &report.plan {
                let d = b.graph.get(id).expect("planned ids are in the graph");
                let size = d.params.get("size").and_then(|s| s.as_u64());
                bytes += size.unwrap_or(0);
                if !a.json {
                    match size {
                        Some(s) => println!("would build {} ({s} bytes)", d.name),
                        None => println!("would build {}", d.name),
                    }
                }
            }
            if !a.json {
                println!(
                    "branch {}: {} to build, {} cached, {bytes} bytes to fetch",
                    b.release.branch,
                    report.plan.len(),
                    report.cached
                );
            }
            summaries.push(json!({"branch": b.release.branch, "plan": report.plan, "cached": report.cached, "fetch_bytes": bytes}));
            continue;
        }
        for (id, e) in &report.failed {
            let name = b.graph.get(id).map_or("?", |d| d.name.as_str());
            eprintln!("error: {name} ({}) failed: {e}", id.short());
        }
        if !report.skipped.is_empty() {
            eprintln!(
                "{} derivations not built: an input failed, or the run stopped at the first failure (--keep-going builds what it can)",
                report.skipped.len()
            );
        }
        failed |= !report.failed.is_empty();
        let mut outs = BTreeMap::new();
        for (n, id) in names.iter().zip(&wanted) {
            if let Some(out) = report.outputs.get(id) {
                // Keep realized outputs alive across `gc` (roots/).
                let root_name = format!("{}-{}-{n}", file_stem(&ev.spec_path), b.release.branch);
                store.add_gc_root(
                    &root_name.replace(':', "-"),
                    &crate::store::GcRoot::Drv(id.0.clone()),
                )?;
                outs.insert(n.to_string(), out.clone());
            }
        }
        if let (Some(dest), Some(out)) = (&a.out, out_root.and_then(|n| outs.get(n))) {
            let what = out_root.unwrap_or_default();
            let said = match out.root {
                crate::store::Root::Tree { hash } => {
                    let r = crate::store::export_tree(&store, &hash, dest)?;
                    format!("({} hardlinked, {} copied)", r.hardlinked, r.copied)
                }
                crate::store::Root::Blob { hash, .. } => {
                    let n = crate::store::export_blob(&store, &hash, dest)?;
                    format!("({n} bytes)")
                }
            };
            if !a.json {
                eprintln!("exported {what} to {} {said}", dest.display());
            }
        }
        if let (Some(file), Some(out)) = (&a.tar, outs.get("os-tree")) {
            if let crate::store::Root::Tree { hash } = out.root {
                write_tar(&store, &hash, file, b.release.epoch, a.json)?;
            }
        }
        if a.json {
            summaries.push(json!({"branch": b.release.branch, "built": report.built.len(), "cached": report.cached,
                "failed": report.failed.len(), "outputs": outs}));
        } else {
            println!(
                "branch {}: {} built, {} cached, {} failed in {:.2} s",
                b.release.branch,
                report.built.len(),
                report.cached,
                report.failed.len(),
                started.elapsed().as_secs_f64()
            );
            for (n, out) in &outs {
                let what = match out.root {
                    crate::store::Root::Tree { hash } => format!("tree {hash}"),
                    crate::store::Root::Blob { hash, .. } => format!("blob {hash}"),
                };
                println!("  {n:<12} {what}");
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summaries).expect("plain data")
        );
    }
    Ok(if failed { 1 } else { 0 })
}

fn file_stem(p: &std::path::Path) -> String {
    p.file_stem()
        .map_or("spec".into(), |s| s.to_string_lossy().into_owned())
}

fn log_cmd(g: &Global, a: LogArgs) -> Result<i32> {
    let dir = g.store_dir()?.join("logs");
    let mut hits: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| miette!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&a.drv))
        })
        .collect();
    hits.sort();
    match hits.as_slice() {
        [one] => {
            print!(
                "{}",
                std::fs::read_to_string(one).map_err(|e| miette!("{}: {e}", one.display()))?
            );
            Ok(0)
        }
        [] => Err(miette!(
            code = "cli::no-log",
            "no build log for `{}` in {}",
            a.drv,
            dir.display()
        )),
        many => Err(miette!(
            code = "cli::ambiguous-drv",
            "`{}` matches {} logs; give more of the id",
            a.drv,
            many.len()
        )),
    }
}

#[derive(Args, Debug)]
pub struct WhyArgs {
    /// The spec file (`.cvm`).
    pub spec: PathBuf,
    /// A package name in the closure.
    pub package: String,
    #[arg(long, short)]
    pub branch: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// The spec file (`.cvm`).
    pub spec: PathBuf,
    /// Packages allowed to move; without names, every package may.
    pub names: Vec<String>,
    #[arg(long, short)]
    pub branch: Option<String>,
}

fn why_cmd(g: &Global, a: WhyArgs) -> Result<i32> {
    let ev = eval::evaluate(&a.spec, &g.eval_options(a.branch, false))?;
    let b = one_branch(&ev)?;
    let opts = g.eval_options(None, false);
    let pool = crate::repo::load(&eval::repo_sources(&b.release), opts.cache.as_deref())?;
    let req = eval::pinning::request(&b.release, &ev.sources, None)?;
    let packages = b
        .lock
        .package
        .iter()
        .filter_map(|lp| {
            let name = pool.names.get(&lp.name)?;
            pool.named(name).iter().copied().find(|&id| {
                let p = pool.package(id);
                p.evr.epoch == lp.epoch
                    && *p.evr.version == *lp.version
                    && p.evr.release.as_deref().unwrap_or("") == lp.release
                    && pool.name(p.arch) == lp.arch
            })
        })
        .collect();
    let sol = crate::solve::Solution {
        packages,
        optimal: b.lock.optimal,
        stats: Default::default(),
    };
    let Some(chain) = crate::solve::why(&pool, &req, &sol, &a.package) else {
        return Err(miette!(
            code = "cli::not-in-closure",
            "`{}` is not in the closure of branch `{}`",
            a.package,
            b.release.branch
        ));
    };
    let span = eval::pinning::span_of(&b.release, chain.origin);
    let (line, _) = ev.sources.line_col(span);
    let at = format!("{}:{line}", ev.sources.path(span.file).display());
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"package": a.package, "branch": b.release.branch,
                "asked_at": at, "path": chain.path, "steps": chain.steps, "version": chain.version}))
            .expect("plain data")
        );
    } else {
        println!(
            "{} is in branch {} because the shopping list asks for `{}` ({at})",
            chain.path.last().map_or(a.package.as_str(), String::as_str),
            b.release.branch,
            req.jobs.get(chain.job).map_or("?", |j| j.name.as_str()),
        );
        for s in &chain.steps {
            println!("  {s}");
        }
        println!(
            "version: {}",
            eval::pinning::locate(&chain.version, &b.release, &ev.sources)
        );
    }
    Ok(0)
}

fn update_cmd(g: &Global, a: UpdateArgs) -> Result<i32> {
    let mut opts = g.eval_options(a.branch, false);
    opts.update = Some(a.names);
    let before = crate::lock::LockFile::read(&crate::lock::path_for(&a.spec))?;
    let ev = eval::evaluate(&a.spec, &opts)?;
    for b in &ev.branches {
        let old: BTreeMap<&str, String> = before
            .branch
            .get(&b.release.branch)
            .map(|l| {
                l.package
                    .iter()
                    .map(|p| (p.name.as_str(), p.evr()))
                    .collect()
            })
            .unwrap_or_default();
        let new: BTreeMap<&str, String> = b
            .lock
            .package
            .iter()
            .map(|p| (p.name.as_str(), p.evr()))
            .collect();
        let mut changes = 0;
        for (name, evr) in &new {
            match old.get(name) {
                None => println!("{}: + {name} {evr}", b.release.branch),
                Some(o) if o != evr => println!("{}: ~ {name} {o} -> {evr}", b.release.branch),
                _ => continue,
            }
            changes += 1;
        }
        for (name, evr) in &old {
            if !new.contains_key(name) {
                println!("{}: - {name} {evr}", b.release.branch);
                changes += 1;
            }
        }
        if changes == 0 {
            println!("{}: closure unchanged", b.release.branch);
        }
    }
    report_lock(&ev);
    Ok(0)
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The old release: SPEC.cvm[#BRANCH] (evaluated from its lock), FILE.lock[#BRANCH], a
    /// derivation id (or prefix) recorded in the store, or cvmfs:FQRN@TAG / cvmfs:DIR@TAG.
    pub a: String,
    /// The new release, likewise.
    pub b: String,
    /// Explain one derivation only: an output (`os-tree`, `initrd`), a derivation name or an id prefix.
    #[arg(long, value_name = "DRV")]
    pub why: Option<String>,
    /// Also compare the two OS trees file by file (both must be realized in the store).
    #[arg(long)]
    pub files: bool,
    /// Print the report as JSON (schema: docs/diff-schema.md).
    #[arg(long)]
    pub json: bool,
}

/// Exits like diff(1): 0 identical, 1 different, 2 trouble; so errors are
/// printed here rather than returned (the CLI maps returned errors to 1).
fn diff_cmd(g: &Global, a: DiffArgs) -> Result<i32> {
    match diff_report(g, &a) {
        Ok(None) => {
            eprintln!(
                "`{}` is the same derivation in A and B",
                a.why.as_deref().unwrap_or_default()
            );
            Ok(0)
        }
        Ok(Some(r)) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r).expect("plain data"));
            } else {
                print!("{}", crate::diff::render::text(&r));
            }
            Ok(if r.identical { 0 } else { 1 })
        }
        Err(report) => {
            eprintln!("{report:?}");
            Ok(2)
        }
    }
}

/// The report, or `None` when `--why` names a derivation that does not differ.
fn diff_report(g: &Global, a: &DiffArgs) -> Result<Option<crate::diff::Report>> {
    let store = g.store_dir().ok();
    let side_a = crate::diff::load(&a.a, store.as_deref())?;
    let side_b = crate::diff::load(&a.b, store.as_deref())?;
    let mut r = crate::diff::Report::new(&side_a, &side_b)?;
    if a.files {
        let store = crate::store::FsStore::open(&g.store_dir()?)?;
        r.add_files(&store, &side_a, &side_b)?;
    }
    if let Some(key) = &a.why {
        if r.why(key).is_none() {
            let known = [&side_a, &side_b].iter().any(|s| {
                s.graph().is_some_and(|gr| {
                    gr.roots.contains_key(key.as_str()) || !gr.find(key).is_empty()
                })
            });
            if known {
                return Ok(None);
            }
            return Err(miette!(
                code = "diff::why",
                "no derivation matches `{key}` in A or B"
            ));
        }
    }
    Ok(Some(r))
}

/// Records the derivations `eval` planned in the store, so `show ID` and
/// `diff` work without the spec. Best effort: evaluating must not fail
/// because the store is unwritable.
fn record_evaluation(g: &Global, ev: &Evaluation) {
    let result = g.store_dir().and_then(|d| {
        let store = crate::store::FsStore::open(&d)?;
        let _builds = store.lock_builds()?;
        for b in &ev.branches {
            crate::build::records::record_graph(&store, &b.graph)?;
        }
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("warning: derivations not recorded in the store: {e}");
    }
}

/// `show ID`: a derivation from the store's records, without the spec.
fn show_recorded(g: &Global, prefix: &str, as_json: bool) -> Result<i32> {
    use crate::store::Store;
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    let id = match crate::build::records::find(&store, prefix)?.as_slice() {
        [id] => id.clone(),
        [] => {
            return Err(miette!(
                code = "cli::no-drv",
                help = "pass a spec file, or an id that `eval` or `realize` recorded in this store",
                "`{prefix}` is neither a spec file nor a derivation recorded in {}",
                store.root().display()
            ))
        }
        many => {
            return Err(miette!(
                code = "cli::ambiguous-drv",
                "`{prefix}` matches {} derivations; give more of the id",
                many.len()
            ))
        }
    };
    let load = |id: &str| crate::build::records::load(&store, id).map_err(|e| miette!("{e}"));
    let d = load(&id.0)?.expect("found ids have records");
    if as_json {
        let map = BTreeMap::from([(id.0.as_str(), &d)]);
        println!(
            "{}",
            serde_json::to_string_pretty(&map).expect("plain data")
        );
        return Ok(0);
    }
    println!("{id}  {}", d.name);
    println!("  builder: {}", d.builder);
    for (role, input) in &d.inputs {
        match input {
            eval::Input::Drv { id } => {
                let name = load(&id.0)?.map_or("?".to_string(), |d| d.name);
                println!("  input {role}: {} ({name})", id.short());
            }
            eval::Input::Source { hash, origin } => println!(
                "  input {role}: {origin} (blake3 {})",
                &hash[..12.min(hash.len())]
            ),
        }
    }
    println!("  params: {}", d.params);
    match store.lookup_output(&id.0)? {
        Some(out) => println!(
            "  output: {}",
            serde_json::to_string(&out).expect("plain data")
        ),
        None => println!("  output: not built"),
    }
    Ok(0)
}

/// `realize --tar`: the OS tree as a reproducible tarball.
fn write_tar(
    store: &crate::store::FsStore,
    tree: &crate::store::Hash,
    file: &std::path::Path,
    epoch: i64,
    quiet: bool,
) -> Result<()> {
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v.parse::<u64>().map_err(|_| {
            miette!(
                code = "cli::source-date-epoch",
                "SOURCE_DATE_EPOCH={v:?} is not a number of seconds"
            )
        })?,
        _ => u64::try_from(epoch)
            .map_err(|_| miette!("the release's epoch {epoch} is before 1970"))?,
    };
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

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
}

fn gc_cmd(g: &Global, a: GcArgs) -> Result<i32> {
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    let inputs_of = |id: &str| crate::build::records::inputs_of(&store, id);
    let r = crate::store::gc(&store, &inputs_of, a.dry_run)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "dry_run": a.dry_run, "bytes_freed": r.bytes_freed,
                "blobs_removed": r.blobs_removed, "trees_removed": r.trees_removed,
                "live_blobs": r.live_blobs, "live_trees": r.live_trees,
                "outputs_unregistered": r.outputs_unregistered,
                "records_removed": r.records_removed, "logs_removed": r.logs_removed,
            }))
            .expect("plain data")
        );
    } else {
        println!(
            "{} {} blobs and {} trees ({} bytes), {} outputs, {} derivation records, {} logs; kept {} blobs and {} trees",
            if a.dry_run { "would remove" } else { "removed" },
            r.blobs_removed,
            r.trees_removed,
            r.bytes_freed,
            r.outputs_unregistered.len(),
            r.records_removed,
            r.logs_removed,
            r.live_blobs,
            r.live_trees
        );
    }
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum RootCommand {
    /// Keep TARGET: a derivation id (prefix; keeps its output and its inputs' outputs) or a tree or blob hash.
    Add { name: String, target: String },
    /// Stop keeping what root NAME keeps (the next `gc` may delete it).
    Remove { name: String },
    /// Print every root.
    List,
}

fn root_cmd(g: &Global, c: RootCommand) -> Result<i32> {
    use crate::store::{GcRoot, Hash, Store};
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    match c {
        RootCommand::Add { name, target } => {
            let _builds = store.lock_builds()?;
            let hash = Hash::from_hex(&target);
            let root = if let Some(h) = hash.filter(|h| store.has_tree(h).unwrap_or(false)) {
                GcRoot::Tree(h)
            } else if let Some(h) = hash.filter(|h| store.has_blob(h).unwrap_or(false)) {
                GcRoot::Blob(h)
            } else {
                let mut ids: Vec<String> = crate::build::records::find(&store, &target)?
                    .into_iter()
                    .map(|d| d.0)
                    .collect();
                if ids.is_empty() && store.lookup_output(&target)?.is_some() {
                    ids.push(target.clone());
                }
                match ids.as_slice() {
                    [id] => GcRoot::Drv(id.clone()),
                    [] => {
                        return Err(miette!(
                            code = "cli::no-target",
                            "`{target}` is not a derivation, tree or blob in {}",
                            store.root().display()
                        ))
                    }
                    many => {
                        return Err(miette!(
                            code = "cli::ambiguous-drv",
                            "`{target}` matches {} derivations; give more of the id",
                            many.len()
                        ))
                    }
                }
            };
            store.add_gc_root(&name, &root)?;
            eprintln!("root {name} -> {root:?}");
        }
        RootCommand::Remove { name } => {
            if !store.remove_root(&name)? {
                return Err(miette!(code = "cli::no-root", "there is no root `{name}`"));
            }
        }
        RootCommand::List => {
            for (name, root) in store.roots()? {
                let (kind, what) = match root {
                    GcRoot::Tree(h) => ("tree", h.to_hex()),
                    GcRoot::Blob(h) => ("blob", h.to_hex()),
                    GcRoot::Drv(id) => ("drv", id),
                };
                println!("{name}\t{kind}\t{what}");
            }
        }
    }
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Re-hash every object and check every reference; exit 1 on damage.
    Verify {
        /// Machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn store_cmd(g: &Global, c: StoreCommand) -> Result<i32> {
    use crate::store::Store;
    let StoreCommand::Verify { json: as_json } = c;
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    let mut r = store.verify()?;
    let mut records = 0u64;
    for id in store.drv_record_ids()? {
        records += 1;
        if let Err(problem) = crate::build::records::load(&store, &id) {
            r.damage.push(crate::store::Damage {
                kind: crate::store::ObjectKind::Record,
                id: format!("drvs/{id}.json"),
                problem,
            });
        }
    }
    if as_json {
        let damage: Vec<_> = r
            .damage
            .iter()
            .map(|d| json!({"kind": format!("{:?}", d.kind).to_lowercase(), "id": d.id, "problem": d.problem}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "blobs": r.blobs, "trees": r.trees, "outputs": r.outputs,
                "records": records, "damage": damage,
            }))
            .expect("plain data")
        );
    } else {
        for d in &r.damage {
            println!(
                "damaged {} {}: {}",
                format!("{:?}", d.kind).to_lowercase(),
                d.id,
                d.problem
            );
        }
        eprintln!(
            "checked {} blobs, {} trees, {} outputs, {} derivation records: {}",
            r.blobs,
            r.trees,
            r.outputs,
            records,
            if r.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problems", r.damage.len())
            }
        );
    }
    Ok(if r.is_clean() { 0 } else { 1 })
}

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
    fn repos_dir(&self, g: &Global) -> Result<PathBuf> {
        match &self.publish_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(g.store_dir()?.join("cvmfs")),
        }
    }

    fn keys_dir(&self, g: &Global) -> Result<PathBuf> {
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

fn tag_cmd(g: &Global, a: TagArgs) -> Result<i32> {
    let TagCommand::List {
        repository,
        json,
        dirs,
    } = a.command;
    let (_, dir) = dirs.repo(g, repository.as_deref())?;
    let tags = crate::cvmfs::tags(&dir)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&tags).expect("plain data")
        );
        return Ok(0);
    }
    for t in &tags {
        println!(
            "{:<24} revision {:<4} {} {}",
            t.name,
            t.revision,
            t.hash,
            if t.branch.is_empty() { "-" } else { &t.branch }
        );
    }
    Ok(0)
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// The release tag to promote (`NAME-VERSION`).
    pub release: String,
    /// The branch whose tag moves to the release.
    #[arg(long = "to", value_name = "BRANCH")]
    pub to: String,
    /// Repository name (default: the only one in the publish directory).
    #[arg(long, value_name = "FQRN")]
    pub repository: Option<String>,
    #[command(flatten)]
    pub dirs: PublishDirs,
}

fn promote_cmd(g: &Global, a: PromoteArgs) -> Result<i32> {
    let (fqrn, dir) = a.dirs.repo(g, a.repository.as_deref())?;
    let opts = crate::cvmfs::Options {
        repo_dir: dir,
        keys_dir: a.dirs.keys_dir(g)?,
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        whitelist_days: 30,
    };
    let t = crate::cvmfs::promote(&fqrn, &a.release, &a.to, &opts)?;
    println!(
        "{fqrn}: {} -> {} (revision {}, {})",
        t.name, a.release, t.revision, t.hash
    );
    Ok(0)
}

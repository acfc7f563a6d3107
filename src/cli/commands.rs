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
    /// The spec file (`.cvm`).
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
        Command::Realize(a) => realize_cmd(&g, a),
        Command::Log(a) => log_cmd(&g, a),
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
        eprintln!(
            "{} {}",
            if ev.lock_written {
                "wrote"
            } else {
                "unchanged:"
            },
            ev.lock_path.display()
        );
    }
    Ok(0)
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
    /// Materialise the OS tree into this directory (hardlinks from the store where possible).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
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
    if a.out.is_some() && ev.branches.len() > 1 {
        return Err(miette!(
            code = "cli::branch",
            "--out needs one branch; pass --branch"
        ));
    }
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
                "{} derivations not built because an input failed",
                report.skipped.len()
            );
        }
        failed |= !report.failed.is_empty();
        let mut outs = BTreeMap::new();
        for (n, id) in names.iter().zip(&wanted) {
            if let Some(out) = report.outputs.get(id) {
                // Keep realized outputs alive across `gc` (roots/).
                let root_name = format!("{}-{}-{n}", file_stem(&ev.spec_path), b.release.branch);
                store.add_root(&root_name.replace(':', "-"), &out.root)?;
                outs.insert(n.to_string(), out.clone());
            }
        }
        if let (Some(dir), Some(out)) = (&a.out, outs.get("os-tree")) {
            if let crate::store::Root::Tree { hash } = out.root {
                let r = crate::store::export_tree(&store, &hash, dir)?;
                if !a.json {
                    eprintln!(
                        "exported the OS tree to {} ({} hardlinked, {} copied)",
                        dir.display(),
                        r.hardlinked,
                        r.copied
                    );
                }
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

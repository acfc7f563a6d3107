//! `eval`, `show` and `graph`: evaluate a spec and print its plan.

use super::Global;
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
    /// The spec file (`.cvm`), or without DRV a derivation recorded in the
    /// store: its id or output hash (unique prefixes), a GC root name, or an
    /// output name (`os-tree`) realized on one branch.
    pub spec: PathBuf,
    /// A derivation: root name (`os-tree`), derivation name (`extract:bash-...`), id prefix or output hash prefix.
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
    /// The same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Use the lock file as is; do not read repositories.
    #[arg(long)]
    pub offline: bool,
}

pub(super) fn eval_cmd(g: &Global, a: EvalArgs) -> Result<i32> {
    let mut opts = g.eval_options(a.branch, a.offline);
    opts.locked = a.locked;
    opts.solve_timeout = a.solve_timeout.map(std::time::Duration::from_secs_f64);
    let ev = eval::evaluate(&a.spec, &opts)?;
    record_evaluation(g, &ev);
    if a.json {
        let branches: Vec<_> = ev.branches.iter().map(branch_json).collect();
        outln!(
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
pub(super) fn report_lock(ev: &Evaluation) {
    let what = if ev.lock_written {
        "wrote"
    } else {
        "unchanged:"
    };
    eprintln!("{what} {}", ev.lock_path.display());
    report_signers(ev);
}

/// Warns on stderr of each package the rewritten lock says another key
/// signed: that is worth a look in review even when the key is trusted.
pub(super) fn report_signers(ev: &Evaluation) {
    for c in &ev.signer_changes {
        eprintln!("warning: new signer: {c}");
    }
}

fn builder_counts(b: &BranchEval) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, d, _) in b.graph.nodes() {
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
    outln!("branch {}: {} {} ({})", r.branch, r.name, r.version, r.arch);
    outln!(
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
    outln!(
        "  graph: {} derivations ({})",
        b.graph.len(),
        counts.join(", ")
    );
    for (name, id) in &b.graph.roots {
        outln!("  {name:<12} {}", id.short());
    }
}

pub(super) fn one_branch(ev: &Evaluation) -> Result<&BranchEval> {
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

pub(super) fn show_cmd(g: &Global, a: ShowArgs) -> Result<i32> {
    if a.drv.is_none() && !a.spec.is_file() {
        return show_recorded(g, &a.spec.to_string_lossy(), a.json);
    }
    let ev = eval::evaluate(&a.spec, &g.eval_options(a.branch, a.offline))?;
    let b = one_branch(&ev)?;
    let store = g
        .store_dir()
        .and_then(|d| Ok(crate::store::FsStore::open(&d)?));
    let g = &b.graph;
    let selected: Vec<(&eval::DrvId, &eval::Derivation)> = match &a.drv {
        None => g.topo(),
        Some(key) => {
            let id = match g.roots.get(key) {
                Some(id) => id,
                None => match with_output(&store, g, key).as_slice() {
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
        outln!(
            "{}",
            serde_json::to_string_pretty(&map).expect("plain data")
        );
    } else {
        for (id, d) in selected {
            outln!("{id}  {}", d.name);
            outln!("  builder: {}", d.builder);
            for (role, input) in &d.inputs {
                match input {
                    eval::Input::Drv { id } => {
                        let name = g.get(id).map_or("?", |d| d.name.as_str());
                        outln!("  input {role}: {} ({name})", id.short());
                    }
                    eval::Input::Source { hash, origin } => {
                        outln!(
                            "  input {role}: {origin} (blake3 {})",
                            &hash[..12.min(hash.len())]
                        )
                    }
                }
            }
            outln!("  params: {}", d.params);
        }
    }
    Ok(0)
}

/// The derivations of `graph` whose id starts with `key`, or (when the
/// store has built them) whose output hash does.
fn with_output<'g>(
    store: &Result<crate::store::FsStore>,
    graph: &'g eval::Graph,
    key: &str,
) -> Vec<&'g eval::DrvId> {
    let mut ids = graph.find(key);
    if let Ok(store) = store {
        for id in store.drvs_by_output_prefix(key).unwrap_or_default() {
            // A full id finds exactly itself.
            for found in graph.find(&id) {
                if !ids.contains(&found) {
                    ids.push(found);
                }
            }
        }
    }
    ids
}

pub(super) fn graph_cmd(g: &Global, a: GraphArgs) -> Result<i32> {
    let ev = eval::evaluate(&a.spec, &g.eval_options(a.branch, a.offline))?;
    let b = one_branch(&ev)?;
    let format = if a.json { GraphFormat::Json } else { a.format };
    match format {
        GraphFormat::Dot => out!("{}", b.graph.to_dot()),
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
            outln!(
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
    let id = super::ids::resolve(&store, prefix, Some("a spec file"))?;
    let load = |id: &str| crate::build::records::load(&store, id);
    let d = load(&id.0)?.expect("found ids have records");
    if as_json {
        let map = BTreeMap::from([(id.0.as_str(), &d)]);
        outln!(
            "{}",
            serde_json::to_string_pretty(&map).expect("plain data")
        );
        return Ok(0);
    }
    outln!("{id}  {}", d.name);
    outln!("  builder: {}", d.builder);
    for (role, input) in &d.inputs {
        match input {
            eval::Input::Drv { id } => {
                let name = load(&id.0)?.map_or("?".to_string(), |d| d.name);
                outln!("  input {role}: {} ({name})", id.short());
            }
            eval::Input::Source { hash, origin } => outln!(
                "  input {role}: {origin} (blake3 {})",
                &hash[..12.min(hash.len())]
            ),
        }
    }
    outln!("  params: {}", d.params);
    match store.lookup_output(&id.0)? {
        Some(out) => outln!(
            "  output: {}",
            serde_json::to_string(&out).expect("plain data")
        ),
        None => outln!("  output: not built"),
    }
    Ok(0)
}

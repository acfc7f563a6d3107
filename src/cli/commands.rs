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
    }
}

/// Options every subcommand may use.
struct Global {
    store: Option<PathBuf>,
    #[allow(dead_code)]
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

//! The scheduler: realizes derivations in dependency order on a rayon pool,
//! skipping every derivation whose output the store already has.
//!
//! Work is found top-down: a wanted derivation with a registered output is
//! a cache hit and nothing below it is even looked at, so a no-op realize
//! answers from the index alone. What is left runs as soon as its inputs
//! are done, `jobs` at a time. Each derivation is built under its store
//! lock (so concurrent `cvmbuild` processes never build the same thing
//! twice), and its output is registered only after the builder returned and
//! every object it wrote is durable.

mod progress;
pub mod records;

pub use progress::Progress;

use crate::builders;
use crate::eval::{Derivation, DrvId, Graph, Input};
use crate::repo::fetch::Location;
use crate::store::{FsStore, Output, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Instant;

/// An error from a builder: a message that names what failed.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What builders may need beyond their inputs: where repositories are (for
/// fetch) and where spec-local source files live.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// Repository name -> location, from the spec.
    pub repos: BTreeMap<String, Location>,
    /// Repository name -> the keys its packages must be signed with, for
    /// repositories with `gpgcheck` (fetch verifies against them).
    pub signing_keys: BTreeMap<String, std::sync::Arc<crate::gpg::Keyring>>,
    /// Directory of the main spec file: source inputs' origins are relative
    /// to it.
    pub spec_dir: PathBuf,
    /// Directory of published CernVM-FS repositories (`<dir>/<fqrn>`).
    pub publish_dir: Option<PathBuf>,
    /// Directory of CernVM-FS repository keys (`<fqrn>.masterkey`, ...).
    pub keys_dir: Option<PathBuf>,
}

/// Everything a builder gets.
pub struct BuildCx<'a> {
    pub store: &'a dyn Store,
    pub id: &'a DrvId,
    pub drv: &'a Derivation,
    /// Outputs of the input derivations, by role.
    pub inputs: BTreeMap<String, Output>,
    /// Source inputs, by role: paths whose content was checked against the
    /// hash recorded in the derivation.
    pub sources: BTreeMap<String, PathBuf>,
    pub env: &'a Env,
    log: Mutex<Vec<String>>,
}

impl BuildCx<'_> {
    /// Appends a line to the derivation's build log (`cvmbuild log DRV`).
    pub fn log(&self, line: impl Into<String>) {
        self.log.lock().expect("log lock").push(line.into());
    }

    /// A parameter, for builders' error messages when one is missing.
    pub fn param(&self, key: &str) -> Result<&serde_json::Value, BuildError> {
        self.drv
            .params
            .get(key)
            .ok_or_else(|| format!("{}: missing parameter `{key}`", self.drv.name).into())
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    pub dry_run: bool,
}

/// What a realize did.
#[derive(Debug, Default)]
pub struct Report {
    /// Output of every wanted derivation (and of everything built).
    pub outputs: BTreeMap<DrvId, Output>,
    /// Built in this run, in completion order.
    pub built: Vec<DrvId>,
    /// Wanted or needed derivations answered from the store.
    pub cached: usize,
    /// Derivations that failed, with the error.
    pub failed: Vec<(DrvId, String)>,
    /// Derivations not attempted because an input failed.
    pub skipped: Vec<DrvId>,
    /// With `dry_run`: what would be built, in dependency order.
    pub plan: Vec<DrvId>,
}

/// Realizes `wanted` (and whatever they need) into `store`.
pub fn realize(
    graph: &Graph,
    wanted: &[DrvId],
    store: &FsStore,
    env: &Env,
    opts: &Options,
    progress: &Progress,
) -> Result<Report, BuildError> {
    let mut report = Report::default();
    // Top-down: stop at registered outputs.
    let mut needed: BTreeSet<DrvId> = BTreeSet::new();
    let mut stack: Vec<DrvId> = wanted.to_vec();
    let mut seen = BTreeSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(out) = store.lookup_output(&id.0)? {
            report.outputs.insert(id, out);
            report.cached += 1;
            continue;
        }
        let drv = graph.get(&id).ok_or("derivation is not in the graph")?;
        stack.extend(drv.input_drvs().cloned());
        needed.insert(id);
    }
    let order: Vec<DrvId> = graph
        .topo()
        .into_iter()
        .map(|(id, _)| id.clone())
        .filter(|id| needed.contains(id))
        .collect();
    if opts.dry_run {
        report.plan = order;
        return Ok(report);
    }
    progress.start(order.len(), report.cached);

    // Pending input counts and reverse edges among the needed set.
    let mut pending: HashMap<DrvId, usize> = HashMap::new();
    let mut users: HashMap<DrvId, Vec<DrvId>> = HashMap::new();
    for id in &order {
        let drv = graph.get(id).expect("ordered ids are in the graph");
        let ins: BTreeSet<&DrvId> = drv.input_drvs().filter(|i| needed.contains(*i)).collect();
        pending.insert(id.clone(), ins.len());
        for i in ins {
            users.entry(i.clone()).or_default().push(id.clone());
        }
    }
    let mut ready: Vec<DrvId> = order
        .iter()
        .filter(|id| pending[*id] == 0)
        .cloned()
        .collect();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .build()?;
    // `None`: not attempted, because a failure cancelled the run while the
    // task waited for a worker.
    type Outcome = Option<Result<(Output, bool), String>>;
    let (tx, rx) = mpsc::channel::<(DrvId, Outcome)>();
    let cancel = AtomicBool::new(false);
    let cancel = &cancel;
    let mut running = 0usize;
    let mut stop = false;
    pool.in_place_scope(|scope| {
        loop {
            if !stop {
                // Spawn in reverse-topological-name order for determinism of
                // what starts first (results never depend on it).
                ready.sort();
                for id in ready.drain(..) {
                    let drv = graph.get(&id).expect("ready ids are in the graph");
                    let inputs: BTreeMap<String, Output> = drv
                        .inputs
                        .iter()
                        .filter_map(|(role, i)| match i {
                            Input::Drv { id } => Some((role.clone(), report.outputs[id].clone())),
                            Input::Source { .. } => None,
                        })
                        .collect();
                    let tx = tx.clone();
                    running += 1;
                    progress.begin(drv);
                    scope.spawn(move |_| {
                        let r = (!cancel.load(Ordering::Relaxed)).then(|| {
                            build_one(store, &id, drv, inputs, env).map_err(|e| e.to_string())
                        });
                        let _ = tx.send((id, r));
                    });
                }
            }
            if running == 0 {
                break;
            }
            let (id, result) = rx.recv().expect("a worker always reports");
            running -= 1;
            match result {
                None => {}
                Some(Ok((out, built))) => {
                    progress.done(graph.get(&id).expect("in graph"), built);
                    if built {
                        report.built.push(id.clone());
                    } else {
                        report.cached += 1;
                    }
                    for u in users.get(&id).into_iter().flatten() {
                        let n = pending.get_mut(u).expect("user is needed");
                        *n -= 1;
                        if *n == 0 {
                            ready.push(u.clone());
                        }
                    }
                    report.outputs.insert(id, out);
                }
                Some(Err(e)) => {
                    progress.failed(graph.get(&id).expect("in graph"), &e);
                    report.failed.push((id, e));
                    if !opts.keep_going {
                        stop = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    });
    progress.finish();
    report.skipped = order
        .into_iter()
        .filter(|id| {
            !report.outputs.contains_key(id) && !report.failed.iter().any(|(f, _)| f == id)
        })
        .collect();
    Ok(report)
}

/// Builds one derivation under its lock. Returns the output and whether it
/// was built here (false: another process finished it while we waited).
fn build_one(
    store: &FsStore,
    id: &DrvId,
    drv: &Derivation,
    inputs: BTreeMap<String, Output>,
    env: &Env,
) -> Result<(Output, bool), BuildError> {
    let _lock = store.lock_derivation(&id.0)?;
    if let Some(out) = store.lookup_output(&id.0)? {
        return Ok((out, false));
    }
    let started = Instant::now();
    let cx = BuildCx {
        store,
        id,
        drv,
        inputs,
        sources: sources(drv, env)?,
        env,
        log: Mutex::new(vec![
            format!("derivation {id}"),
            format!("name {}", drv.name),
            format!("builder {}", drv.builder),
        ]),
    };
    let result = builders::run(&cx);
    let mut log = cx.log.into_inner().expect("log lock");
    match &result {
        Ok(out) => log.push(format!(
            "output {} in {:.3} s",
            serde_json::to_string(out).unwrap_or_default(),
            started.elapsed().as_secs_f64()
        )),
        Err(e) => log.push(format!("failed: {e}")),
    }
    // The log is best effort: losing it must not fail a good build.
    if let Ok(path) = store.log_path(&id.0) {
        let _ = std::fs::write(path, log.join("\n") + "\n");
    }
    let out = result?;
    store.register_output(&id.0, &out)?;
    Ok((out, true))
}

/// Resolves and checks source inputs: the file must still have the content
/// the derivation was evaluated with.
fn sources(drv: &Derivation, env: &Env) -> Result<BTreeMap<String, PathBuf>, BuildError> {
    let mut out = BTreeMap::new();
    for (role, input) in &drv.inputs {
        if let Input::Source { hash, origin } = input {
            if origin.contains("://") {
                continue; // repository metadata: identified, not read here
            }
            let path = env.spec_dir.join(origin);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if blake3::hash(&bytes).to_hex().as_str() != hash {
                return Err(format!(
                    "{} changed since the spec was evaluated; run `cvmbuild eval` again",
                    path.display()
                )
                .into());
            }
            out.insert(role.clone(), path);
        }
    }
    Ok(out)
}

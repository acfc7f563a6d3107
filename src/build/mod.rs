//! The scheduler: realizes derivations in dependency order on a rayon pool,
//! skipping every derivation whose output the store already has.
//!
//! Work is found top-down: a wanted derivation with a registered output is
//! a cache hit and nothing below it is even looked at, so a no-op realize
//! answers from the index alone. What is left runs as soon as its inputs
//! are done, `jobs` at a time. Each derivation is built under its lock
//! ([`BuildState`], so concurrent `cvmbuild` processes never build the same
//! thing twice), and its output is registered only after the builder
//! returned and every object it wrote is durable.
//!
//! The scheduler knows builders only through a [`Registry`] and reports
//! only through a [`Reporter`]: it prints nothing, and a builder's error
//! (or panic) reaches the caller intact, as a [`builders::Error`].

pub mod records;
mod state;

pub use state::BuildState;

use crate::builders::{self, BuildCx, Env, Registry};
use crate::drv::{Derivation, DrvId, Input};
use crate::eval::Graph;
use crate::store::remote;
use crate::store::{Found, Output, Store};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

/// Why a realize could not run at all (a derivation's own failure is in
/// [`Report::failed`] instead).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] crate::store::Error),
    #[error("derivation {0} is not in the graph")]
    #[diagnostic(code(build::graph))]
    NotInGraph(DrvId),
    #[error("cannot start build threads: {0}")]
    #[diagnostic(code(build::threads))]
    Threads(#[from] rayon::ThreadPoolBuildError),
}

/// What the scheduler tells whoever shows progress. Every method is
/// called from the scheduling thread, in order.
pub trait Reporter: Sync {
    /// `to_build` derivations will run; `cached` were answered from the store.
    fn start(&self, to_build: usize, cached: usize);
    /// `drv` starts building.
    fn begin(&self, drv: &Derivation);
    /// `drv` finished; `built` is false when another process built it
    /// while this one waited for its lock.
    fn done(&self, drv: &Derivation, built: bool);
    /// `drv` failed; the error is in the report.
    fn failed(&self, drv: &Derivation);
    /// The run is over.
    fn finish(&self);
}

#[derive(Clone, Debug)]
pub struct Options {
    pub jobs: usize,
    pub keep_going: bool,
    pub dry_run: bool,
    /// Fail a derivation that no substituter supplied instead of building
    /// it (those that must run here, `publish`, still run).
    pub substitute_only: bool,
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
    /// Fetched from a substituter instead of built.
    pub substituted: Vec<DrvId>,
    /// Substitutes refused (unsigned, untrusted, damaged, unreachable):
    /// these derivations were built locally instead (or, with
    /// `substitute_only`, failed).
    pub refused: Vec<(DrvId, remote::Error)>,
    /// Derivations that failed, with the error.
    pub failed: Vec<(DrvId, builders::Error)>,
    /// Derivations not attempted because an input failed.
    pub skipped: Vec<DrvId>,
    /// With `dry_run`: what would be built, in dependency order.
    pub plan: Vec<DrvId>,
}

/// Everything a realize runs against.
pub struct Realizer<'a> {
    /// Where inputs are read and outputs written and registered; a
    /// [`crate::store::Substituting`] store also substitutes outputs from
    /// binary caches (store-layout.md 2.11) through
    /// [`Store::find_output`].
    pub store: &'a dyn Store,
    /// This machine's locks and logs.
    pub state: &'a dyn BuildState,
    pub registry: &'a Registry<'a>,
    pub env: &'a Env,
    pub reporter: &'a dyn Reporter,
    pub opts: Options,
}

/// A worker's answer; `None`: not attempted, because a failure cancelled
/// the run while the task waited for a worker.
type Outcome = Option<Result<(Output, bool), builders::Error>>;

impl Realizer<'_> {
    /// Realizes `wanted` (and whatever they need).
    pub fn realize(&self, graph: &Graph, wanted: &[DrvId]) -> Result<Report, Error> {
        let mut report = Report::default();
        // Top-down: stop at registered outputs.
        let mut needed: BTreeSet<DrvId> = BTreeSet::new();
        let mut stack: Vec<DrvId> = wanted.to_vec();
        let mut seen = BTreeSet::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            let drv = graph.get(&id);
            let substitute = !self.opts.dry_run && drv.is_some_and(substitutable);
            let mut refused = Vec::new();
            let found = self.store.find_output(&id.0, substitute, &mut refused)?;
            report
                .refused
                .extend(refused.into_iter().map(|e| (id.clone(), e)));
            match found {
                Found::Here(out) => {
                    report.outputs.insert(id, out);
                    report.cached += 1;
                    continue;
                }
                Found::Substituted(out) => {
                    report.outputs.insert(id.clone(), out);
                    report.substituted.push(id);
                    continue;
                }
                Found::Absent => {}
            }
            let drv = drv.ok_or_else(|| Error::NotInGraph(id.clone()))?;
            stack.extend(drv.input_drvs().cloned());
            needed.insert(id);
        }
        let order: Vec<DrvId> = graph
            .topo()
            .into_iter()
            .map(|(id, _)| id.clone())
            .filter(|id| needed.contains(id))
            .collect();
        if self.opts.dry_run {
            report.plan = order;
            return Ok(report);
        }
        self.reporter
            .start(order.len(), report.cached + report.substituted.len());

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
            .num_threads(self.opts.jobs.max(1))
            .build()?;
        let (tx, rx) = mpsc::channel::<(DrvId, Outcome)>();
        let cancel = AtomicBool::new(false);
        let cancel = &cancel;
        let mut running = 0usize;
        let mut stop = false;
        pool.in_place_scope(|scope| {
            loop {
                if !stop {
                    // Spawn in name order for determinism of what starts
                    // first (results never depend on it).
                    ready.sort();
                    for id in ready.drain(..) {
                        let drv = graph.get(&id).expect("ready ids are in the graph");
                        let inputs: BTreeMap<String, Output> = drv
                            .inputs
                            .iter()
                            .filter_map(|(role, i)| match i {
                                Input::Drv { id } => {
                                    Some((role.clone(), report.outputs[id].clone()))
                                }
                                Input::Source { .. } => None,
                            })
                            .collect();
                        let tx = tx.clone();
                        running += 1;
                        self.reporter.begin(drv);
                        scope.spawn(move |_| {
                            let r = (!cancel.load(Ordering::Relaxed))
                                .then(|| self.build_contained(&id, drv, inputs));
                            // The receiver outlives every worker (it is this
                            // scope's owner), so the send cannot fail.
                            let _ = tx.send((id, r));
                        });
                    }
                }
                if running == 0 {
                    break;
                }
                // Every spawned task sends exactly once (panics are caught
                // in `build_contained`), so this never waits on a dead worker.
                let (id, result) = rx.recv().expect("workers always report");
                running -= 1;
                match result {
                    None => {}
                    Some(Ok((out, built))) => {
                        self.reporter.done(graph.get(&id).expect("in graph"), built);
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
                        self.reporter.failed(graph.get(&id).expect("in graph"));
                        report.failed.push((id, e));
                        if !self.opts.keep_going {
                            stop = true;
                            cancel.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        self.reporter.finish();
        report.skipped = order
            .into_iter()
            .filter(|id| {
                !report.outputs.contains_key(id) && !report.failed.iter().any(|(f, _)| f == id)
            })
            .collect();
        Ok(report)
    }

    /// [`Self::build_one`], with a panic turned into this derivation's
    /// failure: a builder bug (or a library panicking on hostile input)
    /// must neither take the process down nor leave the scheduler waiting.
    fn build_contained(
        &self,
        id: &DrvId,
        drv: &Derivation,
        inputs: BTreeMap<String, Output>,
    ) -> Result<(Output, bool), builders::Error> {
        catch_unwind(AssertUnwindSafe(|| self.build_one(id, drv, inputs))).unwrap_or_else(
            |payload| {
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".into());
                let e = builders::Error::Panic(format!("{}: {what}", drv.name));
                self.state
                    .write_log(&id.0, &format!("derivation {id}\nfailed: {e}\n"));
                Err(e)
            },
        )
    }

    /// Builds one derivation under its lock. Returns the output and whether
    /// it was built here (false: another process finished it while we
    /// waited).
    fn build_one(
        &self,
        id: &DrvId,
        drv: &Derivation,
        inputs: BTreeMap<String, Output>,
    ) -> Result<(Output, bool), builders::Error> {
        let _lock = self.state.lock(&id.0)?;
        if let Some(out) = self.store.lookup_output(&id.0)? {
            return Ok((out, false));
        }
        if self.opts.substitute_only && substitutable(drv) {
            let e = crate::store::Error::NotSubstituted {
                drv_id: id.0.clone(),
            };
            self.state
                .write_log(&id.0, &format!("derivation {id}\nfailed: {e}\n"));
            return Err(e.into());
        }
        let builtin = self.registry.get(&drv.builder)?;
        let started = Instant::now();
        let cx = BuildCx::new(
            self.store,
            id,
            drv,
            inputs,
            sources(drv, self.env)?,
            self.env,
        );
        let result = builtin.build(&cx);
        let mut log = cx.into_log();
        match &result {
            Ok(out) => log.push(format!(
                "output {} in {:.3} s",
                serde_json::to_string(out).unwrap_or_default(),
                started.elapsed().as_secs_f64()
            )),
            Err(e) => log.push(format!("failed: {e}")),
        }
        self.state.write_log(&id.0, &(log.join("\n") + "\n"));
        let out = result?;
        self.store.register_output(&id.0, &out)?;
        Ok((out, true))
    }
}

/// Whether a derivation's output may come from a binary cache: not
/// `publish`, whose work is a side effect outside the store (the
/// repository it writes), which a substitute would skip.
fn substitutable(drv: &Derivation) -> bool {
    !matches!(&drv.builder, crate::drv::Builder::Builtin { name, .. } if name == builders::names::PUBLISH)
}

/// Resolves and checks source inputs: the file must still have the content
/// the derivation was evaluated with.
fn sources(drv: &Derivation, env: &Env) -> Result<BTreeMap<String, PathBuf>, builders::Error> {
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

/// The scheduler alone, on [`crate::store::MemStore`] with fake builders:
/// order, cache hits, failure, keep-going, cancellation and panics.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::builders::{Builtin, Error as BuildError};
    use crate::drv::Builder;
    use crate::store::{MemStore, Root};
    use serde_json::json;
    use std::sync::Mutex;

    /// Locks are not needed within one process (the scheduler never runs
    /// a derivation twice); logs are kept for inspection.
    #[derive(Default)]
    struct MemState {
        logs: Mutex<BTreeMap<String, String>>,
    }

    impl BuildState for MemState {
        fn lock(&self, _: &str) -> Result<Box<dyn std::any::Any>, crate::store::Error> {
            Ok(Box::new(()))
        }
        fn write_log(&self, drv_id: &str, log: &str) {
            self.logs
                .lock()
                .unwrap()
                .insert(drv_id.to_string(), log.to_string());
        }
    }

    /// Silent; remembers what failed.
    #[derive(Default)]
    struct Record {
        failed: Mutex<Vec<String>>,
    }

    impl Reporter for Record {
        fn start(&self, _: usize, _: usize) {}
        fn begin(&self, _: &Derivation) {}
        fn done(&self, _: &Derivation, _: bool) {}
        fn failed(&self, d: &Derivation) {
            self.failed.lock().unwrap().push(d.name.clone());
        }
        fn finish(&self) {}
    }

    /// Writes a blob of its derivation's name plus its inputs' hashes, so
    /// an output proves its inputs were built first; fails or panics on
    /// the names it is told to.
    struct Fake {
        order: Mutex<Vec<String>>,
        fail: &'static str,
        panic: &'static str,
    }

    impl Builtin for Fake {
        fn name(&self) -> &str {
            "fake"
        }
        fn version(&self) -> u32 {
            1
        }
        fn build(&self, cx: &BuildCx) -> Result<Output, BuildError> {
            self.order.lock().unwrap().push(cx.drv.name.clone());
            if cx.drv.name == self.fail {
                return Err(format!("{} fails on purpose", cx.drv.name).into());
            }
            if cx.drv.name == self.panic {
                panic!("{} panics on purpose", cx.drv.name);
            }
            let mut text = cx.drv.name.clone();
            for out in cx.inputs.values() {
                text += &format!(" {:?}", out.root);
            }
            let blob = cx.store.put_blob(&mut text.as_bytes())?;
            Ok(Output {
                root: Root::Blob {
                    hash: blob.hash,
                    size: blob.size,
                },
                meta: BTreeMap::new(),
            })
        }
    }

    fn fake(fail: &'static str, panic: &'static str) -> Fake {
        Fake {
            order: Mutex::new(Vec::new()),
            fail,
            panic,
        }
    }

    /// a -> b -> d, a -> c -> d; and e alone.
    fn graph() -> (Graph, BTreeMap<&'static str, DrvId>) {
        let mut g = Graph::default();
        let b = || Builder::builtin("fake", 1);
        let mut ids = BTreeMap::new();
        let a = g.add(Derivation::new("a", b(), json!({})));
        let bb = g.add(Derivation::new("b", b(), json!({})).input_drv("x", &a));
        let c = g.add(Derivation::new("c", b(), json!({})).input_drv("x", &a));
        let d = g.add(
            Derivation::new("d", b(), json!({}))
                .input_drv("l", &bb)
                .input_drv("r", &c),
        );
        let e = g.add(Derivation::new("e", b(), json!({})));
        for (n, id) in [("a", a), ("b", bb), ("c", c), ("d", d), ("e", e)] {
            ids.insert(n, id);
        }
        (g, ids)
    }

    fn run(
        store: &MemStore,
        builder: &Fake,
        g: &Graph,
        wanted: &[DrvId],
        keep_going: bool,
    ) -> (Report, Vec<String>) {
        let opts = Options {
            jobs: 2,
            keep_going,
            dry_run: false,
            substitute_only: false,
        };
        run_with(store, builder, g, wanted, opts)
    }

    fn run_with(
        store: &MemStore,
        builder: &Fake,
        g: &Graph,
        wanted: &[DrvId],
        opts: Options,
    ) -> (Report, Vec<String>) {
        let registry = Registry::new(vec![builder]);
        let (state, reporter, env) = (MemState::default(), Record::default(), Env::default());
        let r = Realizer {
            store,
            state: &state,
            registry: &registry,
            env: &env,
            reporter: &reporter,
            opts,
        };
        let report = r.realize(g, wanted).unwrap();
        let failed = reporter.failed.lock().unwrap().clone();
        (report, failed)
    }

    #[test]
    fn substitute_only_fails_what_no_layer_supplied_and_builds_nothing() {
        let (g, ids) = graph();
        let store = MemStore::new();
        // `a` is already here: it is found, not failed.
        let blob = store.put_blob(&mut &b"a"[..]).unwrap();
        let a_out = Output::blob(blob, []);
        store.register_output(&ids["a"].0, &a_out).unwrap();
        let f = fake("", "");
        let opts = Options {
            jobs: 2,
            keep_going: true,
            dry_run: false,
            substitute_only: true,
        };
        let (report, mut failed) = run_with(&store, &f, &g, &[ids["d"].clone()], opts);
        failed.sort();
        assert!(f.order.lock().unwrap().is_empty(), "nothing is built");
        assert_eq!(failed, ["b", "c"]);
        for (id, e) in &report.failed {
            match e {
                BuildError::Store(crate::store::Error::NotSubstituted { drv_id }) => {
                    assert_eq!(drv_id, &id.0)
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(report.skipped, [ids["d"].clone()]);
        assert_eq!(report.outputs.get(&ids["a"]), Some(&a_out));
    }

    #[test]
    fn builds_in_dependency_order_and_then_answers_from_the_store() {
        let (g, ids) = graph();
        let store = MemStore::new();
        let f = fake("", "");
        let (report, _) = run(&store, &f, &g, &[ids["d"].clone()], false);
        assert_eq!(report.built.len(), 4);
        let order = f.order.lock().unwrap().clone();
        let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
        assert!(pos("a") < pos("b") && pos("a") < pos("c"));
        assert!(pos("b") < pos("d") && pos("c") < pos("d"));
        assert!(!order.contains(&"e".to_string()), "e is not wanted");
        // A second run is a cache hit at the top: nothing below is looked at.
        let again = fake("", "");
        let (report, _) = run(&store, &again, &g, &[ids["d"].clone()], false);
        assert!(report.built.is_empty());
        assert_eq!(report.cached, 1);
        assert!(again.order.lock().unwrap().is_empty());
    }

    #[test]
    fn a_failure_skips_its_users_and_keep_going_builds_the_rest() {
        let (g, ids) = graph();
        let wanted = [ids["d"].clone(), ids["e"].clone()];
        let f = fake("b", "");
        let (report, failed) = run(&MemStore::new(), &f, &g, &wanted, true);
        assert_eq!(failed, ["b"]);
        assert_eq!(report.failed.len(), 1);
        assert!(matches!(&report.failed[0].1, BuildError::Failed(m) if m.contains("on purpose")));
        assert_eq!(report.skipped, [ids["d"].clone()]);
        let built: BTreeSet<&str> = report
            .built
            .iter()
            .map(|id| g.get(id).unwrap().name.as_str())
            .collect();
        assert_eq!(built, BTreeSet::from(["a", "c", "e"]));
    }

    #[test]
    fn without_keep_going_nothing_starts_after_a_failure() {
        let (g, ids) = graph();
        // `a` fails first: nothing else can start.
        let f = fake("a", "");
        let (report, _) = run(&MemStore::new(), &f, &g, &[ids["d"].clone()], false);
        assert_eq!(*f.order.lock().unwrap(), ["a"]);
        assert_eq!(report.skipped.len(), 3);
    }

    #[test]
    fn a_panicking_builder_fails_its_derivation_and_the_run_finishes() {
        let (g, ids) = graph();
        let wanted = [ids["d"].clone(), ids["e"].clone()];
        let f = fake("", "c");
        let (report, failed) = run(&MemStore::new(), &f, &g, &wanted, true);
        assert_eq!(failed, ["c"]);
        match &report.failed[..] {
            [(id, BuildError::Panic(m))] => {
                assert_eq!(id, &ids["c"]);
                assert!(m.contains("c panics on purpose"), "{m}");
            }
            other => panic!("expected one panic, got {other:?}"),
        }
        assert_eq!(report.skipped, [ids["d"].clone()]);
        assert!(report.outputs.contains_key(&ids["e"]));
    }

    #[test]
    fn a_derivation_of_another_builder_version_is_refused() {
        let mut g = Graph::default();
        let old = g.add(Derivation::new(
            "old",
            Builder::builtin("fake", 7),
            json!({}),
        ));
        let f = fake("", "");
        let (report, _) = run(&MemStore::new(), &f, &g, &[old], true);
        match &report.failed[..] {
            [(_, BuildError::NoBuilder { why, .. })] => assert!(why.contains("version 1"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(f.order.lock().unwrap().is_empty());
    }
}

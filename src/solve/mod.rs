//! The optimising dependency solver: turns a shopping list of unversioned
//! package names into a closed, fully versioned package set.
//!
//! CernVM 3 did this with an integer linear program. Here the same
//! lexicographic objective is solved exactly with core-guided MaxSAT (OLL)
//! on an incremental varisat solver:
//!
//! 1. the shopping-list packages are as new as possible,
//! 2. then everything they pull in is as new as possible,
//! 3. then (multilib only) as few foreign-arch packages as possible,
//! 4. then the closure has as few packages as possible.
//!
//! "As new as possible" is measured per name as the *rank* of the oldest
//! installed version: the number of distinct newer labels of that name and
//! arch (noarch counting as any arch) that are available after arch,
//! exclude and priority filtering. The cost of a
//! level is the sum of ranks over the names in that level; level 1 holds the
//! names of every package that could satisfy a job, level 2 all other names.
//!
//! Pipeline: [`universe`] filters the pool and computes the dependency cone,
//! [`encode`] turns the cone into CNF, [`maxsat`] optimises, [`explain`]
//! turns unsatisfiable requests into prose and answers "why is this here".

mod encode;
mod explain;
mod glob;
mod maxsat;
mod universe;

use crate::repo::{Evr, Op, PackageId, Pool, Range};
use std::fmt;
use std::time::{Duration, Instant};

pub use explain::why;
pub use glob::{glob_match, version_pattern_prefix};

/// Names that may be installed in several versions at once when nothing
/// else decides: the kernel family, as dnf's `installonlypkgs` does. Being
/// installonly only *allows* several versions; the optimiser never adds a
/// second version unless jobs ask for two.
pub const DEFAULT_INSTALLONLY: &[&str] = &["kernel", "kernel-*"];

/// What to solve: the shopping list plus the policy around it.
#[derive(Clone, Debug)]
pub struct Request {
    /// Target architecture (`x86_64`); `noarch` is always allowed.
    pub arch: String,
    /// Also allow the 32-bit compatible architecture (i686 on x86_64). Then
    /// one package per name *and arch* may be installed, like dnf with
    /// `implicitobsoleteusescolors`; without multilib one per name.
    pub multilib: bool,
    /// The shopping list, in spec order.
    pub jobs: Vec<Job>,
    /// Version constraints on names that need not be in the list; they only
    /// matter if a package of that name gets installed.
    pub pins: Vec<Job>,
    /// Glob patterns on package names; matching packages do not exist
    /// (in every repository, or in the one the pattern names).
    pub excludes: Vec<Exclude>,
    /// Glob patterns of names allowed in several versions
    /// ([`DEFAULT_INSTALLONLY`] is the usual choice).
    pub installonly: Vec<String>,
    /// Wall-clock budget for optimisation. varisat cannot be interrupted,
    /// so the limit is checked between SAT calls (the first, feasibility
    /// call and explanations always run to the end); when it is hit, the
    /// best model so far is returned with `optimal: false`.
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request for `arch` with the given jobs and default policy.
    pub fn new(arch: &str, jobs: Vec<Job>) -> Self {
        Request {
            arch: arch.to_string(),
            multilib: false,
            jobs,
            pins: Vec::new(),
            excludes: Vec::new(),
            installonly: DEFAULT_INSTALLONLY.iter().map(|s| s.to_string()).collect(),
            timeout: None,
        }
    }
}

/// An `exclude` pattern: release-wide, or for one repository only (yum's
/// per-repository `exclude=`, dnf's `excludepkgs`), so a repository can
/// drop its own broken builds without hiding the same names elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclude {
    /// Glob on package names (`*`, `?`, `[...]`).
    pub pattern: String,
    /// The repository name the pattern is limited to.
    pub repo: Option<String>,
}

impl From<&str> for Exclude {
    /// A release-wide pattern.
    fn from(pattern: &str) -> Self {
        Exclude {
            pattern: pattern.to_string(),
            repo: None,
        }
    }
}

/// One entry of the shopping list (or a pin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// A package name, or else a capability or file path (`/bin/sh`)
    /// resolved through the providers, as yum does.
    pub name: String,
    pub req: VersionReq,
    /// The caller's index (a spec span), carried into explanations.
    pub origin: usize,
}

impl Job {
    pub fn new(name: &str, req: VersionReq, origin: usize) -> Self {
        Job {
            name: name.to_string(),
            req,
            origin,
        }
    }
}

/// Which versions of a job's name are acceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionReq {
    Any,
    Range(Range),
    /// `3.10.*`: matched against the version and against version-release
    /// (and `epoch:version-release` when the epoch is not 0) of the package,
    /// or for a capability job of the providing package.
    Glob(String),
}

impl VersionReq {
    /// Parses `""`, `">= 2.1"`, `"= 1.0-3"`, `"3.10.*"`; a bare label
    /// (`"1.0-3"`) means equality.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(VersionReq::Any);
        }
        let op_len = s
            .find(|c: char| !matches!(c, '<' | '>' | '='))
            .unwrap_or(s.len());
        let (op, rest) = s.split_at(op_len);
        let rest = rest.trim();
        if op.is_empty() {
            if let Some((op, _)) = s.split_once(char::is_whitespace) {
                return Err(format!("unknown operator `{op}` in `{s}`"));
            }
            if s.contains(['*', '?', '[']) {
                return Ok(VersionReq::Glob(s.to_string()));
            }
            return Ok(VersionReq::Range(Range {
                op: Op::Eq,
                evr: Evr::parse(s)?,
            }));
        }
        let op = Op::from_symbol(op).ok_or_else(|| format!("unknown operator `{op}` in `{s}`"))?;
        if rest.is_empty() {
            return Err(format!("missing version after `{}` in `{s}`", op.symbol()));
        }
        if rest.contains(['*', '?', '[']) {
            return Err(format!(
                "a pattern cannot follow `{}` in `{s}`",
                op.symbol()
            ));
        }
        Ok(VersionReq::Range(Range {
            op,
            evr: Evr::parse(rest)?,
        }))
    }

    /// Whether a package label satisfies this requirement.
    pub fn matches(&self, evr: &Evr) -> bool {
        match self {
            VersionReq::Any => true,
            VersionReq::Range(r) => r.contains(evr),
            VersionReq::Glob(g) => {
                let vr = match &evr.release {
                    Some(r) => format!("{}-{r}", evr.version),
                    None => evr.version.to_string(),
                };
                glob_match(g, &evr.version)
                    || glob_match(g, &vr)
                    || (evr.epoch != 0 && glob_match(g, &format!("{}:{vr}", evr.epoch)))
            }
        }
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionReq::Any => Ok(()),
            VersionReq::Range(r) => write!(f, "{r}"),
            VersionReq::Glob(g) => f.write_str(g),
        }
    }
}

/// A closed package set.
#[derive(Clone, Debug)]
pub struct Solution {
    /// Sorted by name, then label, then arch.
    pub packages: Vec<PackageId>,
    /// Whether the optimum was proven (false only after a timeout).
    pub optimal: bool,
    pub stats: Stats,
}

/// What the solve cost; for benchmarks and `--verbose`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Packages left after arch, exclude, priority and cost filtering.
    pub universe: usize,
    /// Packages reachable from the jobs (the only ones encoded).
    pub cone: usize,
    /// Cone packages whose value unit propagation fixed before optimising.
    pub fixed: usize,
    pub vars: usize,
    pub clauses: usize,
    pub sat_calls: u64,
    pub cores: u64,
    /// Cores from varisat that turned out satisfiable on re-check.
    pub bogus_cores: u64,
    /// Cost per objective level, in priority order: ranks of list
    /// packages, ranks of other packages, packages of a foreign arch
    /// (multilib only), package count.
    pub cost: [u64; 4],
    /// Filtering and the cone (the first part of `prepare`).
    pub cone_time: Duration,
    /// Filtering, cone and encoding.
    pub prepare: Duration,
    /// Everything: `prepare` plus SAT solving and optimisation.
    pub time: Duration,
}

/// Why solving failed.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("the package list cannot be satisfied:\n{0}")]
    Unsatisfiable(Explanation),
    #[error("job {job}: nothing is called or provides `{name}`{}", suggest(.suggestions))]
    UnknownName {
        job: usize,
        name: String,
        suggestions: Vec<String>,
    },
    #[error("SAT solver failure: {0}")]
    Solver(String),
}

fn suggest(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", s.join(", "))
    }
}

/// A short prose account of a conflict, a few lines, not a clause dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub lines: Vec<ExplainLine>,
}

/// One sentence, tied to a job's (or pin's) origin when it is about one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplainLine {
    pub text: String,
    pub origin: Option<usize>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "  {}", l.text)?;
        }
        Ok(())
    }
}

/// Why a package is in a solution: the requires chain from a job to it,
/// and why it has the version it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhyChain {
    /// Index into `Request::jobs` of the job the chain starts at.
    pub job: usize,
    /// That job's origin.
    pub origin: usize,
    /// Package labels from the job's package to the asked one.
    pub path: Vec<String>,
    /// One line per edge: "A-1-1.x86_64 requires libb.so.1".
    pub steps: Vec<String>,
    /// "newest available", or what holds a newer version back.
    pub version: String,
}

/// Solves `req` against `pool` to a proven lexicographic optimum (see the
/// module docs), or explains why it cannot be solved.
pub fn solve(pool: &Pool, req: &Request) -> Result<Solution, SolveError> {
    let start = Instant::now();
    let deadline = req.timeout.map(|t| start + t);
    let uni = universe::Universe::new(pool, req);
    let cands = uni.resolve_jobs(&req.jobs)?;
    let cone = uni.cone(&cands);
    let cone_time = start.elapsed();
    let jobs: Vec<(usize, &[PackageId])> = cands
        .iter()
        .enumerate()
        .map(|(j, c)| (j, c.as_slice()))
        .collect();
    let formula = encode::encode(&uni, req, &jobs, &cone, true);
    let mut stats = Stats {
        universe: uni.visible_count(),
        cone: cone.len(),
        cone_time,
        ..Stats::default()
    };
    stats.prepare = start.elapsed();
    let mut opt = maxsat::Oll::new(&formula, deadline);
    let outcome = opt.run(&formula.soft, cone.len());
    stats.vars = opt.vars();
    stats.clauses = opt.clauses();
    stats.sat_calls = opt.sat_calls;
    stats.cores = opt.cores;
    stats.bogus_cores = opt.bogus_cores;
    stats.fixed = opt.fixed_packages();
    let (model, optimal, cost) = match outcome {
        maxsat::Outcome::Optimal { model, cost } => (model, true, cost),
        maxsat::Outcome::Timeout { model, cost } => (model, false, cost),
        maxsat::Outcome::Unsat => {
            return Err(SolveError::Unsatisfiable(explain::explain(
                &uni, req, &cands,
            )))
        }
        maxsat::Outcome::Error(e) => return Err(SolveError::Solver(e)),
    };
    for (s, c) in stats.cost.iter_mut().zip(cost) {
        *s = c;
    }
    let mut packages: Vec<PackageId> = cone
        .iter()
        .enumerate()
        .filter(|&(i, _)| model[i])
        .map(|(_, &p)| p)
        .collect();
    sort_packages(pool, &mut packages);
    stats.time = start.elapsed();
    Ok(Solution {
        packages,
        optimal,
        stats,
    })
}

/// Name, then label, then arch, then pool order: stable across machines.
fn sort_packages(pool: &Pool, v: &mut [PackageId]) {
    v.sort_by(|&a, &b| {
        let (pa, pb) = (pool.package(a), pool.package(b));
        pool.name(pa.name)
            .cmp(pool.name(pb.name))
            .then_with(|| pa.evr.cmp(&pb.evr))
            .then_with(|| pool.name(pa.arch).cmp(pool.name(pb.arch)))
            .then_with(|| a.cmp(&b))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_version_requirements() {
        assert_eq!(VersionReq::parse("").unwrap(), VersionReq::Any);
        assert_eq!(
            VersionReq::parse(">= 2.1").unwrap(),
            VersionReq::Range(Range {
                op: Op::Ge,
                evr: Evr::parse("2.1").unwrap()
            })
        );
        assert_eq!(
            VersionReq::parse("=1.0-3").unwrap(),
            VersionReq::Range(Range {
                op: Op::Eq,
                evr: Evr::parse("1.0-3").unwrap()
            })
        );
        assert_eq!(
            VersionReq::parse("3.10.*").unwrap(),
            VersionReq::Glob("3.10.*".into())
        );
        assert!(VersionReq::parse(">=").is_err());
        assert!(VersionReq::parse("~> 1").is_err());
        assert!(VersionReq::parse(">= 3.*").is_err());
    }

    #[test]
    fn glob_requirement_matches_version_or_version_release() {
        let g = VersionReq::parse("3.10.*").unwrap();
        assert!(g.matches(&Evr::parse("3.10.0-957.el7").unwrap()));
        assert!(!g.matches(&Evr::parse("3.1.0-1").unwrap()));
        let g = VersionReq::parse("1.0-3*").unwrap();
        assert!(g.matches(&Evr::parse("1.0-3.el7").unwrap()));
        assert!(!g.matches(&Evr::parse("1.0-4").unwrap()));
    }
}

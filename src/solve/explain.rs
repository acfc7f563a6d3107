//! Prose for failures ("why can't I have this") and for successes ("why is
//! this here, and why this version").
//!
//! An unsatisfiable request is cut down in two stages: first a minimal set
//! of jobs that cannot be satisfied together (one selector per job, the
//! rest hard), then, on the cone of just those jobs, a minimal set of rules
//! (one selector per rule group). Both use deletion with re-checked cores,
//! so the result is a minimal unsatisfiable subset, turned into a handful
//! of sentences.

use super::encode::{encode, lit, Group};
use super::maxsat::Oll;
use super::universe::{Hidden, Universe};
use super::{ExplainLine, Explanation, Request, Solution, VersionReq, WhyChain};
use crate::repo::{Dep, PackageId, Pool, Rich, SimpleDep};
use std::collections::{BTreeMap, VecDeque};
use varisat::Lit;

/// Explains why the jobs (with candidates `cands`) cannot all be installed.
pub(crate) fn explain(uni: &Universe, req: &Request, cands: &[Vec<PackageId>]) -> Explanation {
    if let Some(j) = cands.iter().position(Vec::is_empty) {
        return Explanation {
            lines: vec![job_line(uni, req, j, true)],
        };
    }
    let all: Vec<(usize, &[PackageId])> = cands
        .iter()
        .enumerate()
        .map(|(j, c)| (j, c.as_slice()))
        .collect();
    let jobs = minimal_jobs(uni, req, &all);
    let sub: Vec<(usize, &[PackageId])> = jobs.iter().map(|&j| (j, cands[j].as_slice())).collect();
    let groups = minimal_rules(uni, req, &sub);
    prose(uni, req, cands, &groups)
}

/// Stage 1: a minimal set of jobs whose conjunction is unsatisfiable.
fn minimal_jobs(uni: &Universe, req: &Request, jobs: &[(usize, &[PackageId])]) -> Vec<usize> {
    let sub: Vec<Vec<PackageId>> = jobs.iter().map(|(_, c)| c.to_vec()).collect();
    let cone = uni.cone(&sub);
    let f = encode(uni, req, jobs, &cone, false);
    let sel: Vec<Lit> = (0..jobs.len()).map(|i| lit(f.nvars + i)).collect();
    let mut oll = Oll::with_selectors(&f, |g| match g {
        Group::Job(j) => Some(sel[j]),
        _ => None,
    });
    let core = minimise(&mut oll, &sel, 0);
    let mut js: Vec<usize> = core.iter().map(|l| l.index() - f.nvars).collect();
    js.sort();
    js
}

/// Stage 2: a minimal set of rule groups that, with the given jobs, is
/// unsatisfiable. Jobs come first in the result.
fn minimal_rules(uni: &Universe, req: &Request, jobs: &[(usize, &[PackageId])]) -> Vec<Group> {
    let sub: Vec<Vec<PackageId>> = jobs.iter().map(|(_, c)| c.to_vec()).collect();
    let cone = uni.cone(&sub);
    let f = encode(uni, req, jobs, &cone, false);
    let mut groups: Vec<Group> = f
        .groups
        .iter()
        .copied()
        .filter(|g| *g != Group::Def)
        .collect();
    groups.sort();
    groups.dedup();
    let index: BTreeMap<Group, usize> = groups.iter().enumerate().map(|(i, &g)| (g, i)).collect();
    let sel: Vec<Lit> = (0..groups.len()).map(|i| lit(f.nvars + i)).collect();
    let mut oll = Oll::with_selectors(&f, |g| index.get(&g).map(|&i| sel[i]));
    let njobs = groups.iter().filter(|g| matches!(g, Group::Job(_))).count();
    // Jobs sort first (see `Group`'s order) and are already minimal.
    let core = minimise(&mut oll, &sel, njobs);
    let mut out: Vec<Group> = core.iter().map(|l| groups[l.index() - f.nvars]).collect();
    out.sort();
    out
}

/// Deletion-based minimal unsatisfiable subset of `assumptions` (which
/// must be UNSAT together), never trying to drop the first `keep`
/// literals. Each deletion that stays UNSAT also adopts the re-checked core,
/// which usually removes many literals at once.
fn minimise(oll: &mut Oll, assumptions: &[Lit], keep: usize) -> Vec<Lit> {
    let first = match oll.solve_core(assumptions) {
        Ok(Err(c)) => c,
        // Satisfiable or solver failure: nothing smaller to say.
        _ => return assumptions.to_vec(),
    };
    let fixed = &assumptions[..keep];
    let mut core: Vec<Lit> = fixed
        .iter()
        .copied()
        .chain(first.into_iter().filter(|l| !fixed.contains(l)))
        .collect();
    let mut i = keep;
    while i < core.len() {
        let mut trial = core.clone();
        trial.remove(i);
        match oll.solve_core(&trial) {
            Ok(Err(mut c)) => {
                c.sort();
                let keep = |l: &Lit| fixed.contains(l) || c.binary_search(l).is_ok();
                let before = core[..i].iter().filter(|l| keep(l)).count();
                core.retain(keep);
                i = before;
            }
            _ => i += 1,
        }
    }
    core
}

fn label(pool: &Pool, id: PackageId) -> String {
    pool.nevra(id).to_string()
}

/// "the list asks for X >= 2 (job 3)", with why nothing matches when
/// `missing` is set.
fn job_line(uni: &Universe, req: &Request, j: usize, missing: bool) -> ExplainLine {
    let job = &req.jobs[j];
    let what = match &job.req {
        VersionReq::Any => job.name.clone(),
        r => format!("{} {r}", job.name),
    };
    let mut text = format!("the list asks for {what} (job {j})");
    if missing {
        text += &format!("; {}", missing_reason(uni, req, job));
    }
    ExplainLine {
        text,
        origin: Some(job.origin),
    }
}

/// "versions available: ..." of the visible packages called `name`,
/// newest first (at most 8), so a pin that matches none can be corrected.
fn versions_of(uni: &Universe, name: &str) -> String {
    let pool = uni.pool;
    let mut v = pool.names.get(name).map_or_else(Vec::new, |n| uni.named(n));
    if v.is_empty() {
        return format!("no repository has a package called {name}");
    }
    v.sort_by(|&a, &b| pool.package(b).evr.cmp(&pool.package(a).evr));
    let mut seen: Vec<String> = Vec::new();
    for p in &v {
        let evr = pool.package(*p).evr.to_string();
        if !seen.contains(&evr) {
            seen.push(evr);
        }
    }
    let more = seen.len().saturating_sub(8);
    seen.truncate(8);
    let mut text = format!("{name} versions available: {}", seen.join(", "));
    if more > 0 {
        text += &format!(" and {more} older");
    }
    text
}

/// Why no package satisfies a job that names something the pool knows.
fn missing_reason(uni: &Universe, req: &Request, job: &super::Job) -> String {
    let pool = uni.pool;
    let Some(nid) = pool.names.get(&job.name) else {
        return format!("nothing provides {}", job.name);
    };
    let raw: Vec<PackageId> = if pool.named(nid).is_empty() {
        pool.whatprovides(&SimpleDep {
            name: nid,
            range: None,
        })
    } else {
        pool.named(nid).to_vec()
    };
    let visible: Vec<PackageId> = raw.iter().copied().filter(|&p| uni.visible(p)).collect();
    if !visible.is_empty() {
        let mut v = visible;
        v.sort_by(|&a, &b| pool.package(b).evr.cmp(&pool.package(a).evr));
        let avail: Vec<String> = v.iter().take(5).map(|&p| label(pool, p)).collect();
        return format!(
            "no available version matches (available: {})",
            avail.join(", ")
        );
    }
    hidden_reason(uni, req, &raw)
}

/// Why every package of `raw` is hidden, from the first one's reason.
fn hidden_reason(uni: &Universe, req: &Request, raw: &[PackageId]) -> String {
    let pool = uni.pool;
    let Some(&p) = raw.first() else {
        return "nothing provides it".into();
    };
    match uni.hidden(p) {
        Hidden::Excluded(x) => {
            let x = &req.excludes[x];
            let scope = x
                .repo
                .as_ref()
                .map_or(String::new(), |r| format!(" of repository `{r}`"));
            format!(
                "{} is excluded by the pattern `{}`{scope}",
                label(pool, p),
                x.pattern
            )
        }
        Hidden::Arch => {
            let mut arches: Vec<&str> = raw
                .iter()
                .map(|&q| pool.name(pool.package(q).arch))
                .collect();
            arches.sort();
            arches.dedup();
            format!(
                "it only exists for {} (target {}{})",
                arches.join(", "),
                req.arch,
                if req.multilib { " with multilib" } else { "" }
            )
        }
        Hidden::Priority => format!(
            "{} is shadowed: a repository with better priority has {}",
            label(pool, p),
            pool.name(pool.package(p).name)
        ),
        Hidden::Duplicate | Hidden::Visible => format!("{} is not usable", label(pool, p)),
    }
}

/// Packages numbered in depth-first order from the jobs of `groups`,
/// following only the requires in `groups`, so that the prose walks each
/// job's chain to its end before starting the next.
fn chain_order(
    uni: &Universe,
    cands: &[Vec<PackageId>],
    groups: &[Group],
) -> BTreeMap<PackageId, usize> {
    let pool = uni.pool;
    let mut order = BTreeMap::new();
    let mut stack: Vec<PackageId> = Vec::new();
    for g in groups {
        let Group::Job(j) = *g else { continue };
        stack.extend(cands[j].iter().rev());
        while let Some(p) = stack.pop() {
            if order.contains_key(&p) {
                continue;
            }
            order.insert(p, order.len());
            let mut next = Vec::new();
            for g in groups {
                let Group::Requires(q, k) = *g else { continue };
                if q != p {
                    continue;
                }
                let mut simple = Vec::new();
                match &pool.package(q).requires[k] {
                    Dep::Simple(s) => simple.push(s),
                    Dep::Rich(r) => rich_simple(r, &mut simple),
                }
                for s in simple {
                    next.extend(uni.providers(s).iter().copied());
                }
            }
            stack.extend(next.into_iter().rev());
        }
    }
    order
}

fn prose(uni: &Universe, req: &Request, cands: &[Vec<PackageId>], groups: &[Group]) -> Explanation {
    let depth = chain_order(uni, cands, groups);
    let pool = uni.pool;
    let mut lines = Vec::new();
    // (package name, rule text) -> labels, to say "A 2.1, 2.0 require B".
    let mut rules: BTreeMap<(String, String), Vec<PackageId>> = BTreeMap::new();
    let mut rule = |p: PackageId, text: String| {
        let pkg = pool.package(p);
        rules
            .entry((pool.name(pkg.name).to_string(), text))
            .or_default()
            .push(p);
    };
    let mut tail = Vec::new();
    for &g in groups {
        match g {
            Group::Def => {}
            Group::Job(j) => lines.push(job_line(uni, req, j, false)),
            Group::Pin(i) => {
                let pin = &req.pins[i];
                lines.push(ExplainLine {
                    text: format!(
                        "a pin allows only {} {} (pin {i}); {}",
                        pin.name,
                        pin.req,
                        versions_of(uni, &pin.name)
                    ),
                    origin: Some(pin.origin),
                });
            }
            Group::Requires(p, k) => {
                let d = &pool.package(p).requires[k];
                let mut text = format!("requires {}", pool.dep_to_string(d));
                if let Some(why) = unprovided(uni, req, d) {
                    text += &format!("; {why}");
                }
                rule(p, text);
            }
            Group::Conflicts(p, k) => {
                let d = &pool.package(p).conflicts[k];
                let mut text = format!("conflicts with {}", pool.dep_to_string(d));
                // Name the other side when the chains reach it under
                // another name (a virtual provide, a file).
                if let Dep::Simple(s) = d {
                    let reached: Vec<String> = uni
                        .providers(s)
                        .iter()
                        .filter(|&&q| {
                            q != p && depth.contains_key(&q) && pool.package(q).name != s.name
                        })
                        .take(3)
                        .map(|&q| label(pool, q))
                        .collect();
                    if !reached.is_empty() {
                        text += &format!(" (provided by {})", reached.join(", "));
                    }
                }
                rule(p, text)
            }
            Group::Obsoletes(p, k) => rule(
                p,
                format!(
                    "obsoletes {}",
                    pool.dep_to_string(&pool.package(p).obsoletes[k])
                ),
            ),
            Group::OneVersion(n) => tail.push(ExplainLine {
                text: format!("only one version of {} can be installed", pool.name(n)),
                origin: None,
            }),
        }
    }
    let mut entries: Vec<(usize, String, String, Vec<PackageId>)> = rules
        .into_iter()
        .map(|((name, text), ids)| {
            let d = ids
                .iter()
                .filter_map(|p| depth.get(p))
                .min()
                .copied()
                .unwrap_or(usize::MAX);
            (d, name, text, ids)
        })
        .collect();
    entries.sort();
    for (_, name, text, mut ids) in entries {
        ids.sort_by(|&a, &b| {
            pool.package(a)
                .evr
                .cmp(&pool.package(b).evr)
                .then(a.cmp(&b))
        });
        let labels: Vec<String> = ids
            .iter()
            .map(|&p| {
                let pkg = pool.package(p);
                format!("{}.{}", pkg.evr, pool.name(pkg.arch))
            })
            .collect();
        lines.push(ExplainLine {
            text: format!("{name} {} {text}", labels.join(", ")),
            origin: None,
        });
    }
    lines.extend(tail);
    Explanation { lines }
}

/// For a requirement nothing visible satisfies, why not.
fn unprovided(uni: &Universe, req: &Request, d: &Dep) -> Option<String> {
    let Dep::Simple(s) = d else { return None };
    if !uni.providers(s).is_empty() {
        return None;
    }
    let dep = uni.pool.simple_to_string(s);
    let raw = uni.pool.whatprovides(s);
    if raw.is_empty() {
        Some(format!("no repository provides {dep}"))
    } else {
        Some(format!(
            "no usable package provides {dep}: {}",
            hidden_reason(uni, req, &raw)
        ))
    }
}

/// Why `package` (a package name) is in `sol`: the shortest requires chain
/// from a job, and what decided its version. `None` if it is not installed
/// or the request does not resolve.
pub fn why(pool: &Pool, req: &Request, sol: &Solution, package: &str) -> Option<WhyChain> {
    let uni = Universe::new(pool, req);
    let cands = uni.resolve_jobs(&req.jobs).ok()?;
    let nid = pool.names.get(package)?;
    let installed = &sol.packages;
    let mut member = vec![false; pool.packages.len()];
    for p in installed {
        member[p.0 as usize] = true;
    }
    let is_in = |p: PackageId| member[p.0 as usize];
    let target = *installed.iter().find(|&&p| pool.package(p).name == nid)?;

    // Multi-source BFS from the jobs' installed packages, jobs in order.
    let mut parent: BTreeMap<PackageId, (Option<PackageId>, String, usize)> = BTreeMap::new();
    let mut queue = VecDeque::new();
    for (j, c) in cands.iter().enumerate() {
        for &p in c {
            if is_in(p) && !parent.contains_key(&p) {
                parent.insert(p, (None, String::new(), j));
                queue.push_back(p);
            }
        }
    }
    while let Some(p) = queue.pop_front() {
        if p == target {
            break;
        }
        let job = parent[&p].2;
        for d in &pool.package(p).requires {
            let mut simple = Vec::new();
            match d {
                Dep::Simple(s) => simple.push(s),
                Dep::Rich(r) => rich_simple(r, &mut simple),
            }
            for s in simple {
                for &q in uni.providers(s).iter() {
                    if is_in(q) && !parent.contains_key(&q) {
                        parent.insert(
                            q,
                            (
                                Some(p),
                                format!("{} requires {}", label(pool, p), pool.dep_to_string(d)),
                                job,
                            ),
                        );
                        queue.push_back(q);
                    }
                }
            }
        }
    }
    let (_, _, job) = parent.get(&target)?.clone();
    let mut path = vec![label(pool, target)];
    let mut steps = Vec::new();
    let mut cur = target;
    while let Some((Some(prev), step, _)) = parent.get(&cur).cloned() {
        path.push(label(pool, prev));
        steps.push(step);
        cur = prev;
    }
    path.reverse();
    steps.reverse();
    Some(WhyChain {
        job,
        origin: req.jobs[job].origin,
        path,
        steps,
        version: version_reason(&uni, req, installed, target),
    })
}

fn rich_simple<'a>(r: &'a Rich, out: &mut Vec<&'a SimpleDep>) {
    match r {
        Rich::Dep(d) => out.push(d),
        Rich::And(v) | Rich::Or(v) | Rich::With(v) => v.iter().for_each(|x| rich_simple(x, out)),
        Rich::If(a, _, e) | Rich::Unless(a, _, e) => {
            rich_simple(a, out);
            if let Some(e) = e {
                rich_simple(e, out);
            }
        }
        Rich::Without(a, _) => rich_simple(a, out),
    }
}

/// "newest available", or the first rule found that excludes a newer one.
fn version_reason(uni: &Universe, req: &Request, installed: &[PackageId], p: PackageId) -> String {
    let pool = uni.pool;
    let pkg = pool.package(p);
    let mut newer: Vec<PackageId> = uni
        .named(pkg.name)
        .into_iter()
        .filter(|&q| pool.package(q).evr > pkg.evr)
        .collect();
    if newer.is_empty() {
        return "newest available".into();
    }
    newer.sort_by(|&a, &b| pool.package(b).evr.cmp(&pool.package(a).evr));
    let name = pool.name(pkg.name);
    for &v in &newer {
        let vp = pool.package(v);
        let vl = label(pool, v);
        if let Some((i, pin)) = req
            .pins
            .iter()
            .enumerate()
            .find(|(_, j)| j.name == name && !j.req.matches(&vp.evr))
        {
            return format!(
                "{vl} is newer, but a pin allows only {name} {} (pin {i})",
                pin.req
            );
        }
        if let Some((i, job)) = req
            .jobs
            .iter()
            .enumerate()
            .find(|(_, j)| j.name == name && !j.req.matches(&vp.evr))
        {
            return format!(
                "{vl} is newer, but the list asks for {name} {} (job {i})",
                job.req
            );
        }
        for &q in installed {
            if q == p {
                continue;
            }
            let qp = pool.package(q);
            for d in &qp.requires {
                let Dep::Simple(s) = d else { continue };
                let by = |x: PackageId| uni.providers(s).contains(&x);
                if by(p) && !by(v) {
                    return format!(
                        "{vl} is newer, but {} requires {}",
                        label(pool, q),
                        pool.dep_to_string(d)
                    );
                }
            }
            if conflicts(uni, q, v) || conflicts(uni, v, q) {
                return format!(
                    "{vl} is newer, but conflicts with installed {}",
                    label(pool, q)
                );
            }
        }
        for d in &vp.requires {
            if let Dep::Simple(s) = d {
                if !uni.ignored(s) && uni.providers(s).is_empty() {
                    return format!(
                        "{vl} is newer, but requires {}, which nothing available provides",
                        pool.dep_to_string(d)
                    );
                }
            }
        }
    }
    format!(
        "{} is newer, but taking it would make the shopping list older or the closure larger",
        label(pool, newer[0])
    )
}

/// Whether `a` conflicts with or obsoletes `b`.
fn conflicts(uni: &Universe, a: PackageId, b: PackageId) -> bool {
    let pool = uni.pool;
    let (pa, pb) = (pool.package(a), pool.package(b));
    let conf = pa.conflicts.iter().any(|d| match d {
        Dep::Simple(s) => pool.whatprovides(s).contains(&b),
        Dep::Rich(_) => false,
    });
    let obs = pa.obsoletes.iter().any(|d| match d {
        Dep::Simple(s) => s.name == pb.name && s.range.as_ref().is_none_or(|r| r.contains(&pb.evr)),
        Dep::Rich(_) => false,
    });
    conf || obs
}

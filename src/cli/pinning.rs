//! `why` and `update`: explain and change a branch's pinned closure.

use super::eval::{one_branch, report_lock};
use super::Global;
use crate::eval::{self};
use clap::Args;
use miette::{miette, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// Machine-readable changes on stdout: per branch, `added`, `removed`
    /// and `changed` packages.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn why_cmd(g: &Global, a: WhyArgs) -> Result<i32> {
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
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"package": a.package, "branch": b.release.branch,
                "asked_at": at, "path": chain.path, "steps": chain.steps, "version": chain.version}))
            .expect("plain data")
        );
    } else {
        outln!(
            "{} is in branch {} because the shopping list asks for `{}` ({at})",
            chain.path.last().map_or(a.package.as_str(), String::as_str),
            b.release.branch,
            req.jobs.get(chain.job).map_or("?", |j| j.name.as_str()),
        );
        for s in &chain.steps {
            outln!("  {s}");
        }
        outln!(
            "version: {}",
            eval::pinning::locate(&chain.version, &b.release, &ev.sources)
        );
    }
    Ok(0)
}

pub(super) fn update_cmd(g: &Global, a: UpdateArgs) -> Result<i32> {
    let mut opts = g.eval_options(a.branch, false);
    opts.update = Some(a.names);
    let before = crate::lock::LockFile::read(&crate::lock::path_for(&a.spec))?;
    let ev = eval::evaluate(&a.spec, &opts)?;
    let mut report = Vec::new();
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
        let branch = &b.release.branch;
        let added: BTreeMap<&str, &String> = new
            .iter()
            .filter(|(n, _)| !old.contains_key(*n))
            .map(|(n, e)| (*n, e))
            .collect();
        let removed: BTreeMap<&str, &String> = old
            .iter()
            .filter(|(n, _)| !new.contains_key(*n))
            .map(|(n, e)| (*n, e))
            .collect();
        let changed: BTreeMap<&str, (&String, &String)> = new
            .iter()
            .filter_map(|(n, e)| old.get(n).filter(|o| *o != e).map(|o| (*n, (o, e))))
            .collect();
        if a.json {
            let changed: BTreeMap<_, _> = changed
                .iter()
                .map(|(n, (o, e))| (*n, json!({"from": o, "to": e})))
                .collect();
            report.push(json!({"branch": branch, "added": added, "removed": removed,
                "changed": changed, "lock_written": ev.lock_written}));
            continue;
        }
        // One list in name order, as `diff` prints closures.
        for (name, evr) in &new {
            if added.contains_key(name) {
                outln!("{branch}: + {name} {evr}");
            } else if let Some((o, _)) = changed.get(name) {
                outln!("{branch}: ~ {name} {o} -> {evr}");
            }
        }
        for (name, evr) in &removed {
            outln!("{branch}: - {name} {evr}");
        }
        if added.len() + changed.len() + removed.len() == 0 {
            outln!("{branch}: closure unchanged");
        }
    }
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("plain data")
        );
    }
    report_lock(&ev);
    Ok(0)
}

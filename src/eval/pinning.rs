//! The bridge from a release to the solver: builds the solver's request
//! from the spec's shopping list, pins and excludes, and turns solver
//! failures into diagnostics that point at the spec lines involved.

use super::spec::Release;
use crate::lang::{self, SourceMap, Span};
use crate::lock::LockedPackage;
use crate::repo::Pool;
use crate::solve::{self, Exclude, Job, Request, Solution, SolveError, VersionReq};
use std::time::Duration;

/// Builds the solver request. A job's `origin` is its index in
/// `rel.packages`; a pin's is `rel.packages.len()` plus its index in
/// `rel.pins`, so [`span_of`] can map either back to the spec.
pub fn request(
    rel: &Release,
    sources: &SourceMap,
    timeout: Option<Duration>,
) -> Result<Request, lang::Error> {
    let parse = |name: &str, c: &str, span: Span, origin: usize| {
        VersionReq::parse(c)
            .map(|req| Job::new(name, req, origin))
            .map_err(|m| {
                sources
                    .error(span, m, "this constraint")
                    .with_code("cvm::constraint")
            })
    };
    let jobs = rel
        .packages
        .iter()
        .enumerate()
        .map(|(i, p)| parse(&p.name, &p.constraint, p.span, i))
        .collect::<Result<_, _>>()?;
    let pins = rel
        .pins
        .iter()
        .enumerate()
        .map(|(i, p)| parse(&p.name, &p.constraint, p.span, rel.packages.len() + i))
        .collect::<Result<_, _>>()?;
    let mut excludes: Vec<Exclude> = rel.exclude.iter().map(|x| x.as_str().into()).collect();
    for r in &rel.repos {
        excludes.extend(r.exclude.iter().map(|x| Exclude {
            pattern: x.clone(),
            repo: Some(r.name.clone()),
        }));
    }
    Ok(Request {
        arch: rel.arch.clone(),
        multilib: rel.multilib,
        jobs,
        pins,
        excludes,
        installonly: rel.installonly.clone(),
        timeout,
    })
}

/// The spec span a job or pin origin came from; pins that hold packages at
/// their locked version (`update NAME`) point at the branch itself.
pub fn span_of(rel: &Release, origin: usize) -> Span {
    match rel.packages.get(origin) {
        Some(p) => p.span,
        None => rel
            .pins
            .get(origin - rel.packages.len())
            .map_or(rel.branch_span, |p| p.span),
    }
}

/// Solves a release's closure, reporting failures against the spec.
/// `hold` are packages to keep at exactly their locked version (what
/// `cvmbuild update NAME...` does for every other name).
pub fn solve(
    rel: &Release,
    pool: &Pool,
    sources: &SourceMap,
    timeout: Option<Duration>,
    hold: &[LockedPackage],
) -> Result<Solution, lang::Error> {
    let mut req = request(rel, sources, timeout)?;
    let first = rel.packages.len() + rel.pins.len();
    for (i, p) in hold.iter().enumerate() {
        let evr = format!("= {}:{}-{}", p.epoch, p.version, p.release);
        if let Ok(v) = VersionReq::parse(&evr) {
            req.pins.push(Job::new(&p.name, v, first + i));
        }
    }
    solve::solve(pool, &req).map_err(|e| {
        let err = diagnose(rel, sources, e);
        if hold.is_empty() {
            err
        } else {
            err.with_help("other packages were held at their locked versions; name them too, or run `cvmbuild update` without names")
        }
    })
}

/// The solver refers to the shopping list as `(job N)` and to pins as
/// `(pin N)`; users know them by where they are written. Rewrites both to
/// `(file:line)`.
pub fn locate(text: &str, rel: &Release, sources: &SourceMap) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('(') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let parsed = ["(job ", "(pin "].iter().find_map(|kw| {
            let num = tail.strip_prefix(kw)?;
            let end = num.find(')')?;
            let n: usize = num[..end].parse().ok()?;
            let origin = if kw.starts_with("(pin") {
                rel.packages.len() + n
            } else {
                n
            };
            Some((origin, kw.len() + end + 1))
        });
        match parsed {
            Some((origin, len)) => {
                let span = span_of(rel, origin);
                let (line, _) = sources.line_col(span);
                let file = sources.path(span.file);
                let name = file.file_name().map_or(file.display().to_string(), |f| {
                    f.to_string_lossy().into_owned()
                });
                out.push_str(&format!("({name}:{line})"));
                rest = &tail[len..];
            }
            None => {
                out.push('(');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn diagnose(rel: &Release, sources: &SourceMap, e: SolveError) -> lang::Error {
    match e {
        SolveError::UnknownName {
            job,
            name,
            suggestions,
        } => {
            let origin = job;
            let err = sources
                .error(
                    span_of(rel, origin),
                    format!(
                        "no repository of branch `{}` has or provides `{name}`",
                        rel.branch
                    ),
                    "asked for here",
                )
                .with_code("solve::unknown-name");
            if suggestions.is_empty() {
                err
            } else {
                err.with_help(format!("did you mean {}?", suggestions.join(", ")))
            }
        }
        SolveError::Unsatisfiable(expl) => {
            // The first line tied to the spec carries the snippet; the
            // others label their own lines; the prose is the message.
            let located: Vec<(Span, &str)> = expl
                .lines
                .iter()
                .filter_map(|l| l.origin.map(|o| (span_of(rel, o), l.text.as_str())))
                .collect();
            let prose: Vec<String> = expl
                .lines
                .iter()
                .map(|l| locate(&l.text, rel, sources))
                .collect();
            let message = format!(
                "the package list of branch `{}` cannot be satisfied:\n  {}",
                rel.branch,
                prose.join("\n  ")
            );
            let (first, rest) = match located.split_first() {
                Some((f, r)) => (f.0, r),
                None => (rel.branch_span, &[][..]),
            };
            let mut err = sources
                .error(first, message, "involved")
                .with_code("solve::unsatisfiable");
            for (span, _) in rest {
                err = err.with_label(sources, *span, "involved");
            }
            err
        }
        other => sources
            .error(
                rel.branch_span,
                other.to_string(),
                "while pinning this branch",
            )
            .with_code("solve::failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solver_indices_become_spec_locations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cvm");
        let text = "let r = repo { url = \"x\" }\nbranch b = release {\n  name = \"n\" version = \"1.0\" arch = \"x86_64\" repos = [r]\n  packages = [\"a\",\n    \"b\"]\n  pins = { c = \"1.*\" }\n}\n";
        std::fs::write(&path, text).unwrap();
        let spec = lang::load(&path).unwrap();
        let rel = &super::super::spec::releases(&spec).unwrap()[0];
        assert_eq!(
            locate(
                "asks for b (job 1); a pin allows only c 1.* (pin 0) (x)",
                rel,
                &spec.sources
            ),
            "asks for b (s.cvm:5); a pin allows only c 1.* (s.cvm:6) (x)"
        );
    }
}

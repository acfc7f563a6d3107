//! The solver on the real openSUSE 11.0 universe under `../shared/data`
//! (read in place; the test fails, not skips, when it is missing): a
//! deterministic 300-name list must give a closed, optimal, reproducible
//! closure, with multilib off and on.

use crate::support::solve as solve_util;

use cvmbuild::repo::{load, Pool, RepoSource};
use cvmbuild::solve::{solve, why, Job, Request, SolveError, VersionReq};
use solve_util::{check_closure, labels};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn pool() -> Pool {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data"))
        .join("opensuse-11.0-factory");
    assert!(
        dir.join("repodata/repomd.xml").is_file(),
        "shared test data missing: {}",
        dir.display()
    );
    let source = RepoSource {
        name: "opensuse".into(),
        url: dir.display().to_string(),
        priority: 99,
        cost: 1000,
    };
    load(&[source], None).unwrap()
}

fn request(names: &[String], multilib: bool) -> Request {
    let jobs = names
        .iter()
        .enumerate()
        .map(|(i, n)| Job::new(n, VersionReq::Any, i))
        .collect();
    let mut r = Request::new("x86_64", jobs);
    r.multilib = multilib;
    r
}

#[test]
fn real_universe_closures_are_closed_optimal_and_reproducible() {
    let pool = pool();
    let all: BTreeSet<&str> = pool
        .packages
        .iter()
        .filter(|p| matches!(pool.name(p.arch), "x86_64" | "noarch"))
        .map(|p| pool.name(p.name))
        .collect();
    let mut list: Vec<String> = all.iter().step_by(20).map(|s| s.to_string()).collect();
    assert!(list.len() > 300);
    for multilib in [false, true] {
        let mut rounds = 0;
        let sol = loop {
            match solve(&pool, &request(&list, multilib)) {
                Ok(sol) => break sol,
                Err(SolveError::Unsatisfiable(e)) => {
                    // Every explanation names at least one job to drop.
                    let j = e
                        .lines
                        .iter()
                        .rev()
                        .find_map(|l| l.origin)
                        .expect("blamed job");
                    list.remove(j);
                    rounds += 1;
                    assert!(rounds < 100, "too many unsatisfiable rounds");
                }
                Err(e) => panic!("{e}"),
            }
        };
        let req = request(&list, multilib);
        assert!(sol.optimal);
        check_closure(&pool, &req, &sol.packages)
            .unwrap_or_else(|e| panic!("multilib {multilib}: {e}"));
        assert!(sol.packages.len() > list.len());
        let again = solve(&pool, &req).unwrap();
        assert_eq!(labels(&pool, &sol.packages), labels(&pool, &again.packages));
        // Every installed package is explained by a chain from a job.
        for &p in sol.packages.iter().step_by(50) {
            let name = pool.name(pool.package(p).name);
            let w = why(&pool, &req, &sol, name).unwrap_or_else(|| panic!("no why for {name}"));
            assert_eq!(w.path.len(), w.steps.len() + 1);
        }
    }
}

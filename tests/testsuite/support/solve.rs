//! Shared helpers for the solver tests: building pools by hand, and an
//! independent checker of closures (deliberately not reusing the solver's
//! encoding, so that a wrong encoding cannot agree with itself).

use cvmbuild::repo::{
    Checksum, Dep, Evr, NameId, Op, Package, PackageId, Pool, Range, RepoId, RepoInfo, Rich,
    SimpleDep,
};
use cvmbuild::solve::{glob_match, Job, Request, VersionReq};

pub fn new_pool() -> Pool {
    let mut pool = Pool::default();
    repo(&mut pool, "main", 99, 1000);
    pool
}

pub fn repo(pool: &mut Pool, name: &str, priority: i64, cost: i64) -> RepoId {
    pool.add_repo(RepoInfo {
        name: name.into(),
        base: format!("/repo/{name}"),
        priority,
        cost,
        metadata_hash: String::new(),
    })
}

/// `"B >= 3"`, `"B"`, `"/bin/sh"`.
pub fn dep(pool: &mut Pool, s: &str) -> SimpleDep {
    let mut it = s.split_whitespace();
    let name = pool.intern(it.next().expect("dep name"));
    let range = it.next().map(|op| Range {
        op: Op::from_symbol(op).expect("operator"),
        evr: Evr::parse(it.next().expect("version")).expect("evr"),
    });
    SimpleDep {
        name,
        range: range.map(Box::new),
    }
}

/// Adds `name-evr.arch` to `repo` with dependencies given as
/// `("R"|"P"|"C"|"O"|"F", "dep string")` for requires, provides, conflicts,
/// obsoletes, files.
pub fn add(
    pool: &mut Pool,
    repo: u16,
    name: &str,
    evr: &str,
    arch: &str,
    deps: &[(&str, &str)],
) -> PackageId {
    let mut p = Package {
        name: pool.intern(name),
        evr: Evr::parse(evr).expect("evr"),
        arch: pool.intern(arch),
        repo: RepoId(repo),
        provides: vec![],
        requires: vec![],
        conflicts: vec![],
        obsoletes: vec![],
        files: vec![],
        location: format!("{name}-{evr}.{arch}.rpm").into(),
        checksum: Checksum {
            kind: "sha256".into(),
            hex: "00".into(),
        },
        size_package: 1,
        size_installed: 1,
    };
    for &(kind, s) in deps {
        let d = dep(pool, s);
        match kind {
            "R" => p.requires.push(Dep::Simple(d)),
            "P" => p.provides.push(d),
            "C" => p.conflicts.push(Dep::Simple(d)),
            "O" => p.obsoletes.push(Dep::Simple(d)),
            "F" => p.files.push(d.name),
            _ => panic!("unknown dep kind {kind}"),
        }
    }
    pool.add_package(p)
}

pub fn rich_require(pool: &mut Pool, id: PackageId, r: Rich) {
    pool.packages[id.0 as usize]
        .requires
        .push(Dep::Rich(Box::new(r)));
}

pub fn rd(pool: &mut Pool, s: &str) -> Rich {
    Rich::Dep(dep(pool, s))
}

pub fn job(name: &str, req: &str, origin: usize) -> Job {
    Job::new(name, VersionReq::parse(req).expect("version req"), origin)
}

pub fn request(jobs: Vec<Job>) -> Request {
    Request::new("x86_64", jobs)
}

/// `name-evr.arch` labels of a package set, for readable assertions.
pub fn labels(pool: &Pool, ids: &[PackageId]) -> Vec<String> {
    ids.iter().map(|&id| pool.nevra(id).to_string()).collect()
}

fn providers(pool: &Pool, d: &SimpleDep) -> Vec<PackageId> {
    pool.whatprovides(d)
}

fn rich_holds(pool: &Pool, r: &Rich, set: &[bool]) -> bool {
    let inst = |d: &SimpleDep| providers(pool, d).iter().any(|p| set[p.0 as usize]);
    match r {
        Rich::Dep(d) => inst(d),
        Rich::And(v) => v.iter().all(|x| rich_holds(pool, x, set)),
        Rich::Or(v) => v.iter().any(|x| rich_holds(pool, x, set)),
        Rich::If(a, b, e) => {
            if rich_holds(pool, b, set) {
                rich_holds(pool, a, set)
            } else {
                e.as_ref().is_none_or(|e| rich_holds(pool, e, set))
            }
        }
        Rich::Unless(a, b, e) => {
            if !rich_holds(pool, b, set) {
                rich_holds(pool, a, set)
            } else {
                e.as_ref().is_none_or(|e| rich_holds(pool, e, set))
            }
        }
        Rich::With(v) => (0..set.len()).any(|i| {
            set[i]
                && v.iter().all(|x| match x {
                    Rich::Dep(d) => providers(pool, d).contains(&PackageId(i as u32)),
                    _ => false,
                })
        }),
        Rich::Without(a, b) => (0..set.len()).any(|i| {
            let id = PackageId(i as u32);
            set[i]
                && matches!(&**a, Rich::Dep(d) if providers(pool, d).contains(&id))
                && !matches!(&**b, Rich::Dep(d) if providers(pool, d).contains(&id))
        }),
    }
}

/// Whether a package exists for the request's arch (and multilib).
pub fn arch_ok(pool: &Pool, req: &Request, p: PackageId) -> bool {
    cvmbuild::repo::arch_compatible(&req.arch, pool.name(pool.package(p).arch), req.multilib)
}

/// Packages that can satisfy a job, as `yum install` picks them: by
/// (visible) package name, preferring native builds, else by capability.
pub fn job_candidates(pool: &Pool, req: &Request, j: &Job) -> Vec<PackageId> {
    let Some(n) = pool.names.get(&j.name) else {
        return vec![];
    };
    let ok = |p: &PackageId| arch_ok(pool, req, *p);
    let range = match &j.req {
        VersionReq::Range(r) => Some(r.clone()),
        _ => None,
    };
    let provided: Vec<PackageId> = pool
        .whatprovides(&SimpleDep {
            name: n,
            range: None,
        })
        .into_iter()
        .filter(ok)
        .collect();
    let named: Vec<PackageId> = pool.named(n).iter().copied().filter(ok).collect();
    if named.is_empty() && (pool.named(n).is_empty() || !provided.is_empty()) {
        return pool
            .whatprovides(&SimpleDep {
                name: n,
                range: range.map(Box::new),
            })
            .into_iter()
            .filter(ok)
            .collect();
    }
    let mut v: Vec<PackageId> = named
        .into_iter()
        .filter(|&p| j.req.matches(&pool.package(p).evr))
        .collect();
    let native = |p: &PackageId| {
        let a = pool.name(pool.package(*p).arch);
        a == req.arch || a == "noarch"
    };
    if v.iter().any(native) {
        v.retain(native);
    }
    v
}

/// Checks every rule on a package set (arch filtering only: no excludes or
/// priorities). Returns the first violation.
pub fn check_closure(pool: &Pool, req: &Request, ids: &[PackageId]) -> Result<(), String> {
    let mut set = vec![false; pool.packages.len()];
    for &p in ids {
        set[p.0 as usize] = true;
    }
    let lab = |p: PackageId| pool.nevra(p).to_string();
    if let Some(&p) = ids.iter().find(|&&p| !arch_ok(pool, req, p)) {
        return Err(format!("{} is not for this arch", lab(p)));
    }
    for (i, j) in req.jobs.iter().enumerate() {
        if !job_candidates(pool, req, j)
            .iter()
            .any(|p| set[p.0 as usize])
        {
            return Err(format!("job {i} ({}) not satisfied", j.name));
        }
    }
    for &p in ids {
        let pkg = pool.package(p);
        for d in &pkg.requires {
            let ok = match d {
                Dep::Simple(s) => {
                    pool.name(s.name).starts_with("rpmlib(")
                        || providers(pool, s).iter().any(|q| set[q.0 as usize])
                }
                Dep::Rich(r) => rich_holds(pool, r, &set),
            };
            if !ok {
                return Err(format!("{} requires {}", lab(p), pool.dep_to_string(d)));
            }
        }
        for d in &pkg.conflicts {
            let bad = match d {
                Dep::Simple(s) => providers(pool, s)
                    .iter()
                    .any(|&q| q != p && set[q.0 as usize]),
                Dep::Rich(r) => rich_holds(pool, r, &set),
            };
            if bad {
                return Err(format!("{} conflicts {}", lab(p), pool.dep_to_string(d)));
            }
        }
        for d in &pkg.obsoletes {
            let Dep::Simple(s) = d else { continue };
            for &q in pool.named(s.name) {
                if q != p
                    && set[q.0 as usize]
                    && s.range
                        .as_ref()
                        .is_none_or(|r| r.contains(&pool.package(q).evr))
                {
                    return Err(format!("{} obsoletes {}", lab(p), lab(q)));
                }
            }
        }
        let installonly = req
            .installonly
            .iter()
            .any(|g| glob_match(g, pool.name(pkg.name)));
        if !installonly {
            for &q in pool.named(pkg.name) {
                let qa = pool.name(pool.package(q).arch);
                let pa = pool.name(pkg.arch);
                let coexist = req.multilib && qa != pa && qa != "noarch" && pa != "noarch";
                if q != p && set[q.0 as usize] && !coexist {
                    return Err(format!("{} and {} both installed", lab(p), lab(q)));
                }
            }
        }
        for pin in &req.pins {
            if pool.name(pkg.name) == pin.name && !pin.req.matches(&pkg.evr) {
                return Err(format!("{} violates pin {}", lab(p), pin.req));
            }
        }
    }
    Ok(())
}

/// The solver's objective, computed independently: per level the sum over
/// names of the rank of the oldest installed version (newer labels of the
/// same arch, noarch counting as any), then foreign-arch packages, then the
/// count.
pub fn cost(pool: &Pool, req: &Request, ids: &[PackageId]) -> [u64; 4] {
    let mut level1: Vec<NameId> = req
        .jobs
        .iter()
        .flat_map(|j| job_candidates(pool, req, j))
        .map(|p| pool.package(p).name)
        .collect();
    level1.sort();
    let mut worst: std::collections::BTreeMap<NameId, u64> = Default::default();
    for &p in ids {
        let pkg = pool.package(p);
        let pa = pool.name(pkg.arch);
        let mut newer: Vec<&Evr> = pool
            .named(pkg.name)
            .iter()
            .filter(|&&q| arch_ok(pool, req, q))
            .map(|&q| pool.package(q))
            .filter(|q| {
                let qa = pool.name(q.arch);
                qa == pa || qa == "noarch" || pa == "noarch"
            })
            .map(|q| &q.evr)
            .filter(|e| **e > pkg.evr)
            .collect();
        newer.sort();
        newer.dedup_by(|a, b| (**a).cmp(*b) == std::cmp::Ordering::Equal);
        let w = worst.entry(pkg.name).or_default();
        *w = (*w).max(newer.len() as u64);
    }
    let foreign = ids
        .iter()
        .filter(|&&p| {
            let a = pool.name(pool.package(p).arch);
            a != "noarch" && a != req.arch
        })
        .count() as u64;
    let mut c = [0, 0, foreign, ids.len() as u64];
    for (n, w) in worst {
        c[if level1.binary_search(&n).is_ok() {
            0
        } else {
            1
        }] += w;
    }
    c
}

/// Tiny deterministic PRNG (xorshift64*), so tests need no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

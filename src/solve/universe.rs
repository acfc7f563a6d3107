//! Which packages exist for a request, and which of them can matter.
//!
//! Filtering follows yum: incompatible arches, `exclude=` patterns and
//! names shadowed by a better-priority repository are hidden; of several
//! packages with the same name, arch and label only the one from the
//! cheapest repository stays. The cone is everything reachable from the
//! jobs through requires; nothing outside it can be in an optimal closure.

use super::glob::glob_match;
use super::{Job, SolveError, VersionReq};
use crate::repo::{arch_compatible, Dep, NameId, PackageId, Pool, Rich, SimpleDep};
use hashbrown::HashMap;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::VecDeque;
use std::rc::Rc;

/// Why a package is not visible; explanations quote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hidden {
    Visible,
    Arch,
    /// Index into `Request::excludes`.
    Excluded(usize),
    /// A repository with better priority has this name.
    Priority,
    /// Same label in a cheaper repository.
    Duplicate,
}

pub(crate) struct Universe<'p> {
    pub pool: &'p Pool,
    hidden: Vec<Hidden>,
    /// Per package: distinct visible labels of its name and arch (or
    /// noarch) newer than its own.
    rank: Vec<u32>,
    /// Distinct package names with at least one package, in first-seen order.
    names: Vec<NameId>,
    arch: String,
    provider_cache: RefCell<HashMap<SimpleDep, Rc<[PackageId]>>>,
}

impl<'p> Universe<'p> {
    pub fn new(pool: &'p Pool, req: &super::Request) -> Self {
        let n = pool.packages.len();
        let mut hidden = vec![Hidden::Visible; n];
        let mut seen = vec![false; pool.names.len()];
        let mut names = Vec::new();
        for (i, p) in pool.packages.iter().enumerate() {
            if !std::mem::replace(&mut seen[p.name.0 as usize], true) {
                names.push(p.name);
            }
            if !arch_compatible(&req.arch, pool.name(p.arch), req.multilib) {
                hidden[i] = Hidden::Arch;
            } else if let Some(x) = req.excludes.iter().position(|x| {
                x.repo
                    .as_ref()
                    .is_none_or(|r| *r == pool.repos[p.repo.0 as usize].name)
                    && glob_match(&x.pattern, pool.name(p.name))
            }) {
                hidden[i] = Hidden::Excluded(x);
            }
        }
        let mut rank = vec![0u32; n];
        let noarch = pool.names.get("noarch");
        for &name in &names {
            let ids = pool.named(name);
            let prio = |id: &PackageId| pool.repos[pool.package(*id).repo.0 as usize].priority;
            let best = ids
                .iter()
                .filter(|id| hidden[id.0 as usize] == Hidden::Visible)
                .map(prio)
                .min();
            let mut vis: Vec<PackageId> = Vec::new();
            for id in ids {
                if hidden[id.0 as usize] != Hidden::Visible {
                    continue;
                }
                if Some(prio(id)) != best {
                    hidden[id.0 as usize] = Hidden::Priority;
                } else {
                    vis.push(*id);
                }
            }
            // Newest first; among equal labels and arch the cheapest repo first.
            let cost = |id: PackageId| pool.repos[pool.package(id).repo.0 as usize].cost;
            vis.sort_by(|&a, &b| {
                let (pa, pb) = (pool.package(a), pool.package(b));
                pb.evr
                    .cmp(&pa.evr)
                    .then_with(|| pa.arch.cmp(&pb.arch))
                    .then_with(|| cost(a).cmp(&cost(b)))
                    .then_with(|| a.cmp(&b))
            });
            for k in 1..vis.len() {
                let (prev, p) = (pool.package(vis[k - 1]), pool.package(vis[k]));
                if prev.arch == p.arch && same_label(&prev.evr, &p.evr) {
                    hidden[vis[k].0 as usize] = Hidden::Duplicate;
                }
            }
            vis.retain(|id| hidden[id.0 as usize] == Hidden::Visible);
            // Versions are compared within an arch (noarch joins every arch):
            // an i586 build with a higher release must not make the x86_64
            // build look old, or multilib would drag in 32-bit trees.
            let compatible =
                |a: NameId, b: NameId| a == b || Some(a) == noarch || Some(b) == noarch;
            for &a in &vis {
                let pa = pool.package(a);
                let mut newer: Vec<&crate::repo::Evr> = vis
                    .iter()
                    .map(|&b| pool.package(b))
                    .filter(|pb| compatible(pa.arch, pb.arch) && pb.evr > pa.evr)
                    .map(|pb| &pb.evr)
                    .collect();
                newer.dedup_by(|x, y| (**x).cmp(*y) == Ordering::Equal);
                rank[a.0 as usize] = newer.len() as u32;
            }
        }
        Universe {
            pool,
            hidden,
            rank,
            names,
            arch: req.arch.clone(),
            provider_cache: RefCell::default(),
        }
    }

    pub fn visible(&self, id: PackageId) -> bool {
        self.hidden[id.0 as usize] == Hidden::Visible
    }

    pub fn hidden(&self, id: PackageId) -> Hidden {
        self.hidden[id.0 as usize]
    }

    pub fn visible_count(&self) -> usize {
        self.hidden
            .iter()
            .filter(|h| **h == Hidden::Visible)
            .count()
    }

    pub fn rank(&self, id: PackageId) -> u32 {
        self.rank[id.0 as usize]
    }

    /// Visible packages satisfying `dep`, sorted. Memoised: the cone, the
    /// encoding and explanations ask for the same few thousand
    /// dependencies (libc's above all) over and over.
    pub fn providers(&self, dep: &SimpleDep) -> Rc<[PackageId]> {
        if let Some(v) = self.provider_cache.borrow().get(dep) {
            return v.clone();
        }
        let mut v = self.pool.whatprovides(dep);
        v.retain(|&id| self.visible(id));
        let v: Rc<[PackageId]> = v.into();
        self.provider_cache
            .borrow_mut()
            .insert(dep.clone(), v.clone());
        v
    }

    /// Visible packages called `name`.
    pub fn named(&self, name: NameId) -> Vec<PackageId> {
        self.pool
            .named(name)
            .iter()
            .copied()
            .filter(|&id| self.visible(id))
            .collect()
    }

    /// The packages that can satisfy each job, like `yum install NAME`: by
    /// visible package name first, else by capability or file. A name that nothing
    /// in the pool has or provides is an error with near-name suggestions;
    /// a job whose packages are all hidden or of the wrong version gets an
    /// empty list (the explanation says why).
    pub fn resolve_jobs(&self, jobs: &[Job]) -> Result<Vec<Vec<PackageId>>, SolveError> {
        jobs.iter()
            .enumerate()
            .map(|(i, job)| {
                let Some(nid) = self.pool.names.get(&job.name) else {
                    return Err(self.unknown(i, job));
                };
                // A name hidden here (other arch, excluded) may still be
                // provided by something visible, as `libz` is by zlib.
                let visible_named = !self.named(nid).is_empty();
                let provided = || {
                    !self
                        .providers(&SimpleDep {
                            name: nid,
                            range: None,
                        })
                        .is_empty()
                };
                if visible_named || (!self.pool.named(nid).is_empty() && !provided()) {
                    let mut v = self.named(nid);
                    v.retain(|&id| job.req.matches(&self.pool.package(id).evr));
                    // Like dnf, a name means the native (or noarch) build
                    // when there is one; multilib builds come in as deps.
                    let native = |id: &PackageId| {
                        let a = self.pool.name(self.pool.package(*id).arch);
                        a == self.arch || a == "noarch"
                    };
                    if v.iter().any(native) {
                        v.retain(native);
                    }
                    return Ok(v);
                }
                let dep = SimpleDep {
                    name: nid,
                    range: match &job.req {
                        VersionReq::Range(r) => Some(Box::new(r.clone())),
                        _ => None,
                    },
                };
                if self
                    .pool
                    .whatprovides(&SimpleDep {
                        name: nid,
                        range: None,
                    })
                    .is_empty()
                {
                    return Err(self.unknown(i, job));
                }
                let mut v = self.providers(&dep).to_vec();
                if let VersionReq::Glob(_) = job.req {
                    v.retain(|&id| job.req.matches(&self.pool.package(id).evr));
                }
                Ok(v)
            })
            .collect()
    }

    fn unknown(&self, job: usize, j: &Job) -> SolveError {
        SolveError::UnknownName {
            job,
            name: j.name.clone(),
            suggestions: self.suggest(&j.name),
        }
    }

    /// Up to three package names closest to `name` by edit distance.
    pub fn suggest(&self, name: &str) -> Vec<String> {
        let limit = (name.chars().count() / 3).clamp(1, 3);
        let mut best: Vec<(usize, &str)> = self
            .names
            .iter()
            .filter(|&&n| self.pool.named(n).iter().any(|&id| self.visible(id)))
            .map(|&n| self.pool.name(n))
            .filter_map(|cand| {
                let d = crate::lang::suggest::distance(name, cand);
                (d <= limit).then_some((d, cand))
            })
            .collect();
        best.sort();
        best.into_iter()
            .take(3)
            .map(|(_, s)| s.to_string())
            .collect()
    }

    /// Visible packages reachable from the job candidates through requires
    /// (every alternative) and boolean conflicts, sorted by id.
    ///
    /// Rich requires contribute every operand, including conditions (an
    /// `unless` or `else` condition can force or spare a package, so it must
    /// be able to take either value); only the subtracted side of `without`
    /// is left out, because it never has to be installed.
    pub fn cone(&self, cands: &[Vec<PackageId>]) -> Cone {
        let mut index = vec![u32::MAX; self.pool.packages.len()];
        let mut queue: VecDeque<PackageId> = VecDeque::new();
        let mut mark = |id: PackageId, q: &mut VecDeque<PackageId>| {
            if index[id.0 as usize] == u32::MAX {
                index[id.0 as usize] = 0;
                q.push_back(id);
            }
        };
        for c in cands {
            for &id in c {
                mark(id, &mut queue);
            }
        }
        let mut deps = Vec::new();
        while let Some(id) = queue.pop_front() {
            let pkg = self.pool.package(id);
            // rpm evaluates a boolean conflict as a plain truth value, so
            // `Conflicts: (a if b)` fires unless b is installed: installing
            // b can lift it. Such operands must be able to be installed.
            let rich_conflicts = pkg.conflicts.iter().filter(|d| matches!(d, Dep::Rich(_)));
            for d in pkg.requires.iter().chain(rich_conflicts) {
                deps.clear();
                match d {
                    Dep::Simple(s) => deps.push(s),
                    Dep::Rich(r) => reachable_deps(r, &mut deps),
                }
                for s in &deps {
                    if self.ignored(s) {
                        continue;
                    }
                    for &p in self.providers(s).iter() {
                        mark(p, &mut queue);
                    }
                }
            }
        }
        let pkgs: Vec<PackageId> = (0..index.len() as u32)
            .map(PackageId)
            .filter(|id| index[id.0 as usize] != u32::MAX)
            .collect();
        for (i, id) in pkgs.iter().enumerate() {
            index[id.0 as usize] = i as u32;
        }
        Cone { pkgs, index }
    }

    /// `rpmlib(...)` requires name features of rpm itself, which no package
    /// provides; rpm checks them against its own build, so they never
    /// constrain a closure.
    pub fn ignored(&self, dep: &SimpleDep) -> bool {
        self.pool.name(dep.name).starts_with("rpmlib(")
    }
}

fn same_label(a: &crate::repo::Evr, b: &crate::repo::Evr) -> bool {
    a.epoch == b.epoch && a.version == b.version && a.release == b.release
}

fn reachable_deps<'a>(r: &'a Rich, out: &mut Vec<&'a SimpleDep>) {
    match r {
        Rich::Dep(d) => out.push(d),
        Rich::And(v) | Rich::Or(v) | Rich::With(v) => v.iter().for_each(|x| reachable_deps(x, out)),
        Rich::If(a, b, e) | Rich::Unless(a, b, e) => {
            reachable_deps(a, out);
            reachable_deps(b, out);
            if let Some(e) = e {
                reachable_deps(e, out);
            }
        }
        Rich::Without(a, _) => reachable_deps(a, out),
    }
}

/// The packages the encoding covers; variable `i` is `pkgs[i]`.
pub(crate) struct Cone {
    pub pkgs: Vec<PackageId>,
    index: Vec<u32>,
}

impl Cone {
    pub fn len(&self) -> usize {
        self.pkgs.len()
    }

    /// Position of `id` in the cone.
    pub fn pos(&self, id: PackageId) -> Option<usize> {
        match self.index[id.0 as usize] {
            u32::MAX => None,
            i => Some(i as usize),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &PackageId> {
        self.pkgs.iter()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn edit_distance() {
        use crate::lang::suggest::distance;
        assert_eq!(distance("bash", "bsah"), 1);
        assert_eq!(distance("vim", "vim-enhanced"), 9);
        assert_eq!(distance("", "ab"), 2);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}

//! CNF for a cone: one variable per package plus auxiliaries.
//!
//! Every clause carries a [`Group`] saying which rule it comes from, so the
//! same encoding serves optimisation (groups ignored) and explanations
//! (one selector per group).

use super::glob::glob_match;
use super::universe::{Cone, Universe};
use super::Request;
use crate::repo::{Dep, NameId, PackageId, Rich, SimpleDep};
use hashbrown::HashMap;
use std::collections::BTreeMap;
use varisat::{Lit, Var};

/// The rule a clause encodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Group {
    /// Definitions of auxiliary variables; never the cause of a conflict.
    Def,
    Job(usize),
    Pin(usize),
    /// The package's `requires[k]`.
    Requires(PackageId, usize),
    Conflicts(PackageId, usize),
    Obsoletes(PackageId, usize),
    /// At most one version of the name (per arch with multilib).
    OneVersion(NameId),
}

pub(crate) struct Formula {
    pub nvars: usize,
    pub clauses: Vec<Vec<Lit>>,
    pub groups: Vec<Group>,
    /// Soft literals (wanted true) per objective level, see
    /// [`super::Stats::cost`].
    pub soft: Vec<Vec<Lit>>,
}

pub(crate) fn lit(i: usize) -> Lit {
    Lit::from_var(Var::from_index(i), true)
}

struct Enc<'a, 'p> {
    uni: &'a Universe<'p>,
    cone: &'a Cone,
    f: Formula,
    tru: Lit,
    dep_lit: HashMap<SimpleDep, Lit>,
}

impl Enc<'_, '_> {
    fn new_lit(&mut self) -> Lit {
        self.f.nvars += 1;
        lit(self.f.nvars - 1)
    }

    fn add(&mut self, c: Vec<Lit>, g: Group) {
        self.f.clauses.push(c);
        self.f.groups.push(g);
    }

    /// Cone members satisfying `dep` as literals.
    fn provider_lits(&self, dep: &SimpleDep) -> Vec<Lit> {
        self.uni
            .providers(dep)
            .iter()
            .filter_map(|&p| self.cone.pos(p).map(lit))
            .collect()
    }

    /// A literal equivalent to "some package satisfying `dep` is installed".
    fn dep_lit(&mut self, dep: &SimpleDep) -> Lit {
        if let Some(&l) = self.dep_lit.get(dep) {
            return l;
        }
        let ps = self.provider_lits(dep);
        let l = self.or_lit(ps);
        self.dep_lit.insert(dep.clone(), l);
        l
    }

    fn or_lit(&mut self, xs: Vec<Lit>) -> Lit {
        match xs.len() {
            0 => !self.tru,
            1 => xs[0],
            _ => {
                let o = self.new_lit();
                for &x in &xs {
                    self.add(vec![!x, o], Group::Def);
                }
                let mut c = xs;
                c.push(!o);
                self.add(c, Group::Def);
                o
            }
        }
    }

    fn and_lit(&mut self, xs: Vec<Lit>) -> Lit {
        let neg: Vec<Lit> = xs.into_iter().map(|x| !x).collect();
        !self.or_lit(neg)
    }

    /// `v <-> (c ? a : e)`.
    fn ite_lit(&mut self, c: Lit, a: Lit, e: Lit) -> Lit {
        let v = self.new_lit();
        self.add(vec![!v, !c, a], Group::Def);
        self.add(vec![!v, c, e], Group::Def);
        self.add(vec![v, !c, !a], Group::Def);
        self.add(vec![v, c, !e], Group::Def);
        v
    }

    /// A literal equivalent to the rich dependency being satisfied, with
    /// rpm's meaning of each operator.
    fn rich_lit(&mut self, r: &Rich) -> Lit {
        match r {
            Rich::Dep(d) => self.dep_lit(d),
            Rich::And(v) => {
                let xs = v.iter().map(|x| self.rich_lit(x)).collect();
                self.and_lit(xs)
            }
            Rich::Or(v) => {
                let xs = v.iter().map(|x| self.rich_lit(x)).collect();
                self.or_lit(xs)
            }
            // `a if b [else e]`: b installed needs a, otherwise e (or nothing).
            Rich::If(a, b, e) => {
                let (a, b) = (self.rich_lit(a), self.rich_lit(b));
                let e = e.as_ref().map_or(self.tru, |e| self.rich_lit(e));
                self.ite_lit(b, a, e)
            }
            // `a unless b [else e]`: b missing needs a, otherwise e.
            Rich::Unless(a, b, e) => {
                let (a, b) = (self.rich_lit(a), self.rich_lit(b));
                let e = e.as_ref().map_or(self.tru, |e| self.rich_lit(e));
                self.ite_lit(b, e, a)
            }
            // `with`/`without` constrain a single package.
            Rich::With(_) | Rich::Without(..) => {
                let ps = self
                    .package_set(r)
                    .into_iter()
                    .filter_map(|p| self.cone.pos(p).map(lit))
                    .collect();
                self.or_lit(ps)
            }
        }
    }

    /// Visible packages that alone satisfy `r` (for `with`/`without`).
    fn package_set(&self, r: &Rich) -> Vec<PackageId> {
        match r {
            Rich::Dep(d) => self.uni.providers(d).to_vec(),
            Rich::With(v) | Rich::And(v) => {
                let mut it = v.iter().map(|x| self.package_set(x));
                let mut acc = it.next().unwrap_or_default();
                for s in it {
                    acc.retain(|p| s.binary_search(p).is_ok());
                }
                acc
            }
            Rich::Or(v) => {
                let mut acc: Vec<PackageId> = v.iter().flat_map(|x| self.package_set(x)).collect();
                acc.sort();
                acc.dedup();
                acc
            }
            Rich::Without(a, b) => {
                let b = self.package_set(b);
                let mut a = self.package_set(a);
                a.retain(|p| b.binary_search(p).is_err());
                a
            }
            // rpm rejects conditionals inside `with`; take the main operand.
            Rich::If(a, _, _) | Rich::Unless(a, _, _) => self.package_set(a),
        }
    }
}

/// Encodes the rules of the cone for the given jobs (`(job index,
/// candidates)`); `soft` levels are filled only when `objective` is set.
pub(crate) fn encode(
    uni: &Universe,
    req: &Request,
    jobs: &[(usize, &[PackageId])],
    cone: &Cone,
    objective: bool,
) -> Formula {
    let pool = uni.pool;
    let n = cone.len();
    let mut e = Enc {
        uni,
        cone,
        f: Formula {
            nvars: n,
            clauses: Vec::new(),
            groups: Vec::new(),
            soft: Vec::new(),
        },
        tru: lit(0),
        dep_lit: HashMap::new(),
    };
    e.tru = e.new_lit();
    e.add(vec![e.tru], Group::Def);

    for &(j, cands) in jobs {
        let c: Vec<Lit> = cands.iter().filter_map(|&p| cone.pos(p).map(lit)).collect();
        let c = if c.is_empty() { vec![!e.tru] } else { c };
        e.add(c, Group::Job(j));
    }
    for (i, pin) in req.pins.iter().enumerate() {
        let Some(nid) = pool.names.get(&pin.name) else {
            continue;
        };
        for &p in pool.named(nid) {
            if let Some(x) = cone.pos(p) {
                if !pin.req.matches(&pool.package(p).evr) {
                    e.add(vec![!lit(x)], Group::Pin(i));
                }
            }
        }
    }

    let mut by_name: BTreeMap<NameId, Vec<usize>> = BTreeMap::new();
    for (x, &p) in cone.pkgs.iter().enumerate() {
        let pkg = pool.package(p);
        by_name.entry(pkg.name).or_default().push(x);
        let me = lit(x);
        for (k, d) in pkg.requires.iter().enumerate() {
            match d {
                Dep::Simple(s) => {
                    if uni.ignored(s) {
                        continue;
                    }
                    let ps = e.provider_lits(s);
                    if ps.contains(&me) {
                        continue;
                    }
                    let mut c = vec![!me];
                    c.extend(ps);
                    e.add(c, Group::Requires(p, k));
                }
                Dep::Rich(r) => {
                    let l = e.rich_lit(r);
                    e.add(vec![!me, l], Group::Requires(p, k));
                }
            }
        }
        for (k, d) in pkg.conflicts.iter().enumerate() {
            match d {
                Dep::Simple(s) => {
                    for q in e.provider_lits(s) {
                        if q != me {
                            e.add(vec![!me, !q], Group::Conflicts(p, k));
                        }
                    }
                }
                Dep::Rich(r) => {
                    let l = e.rich_lit(r);
                    e.add(vec![!me, !l], Group::Conflicts(p, k));
                }
            }
        }
        for (k, d) in pkg.obsoletes.iter().enumerate() {
            // rpm matches obsoletes against package names, not provides.
            // Boolean obsoletes do not exist in rpm; skip them if a
            // repository ever lists one.
            let Dep::Simple(s) = d else { continue };
            for &q in pool.named(s.name) {
                let Some(y) = cone.pos(q) else { continue };
                if y != x
                    && s.range
                        .as_ref()
                        .is_none_or(|r| r.contains(&pool.package(q).evr))
                {
                    e.add(vec![!me, !lit(y)], Group::Obsoletes(p, k));
                }
            }
        }
    }

    for (&name, xs) in &by_name {
        if xs.len() < 2
            || req
                .installonly
                .iter()
                .any(|g| glob_match(g, pool.name(name)))
        {
            continue;
        }
        let g = Group::OneVersion(name);
        if req.multilib {
            // Different non-noarch arches of one name may coexist.
            let arch = |x: usize| pool.name(pool.package(cone.pkgs[x]).arch);
            for (i, &a) in xs.iter().enumerate() {
                for &b in &xs[i + 1..] {
                    let (aa, ab) = (arch(a), arch(b));
                    if aa == ab || aa == "noarch" || ab == "noarch" {
                        e.add(vec![!lit(a), !lit(b)], g);
                    }
                }
            }
        } else if xs.len() <= 6 {
            for (i, &a) in xs.iter().enumerate() {
                for &b in &xs[i + 1..] {
                    e.add(vec![!lit(a), !lit(b)], g);
                }
            }
        } else {
            // Sequential (ladder) at-most-one: linear instead of quadratic.
            let mut prev = lit(xs[0]);
            for &x in &xs[1..] {
                let s = e.new_lit();
                e.add(vec![!prev, s], g);
                e.add(vec![!lit(x), s], g);
                e.add(vec![!prev, !lit(x)], g);
                prev = s;
            }
        }
    }

    if objective {
        e.f.soft = vec![Vec::new(); 4];
        let mut level1 = vec![false; pool.names.len()];
        for &(_, cands) in jobs {
            for &p in cands {
                level1[pool.package(p).name.0 as usize] = true;
            }
        }
        for (&name, xs) in &by_name {
            let level = if level1[name.0 as usize] { 0 } else { 1 };
            // o[j-1] <-> some installed package of the name has rank >= j;
            // each true o costs 1, so the oldest installed version's rank
            // is paid with unit weights (what OLL wants).
            let max = xs
                .iter()
                .map(|&x| uni.rank(cone.pkgs[x]))
                .max()
                .unwrap_or(0) as usize;
            let o: Vec<Lit> = (0..max).map(|_| e.new_lit()).collect();
            for &x in xs {
                let r = uni.rank(cone.pkgs[x]) as usize;
                if r > 0 {
                    e.add(vec![!lit(x), o[r - 1]], Group::Def);
                }
            }
            for j in 1..max {
                e.add(vec![!o[j], o[j - 1]], Group::Def);
            }
            e.f.soft[level].extend(o.iter().map(|&l| !l));
        }
        // With multilib, prefer native (and noarch) builds, as dnf does.
        e.f.soft[2] = (0..n)
            .filter(|&x| {
                let a = pool.name(pool.package(cone.pkgs[x]).arch);
                a != req.arch && a != "noarch"
            })
            .map(|x| !lit(x))
            .collect();
        e.f.soft[3] = (0..n).map(|x| !lit(x)).collect();
    }
    e.f
}

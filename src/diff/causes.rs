//! Derivation diff with root causes: for every named output whose id
//! differs, walk the input edges of both graphs in step, down to what
//! actually differs: a spec line, a repository's metadata, a builder's
//! version, an input file's content, a parameter.
//!
//! The walk produces a DAG of nodes keyed by the pair of ids compared, so a
//! cause shared by many outputs (the solve, behind every re-pinned package)
//! is one node that the renderer prints once. A fetch or the meta RPM has
//! no input edge to the solve (fetches are fixed-output), but the solve
//! chose their parameters; the graph's pin edges let the walk follow that
//! choice back to the solve and its causes.
//!
//! A side given as a derivation id or tag has its recorded graph but no
//! spec: the walk is the same and ends at the differing parameter, builder,
//! source or repository, with no spec line; without the solve in the graph,
//! a fetch reports its changed NEVRA and the meta RPM the requirements that
//! differ.

use super::locate::{self, Loc, Seg};
use super::side::{Side, SpecSide};
use crate::builders::names;
use crate::eval::{Derivation, DrvId, Edge, Graph, Input};
use crate::lock::BranchLock;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The derivation-level differences between two releases.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DrvDiff {
    /// Every named output whose derivation differs, by output name.
    pub roots: Vec<RootDiff>,
    /// The compared derivation pairs, by key (`A-ID..B-ID`, a side empty
    /// when the derivation exists on one side only).
    pub nodes: BTreeMap<String, Node>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RootDiff {
    /// `os-tree`, `meta-rpm`, `kernel`, `initrd`, `rootfs`, `image:FORMAT`,
    /// `publish`, `solve`.
    pub output: String,
    pub a: Option<DrvId>,
    pub b: Option<DrvId>,
    pub node: String,
}

/// One compared pair of derivations.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    /// The derivation's name in B (in A when it exists only there).
    pub name: String,
    /// A's name when it differs from B's (`extract:bash-4.1.2-15...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_name: Option<String>,
    pub a: Option<DrvId>,
    pub b: Option<DrvId>,
    pub causes: Vec<Cause>,
}

/// Why a derivation differs. `Input` and `Pinned` lead to other nodes;
/// every other kind is a root cause.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Cause {
    /// An input derivation differs, or exists on one side only.
    Input { role: String, node: String },
    /// The solve chose different parameters (which package to fetch, the
    /// meta RPM's requirements); `node` is the solve.
    Pinned { what: String, node: String },
    /// The builder or its version changed.
    Builder { old: String, new: String },
    /// A builder parameter changed; `a`/`b` are the spec lines that set it
    /// when known.
    Param {
        key: String,
        old: Json,
        new: Json,
        a: Option<Loc>,
        b: Option<Loc>,
    },
    /// A repository's metadata (repomd.xml) hash changed, or the repository
    /// was added or removed.
    Repository {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// An input file's content changed (kernel config, initrd init script).
    Source {
        role: String,
        origin: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The same solve (same spec inputs, same repository metadata) pinned a
    /// different closure: one lock was re-pinned with `cvmbuild update`, or
    /// a solve stopped at its time limit.
    Repinned,
    /// A change to the spec's solver inputs: a shopping-list entry, a pin, a
    /// repository definition, an exclude; the lines in A and B.
    Spec {
        what: String,
        a: Option<Loc>,
        b: Option<Loc>,
    },
}

impl DrvDiff {
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The node for `key`: an output name (`os-tree`), a derivation name
    /// (`extract:bash-...`, either side's), or a prefix of either id.
    pub fn find(&self, key: &str) -> Option<&str> {
        if let Some(r) = self.roots.iter().find(|r| r.output == key) {
            return Some(&r.node);
        }
        let hit = |n: &Node| {
            n.name == key
                || n.old_name.as_deref() == Some(key)
                || [&n.a, &n.b]
                    .iter()
                    .any(|id| id.as_ref().is_some_and(|id| id.0.starts_with(key)))
        };
        self.nodes
            .iter()
            .find(|(_, n)| hit(n))
            .map(|(k, _)| k.as_str())
    }

    /// The part of the diff that explains `key` alone (see [`Self::find`]):
    /// one root and the nodes reachable from it.
    pub fn only(&self, key: &str) -> Option<DrvDiff> {
        let start = self.find(key)?.to_string();
        let mut nodes = BTreeMap::new();
        let mut stack = vec![start.clone()];
        while let Some(k) = stack.pop() {
            if nodes.contains_key(&k) {
                continue;
            }
            let n = self.nodes[&k].clone();
            for c in &n.causes {
                if let Cause::Input { node, .. } | Cause::Pinned { node, .. } = c {
                    stack.push(node.clone());
                }
            }
            nodes.insert(k, n);
        }
        let n = &nodes[&start];
        Some(DrvDiff {
            roots: vec![RootDiff {
                output: key.to_string(),
                a: n.a.clone(),
                b: n.b.clone(),
                node: start,
            }],
            nodes,
        })
    }
}

/// Compares the derivation graphs of two sides. Without a graph on both
/// sides, the locks still tell whether the solve's inputs changed, and
/// which repository's metadata did; `None` when one side has neither (a
/// lock against a derivation id).
pub fn diff(a: &Side, b: &Side) -> Option<DrvDiff> {
    match (a.graph(), b.graph(), &a.lock, &b.lock) {
        (Some(_), Some(_), ..) => Some(Walk::new(a, b).run()),
        (.., Some(la), Some(lb)) => Some(lock_only(la, lb)),
        // Two tags known only from their repository: closures alone.
        (None, None, None, None) => Some(DrvDiff::default()),
        _ => None,
    }
}

fn lock_only(a: &BranchLock, b: &BranchLock) -> DrvDiff {
    let mut out = DrvDiff::default();
    if a.solve == b.solve {
        return out;
    }
    let mut causes = repo_causes(
        a.repo
            .iter()
            .map(|r| (r.name.as_str(), r.metadata.as_str())),
        b.repo
            .iter()
            .map(|r| (r.name.as_str(), r.metadata.as_str())),
    );
    if a.spec != b.spec {
        causes.push(Cause::Spec {
            what: format!(
                "the spec's solver inputs changed (lock `spec` {} → {}); give the specs to see which lines",
                &a.spec[..12.min(a.spec.len())],
                &b.spec[..12.min(b.spec.len())]
            ),
            a: None,
            b: None,
        });
    }
    let (ida, idb) = (DrvId(a.solve.clone()), DrvId(b.solve.clone()));
    let key = node_key(Some(&ida), Some(&idb));
    out.nodes.insert(
        key.clone(),
        Node {
            name: "solve".into(),
            old_name: None,
            a: Some(ida.clone()),
            b: Some(idb.clone()),
            causes,
        },
    );
    out.roots.push(RootDiff {
        output: "solve".into(),
        a: Some(ida),
        b: Some(idb),
        node: key,
    });
    out
}

fn node_key(a: Option<&DrvId>, b: Option<&DrvId>) -> String {
    let s = |x: Option<&DrvId>| x.map_or(String::new(), |i| i.0.clone());
    format!("{}..{}", s(a), s(b))
}

fn repo_causes<'x>(
    a: impl Iterator<Item = (&'x str, &'x str)>,
    b: impl Iterator<Item = (&'x str, &'x str)>,
) -> Vec<Cause> {
    let a: BTreeMap<&str, &str> = a.collect();
    let b: BTreeMap<&str, &str> = b.collect();
    let names: std::collections::BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    names
        .into_iter()
        .filter(|n| a.get(n) != b.get(n))
        .map(|n| Cause::Repository {
            name: n.to_string(),
            old: a.get(n).map(|s| s.to_string()),
            new: b.get(n).map(|s| s.to_string()),
        })
        .collect()
}

/// One graph with what the walk needs to know about it.
struct G<'a> {
    /// None for a side given as a derivation id or tag.
    side: Option<&'a SpecSide>,
    graph: &'a Graph,
    /// Derivations whose parameters the solve chose (pin edges).
    pinned: HashSet<&'a DrvId>,
    /// None when the graph was recorded from a derivation other than the
    /// solve (nothing has the solve as an input).
    solve: Option<&'a DrvId>,
    /// Package name of each pinned NEVRA, to pair `pkg:NEVRA` roles across
    /// versions.
    names: HashMap<String, &'a str>,
}

impl<'a> G<'a> {
    fn new(side: &'a Side) -> Self {
        let graph = side.graph().expect("diff checks both sides have graphs");
        G {
            side: side.spec.as_ref(),
            graph,
            pinned: graph
                .edges()
                .into_iter()
                .filter(|e| e.2 == Edge::Pin)
                .map(|e| e.1)
                .collect(),
            solve: graph.roots.get("solve"),
            names: side
                .packages
                .iter()
                .map(|p| (p.nevra(), p.name.as_str()))
                .collect(),
        }
    }

    fn drv(&self, id: &DrvId) -> &'a Derivation {
        self.graph.get(id).expect("ids come from this graph")
    }

    fn loc(&self, span: crate::lang::Span) -> Option<Loc> {
        self.side.map(|s| locate::loc(&s.sources, span))
    }
}

struct Walk<'a> {
    a: G<'a>,
    b: G<'a>,
    nodes: BTreeMap<String, Node>,
}

impl<'a> Walk<'a> {
    fn new(a: &'a Side, b: &'a Side) -> Self {
        Walk {
            a: G::new(a),
            b: G::new(b),
            nodes: BTreeMap::new(),
        }
    }

    fn run(mut self) -> DrvDiff {
        let (ra, rb) = (&self.a.graph.roots, &self.b.graph.roots);
        let mut outputs: std::collections::BTreeSet<&String> = ra.keys().chain(rb.keys()).collect();
        // A recorded graph holds only what its derivation reaches (a
        // publish has no kernel): compare the outputs it has, unless the
        // two sides share none (an ISO image against a qcow2 one).
        let comparable: std::collections::BTreeSet<&String> = outputs
            .iter()
            .copied()
            .filter(|o| {
                (self.a.side.is_some() || ra.contains_key(*o))
                    && (self.b.side.is_some() || rb.contains_key(*o))
            })
            .collect();
        if !comparable.is_empty() {
            outputs = comparable;
        }
        let mut roots = Vec::new();
        for o in outputs {
            // The solve is the cause of the others, not an output of its own.
            if o == "solve" {
                continue;
            }
            let (ia, ib) = (ra.get(o), rb.get(o));
            if ia == ib {
                continue;
            }
            let node = self.visit(ia, ib);
            roots.push(RootDiff {
                output: o.clone(),
                a: ia.cloned(),
                b: ib.cloned(),
                node,
            });
        }
        // When only the solve differs (say a shopping-list entry that adds
        // nothing new), it is still a difference worth reporting.
        // A recorded graph without the solve says nothing about it.
        if let (true, Some(ia), Some(ib)) = (roots.is_empty(), ra.get("solve"), rb.get("solve")) {
            if ia != ib {
                let node = self.visit(Some(ia), Some(ib));
                roots.push(RootDiff {
                    output: "solve".into(),
                    a: Some(ia.clone()),
                    b: Some(ib.clone()),
                    node,
                });
            }
        }
        // Pipeline order: the tree, then what is built from it.
        let rank = |o: &str| {
            [
                "os-tree", "meta-rpm", "kernel", "initrd", "rootfs", "image:", "publish",
            ]
            .iter()
            .position(|p| o.starts_with(p))
            .unwrap_or(7)
        };
        roots.sort_by(|x, y| (rank(&x.output), &x.output).cmp(&(rank(&y.output), &y.output)));
        DrvDiff {
            roots,
            nodes: self.nodes,
        }
    }

    fn visit(&mut self, ia: Option<&DrvId>, ib: Option<&DrvId>) -> String {
        let key = node_key(ia, ib);
        if self.nodes.contains_key(&key) {
            return key;
        }
        let (da, db) = (ia.map(|i| self.a.drv(i)), ib.map(|i| self.b.drv(i)));
        let causes = match (ia, ib) {
            // Reached through pin edges only: the same solve answered
            // differently.
            (Some(ia), Some(ib)) if ia == ib => vec![Cause::Repinned],
            (Some(ia), Some(ib)) => self.compare(ia, ib),
            (Some(ia), None) => self.one_sided(true, ia),
            (None, Some(ib)) => self.one_sided(false, ib),
            (None, None) => unreachable!("a node has at least one side"),
        };
        let name = db.or(da).expect("one side").name.clone();
        let old_name = match (da, db) {
            (Some(x), Some(y)) if x.name != y.name => Some(x.name.clone()),
            _ => None,
        };
        self.nodes.insert(
            key.clone(),
            Node {
                name,
                old_name,
                a: ia.cloned(),
                b: ib.cloned(),
                causes,
            },
        );
        key
    }

    /// A derivation that exists on one side only: what leads from it to
    /// other one-sided derivations, and to the solve if the solve chose it.
    fn one_sided(&mut self, in_a: bool, id: &DrvId) -> Vec<Cause> {
        let (this, other) = if in_a {
            (&self.a, &self.b)
        } else {
            (&self.b, &self.a)
        };
        let d = this.drv(id);
        // Inputs that are not in the other graph as they are; paired with
        // the other graph's derivation of the same name (names are unique
        // within a graph) when it has one, so a changed kernel under an
        // added image is compared, not shown as added.
        let mut next: Vec<(String, DrvId, Option<DrvId>)> = d
            .inputs
            .iter()
            .filter_map(|(role, i)| match i {
                Input::Drv { id } if other.graph.get(id).is_none() => {
                    let name = &this.drv(id).name;
                    let twin = other
                        .graph
                        .find(name)
                        .into_iter()
                        .find(|t| &other.drv(t).name == name)
                        .cloned();
                    Some((role.clone(), id.clone(), twin))
                }
                _ => None,
            })
            .collect();
        next.sort();
        let pinned = this.pinned.contains(id);
        let mut causes = Vec::new();
        if pinned {
            let what = format!(
                "{} {}",
                if in_a { "removed" } else { "added" },
                d.params
                    .get("nevra")
                    .and_then(Json::as_str)
                    .unwrap_or(&d.name)
            );
            let node = self.visit(self.a.solve, self.b.solve);
            causes.push(Cause::Pinned { what, node });
        } else if let Some(at) = section_loc(this, d) {
            // An output the spec asks for on one side only (an image format,
            // a kernel): the spec section that asks for it.
            let what = format!("{} {}", d.name, if in_a { "removed" } else { "added" });
            let (a, b) = if in_a {
                (Some(at), None)
            } else {
                (None, Some(at))
            };
            causes.push(Cause::Spec { what, a, b });
        }
        for (role, input, twin) in next {
            let node = if in_a {
                self.visit(Some(&input), twin.as_ref())
            } else {
                self.visit(twin.as_ref(), Some(&input))
            };
            causes.push(Cause::Input { role, node });
        }
        causes
    }

    fn compare(&mut self, ia: &DrvId, ib: &DrvId) -> Vec<Cause> {
        let (da, db) = (self.a.drv(ia), self.b.drv(ib));
        let builder = builder_name(db);
        let mut causes = Vec::new();
        if da.builder != db.builder {
            causes.push(Cause::Builder {
                old: da.builder.to_string(),
                new: db.builder.to_string(),
            });
        }
        let empty = serde_json::Map::new();
        let (pa, pb) = (
            da.params.as_object().unwrap_or(&empty),
            db.params.as_object().unwrap_or(&empty),
        );
        let keys: std::collections::BTreeSet<&String> = pa.keys().chain(pb.keys()).collect();
        let changed: Vec<&String> = keys
            .into_iter()
            .filter(|k| pa.get(*k) != pb.get(*k))
            .collect();
        let pinned_both = self.a.pinned.contains(ia) && self.b.pinned.contains(ib);
        let nevra_changed = pa.get("nevra") != pb.get("nevra");
        let mut pinned_keys = Vec::new();
        for k in changed {
            let (mut old, mut new) = (
                pa.get(k).cloned().unwrap_or(Json::Null),
                pb.get(k).cloned().unwrap_or(Json::Null),
            );
            if !pinned_both && chosen_by_solve(builder, k) {
                // No solve to point at: a fetch's other parameters follow
                // from its NEVRA, and of the meta RPM's requirements only
                // those that differ matter.
                if builder == names::FETCH && k != "nevra" && nevra_changed {
                    continue;
                }
                if let (Json::Array(x), Json::Array(y)) = (&old, &new) {
                    (old, new) = (
                        Json::Array(x.iter().filter(|v| !y.contains(v)).cloned().collect()),
                        Json::Array(y.iter().filter(|v| !x.contains(v)).cloned().collect()),
                    );
                }
            }
            // An extract's NEVRA restates its rpm input's, whose change is
            // reported (with both NEVRAs) on the input's own line.
            if builder == names::EXTRACT && k == "nevra" {
                continue;
            }
            if pinned_both && chosen_by_solve(builder, k) {
                pinned_keys.push((k.as_str(), old, new));
                continue;
            }
            if builder == "solve" && self.a.side.is_some() && self.b.side.is_some() {
                causes.extend(self.solve_param(k, old, new));
                continue;
            }
            let (a, b) = (
                self.param_loc(&self.a, da, k),
                self.param_loc(&self.b, db, k),
            );
            causes.push(Cause::Param {
                key: k.clone(),
                old,
                new,
                a,
                b,
            });
        }
        if !pinned_keys.is_empty() {
            let what = pinned_what(&pinned_keys);
            let node = self.visit(self.a.solve, self.b.solve);
            causes.push(Cause::Pinned { what, node });
        }
        causes.extend(self.inputs(da, db));
        causes
    }

    /// Pairs the inputs of two derivations by role (a package's role by its
    /// name, since its NEVRA is part of the role) and compares each pair.
    fn inputs(&mut self, da: &'a Derivation, db: &'a Derivation) -> Vec<Cause> {
        let mut pairs: Vec<(String, Option<&'a Input>, Option<&'a Input>)> = Vec::new();
        let mut only_a: Vec<(&String, &Input)> = Vec::new();
        for (role, i) in &da.inputs {
            match db.inputs.get(role) {
                Some(j) => pairs.push((role.clone(), Some(i), Some(j))),
                None => only_a.push((role, i)),
            }
        }
        let mut only_b: Vec<(&String, &Input)> = db
            .inputs
            .iter()
            .filter(|(r, _)| !da.inputs.contains_key(*r))
            .collect();
        let pkg = |g: &G, role: &str| -> Option<String> {
            let nevra = role.strip_prefix("pkg:")?;
            g.names.get(nevra).map(|n| n.to_string())
        };
        let mut by_name_a: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (r, _)) in only_a.iter().enumerate() {
            if let Some(n) = pkg(&self.a, r) {
                by_name_a.entry(n).or_default().push(i);
            }
        }
        let mut by_name_b: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, (r, _)) in only_b.iter().enumerate() {
            if let Some(n) = pkg(&self.b, r) {
                by_name_b.entry(n).or_default().push(i);
            }
        }
        let (mut used_a, mut used_b) = (HashSet::new(), HashSet::new());
        for (n, ia) in &by_name_a {
            if let (Some(ib), [x]) = (by_name_b.get(n), ia.as_slice()) {
                if let [y] = ib.as_slice() {
                    pairs.push((format!("pkg:{n}"), Some(only_a[*x].1), Some(only_b[*y].1)));
                    used_a.insert(*x);
                    used_b.insert(*y);
                }
            }
        }
        for (i, (r, inp)) in only_a.iter().enumerate() {
            if !used_a.contains(&i) {
                pairs.push(((*r).clone(), Some(inp), None));
            }
        }
        let mut rest_b: Vec<(&String, &Input)> = Vec::new();
        for (i, x) in only_b.drain(..).enumerate() {
            if !used_b.contains(&i) {
                rest_b.push(x);
            }
        }
        for (r, inp) in rest_b {
            pairs.push((r.clone(), None, Some(inp)));
        }
        pairs.sort_by(|x, y| x.0.cmp(&y.0));

        let mut causes = Vec::new();
        for (role, ia, ib) in pairs {
            let drv = |i: Option<&'a Input>| match i {
                Some(Input::Drv { id }) => Some(id),
                _ => None,
            };
            let src = |i: Option<&'a Input>| match i {
                Some(Input::Source { hash, origin }) => Some((hash, origin)),
                _ => None,
            };
            let (xa, xb) = (drv(ia), drv(ib));
            if (xa.is_some() || xb.is_some()) && xa != xb {
                let node = self.visit(xa, xb);
                causes.push(Cause::Input { role, node });
                continue;
            }
            let (sa, sb) = (src(ia), src(ib));
            if sa.map(|s| s.0) == sb.map(|s| s.0) {
                continue;
            }
            if let Some(name) = role.strip_prefix("repo:") {
                causes.push(Cause::Repository {
                    name: name.to_string(),
                    old: sa.map(|s| s.0.clone()),
                    new: sb.map(|s| s.0.clone()),
                });
            } else {
                causes.push(Cause::Source {
                    origin: sb.or(sa).map(|s| s.1.clone()).unwrap_or_default(),
                    role,
                    old: sa.map(|s| s.0.clone()),
                    new: sb.map(|s| s.0.clone()),
                });
            }
        }
        causes
    }

    /// The spec line that sets a derivation parameter, falling back to the
    /// enclosing record when the field is left at its default.
    fn param_loc(&self, g: &G, d: &Derivation, key: &str) -> Option<Loc> {
        let side = g.side?;
        if key == "branch" {
            return g.loc(side.release.branch_span);
        }
        let format = d.params.get("format").and_then(Json::as_str).unwrap_or("");
        let image = |k| {
            vec![
                Seg::Field("images"),
                Seg::Item {
                    key: "format",
                    value: format,
                },
                Seg::Field(k),
            ]
        };
        // Where the spec may set the parameter, most specific first.
        let candidates: Vec<Vec<Seg>> = match (builder_name(d), key) {
            (_, "epoch") => vec![vec![Seg::Field("epoch")]],
            (names::ASSEMBLE, "prefer") => vec![vec![Seg::Field("prefer")]],
            (names::META_RPM, "name") | (names::IMAGE, "release") => vec![vec![Seg::Field("name")]],
            (_, "version") => vec![vec![Seg::Field("version")]],
            // An unset tag is NAME-VERSION.
            (names::PUBLISH, "tag") => vec![
                vec![Seg::Field("cvmfs"), Seg::Field("tag")],
                vec![Seg::Field("version")],
            ],
            (names::IMAGE, "cmdline") => vec![vec![Seg::Field("kernel"), Seg::Field("cmdline")]],
            (names::IMAGE, k) => vec![image(k)],
            (names::KERNEL, k) => vec![vec![Seg::Field("kernel"), Seg::Field(k)]],
            (names::INITRD, k) => vec![vec![Seg::Field("initrd"), Seg::Field(k)]],
            (names::PUBLISH, k) => vec![vec![Seg::Field("cvmfs"), Seg::Field(k)]],
            _ => return None,
        };
        let value = &side.value;
        candidates
            .iter()
            .find_map(|p| locate::find(value, p))
            // Left at its default: the enclosing record.
            .or_else(|| {
                let first = &candidates[0];
                (1..first.len())
                    .rev()
                    .find_map(|n| locate::find(value, &first[..n]))
            })
            .and_then(|v| g.loc(v.span))
    }

    /// Causes behind a changed solve parameter, entry by entry, at the
    /// spec lines that wrote them.
    /// Both sides have specs.
    fn solve_param(&self, key: &str, old: Json, new: Json) -> Vec<Cause> {
        let (sa, sb) = (
            self.a.side.expect("both specs"),
            self.b.side.expect("both specs"),
        );
        let (ra, rb) = (&sa.release, &sb.release);
        let spec = |what: String, a: Option<Loc>, b: Option<Loc>| Cause::Spec { what, a, b };
        match key {
            "packages" | "pins" => {
                let (la, lb) = if key == "packages" {
                    (&ra.packages, &rb.packages)
                } else {
                    (&ra.pins, &rb.pins)
                };
                let what = if key == "packages" {
                    "shopping list"
                } else {
                    "pin"
                };
                let ma: BTreeMap<&str, _> = la.iter().map(|p| (p.name.as_str(), p)).collect();
                let mb: BTreeMap<&str, _> = lb.iter().map(|p| (p.name.as_str(), p)).collect();
                let names: std::collections::BTreeSet<&str> =
                    ma.keys().chain(mb.keys()).copied().collect();
                let show = |c: &str| {
                    if c.is_empty() {
                        "any version".to_string()
                    } else {
                        format!("`{c}`")
                    }
                };
                names
                    .into_iter()
                    .filter_map(|n| match (ma.get(n), mb.get(n)) {
                        (None, Some(p)) => Some(spec(
                            format!("{what}: `{n}` added ({})", show(&p.constraint)),
                            None,
                            self.b.loc(p.span),
                        )),
                        (Some(p), None) => Some(spec(
                            format!("{what}: `{n}` removed ({})", show(&p.constraint)),
                            self.a.loc(p.span),
                            None,
                        )),
                        (Some(p), Some(q)) if p.constraint != q.constraint => Some(spec(
                            format!(
                                "{what}: `{n}` {} → {}",
                                show(&p.constraint),
                                show(&q.constraint)
                            ),
                            self.a.loc(p.span),
                            self.b.loc(q.span),
                        )),
                        _ => None,
                    })
                    .collect()
            }
            "repos" => {
                let ma: BTreeMap<&str, _> = ra.repos.iter().map(|r| (r.name.as_str(), r)).collect();
                let mb: BTreeMap<&str, _> = rb.repos.iter().map(|r| (r.name.as_str(), r)).collect();
                let names: std::collections::BTreeSet<&str> =
                    ma.keys().chain(mb.keys()).copied().collect();
                let mut out = Vec::new();
                for n in names {
                    let (x, y) = (ma.get(n), mb.get(n));
                    let what = match (x, y) {
                        (None, Some(_)) => format!("repository `{n}` added"),
                        (Some(_), None) => format!("repository `{n}` removed"),
                        (Some(x), Some(y)) => {
                            let mut fields = Vec::new();
                            if x.url_as_written != y.url_as_written {
                                fields.push("url");
                            }
                            if x.priority != y.priority {
                                fields.push("priority");
                            }
                            if x.cost != y.cost {
                                fields.push("cost");
                            }
                            if x.exclude != y.exclude {
                                fields.push("exclude");
                            }
                            if fields.is_empty() {
                                continue;
                            }
                            format!("repository `{n}`: {} changed", fields.join(", "))
                        }
                        (None, None) => continue,
                    };
                    out.push(spec(
                        what,
                        x.and_then(|r| self.a.loc(r.span)),
                        y.and_then(|r| self.b.loc(r.span)),
                    ));
                }
                out
            }
            _ => {
                let at = |g: &G| {
                    let side = g.side?;
                    g.loc(*side.release.field_spans.get(key)?)
                };
                vec![Cause::Param {
                    key: key.to_string(),
                    old,
                    new,
                    a: at(&self.a),
                    b: at(&self.b),
                }]
            }
        }
    }
}

/// The spec section that makes a release have this output at all.
fn section_loc(g: &G, d: &Derivation) -> Option<Loc> {
    let format = d.params.get("format").and_then(Json::as_str).unwrap_or("");
    let path = match builder_name(d) {
        names::IMAGE => vec![
            Seg::Field("images"),
            Seg::Item {
                key: "format",
                value: format,
            },
        ],
        names::KERNEL => vec![Seg::Field("kernel")],
        names::INITRD => vec![Seg::Field("initrd")],
        names::PUBLISH => vec![Seg::Field("cvmfs")],
        _ => return None,
    };
    locate::find(&g.side?.value, &path).and_then(|v| g.loc(v.span))
}

pub(super) fn builder_name(d: &Derivation) -> &str {
    match &d.builder {
        crate::eval::Builder::Builtin { name, .. } => name,
        crate::eval::Builder::External { tool, .. } => tool,
    }
}

/// Parameters the solve decides rather than the spec: everything about a
/// fetch, and the meta RPM's requirement list.
fn chosen_by_solve(builder: &str, key: &str) -> bool {
    builder == names::FETCH || (builder == names::META_RPM && key == "requires")
}

fn pinned_what(keys: &[(&str, Json, Json)]) -> String {
    if let Some((_, old, new)) = keys.iter().find(|k| k.0 == "nevra") {
        return format!(
            "{} → {}",
            old.as_str().unwrap_or("?"),
            new.as_str().unwrap_or("?")
        );
    }
    if let Some((_, Json::Array(old), Json::Array(new))) = keys.iter().find(|k| k.0 == "requires") {
        let removed = old.iter().filter(|x| !new.contains(x)).count();
        let added = new.iter().filter(|x| !old.contains(x)).count();
        return format!("requires: {added} added, {removed} removed");
    }
    keys.iter().map(|k| k.0).collect::<Vec<_>>().join(", ")
}

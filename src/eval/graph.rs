//! The derivation graph of one branch: a DAG whose edges run from an input
//! derivation to the derivation that consumes it.

use crate::drv::{Derivation, DrvId};
use hashbrown::HashMap;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::Serialize;
use std::collections::BTreeMap;

/// Why one node points at another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    /// The consumer reads the producer's output; part of the consumer's id.
    Input,
    /// The producer (the solve) chose the consumer's parameters (which
    /// package to fetch). Not part of any id: a fetch is identified by the
    /// file it fetches, so re-solving to the same package rebuilds nothing.
    /// Kept so `diff` and `why` can trace a change back to the solve.
    Pin,
}

#[derive(Default)]
pub struct Graph {
    dag: DiGraph<Derivation, Edge>,
    index: HashMap<DrvId, NodeIndex>,
    /// Per node, in the order added: its id and canonical bytes, computed
    /// once when it is added (the id needs them) and reused by the store's
    /// records instead of serialising every derivation a second time.
    nodes: Vec<(DrvId, Vec<u8>)>,
    /// The outputs a user asks for by name (`os-tree`, `meta-rpm`, ...).
    pub roots: BTreeMap<String, DrvId>,
}

impl Graph {
    /// An empty graph with room for `nodes` derivations: a branch's graph
    /// is two per package, and growing its index and lists from empty
    /// rehashed and copied them a dozen times.
    pub fn with_capacity(nodes: usize) -> Self {
        Graph {
            dag: DiGraph::with_capacity(nodes, 2 * nodes),
            index: HashMap::with_capacity(nodes),
            nodes: Vec::with_capacity(nodes),
            roots: BTreeMap::new(),
        }
    }

    /// Adds a derivation (idempotent: the same derivation twice is one node)
    /// and its input edges. Inputs must already be in the graph, which makes
    /// cycles impossible by construction.
    pub fn add(&mut self, drv: Derivation) -> DrvId {
        let (id, bytes) = drv.id_and_bytes();
        if self.index.contains_key(&id) {
            return id;
        }
        let inputs: Vec<DrvId> = drv.input_drvs().cloned().collect();
        let node = self.dag.add_node(drv);
        for input in inputs {
            let from = self.index[&input];
            self.dag.add_edge(from, node, Edge::Input);
        }
        self.index.insert(id.clone(), node);
        debug_assert_eq!(node.index(), self.nodes.len());
        self.nodes.push((id.clone(), bytes));
        id
    }

    /// Every derivation in the order added, with its canonical bytes
    /// ([`Derivation::canonical_bytes`]); cheaper than [`Graph::topo`] when
    /// the order does not matter.
    pub fn nodes(&self) -> impl Iterator<Item = (&DrvId, &Derivation, &[u8])> {
        self.nodes
            .iter()
            .zip(self.dag.node_weights())
            .map(|((id, bytes), d)| (id, d, bytes.as_slice()))
    }

    /// The derivations no other derivation of the graph takes as an input
    /// (the outputs, and the solve, which only pins): every node is one of
    /// them or in the input closure of one, so they stand for the whole
    /// graph where inputs are kept with their consumers (store records).
    pub fn tops(&self) -> impl Iterator<Item = &DrvId> {
        self.nodes
            .iter()
            .zip(self.dag.node_indices())
            .filter(|&(_, n)| !self.dag.edges(n).any(|e| *e.weight() == Edge::Input))
            .map(|((id, _), _)| id)
    }

    /// Records that `from` chose the parameters of `to` (see [`Edge::Pin`]).
    pub fn pin(&mut self, from: &DrvId, to: &DrvId) {
        let (a, b) = (self.index[from], self.index[to]);
        // `update_edge` would search the solve's outgoing edges, one per
        // package, at every pin: quadratic in the closure. The pinned
        // derivation has one or two incoming edges.
        let existing = self
            .dag
            .edges_directed(b, petgraph::Direction::Incoming)
            .find(|e| e.source() == a)
            .map(|e| e.id());
        match existing {
            Some(e) => self.dag[e] = Edge::Pin,
            None => {
                self.dag.add_edge(a, b, Edge::Pin);
            }
        }
    }

    /// The id of node `n` (nodes are numbered in the order added).
    fn id_of(&self, n: NodeIndex) -> &DrvId {
        &self.nodes[n.index()].0
    }

    pub fn get(&self, id: &DrvId) -> Option<&Derivation> {
        self.index.get(id).map(|&n| &self.dag[n])
    }

    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// Finds a derivation by full id, unique id prefix, or exact name.
    pub fn find(&self, key: &str) -> Vec<&DrvId> {
        let mut hits: Vec<&DrvId> = self
            .index
            .iter()
            .filter(|(id, &n)| id.0.starts_with(key) || self.dag[n].name == key)
            .map(|(id, _)| id)
            .collect();
        hits.sort();
        hits
    }

    /// All derivations in a deterministic topological order (inputs first;
    /// ties broken by name).
    pub fn topo(&self) -> Vec<(&DrvId, &Derivation)> {
        let mut indeg: Vec<usize> = self
            .dag
            .node_indices()
            .map(|n| {
                self.dag
                    .edges_directed(n, petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: std::collections::BTreeSet<(String, NodeIndex)> = self
            .dag
            .node_indices()
            .filter(|n| indeg[n.index()] == 0)
            .map(|n| (self.dag[n].name.clone(), n))
            .collect();
        let mut out = Vec::with_capacity(self.len());
        while let Some(first) = ready.pop_first() {
            let n = first.1;
            for e in self.dag.edges(n) {
                let t = e.target();
                indeg[t.index()] -= 1;
                if indeg[t.index()] == 0 {
                    ready.insert((self.dag[t].name.clone(), t));
                }
            }
            out.push(n);
        }
        out.into_iter()
            .map(|n| (self.id_of(n), &self.dag[n]))
            .collect()
    }

    /// Edges as (from, to, kind), sorted.
    pub fn edges(&self) -> Vec<(&DrvId, &DrvId, Edge)> {
        let mut v: Vec<_> = self
            .dag
            .edge_references()
            .map(|e| (self.id_of(e.source()), self.id_of(e.target()), *e.weight()))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v
    }

    /// Every derivation that transitively consumes `id` through input edges.
    pub fn downstream(&self, id: &DrvId) -> Vec<&DrvId> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![self.index[id]];
        while let Some(n) = stack.pop() {
            for e in self.dag.edges(n) {
                if *e.weight() == Edge::Input && seen.insert(self.id_of(e.target())) {
                    stack.push(e.target());
                }
            }
        }
        seen.into_iter().collect()
    }

    /// Graphviz rendering: one node per derivation labelled with its name
    /// and short id; pin edges dashed.
    pub fn to_dot(&self) -> String {
        let mut s = String::from("digraph cvmbuild {\n  rankdir=LR;\n  node [shape=box];\n");
        for (id, d) in self.topo() {
            s += &format!(
                "  \"{}\" [label=\"{}\\n{}\"];\n",
                id.short(),
                d.name.replace('"', "\\\""),
                id.short()
            );
        }
        for (a, b, kind) in self.edges() {
            let style = if kind == Edge::Pin {
                " [style=dashed]"
            } else {
                ""
            };
            s += &format!("  \"{}\" -> \"{}\"{};\n", a.short(), b.short(), style);
        }
        s + "}\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drv::Builder;
    use serde_json::json;

    /// Tops are what nothing consumes as an input: the output at the end
    /// of an input chain and the solve (which only pins), not what they
    /// consume, so their input closures cover every node.
    #[test]
    fn tops_are_the_nodes_no_input_edge_leaves() {
        let mut g = Graph::with_capacity(4);
        let d = |name: &str| Derivation::new(name, Builder::builtin("t", 1), json!({}));
        let solve = g.add(d("solve"));
        let fetch = g.add(d("fetch"));
        g.pin(&solve, &fetch);
        let extract = g.add(d("extract").input_drv("rpm", &fetch));
        let tree = g.add(d("tree").input_drv("pkg", &extract));
        let tops: Vec<&DrvId> = g.tops().collect();
        assert_eq!(tops, [&solve, &tree]);
        let mut covered: std::collections::BTreeSet<&DrvId> = tops.iter().copied().collect();
        for t in &tops {
            covered.extend(
                g.nodes()
                    .filter(|(id, _, _)| g.downstream(id).contains(t))
                    .map(|(id, _, _)| id),
            );
        }
        assert_eq!(covered.len(), g.len());
    }
}

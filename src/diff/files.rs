//! File diff: paths added, removed or changed between two assembled OS
//! trees in the store, with the packages that own them.
//!
//! Trees are Merkle DAGs, so two directories with the same hash have the
//! same contents down to the last byte: the walk reads a tree object only
//! where the hashes differ, and never reads a file's bytes (the blob hash
//! says whether the content changed). Two releases sharing 999 of 1,000
//! packages therefore read a few dozen tree objects, not all of them.

use crate::store::{self, Entry, Hash, Node, Output, Root, Store};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// Absolute path in the OS tree.
    pub path: String,
    pub change: Change,
    /// For `changed`: which attributes differ, from `type`, `content`,
    /// `target`, `device`, `mode`, `owner`, `group`, `flags`, `hardlink`
    /// (became or stopped being a name of a hardlinked file), `xattrs`
    /// (extended attributes such as file capabilities), `mtime` (the time
    /// the package gives the file; before the release's epoch clamps it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<&'static str>,
    /// Packages shipping the path (B's for added and changed, A's for
    /// removed), from the assemble output's manifest.
    pub packages: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileDiff {
    /// In path order (depth first, names in byte order).
    pub changes: Vec<FileChange>,
    /// Tree objects read (both sides); equal subtrees are never read.
    pub trees_read: u64,
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("the {side} OS tree output is a single file, not a tree")]
    NotATree { side: &'static str },
    #[error("the {side} OS tree's ownership manifest {hash}: {reason}")]
    Manifest {
        side: &'static str,
        hash: String,
        reason: String,
    },
}

/// Compares two assemble outputs.
pub fn diff(store: &dyn Store, a: &Output, b: &Output) -> Result<FileDiff, Error> {
    let root = |o: &Output, side| match o.root {
        Root::Tree { hash } => Ok(hash),
        Root::Blob { .. } => Err(Error::NotATree { side }),
    };
    let (ra, rb) = (root(a, "A")?, root(b, "B")?);
    let mut w = Walk {
        store,
        trees_read: 0,
        changes: Vec::new(),
    };
    w.trees(&ra, &rb, "")?;
    if !w.changes.is_empty() {
        let wanted = |c: Change| -> HashSet<&str> {
            w.changes
                .iter()
                .filter(|x| (x.change == Change::Removed) == (c == Change::Removed))
                .map(|x| x.path.as_str())
                .collect()
        };
        let ma = owners(store, a, "A", &wanted(Change::Removed))?;
        let mb = owners(store, b, "B", &wanted(Change::Added))?;
        for c in &mut w.changes {
            let m = if c.change == Change::Removed {
                &ma
            } else {
                &mb
            };
            c.packages = m.get(&c.path).cloned().unwrap_or_default();
        }
    }
    Ok(FileDiff {
        changes: w.changes,
        trees_read: w.trees_read,
    })
}

/// Every tree object reachable from `root`, each counted once: the
/// denominator for [`FileDiff::trees_read`].
pub fn count_trees(store: &dyn Store, root: &Hash) -> Result<u64, Error> {
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![*root];
    while let Some(h) = stack.pop() {
        if !seen.insert(h) {
            continue;
        }
        for e in store.get_tree(&h)?.entries() {
            if let Node::Directory { tree } = &e.node {
                stack.push(*tree);
            }
        }
    }
    Ok(seen.len() as u64)
}

/// One manifest entry, borrowing from the manifest's bytes where it can:
/// an OS tree's manifest lists every path (100,000 in a large release), and
/// only the few changed ones are kept.
#[derive(Deserialize)]
struct Owned<'m> {
    #[serde(borrow)]
    path: Cow<'m, str>,
    #[serde(borrow)]
    packages: Vec<Cow<'m, str>>,
}

/// Owners of the `wanted` paths, from an assemble output's manifest blob.
fn owners(
    store: &dyn Store,
    o: &Output,
    side: &'static str,
    wanted: &HashSet<&str>,
) -> Result<HashMap<String, Vec<String>>, Error> {
    let Some(hex) = o.meta.get("manifest").filter(|_| !wanted.is_empty()) else {
        return Ok(HashMap::new());
    };
    let bad = |reason: String| Error::Manifest {
        side,
        hash: hex.clone(),
        reason,
    };
    let hash = Hash::from_hex(hex).ok_or_else(|| bad("not a hash".into()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut store.open_blob(&hash)?, &mut bytes)
        .map_err(|e| bad(e.to_string()))?;
    let list: Vec<Owned> = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok(list
        .into_iter()
        .filter(|o| wanted.contains(o.path.as_ref()))
        .map(|o| {
            (
                o.path.into_owned(),
                o.packages.into_iter().map(Cow::into_owned).collect(),
            )
        })
        .collect())
}

struct Walk<'s> {
    store: &'s dyn Store,
    trees_read: u64,
    changes: Vec<FileChange>,
}

impl Walk<'_> {
    fn read(&mut self, h: &Hash) -> Result<store::Tree, Error> {
        self.trees_read += 1;
        Ok(self.store.get_tree(h)?)
    }

    fn trees(&mut self, a: &Hash, b: &Hash, prefix: &str) -> Result<(), Error> {
        if a == b {
            return Ok(());
        }
        let (ta, tb) = (self.read(a)?, self.read(b)?);
        let (ea, eb) = (ta.entries(), tb.entries());
        let (mut i, mut j) = (0, 0);
        while i < ea.len() || j < eb.len() {
            let order = match (ea.get(i), eb.get(j)) {
                (Some(x), Some(y)) => x.name.as_bytes().cmp(y.name.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Less => {
                    self.one_side(&ea[i], prefix, Change::Removed)?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    self.one_side(&eb[j], prefix, Change::Added)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    self.both(&ea[i], &eb[j], prefix)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, path: String, change: Change, what: Vec<&'static str>) {
        self.changes.push(FileChange {
            path,
            change,
            what,
            packages: Vec::new(),
        });
    }

    /// An entry on one side only: it and, for a directory, everything below.
    fn one_side(&mut self, e: &Entry, prefix: &str, change: Change) -> Result<(), Error> {
        let path = format!("{prefix}/{}", e.name);
        self.push(path.clone(), change, Vec::new());
        if let Node::Directory { tree } = &e.node {
            for child in self.read(tree)?.entries() {
                self.one_side(child, &path, change)?;
            }
        }
        Ok(())
    }

    fn both(&mut self, x: &Entry, y: &Entry, prefix: &str) -> Result<(), Error> {
        if x == y {
            return Ok(());
        }
        let path = format!("{prefix}/{}", x.name);
        let mut what = Vec::new();
        let kind = |n: &Node| std::mem::discriminant(n);
        if kind(&x.node) != kind(&y.node) {
            what.push("type");
        } else if x.node != y.node {
            match &x.node {
                Node::File { .. } => what.push("content"),
                Node::Symlink { .. } => what.push("target"),
                Node::CharDevice { .. } | Node::BlockDevice { .. } => what.push("device"),
                // A directory's contents are reported path by path below.
                _ => {}
            }
        }
        if x.mode != y.mode {
            what.push("mode");
        }
        if x.owner != y.owner {
            what.push("owner");
        }
        if x.group != y.group {
            what.push("group");
        }
        if (x.flags.config, x.flags.ghost) != (y.flags.config, y.flags.ghost) {
            what.push("flags");
        }
        if x.flags.hardlink != y.flags.hardlink {
            what.push("hardlink");
        }
        if x.xattrs != y.xattrs {
            what.push("xattrs");
        }
        if x.mtime != y.mtime {
            what.push("mtime");
        }
        match (&x.node, &y.node) {
            (Node::Directory { tree: ta }, Node::Directory { tree: tb }) => {
                if !what.is_empty() {
                    self.push(path.clone(), Change::Changed, what);
                }
                self.trees(ta, tb, &path)
            }
            // A directory replaced by a file or the reverse: the directory's
            // contents appear or disappear with it.
            (Node::Directory { tree }, _) => {
                self.push(path.clone(), Change::Changed, what);
                for child in self.read(tree)?.entries() {
                    self.one_side(child, &path, Change::Removed)?;
                }
                Ok(())
            }
            (_, Node::Directory { tree }) => {
                self.push(path.clone(), Change::Changed, what);
                for child in self.read(tree)?.entries() {
                    self.one_side(child, &path, Change::Added)?;
                }
                Ok(())
            }
            _ => {
                self.push(path, Change::Changed, what);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemStore, Tree};
    use std::collections::BTreeMap;

    fn file(s: &MemStore, name: &str, content: &str, mode: u16) -> Entry {
        let b = s.put_blob(&mut content.as_bytes()).unwrap();
        Entry::root_owned(name, Node::file(&b), mode)
    }

    fn dir(s: &MemStore, name: &str, entries: Vec<Entry>) -> Entry {
        Entry::root_owned(
            name,
            Node::Directory {
                tree: s.put_tree(&Tree::new(entries).unwrap()).unwrap(),
            },
            0o755,
        )
    }

    fn output(s: &MemStore, entries: Vec<Entry>, owners: &[(&str, &str)]) -> Output {
        let tree = s.put_tree(&Tree::new(entries).unwrap()).unwrap();
        let list: Vec<_> = owners
            .iter()
            .map(|(p, o)| serde_json::json!({"path": p, "packages": [o]}))
            .collect();
        let m = s
            .put_blob(&mut serde_json::to_vec(&list).unwrap().as_slice())
            .unwrap();
        Output {
            root: Root::Tree { hash: tree },
            meta: BTreeMap::from([("manifest".into(), m.hash.to_hex())]),
        }
    }

    #[test]
    fn reports_changes_with_owners_and_skips_equal_subtrees() {
        let s = MemStore::new();
        let big = |s: &MemStore| {
            dir(
                s,
                "usr",
                (0..50)
                    .map(|i| {
                        dir(
                            s,
                            &format!("d{i:02}"),
                            vec![file(s, "f", &i.to_string(), 0o644)],
                        )
                    })
                    .collect(),
            )
        };
        let a = output(
            &s,
            vec![
                dir(
                    &s,
                    "bin",
                    vec![
                        file(&s, "bash", "v1", 0o755),
                        file(&s, "old", "x", 0o755),
                        file(&s, "ping", "p", 0o755),
                    ],
                ),
                big(&s),
            ],
            &[("/bin/bash", "bash-1"), ("/bin/old", "old-1")],
        );
        let mut ping = file(&s, "ping", "p", 0o755);
        ping.xattrs
            .insert("security.capability".into(), vec![0, 0, 0, 2]);
        ping.mtime = Some(1_399_000_000);
        let b = output(
            &s,
            vec![
                dir(
                    &s,
                    "bin",
                    vec![
                        file(&s, "bash", "v2", 0o700),
                        file(&s, "new", "y", 0o755),
                        ping,
                    ],
                ),
                dir(&s, "opt", vec![file(&s, "z", "z", 0o644)]),
                big(&s),
            ],
            &[
                ("/bin/bash", "bash-2"),
                ("/bin/new", "new-1"),
                ("/bin/ping", "iputils-1"),
            ],
        );
        let d = diff(&s, &a, &b).unwrap();
        let got: Vec<_> = d
            .changes
            .iter()
            .map(|c| {
                (
                    c.path.as_str(),
                    c.change,
                    c.what.clone(),
                    c.packages.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "/bin/bash",
                    Change::Changed,
                    vec!["content", "mode"],
                    vec!["bash-2".to_string()]
                ),
                ("/bin/new", Change::Added, vec![], vec!["new-1".to_string()]),
                (
                    "/bin/old",
                    Change::Removed,
                    vec![],
                    vec!["old-1".to_string()]
                ),
                (
                    "/bin/ping",
                    Change::Changed,
                    vec!["xattrs", "mtime"],
                    vec!["iputils-1".to_string()]
                ),
                ("/opt", Change::Added, vec![], vec![]),
                ("/opt/z", Change::Added, vec![], vec![]),
            ]
        );
        // Roots, /bin on both sides, and the new /opt; /usr's 51 trees
        // are equal and never read.
        assert_eq!(d.trees_read, 5);
        let Root::Tree { hash } = b.root else {
            panic!()
        };
        assert_eq!(count_trees(&s, &hash).unwrap(), 54);
        assert!(diff(&s, &a, &a).unwrap().changes.is_empty());
        assert_eq!(diff(&s, &a, &a).unwrap().trees_read, 0);
    }
}

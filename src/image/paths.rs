//! Flat path views of store trees: the image builders think in paths
//! (`lib/modules/6.1.0/modules.dep`), the store in nested trees. [`walk`]
//! flattens a tree, [`build`] nests a flat map back into stored trees.

use crate::store::{Entry, Hash, Node, Result, Store, Tree};
use std::collections::BTreeMap;

/// Every entry under `root` by its relative path (`a/b/c`), directories
/// included (their `tree` is the stored one).
pub fn walk(store: &dyn Store, root: &Hash) -> Result<BTreeMap<String, Entry>> {
    let mut out = BTreeMap::new();
    walk_into(store, root, "", &mut out)?;
    Ok(out)
}

fn walk_into(
    store: &dyn Store,
    tree: &Hash,
    prefix: &str,
    out: &mut BTreeMap<String, Entry>,
) -> Result<()> {
    for e in store.get_tree(tree)?.into_entries() {
        let path = format!("{prefix}{}", e.name);
        if let Node::Directory { tree } = &e.node {
            walk_into(store, tree, &format!("{path}/"), out)?;
        }
        out.insert(path, e);
    }
    Ok(())
}

/// The entry at `path` (`a/b`) under `root`, following no symlinks.
pub fn lookup(store: &dyn Store, root: &Hash, path: &str) -> Result<Option<Entry>> {
    let mut tree = *root;
    let mut found = None;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if let Some(Entry {
            node: Node::Directory { tree: t },
            ..
        }) = &found
        {
            tree = *t;
        } else if found.is_some() {
            return Ok(None);
        }
        match store.get_tree(&tree)?.get(part) {
            Some(e) => found = Some(e.clone()),
            None => return Ok(None),
        }
    }
    Ok(found)
}

/// A directory entry with the attributes images give directories they
/// invent: 0755, root:root.
pub fn dir_entry(name: &str) -> Entry {
    Entry::root_owned(
        name,
        Node::Directory {
            tree: Tree::default().hash(),
        },
        0o755,
    )
}

#[derive(Default)]
struct Dir {
    attrs: Option<Entry>,
    children: BTreeMap<String, Child>,
}

enum Child {
    Dir(Dir),
    Leaf(Entry),
}

/// Stores the trees for a flat path map and returns the root's hash.
/// Directory entries contribute only their attributes (their contents come
/// from the paths below them); missing parents are made with
/// [`dir_entry`]. Every blob named must already be in the store.
pub fn build(store: &dyn Store, flat: &BTreeMap<String, Entry>) -> Result<Hash> {
    let mut root = Dir::default();
    for (path, e) in flat {
        let parts: Vec<&str> = path.split('/').collect();
        let (last, parents) = parts.split_last().expect("split yields one part");
        let mut d = &mut root;
        for p in parents {
            let c = d
                .children
                .entry(p.to_string())
                .or_insert_with(|| Child::Dir(Dir::default()));
            if let Child::Leaf(l) = c {
                // A non-directory on the way down is replaced by a directory.
                *c = Child::Dir(Dir {
                    attrs: Some(dir_entry(&l.name)),
                    ..Dir::default()
                });
            }
            let Child::Dir(next) = c else {
                unreachable!("made a directory above")
            };
            d = next;
        }
        let mut e = e.clone();
        e.name = last.to_string();
        match (&e.node, d.children.get_mut(*last)) {
            (Node::Directory { .. }, Some(Child::Dir(existing))) => existing.attrs = Some(e),
            (Node::Directory { .. }, _) => {
                d.children.insert(
                    last.to_string(),
                    Child::Dir(Dir {
                        attrs: Some(e),
                        ..Dir::default()
                    }),
                );
            }
            _ => {
                d.children.insert(last.to_string(), Child::Leaf(e));
            }
        }
    }
    put_dir(store, root)
}

fn put_dir(store: &dyn Store, d: Dir) -> Result<Hash> {
    let mut entries = Vec::with_capacity(d.children.len());
    for (name, c) in d.children {
        entries.push(match c {
            Child::Leaf(e) => e,
            Child::Dir(sub) => {
                let mut e = sub.attrs.clone().unwrap_or_else(|| dir_entry(&name));
                e.name = name;
                e.node = Node::Directory {
                    tree: put_dir(store, sub)?,
                };
                e
            }
        });
    }
    store.put_tree(&Tree::new(entries)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    #[test]
    fn build_then_walk_round_trips() {
        let store = MemStore::new();
        let blob = store.put_blob(&mut &b"x"[..]).unwrap();
        let file = |name: &str| {
            Entry::root_owned(
                name,
                Node::File {
                    size: 1,
                    blob: Some(blob.hash),
                },
                0o644,
            )
        };
        let flat: BTreeMap<String, Entry> = [
            ("a/b/c".to_string(), file("c")),
            ("a/d".to_string(), file("d")),
            ("e".to_string(), file("e")),
        ]
        .into();
        let root = build(&store, &flat).unwrap();
        let back = walk(&store, &root).unwrap();
        let paths: Vec<&str> = back.keys().map(String::as_str).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "a/d", "e"]);
        assert_eq!(lookup(&store, &root, "a/b/c").unwrap().unwrap().name, "c");
        assert!(lookup(&store, &root, "a/d/x").unwrap().is_none());
        assert!(lookup(&store, &root, "nope").unwrap().is_none());
    }
}

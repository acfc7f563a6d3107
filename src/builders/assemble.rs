//! Assemble: merges the closure's package trees into one OS root tree.
//!
//! Only tree objects are written: a file keeps the blob hash it had in its
//! package, and a directory that only one package populates keeps that
//! package's tree hash, so two releases sharing 999 of 1,000 packages share
//! every object but the few directories on the path to the change.
//!
//! As rpm allows, two packages may ship the same path with identical
//! content, mode and owner; anything else is a conflict naming both
//! packages and the path, unless the spec's `prefer` map names the winner.

use super::scriptlets::triggers;
use crate::repo::evr::Evr;
use crate::rpmdb::RpmHeaders;
use crate::store::{self, Entry, Hash, Node, Output, Root, Store, Tree};
use serde::Serialize;
use std::collections::BTreeMap;

/// One package to merge: its label and its extracted tree.
pub struct PackageTree {
    pub nevra: String,
    /// The package name, as `prefer` names winners.
    pub name: String,
    pub tree: Hash,
}

/// The merged tree and who owns what.
pub struct Assembled {
    pub tree: Hash,
    /// Every path (absolute, `/usr/bin/bash`) and the packages shipping it,
    /// sorted. Directories shared by many packages list all of them.
    pub owners: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("file conflict at {path}: {a} and {b} ship different {what}")]
    Conflict {
        path: String,
        a: String,
        b: String,
        what: &'static str,
    },
    #[error("{path}: a package makes it something other than a directory; the rpm database cannot go there")]
    NotADirectory { path: String },
    #[error("{path}: {package} ships it, but the tree's rpm database goes there (assemble writes it from the installed headers; only a %ghost may own it)")]
    Reserved { path: String, package: String },
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// A directory being merged: entries by name, each with its owners.
#[derive(Default)]
struct Dir {
    entries: BTreeMap<String, Slot>,
}

struct Slot {
    /// The entry as first seen; for directories `node` is replaced by the
    /// merged tree at the end.
    entry: Entry,
    owners: Vec<usize>,
    /// Set once a second package adds to this directory: it then needs a
    /// new tree object; until then the package's own tree hash is reused.
    merged: Option<Box<Dir>>,
}

#[derive(Serialize)]
struct Owned<'a> {
    path: &'a str,
    packages: &'a [String],
}

pub fn assemble(
    store: &dyn Store,
    packages: &[PackageTree],
    prefer: &BTreeMap<String, String>,
) -> Result<Assembled, AssembleError> {
    assemble_with(store, packages, prefer, None)
}

/// [`assemble`], with `extra` (directories below the root and an entry)
/// put into the merged tree, replacing a package's entry of that name.
/// Added during the merge, so no tree object is written that the result
/// does not reference.
pub fn assemble_with(
    store: &dyn Store,
    packages: &[PackageTree],
    prefer: &BTreeMap<String, String>,
    extra: Option<(&[&str], Entry)>,
) -> Result<Assembled, AssembleError> {
    let mut root = Dir::default();
    for (i, p) in packages.iter().enumerate() {
        let tree = store.get_tree(&p.tree)?;
        merge_into(store, &mut root, tree, i, packages, prefer, "")?;
    }
    if let Some((dirs, entry)) = extra {
        let mut dir = &mut root;
        let mut path = String::new();
        for name in dirs {
            path.push('/');
            path.push_str(name);
            let slot = dir.entries.entry(name.to_string()).or_insert_with(|| Slot {
                entry: Entry::root_owned(
                    name,
                    Node::Directory {
                        tree: Hash([0; 32]), // replaced when written
                    },
                    0o755,
                ),
                owners: vec![],
                merged: Some(Box::default()),
            });
            let Node::Directory { tree } = &slot.entry.node else {
                return Err(AssembleError::NotADirectory { path });
            };
            if slot.merged.is_none() {
                let mut m = Dir::default();
                let tree = store.get_tree(tree)?;
                merge_into(store, &mut m, tree, slot.owners[0], packages, prefer, &path)?;
                slot.merged = Some(Box::new(m));
            }
            dir = slot.merged.as_mut().expect("set above");
        }
        // A package may own the path as a %ghost (rpm's own package
        // does); one shipping content there would silently lose it.
        let owners = match dir.entries.get(&entry.name) {
            Some(slot) if slot.entry.flags.ghost && slot.merged.is_none() => slot.owners.clone(),
            Some(slot) => {
                return Err(AssembleError::Reserved {
                    path: format!("{path}/{}", entry.name),
                    package: slot
                        .owners
                        .first()
                        .map_or_else(String::new, |&i| packages[i].nevra.clone()),
                })
            }
            None => vec![],
        };
        dir.entries.insert(
            entry.name.clone(),
            Slot {
                entry,
                owners,
                merged: None,
            },
        );
    }
    let mut owners = BTreeMap::new();
    let tree = write(store, root, packages, "", &mut owners)?;
    Ok(Assembled { tree, owners })
}

/// Serialised ownership manifest (a JSON array of `{path, packages}`),
/// stored as a blob next to the tree.
pub fn manifest_json(owners: &BTreeMap<String, Vec<String>>) -> Vec<u8> {
    let list: Vec<Owned> = owners
        .iter()
        .map(|(path, packages)| Owned { path, packages })
        .collect();
    serde_json::to_vec(&list).expect("plain data")
}

fn merge_into(
    store: &dyn Store,
    dir: &mut Dir,
    tree: Tree,
    pkg: usize,
    packages: &[PackageTree],
    prefer: &BTreeMap<String, String>,
    prefix: &str,
) -> Result<(), AssembleError> {
    for e in tree.into_entries() {
        let path = format!("{prefix}/{}", e.name);
        match dir.entries.get_mut(&e.name) {
            None => {
                dir.entries.insert(
                    e.name.clone(),
                    Slot {
                        entry: e,
                        owners: vec![pkg],
                        merged: None,
                    },
                );
            }
            Some(slot) => match (&slot.entry.node, &e.node) {
                (Node::Directory { tree: mine }, Node::Directory { tree: theirs }) => {
                    if slot.merged.is_none() {
                        // First sharing (so far one owner): expand its
                        // side into a merge buffer.
                        let mut m = Dir::default();
                        let first = slot.owners[0];
                        merge_into(
                            store,
                            &mut m,
                            store.get_tree(mine)?,
                            first,
                            packages,
                            prefer,
                            &path,
                        )?;
                        slot.merged = Some(Box::new(m));
                    }
                    let sub = slot.merged.as_mut().expect("set above");
                    merge_into(
                        store,
                        sub,
                        store.get_tree(theirs)?,
                        pkg,
                        packages,
                        prefer,
                        &path,
                    )?;
                    slot.owners.push(pkg);
                }
                (a, b) => {
                    let same_content = a == b;
                    let same_meta = slot.entry.mode == e.mode
                        && slot.entry.owner == e.owner
                        && slot.entry.group == e.group
                        && slot.entry.xattrs == e.xattrs;
                    if same_content && same_meta {
                        slot.owners.push(pkg);
                        continue;
                    }
                    let first = &packages[slot.owners[0]];
                    let this = &packages[pkg];
                    match prefer.get(&path) {
                        Some(w) if *w == this.name => {
                            slot.entry = e;
                            slot.owners = vec![pkg];
                            slot.merged = None;
                        }
                        Some(w) if *w == first.name => {}
                        _ => {
                            return Err(AssembleError::Conflict {
                                path,
                                a: first.nevra.clone(),
                                b: this.nevra.clone(),
                                what: if !same_content {
                                    kind_word(a, b)
                                } else {
                                    "modes, owners or file capabilities"
                                },
                            })
                        }
                    }
                }
            },
        }
    }
    Ok(())
}

fn kind_word(a: &Node, b: &Node) -> &'static str {
    match (a, b) {
        (Node::File { .. }, Node::File { .. }) => "contents",
        (Node::Symlink { .. }, Node::Symlink { .. }) => "symlink targets",
        _ => "kinds of file",
    }
}

fn write(
    store: &dyn Store,
    dir: Dir,
    packages: &[PackageTree],
    prefix: &str,
    owners: &mut BTreeMap<String, Vec<String>>,
) -> Result<Hash, AssembleError> {
    let mut entries = Vec::with_capacity(dir.entries.len());
    for (name, slot) in dir.entries {
        let path = format!("{prefix}/{name}");
        let mut names: Vec<String> = slot
            .owners
            .iter()
            .map(|&i| packages[i].nevra.clone())
            .collect();
        names.sort();
        names.dedup();
        owners.insert(path.clone(), names);
        let mut entry = slot.entry;
        match slot.merged {
            Some(sub) => {
                entry.node = Node::Directory {
                    tree: write(store, *sub, packages, &path, owners)?,
                };
            }
            None => {
                if let Node::Directory { tree } = &entry.node {
                    record_unmerged(store, tree, &path, &packages[slot.owners[0]].nevra, owners)?;
                }
            }
        }
        entries.push(entry);
    }
    Ok(store.put_tree(&Tree::new(entries)?)?)
}

/// Ownership for a directory only one package populates: walk its tree
/// (reading, not writing) to list the paths.
fn record_unmerged(
    store: &dyn Store,
    tree: &Hash,
    prefix: &str,
    nevra: &str,
    owners: &mut BTreeMap<String, Vec<String>>,
) -> Result<(), AssembleError> {
    for e in store.get_tree(tree)?.into_entries() {
        let path = format!("{prefix}/{}", e.name);
        owners.insert(path.clone(), vec![nevra.to_string()]);
        if let Node::Directory { tree } = &e.node {
            record_unmerged(store, tree, &path, nevra, owners)?;
        }
    }
    Ok(())
}

/// The `assemble` builder: merges the `pkg:NEVRA` input trees into the OS
/// tree, with the ownership manifest and the scriptlets not run as blobs.
pub fn build(cx: &super::BuildCx) -> Result<Output, super::Error> {
    let mut packages = Vec::new();
    let mut scriptlets = Vec::new();
    let epoch: i64 = serde_json::from_value(cx.param("epoch")?.clone())?;
    let install_time = epoch.clamp(0, u32::MAX as i64) as u32;
    let run_scriptlets = cx
        .drv
        .params
        .get("scriptlets")
        .and_then(|v| v.as_bool())
        .unwrap_or(true);
    let mut installed = Vec::new();
    let mut transaction = Vec::new();
    for (role, out) in &cx.inputs {
        let Some(nevra) = role.strip_prefix("pkg:") else {
            continue;
        };
        let Root::Tree { hash } = out.root else {
            return Err(format!("assemble: {nevra} is not a tree").into());
        };
        if let Some(m) = out.meta.get("manifest").and_then(|h| Hash::from_hex(h)) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut cx.store.open_blob(&m)?, &mut bytes)?;
            let manifest: super::extract::Manifest = serde_json::from_slice(&bytes)?;
            let mut run = Vec::new();
            for s in manifest.scriptlets {
                // Triggers are read from the header below, with their
                // conditions.
                if run_scriptlets && TRIGGER_KINDS.contains(&s.kind.as_str()) {
                    continue;
                }
                if run_scriptlets && RUN_KINDS.contains(&s.kind.as_str()) {
                    run.push(super::scriptlets::Script {
                        kind: s.kind,
                        program: s.program,
                        body: s.body,
                    });
                } else {
                    scriptlets.push(format!("{nevra} %{}", s.kind));
                }
            }
            transaction.push(super::scriptlets::Package {
                nevra: nevra.to_string(),
                evr: None,
                deps: Default::default(),
                scripts: run,
                triggers: vec![],
            });
        }
        let Some(h) = out.meta.get("headers").and_then(|h| Hash::from_hex(h)) else {
            return Err(format!("assemble: {nevra} has no stored RPM headers").into());
        };
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut cx.store.open_blob(&h)?, &mut bytes)?;
        let headers = RpmHeaders::decode(&bytes, nevra).map_err(|e| e.to_string())?;
        let blob = headers
            .installed(install_time, nevra)
            .map_err(|e| e.to_string())?;
        if let Some(t) = transaction.last_mut().filter(|t| t.nevra == nevra) {
            t.deps = crate::rpmdb::deps(&blob, nevra).map_err(|e| e.to_string())?;
            t.evr = evr_of(nevra, &t.deps.name);
            if run_scriptlets {
                for tr in triggers::read(&blob, nevra).map_err(|e| e.to_string())? {
                    if matches!(tr.when, triggers::When::PreIn | triggers::When::In) {
                        t.triggers.push(tr);
                    } else {
                        scriptlets.push(format!("{nevra} %{}", tr.script.kind));
                    }
                }
            }
        }
        installed.push((nevra.to_string(), blob));
        packages.push(PackageTree {
            nevra: nevra.to_string(),
            name: name_of(nevra).to_string(),
            tree: hash,
        });
    }
    let prefer: BTreeMap<String, String> = serde_json::from_value(cx.param("prefer")?.clone())?;
    // The meta RPM is installed last, after the closure it requires.
    if let Some(meta) = cx.inputs.get("meta") {
        let Root::Blob { hash, .. } = meta.root else {
            return Err("assemble: the meta RPM input is not a file".into());
        };
        let what = meta.meta.get("file").map_or("meta RPM", String::as_str);
        let headers =
            RpmHeaders::read(&mut cx.store.open_blob(&hash)?, what).map_err(|e| e.to_string())?;
        installed.push((
            what.to_string(),
            headers
                .installed(install_time, what)
                .map_err(|e| e.to_string())?,
        ));
    }
    let db = crate::rpmdb::sqlite_bytes(&installed).map_err(|e| e.to_string())?;
    let db = cx.store.put_blob(&mut db.as_slice())?;
    let db_entry = Entry::root_owned("rpmdb.sqlite", Node::file(&db), 0o644);
    let mut a = assemble_with(cx.store, &packages, &prefer, Some((RPMDB_PATH, db_entry)))?;
    let mut failed = Vec::new();
    if transaction
        .iter()
        .any(|t| !t.scripts.is_empty() || !t.triggers.is_empty())
    {
        let (tree, report) = super::scriptlets::run(
            cx.store,
            &a.tree,
            &a.owners,
            &transaction,
            epoch,
            super::scriptlets::Limits::from_env(),
            &format!("/{}/rpmdb.sqlite", RPMDB_PATH.join("/")),
        )?;
        for l in report.log.into_iter().chain(report.notes) {
            cx.log(l);
        }
        cx.log(format!(
            "{} scriptlets run ({} of them before the checkpoint resumed from), {} failed",
            report.ran,
            report.resumed,
            report.failed.len()
        ));
        a.tree = tree;
        failed = report.failed;
    } else {
        a.tree = super::scriptlets::without_unmade_dirs(cx.store, &a.tree, &transaction)?;
    }
    let manifest = cx
        .store
        .put_blob(&mut manifest_json(&a.owners).as_slice())?;
    let not_run = cx
        .store
        .put_blob(&mut serde_json::to_vec(&scriptlets)?.as_slice())?;
    let failed = cx
        .store
        .put_blob(&mut serde_json::to_vec(&failed)?.as_slice())?;
    cx.log(format!(
        "{} packages, {} paths, {} headers in /var/lib/rpm/rpmdb.sqlite; {} scriptlets not run",
        packages.len(),
        a.owners.len(),
        installed.len(),
        scriptlets.len()
    ));
    for s in &scriptlets {
        cx.log(format!("not run: {s}"));
    }
    Ok(Output {
        root: Root::Tree { hash: a.tree },
        meta: BTreeMap::from([
            ("manifest".to_string(), manifest.hash.to_hex()),
            ("scriptlets-not-run".to_string(), not_run.hash.to_hex()),
            ("scriptlets-failed".to_string(), failed.hash.to_hex()),
        ]),
    })
}

/// The scriptlets a fresh install runs (erase-time ones are recorded as
/// not run, and so are erase-time triggers).
const RUN_KINDS: &[&str] = &["pretrans", "pre", "post", "posttrans"];

/// The manifest's kinds for trigger scripts (read from the header instead).
const TRIGGER_KINDS: &[&str] = &["trigger", "filetrigger", "transfiletrigger"];

/// Where the rpm database goes (the directories rpm's own package owns;
/// made root-owned 0755 when no package ships them).
const RPMDB_PATH: &[&str] = &["var", "lib", "rpm"];

/// The epoch, version and release of a `name-[epoch:]version-release.arch`
/// label whose name is `name`.
fn evr_of(nevra: &str, name: &str) -> Option<Evr> {
    let no_arch = nevra.rsplit_once('.').map_or(nevra, |(a, _)| a);
    Evr::parse(no_arch.strip_prefix(name)?.strip_prefix('-')?).ok()
}

/// `name` of a `name-[epoch:]version-release.arch` label: version and
/// release never contain `-`, names may.
fn name_of(nevra: &str) -> &str {
    let no_arch = nevra.rsplit_once('.').map_or(nevra, |(a, _)| a);
    let mut parts = no_arch.rsplitn(3, '-');
    let (_, _, name) = (parts.next(), parts.next(), parts.next());
    name.unwrap_or(nevra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_of_nevra() {
        assert_eq!(name_of("bash-4.1.2-29.el6.x86_64"), "bash");
        assert_eq!(
            name_of("openssh-server-5.3p1-94.el6.x86_64"),
            "openssh-server"
        );
        assert_eq!(name_of("perl-4:5.10.1-136.el6.x86_64"), "perl");
    }
    use crate::store::MemStore;

    fn file(store: &MemStore, name: &str, content: &str) -> Entry {
        let b = store.put_blob(&mut content.as_bytes()).unwrap();
        Entry::root_owned(name, Node::file(&b), 0o644)
    }

    fn dir(store: &MemStore, name: &str, entries: Vec<Entry>) -> Entry {
        let t = store.put_tree(&Tree::new(entries).unwrap()).unwrap();
        Entry::root_owned(name, Node::Directory { tree: t }, 0o755)
    }

    fn pkg(store: &MemStore, name: &str, entries: Vec<Entry>) -> PackageTree {
        PackageTree {
            nevra: format!("{name}-1-1.x86_64"),
            name: name.into(),
            tree: store.put_tree(&Tree::new(entries).unwrap()).unwrap(),
        }
    }

    #[test]
    fn merges_shared_directories_and_reuses_unshared_trees() {
        let s = MemStore::new();
        let bin_a = dir(&s, "bin", vec![file(&s, "bash", "bash")]);
        let lib_a = dir(&s, "lib", vec![file(&s, "libc.so", "libc")]);
        let bin_b = dir(&s, "bin", vec![file(&s, "ls", "ls")]);
        let a = pkg(&s, "a", vec![bin_a, lib_a.clone()]);
        let b = pkg(&s, "b", vec![bin_b]);
        let trees_before = s.tree_count();
        let out = assemble(&s, &[a, b], &BTreeMap::new()).unwrap();
        let root = s.get_tree(&out.tree).unwrap();
        // /lib is only in `a`: its tree hash is reused as is.
        assert_eq!(root.get("lib").unwrap().node, lib_a.node);
        let Node::Directory { tree } = &root.get("bin").unwrap().node else {
            panic!()
        };
        let names: Vec<_> = s
            .get_tree(tree)
            .unwrap()
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, ["bash", "ls"]);
        // New objects: the merged /bin and the root only.
        assert_eq!(s.tree_count(), trees_before + 2);
        assert_eq!(out.owners["/bin"], ["a-1-1.x86_64", "b-1-1.x86_64"]);
        assert_eq!(out.owners["/lib/libc.so"], ["a-1-1.x86_64"]);
        assert_eq!(out.owners["/bin/ls"], ["b-1-1.x86_64"]);
    }

    #[test]
    fn identical_files_are_shared_and_differing_ones_conflict() {
        let s = MemStore::new();
        let a = pkg(&s, "a", vec![dir(&s, "etc", vec![file(&s, "x", "same")])]);
        let b = pkg(&s, "b", vec![dir(&s, "etc", vec![file(&s, "x", "same")])]);
        let c = pkg(&s, "c", vec![dir(&s, "etc", vec![file(&s, "x", "other")])]);
        let ok = assemble(&s, &[a, b], &BTreeMap::new()).unwrap();
        assert_eq!(ok.owners["/etc/x"], ["a-1-1.x86_64", "b-1-1.x86_64"]);

        let a = pkg(&s, "a", vec![dir(&s, "etc", vec![file(&s, "x", "same")])]);
        let err = assemble(&s, &[a, c], &BTreeMap::new()).err().unwrap();
        assert_eq!(
            err.to_string(),
            "file conflict at /etc/x: a-1-1.x86_64 and c-1-1.x86_64 ship different contents"
        );
        let a = pkg(&s, "a", vec![dir(&s, "etc", vec![file(&s, "x", "same")])]);
        let c = pkg(&s, "c", vec![dir(&s, "etc", vec![file(&s, "x", "other")])]);
        let prefer = BTreeMap::from([("/etc/x".to_string(), "c".to_string())]);
        let won = assemble(&s, &[a, c], &prefer).unwrap();
        assert_eq!(won.owners["/etc/x"], ["c-1-1.x86_64"]);
    }
}

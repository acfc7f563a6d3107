//! `cvmbuild diff` speed on two releases of a 1,000-package closure:
//!
//! 1. closure + derivation diff: two specs (500-name shopping lists, kernel,
//!    initrd, images, CernVM-FS) with locks of 1,000 packages, B with 50
//!    packages upgraded, 2 added, 1 removed, a changed repository, a pin
//!    dropped and the initrd compression changed. Timed with and without
//!    loading (offline evaluation of both specs).
//! 2. file diff: both OS trees assembled (by the real assemble builder) in
//!    an in-memory store from 1,000 package trees of 100 files each (100,000
//!    files); B changes one file in each of 50 packages, adds 2 packages,
//!    removes 1. Reports tree objects read against the trees reachable.
//!    (In memory because storing ~12,000 tree objects in an `FsStore`, one
//!    fsync each, takes minutes on a shared disk; the count of objects read
//!    is the same for any store.)
//!
//! Run: `cargo bench --bench diff`

use cvmbuild::builders::assemble::{assemble, manifest_json, PackageTree};
use cvmbuild::diff::{self, files, Report};
use cvmbuild::eval::{plan, spec};
use cvmbuild::lock::{BranchLock, LockFile, LockedPackage, RepoLock};
use cvmbuild::store::{BlobRef, Entry, Hash, MemStore, Node, Output, Root, Store, Tree};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

const PACKAGES: usize = 1000;

/// Package `i`'s version in A (`upgraded` bumps the release in B).
fn package(i: usize, upgraded: bool) -> LockedPackage {
    let release = if upgraded { "2.el6" } else { "1.el6" };
    LockedPackage {
        name: format!("pkg{i}"),
        epoch: 0,
        version: format!("1.{i}"),
        release: release.into(),
        arch: "x86_64".into(),
        repo: "os".into(),
        location: format!("Packages/pkg{i}-1.{i}-{release}.x86_64.rpm"),
        checksum: format!("sha256:{:064x}", i * 2 + upgraded as usize),
        size: 100_000 + i as u64 + if upgraded { 512 } else { 0 },
        signer: None,
    }
}

fn in_b(i: usize) -> bool {
    i != 999 // removed in B
}

fn upgraded(i: usize) -> bool {
    i % 20 == 3 // 50 packages
}

/// Writes `dir/NAME.cvm` and a lock that answers it.
fn write_release(dir: &Path, name: &str, b: bool) -> String {
    let mut groups = String::new();
    for g in 0..5 {
        let names: Vec<String> = (0..100)
            .map(|i| format!("\"pkg{}\"", g * 100 + i))
            .collect();
        groups += &format!("let g{g} = [{}]\n", names.join(", "));
    }
    std::fs::write(dir.join(format!("{name}-groups.cvm")), groups).unwrap();
    let (extra, pins, compression) = if b {
        (r#" ++ ["pkg1000", "pkg1001"]"#, "", "xz")
    } else {
        ("", r#"pkg7 = ">= 1.0""#, "gzip")
    };
    let path = dir.join(format!("{name}.cvm"));
    std::fs::write(
        &path,
        format!(
            r##"
let g = import "{name}-groups.cvm"
let os = repo {{ name = "os", url = "https://mirror.example/os" }}
branch main = release {{
  name = "big-system"  version = "1.0.0.0"  arch = "x86_64"
  repos = [os]
  packages = g.g0 ++ g.g1 ++ g.g2 ++ g.g3 ++ g.g4{extra}
  pins = {{ {pins} }}
  kernel = {{ package = "pkg0", modules = ["virtio_net"] }}
  initrd = {{ init = "#!/bin/sh", packages = ["pkg1"], compression = "{compression}" }}
  images = [{{ format = "iso" }}, {{ format = "raw", size = "2G" }}]
  cvmfs = {{ repository = "big.example.org" }}
}}
"##
        ),
    )
    .unwrap();
    let closure: Vec<LockedPackage> = (0..PACKAGES + 2)
        .filter(|&i| if b { in_b(i) } else { i < PACKAGES })
        .map(|i| package(i, b && upgraded(i)))
        .collect();
    let metadata = if b { "b" } else { "a" }.repeat(64);
    let rel = spec::releases(&cvmbuild::lang::load(&path).unwrap())
        .unwrap()
        .remove(0);
    let solve = plan::solve_derivation(&rel, std::slice::from_ref(&metadata));
    let lock = BranchLock {
        solve: solve.id().0,
        spec: plan::spec_hash(&solve),
        optimal: true,
        repo: vec![RepoLock {
            name: "os".into(),
            url: "https://mirror.example/os".into(),
            metadata,
            gpgkeys: vec![],
        }],
        package: closure,
    };
    LockFile {
        version: cvmbuild::lock::VERSION,
        branch: BTreeMap::from([("main".to_string(), lock)]),
    }
    .write(&cvmbuild::lock::path_for(&path))
    .unwrap();
    path.display().to_string()
}

fn median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0])
}

fn graphs(dir: &Path) {
    let a = write_release(dir, "a", false);
    let b = write_release(dir, "b", true);
    let (mut with_load, mut diff_only) = (Vec::new(), Vec::new());
    let mut summary = String::new();
    for _ in 0..10 {
        let t = Instant::now();
        let (sa, sb) = {
            let none = diff::Lookup::default();
            (
                diff::load(&a, &none).unwrap(),
                diff::load(&b, &none).unwrap(),
            )
        };
        let t2 = Instant::now();
        let r = Report::new(&sa, &sb).unwrap();
        let done = Instant::now();
        with_load.push((done - t).as_secs_f64() * 1e3);
        diff_only.push((done - t2).as_secs_f64() * 1e3);
        summary = format!(
            "{} package changes, {} outputs differ, {} nodes in the cause graph",
            r.closure.changes.len(),
            r.derivations.roots.len(),
            r.derivations.nodes.len()
        );
    }
    let (m, min) = median(diff_only);
    let (ml, minl) = median(with_load);
    println!("closure + derivation diff, 1000 packages ({summary}):");
    println!("  diff alone:          median {m:.1} ms, min {min:.1} ms (target < 1000 ms)");
    println!("  load both + diff:    median {ml:.1} ms, min {minl:.1} ms");
}

fn file(name: &str, b: BlobRef) -> Entry {
    Entry::root_owned(name, Node::file(&b), 0o644)
}

fn dir(store: &dyn Store, name: &str, entries: Vec<Entry>) -> Entry {
    Entry::root_owned(
        name,
        Node::Directory {
            tree: store.put_tree(&Tree::new(entries).unwrap()).unwrap(),
        },
        0o755,
    )
}

/// Package `i`: `/usr/bin/pkgI` and `/usr/share/pkgI/dD/fF` (10 × 10 files).
/// Contents come from a pool of 100 blobs (plus `changed`) so the store
/// stays small; names are unique, so every package tree is distinct.
fn package_tree(store: &dyn Store, blobs: &[BlobRef], i: usize, changed: Option<BlobRef>) -> Hash {
    let share: Vec<Entry> = (0..10)
        .map(|d| {
            let files = (0..10)
                .map(|f| {
                    let content = match changed {
                        Some(c) if d == 0 && f == 0 => c,
                        _ => blobs[(i + d * 10 + f) % blobs.len()],
                    };
                    file(&format!("pkg{i}_f{f}"), content)
                })
                .collect();
            dir(store, &format!("d{d}"), files)
        })
        .collect();
    let bin = file(&format!("pkg{i}"), blobs[i % blobs.len()]);
    let usr = vec![
        dir(store, "bin", vec![bin]),
        dir(store, "share", vec![dir(store, &format!("pkg{i}"), share)]),
    ];
    store
        .put_tree(&Tree::new(vec![dir(store, "usr", usr)]).unwrap())
        .unwrap()
}

fn os_tree(store: &dyn Store, pkgs: &[PackageTree]) -> Output {
    let a = assemble(store, pkgs, &BTreeMap::new()).unwrap();
    let m = store
        .put_blob(&mut manifest_json(&a.owners).as_slice())
        .unwrap();
    Output {
        root: Root::Tree { hash: a.tree },
        meta: BTreeMap::from([("manifest".to_string(), m.hash.to_hex())]),
    }
}

fn trees() {
    let store = MemStore::new();
    let blobs: Vec<BlobRef> = (0..100)
        .map(|k| {
            store
                .put_blob(&mut format!("content {k}\n").as_bytes())
                .unwrap()
        })
        .collect();
    let changed_blob = store.put_blob(&mut &b"changed"[..]).unwrap();
    let t = Instant::now();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for i in 0..PACKAGES + 2 {
        let p = |changed: bool| PackageTree {
            nevra: format!("pkg{i}-1.{i}-1.el6.x86_64"),
            name: format!("pkg{i}"),
            tree: package_tree(&store, &blobs, i, changed.then_some(changed_blob)),
        };
        if i < PACKAGES {
            a.push(p(false));
        }
        if in_b(i) {
            b.push(p(upgraded(i)));
        }
    }
    let (oa, ob) = (os_tree(&store, &a), os_tree(&store, &b));
    eprintln!("(built both trees in {:.1} s)", t.elapsed().as_secs_f64());
    let root = |o: &Output| match o.root {
        Root::Tree { hash } => hash,
        Root::Blob { .. } => unreachable!(),
    };
    let (ta, tb) = (
        files::count_trees(&store, &root(&oa)).unwrap(),
        files::count_trees(&store, &root(&ob)).unwrap(),
    );
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..10 {
        let t = Instant::now();
        let d = files::diff(&store, &oa, &ob).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        last = Some(d);
    }
    let d = last.unwrap();
    let (m, min) = median(times);
    let count = |c: files::Change| d.changes.iter().filter(|x| x.change == c).count();
    println!(
        "file diff, 100,000 files per tree: {} added, {} removed, {} changed paths",
        count(files::Change::Added),
        count(files::Change::Removed),
        count(files::Change::Changed)
    );
    println!(
        "  tree objects read: {} of {} (A: {ta}, B: {tb} reachable); median {m:.1} ms, min {min:.1} ms",
        d.trees_read,
        ta + tb
    );
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    graphs(dir.path());
    trees();
}

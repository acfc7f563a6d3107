//! `realize` against a real store through the `cvmbuild` binary: cold and
//! no-op builds, a one-package change, garbage collection, `store verify`,
//! `show ID` and the reproducible tarball.

use crate::support::fixture as realize_util;

use cvmbuild::store::{FsStore, Hash, Node, Store};
use realize_util::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;

/// Every path of a stored tree -> (tree hash for directories, blob or
/// target otherwise).
fn walk(store: &FsStore, root: &Hash) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), *root)];
    while let Some((rel, h)) = stack.pop() {
        out.insert(rel.clone(), format!("tree {h}"));
        for e in store.get_tree(&h).unwrap().entries() {
            let p = format!("{rel}/{}", e.name);
            match &e.node {
                Node::Directory { tree } => stack.push((p, *tree)),
                other => {
                    out.insert(p, format!("{other:?} {:o}", e.mode));
                }
            }
        }
    }
    out
}

fn root_ids(f: &Fixture) -> BTreeMap<String, String> {
    let out = f.run(&["root", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            assert_eq!(v[1], "drv", "{l}");
            (v[0].to_string(), v[2].to_string())
        })
        .collect()
}

#[test]
fn cold_then_noop_realize_answers_without_the_repositories() {
    let f = Fixture::new();
    let (out1, err1) = f.realize(&[]);
    let built1 = built(&err1);
    let fetched = built1.iter().filter(|n| n.starts_with("fetch:")).count();
    let lock = fs::read_to_string(f.path("cernvm/cernvm.lock")).unwrap();
    assert!(fetched > 20, "{err1}");
    assert_eq!(
        fetched,
        built1.iter().filter(|n| n.starts_with("extract:")).count()
    );
    assert!(built1.contains(&"assemble".to_string()), "{err1}");
    assert!(!lock.is_empty());
    assert_verify_clean(&f.store());

    // Without the repositories (and so without any package file) the second
    // realize must still succeed: it answers from the index alone.
    fs::rename(f.path("repos"), f.path("repos.gone")).unwrap();
    let (out2, err2) = f.realize(&[]);
    assert_eq!(outputs(&out1), outputs(&out2));
    assert!(built(&err2).is_empty(), "{err2}");
    assert!(out2.contains("0 built"), "{out2}");
}

#[test]
fn a_release_differing_in_one_package_builds_only_that_package() {
    let f = Fixture::new();
    let spec = f.path("cernvm/two.cvm");
    let text_spec = fs::read_to_string(f.spec()).unwrap()
        + "\nbranch oldkernel = base // { pins = { kernel = \"2.6.*\" } }\n";
    fs::write(&spec, text_spec).unwrap();
    let realize = |branch: &str| {
        // Same release version on both branches: publishing both would (rightly)
        // be refused, release tags are immutable. This test is about the store.
        let out = f.run(&[
            "realize",
            spec.to_str().unwrap(),
            "--branch",
            branch,
            "--root",
            "os-tree",
            "--root",
            "meta-rpm",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (a_out, _) = realize("production");
    let (b_out, b_err) = realize("oldkernel");
    let b_built: BTreeSet<String> = built(&b_err).into_iter().collect();
    let packages: Vec<&String> = b_built
        .iter()
        .filter(|n| n.starts_with("fetch:") || n.starts_with("extract:"))
        .collect();
    assert_eq!(
        packages,
        [
            "extract:kernel-2.6.32-431.el6.x86_64",
            "fetch:kernel-2.6.32-431.el6.x86_64"
        ],
        "{b_err}"
    );
    assert!(b_built.contains("assemble"), "{b_err}");

    // The two OS trees differ only where the kernel's files are; every
    // other file and directory object is shared.
    let store = FsStore::open(&f.store()).unwrap();
    let a = walk(&store, &Hash::from_hex(&os_tree(&a_out)).unwrap());
    let b = walk(&store, &Hash::from_hex(&os_tree(&b_out)).unwrap());
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let differing: Vec<&str> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        differing,
        [
            "",
            "/boot",
            "/boot/vmlinuz-2.6.32-431.el6.x86_64",
            "/boot/vmlinuz-3.10.0-1.el6.x86_64",
            "/lib",
            "/lib/modules",
            "/lib/modules/2.6.32-431.el6.x86_64",
            "/lib/modules/2.6.32-431.el6.x86_64/modules.dep",
            "/lib/modules/3.10.0-1.el6.x86_64",
            "/lib/modules/3.10.0-1.el6.x86_64/modules.dep",
            // The rpm database lists the other kernel.
            "/var",
            "/var/lib",
            "/var/lib/rpm",
            "/var/lib/rpm/rpmdb.sqlite",
        ]
    );
    assert!(a.len() > 60);
}

#[test]
fn gc_keeps_what_roots_reach_and_collects_the_rest() {
    let f = Fixture::new();
    f.realize(&[]);
    let spec = f.spec();
    let dev = |f: &Fixture| {
        let out = f.run(&[
            "realize",
            spec.to_str().unwrap(),
            "--branch",
            "development",
            "--offline",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let mut b = built(&String::from_utf8(out.stderr).unwrap());
        b.sort();
        b
    };
    // Development shares most packages with production: only its own are
    // built.
    let dev_only = dev(&f);
    assert!(dev_only.iter().any(|n| n.starts_with("extract:xterm")));
    assert!(!dev_only.iter().any(|n| n.starts_with("extract:bash")));

    let roots = root_ids(&f);
    let dev_tree = roots["cernvm-development-os-tree"].clone();
    let objects = |f: &Fixture| -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for d in ["blobs", "trees"] {
            for e in walkdir::WalkDir::new(f.store().join(d)) {
                let e = e.unwrap();
                if e.file_type().is_file() {
                    m.insert(
                        e.file_name().to_string_lossy().into_owned(),
                        e.metadata().unwrap().len(),
                    );
                }
            }
        }
        m
    };

    // Nothing to collect while every realized output is rooted.
    let before = objects(&f);
    let gc = |f: &Fixture, dry: bool| -> serde_json::Value {
        let mut args = vec!["gc", "--json"];
        if dry {
            args.push("--dry-run");
        }
        let out = f.run(&args);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // `update` re-solves, so it parses both repositories into the cache.
    let spec = f.spec();
    let update = || {
        let out = f.run(&["update", spec.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
    };
    update();
    let first = gc(&f, false);
    assert_eq!(first["bytes_freed"], 0);
    assert_eq!(objects(&f), before);

    // The parsed-repodata cache (one entry per repository) stays while it
    // is used; `--cache-days 0` drops it, and the next solve parses again.
    let cache = f.store().join("cache/repodata");
    let entries = || std::fs::read_dir(&cache).unwrap().count();
    assert_eq!(
        (first["cache_entries_removed"].as_u64(), entries()),
        (Some(0), 2)
    );
    let out = f.run(&["gc", "--json", "--cache-days", "0"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["cache_entries_removed"], 2, "{r}");
    assert_eq!((r["bytes_freed"].as_u64(), entries()), (Some(0), 0));
    update();
    assert_eq!(entries(), 2);

    // An explicit root keeps development alive when its realize roots go.
    for r in [
        "cernvm-development-os-tree",
        "cernvm-development-meta-rpm",
        "cernvm-development-publish",
    ] {
        assert!(f.run(&["root", "remove", r]).status.success());
    }
    let add = f.run(&["root", "add", "mine", &dev_tree[..16]]);
    assert!(add.status.success(), "{}", text(&add));
    let mut dry = gc(&f, true);
    assert_eq!(objects(&f), before, "a dry run deletes nothing");
    let r = gc(&f, false);
    assert_eq!(dry["dry_run"], true);
    dry["dry_run"] = false.into();
    assert_eq!(r, dry, "the dry run reports what the real run does");
    // (The meta RPM is an input of the rooted os-tree: its headers are in
    // the tree's rpm database.)
    assert_eq!(
        r["blobs_removed"], 1,
        "only the unrooted publish record: {r}"
    );
    let rebuilt = dev(&f);
    assert!(
        rebuilt
            .iter()
            .all(|n| n.starts_with("meta-rpm") || n.starts_with("publish")),
        "development's os-tree survived: {rebuilt:?}"
    );
    // The meta RPM survives too: it is an input of the rooted os-tree
    // (its header is in the tree's rpm database).
    assert_eq!(rebuilt, ["publish:cernvm-prod.cern.ch"], "{rebuilt:?}");
    assert_verify_clean(&f.store());

    // Without any root for development, its own packages go; what
    // production's closure shares with it stays.
    // (that realize registered development's roots again)
    for r in [
        "mine",
        "cernvm-development-os-tree",
        "cernvm-development-meta-rpm",
        "cernvm-development-publish",
    ] {
        assert!(f.run(&["root", "remove", r]).status.success());
    }
    let before = objects(&f);
    let r = gc(&f, false);
    let after = objects(&f);
    let freed: u64 = before
        .iter()
        .filter(|(k, _)| !after.contains_key(*k))
        .map(|(_, v)| v)
        .sum();
    assert!(freed > 0);
    assert_eq!(r["bytes_freed"], freed, "{r}");
    assert!(r["outputs_unregistered"].as_array().unwrap().len() >= dev_only.len());
    assert_verify_clean(&f.store());
    assert_eq!(
        dev(&f),
        dev_only,
        "exactly development's own packages were collected"
    );
    fs::rename(f.path("repos"), f.path("repos.gone")).unwrap();
    let (_, err) = f.realize(&[]);
    assert!(built(&err).is_empty(), "production untouched: {err}");
}

/// Runs one statement with the sqlite3 tool; its output, trimmed.
fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().unwrap();
    assert!(out.status.success(), "sqlite3 {sql}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn store_verify_reports_damaged_objects_and_records() {
    let f = Fixture::new();
    f.realize(&[]);
    assert_verify_clean(&f.store());
    let blob = walkdir::WalkDir::new(f.store().join("blobs"))
        .into_iter()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().is_file())
        .unwrap()
        .into_path();
    let mut bytes = fs::read(&blob).unwrap();
    bytes.push(b'!');
    fs::write(&blob, bytes).unwrap();
    // Records live in the index's `drvs` table; damage one with sqlite3.
    let index = f.store().join("index.sqlite");
    let rec = sqlite(&index, "SELECT id FROM drvs ORDER BY id LIMIT 1");
    sqlite(
        &index,
        &format!(
            "UPDATE drvs SET json = CAST(replace(CAST(json AS TEXT), '\"name\":\"', '\"name\":\"x') AS BLOB) WHERE id = '{rec}'"
        ),
    );
    let out = f.run(&["store", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let blob_name = blob.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        stdout.contains(&format!("damaged blob {blob_name}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("damaged record {rec}")),
        "{stdout}"
    );
}

#[test]
fn show_and_log_read_the_store_without_the_spec() {
    let f = Fixture::new();
    let (out, _) = f.realize(&[]);
    let tree = os_tree(&out);
    let id = root_ids(&f)["cernvm-production-os-tree"].clone();
    fs::rename(f.path("cernvm"), f.path("cernvm.gone")).unwrap();
    let show = f.run(&["show", &id[..10]]);
    assert!(show.status.success(), "{}", text(&show));
    let s = String::from_utf8(show.stdout).unwrap();
    assert!(s.starts_with(&format!("{id}  assemble\n")), "{s}");
    assert!(s.contains("input pkg:bash-"), "{s}");
    assert!(s.contains(&tree), "the output is shown: {s}");
    let json = f.run(&["show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v[&id]["name"], "assemble");
    let log = f.run(&["log", &id[..10]]);
    assert!(log.status.success(), "{}", text(&log));
    assert!(String::from_utf8_lossy(&log.stdout).contains("packages"));
    let none = f.run(&["show", "0000000000"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("neither a spec file nor a derivation"));
}

fn tar_tv(file: &Path, numeric: bool) -> String {
    let mut c = Command::new("tar");
    if numeric {
        c.arg("--numeric-owner");
    }
    let out = c
        .args(["--full-time", "-tvf"])
        .arg(file)
        .env("TZ", "UTC")
        .output()
        .expect("GNU tar is installed");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn tarball_is_reproducible_and_holds_the_tree() {
    let f = Fixture::new();
    let a = f.path("a.tar");
    f.realize(&[
        "--tar",
        a.to_str().unwrap(),
        "--out",
        f.path("out").to_str().unwrap(),
    ]);
    // A second, independent store gives the same bytes.
    let g = Fixture::new();
    let b = g.path("b.tar");
    g.realize(&["--tar", b.to_str().unwrap()]);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());

    let listing = tar_tv(&a, true);
    let lines: Vec<&str> = listing.lines().collect();
    assert!(lines.len() > 60);
    for l in &lines {
        let f: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(f[1], "0/0", "{l}");
        assert_eq!(&f[3..5], ["2014-05-13", "16:53:20"], "{l}");
    }
    assert!(tar_tv(&a, false).contains("root/root"));
    // Sorted: each directory before its contents, siblings by name.
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert!(names.contains(&"bin/sh"));
    assert!(listing.contains("bin/sh -> bash"));
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.split('/').map(str::to_string).collect::<Vec<_>>());
    assert_eq!(names, sorted);

    // Extracted, it equals the directory export.
    let x = f.path("x");
    fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("-xf")
        .arg(&a)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&x)
        .arg(f.path("out"))
        .output()
        .unwrap();
    assert!(diff.status.success(), "{}", text(&diff));

    // SOURCE_DATE_EPOCH overrides the release's epoch.
    let c = f.path("c.tar");
    let out = crate::support::cvmbuild(f.dir.path())
        .args(["--store", f.store().to_str().unwrap(), "realize"])
        .arg(f.spec())
        .args([
            "--branch",
            "production",
            "--offline",
            "--tar",
            c.to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", "1500000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(tar_tv(&c, true).contains("2017-07-14 02:40:00"));
    assert_ne!(fs::read(&a).unwrap(), fs::read(&c).unwrap());
}

#[test]
fn dry_run_lists_fetches_with_sizes_and_builds_nothing() {
    let f = Fixture::new();
    let out = f.run(&[
        "realize",
        f.spec().to_str().unwrap(),
        "--branch",
        "production",
        "--offline",
        "--dry-run",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let s = String::from_utf8(out.stdout).unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with("would build fetch:bash-"))
        .expect("bash is fetched");
    let nevra = line["would build fetch:".len()..]
        .split(' ')
        .next()
        .unwrap();
    let rpm = f.path(&format!("repos/sl6/Packages/{}.rpm", nevra));
    let size = fs::metadata(&rpm).unwrap().len();
    assert!(line.ends_with(&format!("({size} bytes)")), "{line}");
    let blobs = walkdir::WalkDir::new(f.store().join("blobs"))
        .into_iter()
        .filter(|e| e.as_ref().unwrap().file_type().is_file())
        .count();
    assert_eq!(blobs, 0, "a dry run stores nothing");
}

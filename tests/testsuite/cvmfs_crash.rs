//! `kill -9` during a republish: whatever instant the publishing
//! `cvmbuild realize` dies at, the Stratum-0 directory serves either the
//! previous manifest or the new one, never a manifest that names a missing
//! or damaged object, and the next realize publishes the new release.

use crate::support::fixture as realize_util;

use cvmbuild::cvmfs;
use realize_util::{text, Fixture};
use sha1::{Digest as _, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The bundled example's CernVM-FS repository (both branches publish to it).
const FQRN: &str = "cernvm-prod.cern.ch";

/// Reads `data/XX/REST{suffix}`, checks that the stored bytes hash to the
/// object's name, and returns them inflated.
fn object(repo: &Path, hash: &str, suffix: &str, what: &str) -> Vec<u8> {
    let p = repo
        .join("data")
        .join(&hash[..2])
        .join(format!("{}{suffix}", &hash[2..]));
    let stored = std::fs::read(&p)
        .unwrap_or_else(|e| panic!("{what}: manifest references {}: {e}", p.display()));
    assert_eq!(
        hex::encode(Sha1::digest(&stored)),
        hash,
        "{what}: {} does not hash to its name",
        p.display()
    );
    cvmfs::inflate(&stored).unwrap_or_else(|e| panic!("{what}: {}: {e}", p.display()))
}

/// The manifest's fields by letter (the part before the signature).
fn fields(manifest: &[u8]) -> BTreeMap<char, String> {
    let end = manifest
        .windows(4)
        .position(|w| w == b"\n--\n")
        .expect("a signed manifest");
    std::str::from_utf8(&manifest[..end])
        .unwrap()
        .lines()
        .filter_map(|l| l.chars().next().map(|c| (c, l[c.len_utf8()..].to_string())))
        .collect()
}

/// Checks that every object the current manifest references exists and
/// hashes to its name: root and nested catalogs, every file (or chunk) they
/// list, the certificate, the history database and the meta-info object if
/// any. Returns the manifest and the number of objects checked.
fn check_repo(repo: &Path, work: &Path) -> (Vec<u8>, usize) {
    let manifest = std::fs::read(repo.join(".cvmfspublished")).unwrap();
    let m = fields(&manifest);
    let mut checked = 0;
    object(repo, &m[&'X'], "X", "certificate");
    object(repo, &m[&'H'], "H", "history");
    checked += 2;
    if let Some(meta) = m.get(&'M') {
        object(repo, meta, "M", "meta-info");
        checked += 1;
    }
    let mut catalogs = vec![(String::from("/"), m[&'C'].clone())];
    let mut files = BTreeSet::new();
    while let Some((path, hash)) = catalogs.pop() {
        let db = work.join(format!("{hash}.db"));
        std::fs::write(&db, object(repo, &hash, "C", &format!("catalog {path}"))).unwrap();
        checked += 1;
        let c = rusqlite::Connection::open(&db).unwrap();
        let nested: Vec<(String, String)> = c
            .prepare("SELECT path, sha1 FROM nested_catalogs")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        catalogs.extend(nested);
        let mut blobs = |sql: &str, suffix: &'static str| {
            let hashes: Vec<Vec<u8>> = c
                .prepare(sql)
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            files.extend(hashes.into_iter().map(|h| (hex::encode(h), suffix)));
        };
        blobs("SELECT hash FROM catalog WHERE hash IS NOT NULL", "");
        blobs("SELECT hash FROM chunks", "P");
        drop(c);
        std::fs::remove_file(&db).unwrap();
    }
    for (hash, suffix) in &files {
        object(repo, hash, suffix, "file");
    }
    (manifest, checked + files.len())
}

/// How many files `data/` holds.
fn data_files(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("data"))
        .unwrap()
        .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
        .sum()
}

fn revision(manifest: &[u8]) -> u64 {
    fields(manifest)[&'S'].parse().unwrap()
}

#[test]
fn killed_republish_never_exposes_missing_objects() {
    let fx = Fixture::new();
    let store = fx.store();
    let repo: PathBuf = store.join("cvmfs").join(FQRN);
    let work = tempfile::tempdir().unwrap();

    // Release 1: production, published.
    fx.realize(&[]);
    let (first, n) = check_repo(&repo, work.path());
    assert!(n > 40, "only {n} objects in the first release");

    // Build the development branch's tree first, so the runs killed below
    // spend their time publishing rather than extracting.
    let spec = fx.spec();
    let spec = spec.to_str().unwrap();
    let dev = ["realize", spec, "--branch", "development", "--offline"];
    let out = fx.run(&[&dev[..], &["--root", "os-tree"]].concat());
    assert!(out.status.success(), "{}", text(&out));

    // Kill the republish after growing delays until one run finishes.
    let mut seen = BTreeSet::from([first.clone()]);
    let mut killed = 0;
    // Kills that hit after new objects went in but before the manifest.
    let mut mid_publish = 0;
    let before = data_files(&repo);
    let mut delay_ms = 5.0f64;
    let finished = loop {
        assert!(delay_ms < 60_000.0, "the republish never finished");
        let mut child = crate::support::cvmbuild(store.parent().unwrap())
            .arg("--store")
            .arg(&store)
            .args(dev)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((delay_ms * 1000.0) as u64));
        let done = child.try_wait().unwrap();
        if done.is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        let status = child.wait().unwrap();
        let (manifest, _) = check_repo(&repo, work.path());
        if done.is_none() && manifest == first && data_files(&repo) > before {
            mid_publish += 1;
        }
        seen.insert(manifest);
        if done.is_some() {
            assert!(status.success(), "the republish failed: {status}");
            break delay_ms;
        }
        delay_ms *= 1.25;
    };
    eprintln!(
        "{killed} runs killed, {mid_publish} mid-publish; one finished after {finished:.0} ms"
    );
    assert!(
        killed >= 3,
        "only {killed} runs killed before one finished after {finished:.0} ms"
    );
    // Delays grow geometrically, so some kill lands inside the publish
    // step whatever the machine's speed; otherwise this test proves nothing.
    assert!(
        mid_publish >= 1,
        "no kill landed while objects were being written"
    );

    // A following realize completes (a no-op if a run got through) and the
    // repository serves the new release, revision + 1.
    let out = fx.run(&dev);
    assert!(out.status.success(), "{}", text(&out));
    let (last, _) = check_repo(&repo, work.path());
    assert_eq!(revision(&last), revision(&first) + 1);
    assert_ne!(fields(&last)[&'C'], fields(&first)[&'C']);
    seen.remove(&first);
    seen.remove(&last);
    assert!(
        seen.is_empty(),
        "a killed run left a manifest that is neither the old nor the new one"
    );
}

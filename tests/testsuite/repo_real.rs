//! Loading the real repodata under `../shared/data` (read-only; the tests
//! fail, not skip, when it is missing).

use cvmbuild::repo::{load, load_filelists, Dep, Op, RepoError, RepoSource, SimpleDep};
use std::path::PathBuf;

fn data(name: &str) -> RepoSource {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")).join(name);
    assert!(
        dir.join("repodata/repomd.xml").is_file(),
        "shared test data missing: {} (clone the project next to `shared/`)",
        dir.display()
    );
    RepoSource {
        name: name.to_string(),
        url: dir.display().to_string(),
        priority: 99,
        cost: 1000,
    }
}

#[test]
fn opensuse_universe() {
    let pool = load(&[data("opensuse-11.0-factory")], None).unwrap();
    assert_eq!(pool.packages.len(), 12_690);
    let requires: usize = pool.packages.iter().map(|p| p.requires.len()).sum();
    let provides: usize = pool.packages.iter().map(|p| p.provides.len()).sum();
    let conflicts: usize = pool.packages.iter().map(|p| p.conflicts.len()).sum();
    let obsoletes: usize = pool.packages.iter().map(|p| p.obsoletes.len()).sum();
    // Counted independently with Python's ElementTree over the same
    // primary.xml. (The data's README gives 164,964 requires and 116,424
    // provides: figures of the susetags original, not of this conversion.)
    assert_eq!(
        (requires, provides, conflicts, obsoletes),
        (164_523, 116_034, 518, 2_630)
    );
    let bash = pool.names.get("bash").unwrap();
    assert!(!pool.named(bash).is_empty());
    let sh = SimpleDep {
        name: pool.names.get("/bin/sh").unwrap(),
        range: None,
    };
    let owners: Vec<String> = pool
        .whatprovides(&sh)
        .into_iter()
        .map(|id| pool.name(pool.package(id).name).to_string())
        .collect();
    assert!(owners.iter().any(|n| n == "bash"), "{owners:?}");
    assert_eq!(pool.repos[0].metadata_hash.len(), 64);
}

#[test]
fn tizen_hash_prefixed_primary() {
    let pool = load(&[data("tizen-serranove")], None).unwrap();
    assert_eq!(pool.packages.len(), 592);
    let setup = pool.names.get("setup").unwrap();
    let p = pool.package(pool.named(setup)[0]);
    assert_eq!(p.evr.to_string(), "0.1-7.1.slp");
    assert_eq!(&*p.location, "noarch/setup-0.1.rpm");
    assert_eq!(p.size_package, 17990);
    assert_eq!(p.size_installed, 32670);
    assert_eq!(&*p.checksum.kind, "sha256");
    assert!(p.files.iter().any(|&f| pool.name(f) == "/etc/profile"));
    let cfg = pool.names.get("config(setup)").unwrap();
    assert!(p.requires.iter().any(|d| matches!(d,
        Dep::Simple(SimpleDep { name, range: Some(r) }) if *name == cfg && r.op == Op::Eq)));
}

#[test]
fn two_repositories_share_one_interner() {
    let pool = load(
        &[data("tizen-serranove"), data("opensuse-11.0-factory")],
        None,
    )
    .unwrap();
    assert_eq!(pool.packages.len(), 592 + 12_690);
    assert_eq!(pool.repos.len(), 2);
    let bash = pool.names.get("bash").unwrap();
    let repos: Vec<u16> = pool
        .named(bash)
        .iter()
        .map(|&id| pool.package(id).repo.0)
        .collect();
    assert!(repos.contains(&0) && repos.contains(&1), "{repos:?}");
    // Names from the second repository resolve to the same strings.
    let p = pool.package(*pool.named(bash).last().unwrap());
    assert_eq!(pool.name(p.name), "bash");
    assert!(p.requires.iter().all(|d| !pool.dep_to_string(d).is_empty()));
}

#[test]
fn missing_filelists_file_is_reported() {
    // repomd lists filelists, but the file was not kept.
    let mut pool = load(&[data("tizen-serranove")], None).unwrap();
    let err = load_filelists(&mut pool, &["/usr/bin/nothing"]).unwrap_err();
    assert!(matches!(err, RepoError::Missing { .. }), "{err}");
    assert!(err.to_string().contains("filelists.xml.gz"), "{err}");
}

#[test]
fn repositories_from_the_cache_share_one_interner() {
    let cache = tempfile::tempdir().unwrap();
    let sources = [data("tizen-serranove"), data("opensuse-11.0-factory")];
    let parsed = load(&sources, Some(cache.path())).unwrap();
    let cached = load(&sources, Some(cache.path())).unwrap();
    assert_eq!(
        cached.names.len(),
        parsed.names.len(),
        "no name interned twice"
    );
    assert_eq!(cached.packages, parsed.packages);
    let bash = cached.names.get("bash").unwrap();
    let dep = SimpleDep {
        name: bash,
        range: None,
    };
    let repos: Vec<u16> = cached
        .whatprovides(&dep)
        .iter()
        .map(|&id| cached.package(id).repo.0)
        .collect();
    assert!(repos.contains(&0) && repos.contains(&1), "{repos:?}");
}

#[test]
fn file_requires_nothing_provides() {
    let pool = load(&[data("opensuse-11.0-factory")], None).unwrap();
    let missing = cvmbuild::repo::unprovided_file_requires(&pool);
    // openSUSE 11.0 lists every file dependency's target in primary but
    // one (a stale dependency on an older python).
    assert_eq!(missing, ["/usr/bin/python2.4"]);
}

//! The full round trip with an independent reader: `cvmbuild realize` of
//! both branches of the bundled example publishes two releases into one
//! repository; the repository is served by nginx (Debian's) on loopback
//! and read back with the `cvmfs` crate (one open: it is slow), and every
//! entry of both releases (kind, mode, symlink target, content) matches the
//! exported OS tree; `promote` then moves `production`.
//!
//! The reader's path lookup canonicalises paths against the host's own file
//! system, so directories are listed by the MD5 of their path instead.

use cvmfs::directory_entry::DirectoryEntry;
use cvmfs::fetcher::Fetcher;
use cvmfs::repository::Repository;
use md5::{Digest as _, Md5};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SPEC: &str = "examples/cernvm/cernvm.cvm";
const FQRN: &str = "cernvm-prod.cern.ch";

fn cvmbuild(store: &Path, args: &[&str]) -> String {
    let out = crate::support::cvmbuild(store.parent().unwrap())
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cvmbuild {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// What an entry is, comparable between the reader and the file system.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Other(u32),
}

/// path -> (permission bits, kind) of an exported tree.
fn local_tree(root: &Path) -> BTreeMap<String, (u32, Kind)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let rel = format!("/{}", e.path().strip_prefix(root).unwrap().display());
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink(std::fs::read_link(e.path()).unwrap().display().to_string())
        } else if ft.is_file() {
            Kind::File(std::fs::read(e.path()).unwrap())
        } else {
            Kind::Other(md.permissions().mode() & 0o170000)
        };
        let perm = if ft.is_symlink() {
            0o777
        } else {
            md.permissions().mode() & 0o7777
        };
        out.insert(rel, (perm, kind));
    }
    out
}

fn md5path(p: &str) -> (i64, i64) {
    let d = Md5::digest(p.as_bytes());
    (
        i64::from_le_bytes(d[..8].try_into().unwrap()),
        i64::from_le_bytes(d[8..].try_into().unwrap()),
    )
}

/// The catalog holding `path`, found through the catalogs' own
/// `nested_catalogs` tables (the reader's resolver canonicalises on the host).
fn catalog_for(repo: &Repository, path: &str) -> String {
    let mut hash = repo.get_root_hash().unwrap().to_string();
    loop {
        let nested = repo.with_catalog(&hash, |c| c.list_nested()).unwrap();
        let inner = nested.into_iter().find(|n| {
            path == n.root_path
                || (path.starts_with(&n.root_path)
                    && path.as_bytes().get(n.root_path.len()) == Some(&b'/'))
        });
        match inner {
            Some(n) => hash = n.catalog_hash,
            None => return hash,
        }
    }
}

fn list(repo: &Repository, path: &str) -> Vec<DirectoryEntry> {
    let hash = catalog_for(repo, path);
    let (a, b) = md5path(path);
    repo.with_catalog(&hash, |c| c.list_directory_split_md5(a, b))
        .unwrap()
}

/// The published tree as the reader sees it, without cvmbuild's and
/// upstream's own additions (checked separately).
fn remote_tree(repo: &Repository) -> BTreeMap<String, (u32, Kind)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![String::new()];
    while let Some(dir) = todo.pop() {
        for e in list(repo, &dir) {
            let path = format!("{dir}/{}", e.name);
            let kind = if e.is_directory() {
                todo.push(path.clone());
                Kind::Dir
            } else if e.is_symlink() {
                Kind::Symlink(e.symlink.clone().unwrap_or_default())
            } else if e.is_file() && u32::from(e.mode) & 0o170000 == 0o100000 {
                let f = repo.retrieve_object(&e, &path).unwrap();
                let mut buf = vec![0u8; f.file_size() as usize];
                let mut off = 0;
                while off < buf.len() {
                    let n = f.read_at(off as u64, &mut buf[off..]).unwrap();
                    assert!(n > 0, "{path}: short read");
                    off += n;
                }
                assert_eq!(buf.len() as i64, e.size, "{path}");
                Kind::File(buf)
            } else {
                Kind::Other(u32::from(e.mode) & 0o170000)
            };
            out.insert(path, (u32::from(e.mode) & 0o7777, kind));
        }
    }
    out
}

#[test]
fn two_releases_read_back_by_the_cvmfs_crate() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let (prod, dev) = (tmp.path().join("prod"), tmp.path().join("dev"));
    for (branch, out) in [("production", &prod), ("development", &dev)] {
        let o = out.display().to_string();
        cvmbuild(&store, &["realize", SPEC, "--branch", branch, "--out", &o]);
    }
    let tags = cvmbuild(&store, &["tag", "list"]);
    let rev = |tag: &str| -> (u32, String) {
        let line = tags
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tag))
            .unwrap_or_else(|| panic!("no tag {tag} in\n{tags}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[1].parse().unwrap(), f[3].to_string())
    };
    assert_eq!(rev("cernvm-system-3.1.0.0"), rev("production"));
    assert_eq!(rev("cernvm-system-3.2.0.0"), rev("development"));
    assert_eq!(rev("cernvm-system-3.2.0.0"), rev("trunk"));
    assert_eq!(rev("production").0, 1);
    assert_eq!(rev("development").0, 2);

    // Realizing again is a cache hit and publishes nothing.
    let again = cvmbuild(&store, &["realize", SPEC, "--branch", "production"]);
    assert!(again.contains("0 built"), "{again}");
    assert_eq!(cvmbuild(&store, &["tag", "list"]), tags);

    let served = store.join("cvmfs");
    let server = super::support::nginx::Nginx::start(&served, &tmp.path().join("nginx"));
    let port = server.port;
    let cache = tmp.path().join("reader-cache");
    let fetcher = Fetcher::new(
        &format!("http://127.0.0.1:{port}/{FQRN}"),
        cache.to_str().unwrap(),
        true,
    )
    .unwrap();
    let mut repo = Repository::new(fetcher).unwrap();
    assert_eq!(repo.fqrn, FQRN);
    assert_eq!(repo.get_revision_number().unwrap(), 2);

    for (revision, exported, meta) in [
        (2, &dev, "cernvm-system-3.2.0.0"),
        (1, &prod, "cernvm-system-3.1.0.0"),
    ] {
        repo.set_current_tag(revision).unwrap();
        let mut remote = remote_tree(&repo);
        let local = local_tree(exported);
        // cvmbuild's meta RPM and upstream's nested catalog markers.
        let extra: Vec<String> = remote
            .keys()
            .filter(|p| p.starts_with("/.cvmbuild") || p.ends_with("/.cvmfscatalog"))
            .cloned()
            .collect();
        for p in &extra {
            remote.remove(p);
        }
        assert!(
            extra
                .iter()
                .any(|p| p.starts_with(&format!("/.cvmbuild/{meta}"))),
            "{extra:?}"
        );
        for m in ["/usr", "/usr/lib64", "/usr/share"] {
            assert!(extra.contains(&format!("{m}/.cvmfscatalog")), "{extra:?}");
        }
        assert!(local.len() > 50, "{}", local.len());
        let lk: Vec<&String> = local.keys().collect();
        let rk: Vec<&String> = remote.keys().collect();
        assert_eq!(lk, rk, "revision {revision}: paths differ");
        for (p, l) in &local {
            assert!(&remote[p] == l, "revision {revision}: {p} differs");
        }
    }

    // Everything the reader saw came through nginx: the manifest, the
    // certificate, catalogs and file objects, all answered 200.
    let access = std::fs::read_to_string(tmp.path().join("nginx/access.log")).unwrap();
    let ok = |what: &str| {
        access
            .lines()
            .any(|l| l.contains(&format!("GET /{FQRN}/{what}")) && l.contains("\" 200 "))
    };
    assert!(ok(".cvmfspublished"), "{access}");
    assert!(ok("data/"), "{access}");
    assert!(
        access.lines().filter(|l| l.contains("/data/")).count() > 50,
        "{access}"
    );

    // Promote moves production to the development release, nothing else.
    let out = cvmbuild(
        &store,
        &["promote", "cernvm-system-3.2.0.0", "--to", "production"],
    );
    assert!(out.contains("production"), "{out}");
    let tags2 = cvmbuild(&store, &["tag", "list"]);
    let rev2 = |tag: &str| -> String {
        tags2
            .lines()
            .find(|l| l.split_whitespace().next() == Some(tag))
            .unwrap()
            .split_whitespace()
            .nth(3)
            .unwrap()
            .to_string()
    };
    assert_eq!(rev2("production"), rev("cernvm-system-3.2.0.0").1);
    assert_eq!(
        rev2("cernvm-system-3.1.0.0"),
        rev("cernvm-system-3.1.0.0").1
    );
    let missing = crate::support::cvmbuild(store.parent().unwrap())
        .arg("--store")
        .arg(&store)
        .args(["promote", "cernvm-system-9", "--to", "production"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no tag `cernvm-system-9`"));
}

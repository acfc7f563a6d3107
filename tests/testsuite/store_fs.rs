//! FsStore (and MemStore where the behaviour is shared): deduplication,
//! the closure rule, verification, the output index across reopen, crash
//! leftovers, concurrency, locks, location resolution and export.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cvmbuild::store::{
    export_tree, resolve_store_dir, Entry, Error, FsStore, Hash, MemStore, Node, ObjectKind,
    Output, Root, Store, Tree,
};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

fn file_entry(name: &str, store: &dyn Store, content: &[u8], mode: u16) -> Entry {
    let blob = store.put_blob(&mut &content[..]).unwrap();
    Entry::root_owned(name, Node::file(&blob), mode)
}

fn read_all(store: &dyn Store, hash: &Hash) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    store.open_blob(hash).unwrap().read_to_end(&mut out)?;
    Ok(out)
}

fn both_stores(dir: &Path) -> Vec<Box<dyn Store>> {
    vec![
        Box::new(FsStore::open(&dir.join("store")).unwrap()),
        Box::new(MemStore::new()),
    ]
}

#[test]
fn same_bytes_are_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("store")).unwrap();
    let a = store.put_blob(&mut &b"same bytes"[..]).unwrap();
    let b = store.put_blob(&mut &b"same bytes"[..]).unwrap();
    let c = store.put_blob(&mut &b""[..]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.hash, Hash::of(b"same bytes"));
    assert_eq!(a.size, 10);
    assert_eq!(c.size, 0);
    assert_eq!(files_under(&store.root().join("blobs")).len(), 2);
    let path = store.blob_path(&a.hash);
    let hex = a.hash.to_hex();
    assert!(path.ends_with(format!("blobs/{}/{hex}", &hex[..2])));
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(read_all(&store, &a.hash).unwrap(), b"same bytes");

    let mem = MemStore::new();
    mem.put_blob(&mut &b"x"[..]).unwrap();
    mem.put_blob(&mut &b"x"[..]).unwrap();
    assert_eq!(mem.blob_count(), 1);
}

#[test]
fn large_blob_streams_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("store")).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b = store.put_blob(&mut &data[..]).unwrap();
    assert_eq!(b.hash, Hash::of(&data));
    assert_eq!(read_all(&store, &b.hash).unwrap(), data);
}

#[test]
fn trees_roundtrip_and_require_their_children() {
    let dir = tempfile::tempdir().unwrap();
    for store in both_stores(dir.path()) {
        let store = store.as_ref();
        let f = file_entry("f", store, b"content", 0o644);
        let sub = store
            .put_tree(&Tree::new(vec![f.clone()]).unwrap())
            .unwrap();
        let top = Tree::new(vec![Entry {
            name: "d".into(),
            node: Node::Directory { tree: sub },
            ..f.clone()
        }])
        .unwrap();
        let h = store.put_tree(&top).unwrap();
        assert_eq!(h, top.hash());
        assert_eq!(store.get_tree(&h).unwrap(), top);
        assert!(store.has_tree(&h).unwrap());

        // A missing blob, a missing subtree, a size that lies.
        let missing_blob = Tree::new(vec![Entry {
            node: Node::File {
                size: 1,
                blob: Some(Hash::of(b"never stored")),
            },
            ..f.clone()
        }])
        .unwrap();
        assert!(matches!(
            store.put_tree(&missing_blob),
            Err(Error::Missing { kind: "blob", .. })
        ));
        let missing_tree = Tree::new(vec![Entry {
            node: Node::Directory {
                tree: Hash::of(b"no such tree"),
            },
            ..f.clone()
        }])
        .unwrap();
        assert!(matches!(
            store.put_tree(&missing_tree),
            Err(Error::Missing { kind: "tree", .. })
        ));
        let wrong_size = Tree::new(vec![Entry {
            node: Node::File {
                size: 99,
                blob: Some(Hash::of(b"content")),
            },
            ..f
        }])
        .unwrap();
        assert!(matches!(
            store.put_tree(&wrong_size),
            Err(Error::InvalidTree(_))
        ));
        assert!(matches!(
            store.get_tree(&Hash::of(b"absent")),
            Err(Error::Missing { kind: "tree", .. })
        ));
    }
}

fn make_writable(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
}

#[test]
fn verify_finds_tampered_blobs_and_trees() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("store")).unwrap();
    let f = file_entry("f", &store, b"original", 0o644);
    let g = file_entry("g", &store, b"untouched", 0o644);
    let blob = match f.node {
        Node::File { blob: Some(b), .. } => b,
        _ => unreachable!(),
    };
    let tree = store.put_tree(&Tree::new(vec![f, g]).unwrap()).unwrap();
    let other = store.put_tree(&Tree::new(vec![]).unwrap()).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!((report.blobs, report.trees), (2, 2));

    // Same length, different bytes, so only re-hashing can notice.
    let blob_path = store.blob_path(&blob);
    make_writable(&blob_path);
    fs::write(&blob_path, b"tampered").unwrap();
    let tree_path = store.tree_path(&tree);
    make_writable(&tree_path);
    let mut bytes = fs::read(&tree_path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&tree_path, &bytes).unwrap();

    let report = store.verify().unwrap();
    let damaged: Vec<_> = report
        .damage
        .iter()
        .map(|d| (d.kind, d.id.clone()))
        .collect();
    assert!(
        damaged.contains(&(ObjectKind::Blob, blob.to_hex())),
        "{report:?}"
    );
    assert!(
        damaged.contains(&(ObjectKind::Tree, tree.to_hex())),
        "{report:?}"
    );
    assert_eq!(report.damage.len(), 2, "{report:?}");
    assert!(!damaged.iter().any(|(_, id)| *id == other.to_hex()));

    // Reads notice too, instead of passing damage on.
    assert!(read_all(&store, &blob).is_err());
    assert!(matches!(store.get_tree(&tree), Err(Error::Corrupt { .. })));

    // A blob deleted under a tree is reported against the tree.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 = FsStore::open(&dir2.path().join("store")).unwrap();
    let f = file_entry("f", &store2, b"gone soon", 0o644);
    let t = store2.put_tree(&Tree::new(vec![f]).unwrap()).unwrap();
    fs::remove_file(store2.blob_path(&Hash::of(b"gone soon"))).unwrap();
    let report = store2.verify().unwrap();
    assert_eq!(report.damage.len(), 1);
    assert_eq!(report.damage[0].id, t.to_hex());
    assert!(report.damage[0].problem.contains("missing"));
}

#[test]
fn outputs_survive_reopen_and_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let out = {
        let store = FsStore::open(&root).unwrap();
        let f = file_entry("f", &store, b"built", 0o755);
        let tree = store.put_tree(&Tree::new(vec![f]).unwrap()).unwrap();
        let out = Output {
            root: Root::Tree { hash: tree },
            meta: BTreeMap::from([("nevra".to_owned(), "x-1-1.noarch".to_owned())]),
        };
        assert_eq!(store.lookup_output("drv-1").unwrap(), None);
        store.register_output("drv-1", &out).unwrap();
        // Registering the identical output again is fine.
        store.register_output("drv-1", &out).unwrap();
        out
    };
    let store = FsStore::open(&root).unwrap();
    assert_eq!(store.lookup_output("drv-1").unwrap(), Some(out.clone()));

    let blob = store.put_blob(&mut &b"an iso"[..]).unwrap();
    let single = Output {
        root: Root::Blob {
            hash: blob.hash,
            size: blob.size,
        },
        meta: BTreeMap::new(),
    };
    assert!(matches!(
        store.register_output("drv-1", &single),
        Err(Error::OutputConflict { .. })
    ));
    store.register_output("drv-2", &single).unwrap();
    assert_eq!(store.lookup_output("drv-2").unwrap(), Some(single));
    assert_eq!(store.lookup_output("drv-1").unwrap(), Some(out));

    // The root must be stored first; ids must be file-name safe.
    let dangling = Output {
        root: Root::Tree {
            hash: Hash::of(b"nothing"),
        },
        meta: BTreeMap::new(),
    };
    assert!(matches!(
        store.register_output("drv-3", &dangling),
        Err(Error::Missing { .. })
    ));
    assert_eq!(store.lookup_output("drv-3").unwrap(), None);
    for bad in ["", "../x", "a/b", ".hidden", "sp ace"] {
        assert!(matches!(
            store.register_output(bad, &dangling),
            Err(Error::InvalidId(_))
        ));
    }
    assert_eq!(store.verify().unwrap().outputs, 2);
}

fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::open(path).unwrap().set_modified(old).unwrap();
}

#[test]
fn crash_leftovers_are_ignored_and_swept() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    drop(FsStore::open(&root).unwrap());
    let tmp = root.join("tmp");
    // A killed writer's session: a lock file nobody holds and a half-written
    // object; plus a stray file of unknown origin.
    let full = b"the complete content of an object".repeat(100);
    let session = tmp.join("s-999999-1-0");
    fs::create_dir(&session).unwrap();
    fs::write(session.join("0.tmp"), &full[..full.len() / 2]).unwrap();
    fs::write(tmp.join("s-999999-1-0.lock"), b"").unwrap();
    fs::write(tmp.join("stray"), b"junk").unwrap();
    for p in [
        session.join("0.tmp"),
        session.clone(),
        tmp.join("s-999999-1-0.lock"),
        tmp.join("stray"),
    ] {
        age(&p);
    }

    let store = FsStore::open(&root).unwrap();
    // The half-written bytes never appear as an object.
    assert!(!store.has_blob(&Hash::of(&full)).unwrap());
    assert!(!store.has_blob(&Hash::of(&full[..full.len() / 2])).unwrap());
    let report = store.verify().unwrap();
    assert!(report.is_clean() && report.blobs == 0, "{report:?}");
    // And the leftovers are gone; only this process's session remains.
    let left: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left
        .iter()
        .all(|n| n.starts_with(&format!("s-{}-", std::process::id()))));

    // A live session is never swept, however old, while its lock is held.
    let session_dir = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    age(&session_dir);
    age(&session_dir.with_extension("lock"));
    let second = FsStore::open(&root).unwrap();
    assert!(session_dir.exists());
    store.put_blob(&mut &full[..]).unwrap();
    assert!(second.has_blob(&Hash::of(&full)).unwrap());
    drop(store);
    drop(second);
    assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn concurrent_puts_of_the_same_objects_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // Two handles on one directory stand in for two processes.
    let stores: Vec<Arc<FsStore>> = (0..2)
        .map(|_| Arc::new(FsStore::open(&root).unwrap()))
        .collect();
    let content = b"raced content".repeat(10_000);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&stores[i % 2]);
            let content = content.clone();
            std::thread::spawn(move || {
                let mut hashes = Vec::new();
                for _ in 0..20 {
                    let f = file_entry("f", store.as_ref(), &content, 0o644);
                    let tree = Tree::new(vec![f]).unwrap();
                    hashes.push(store.put_tree(&tree).unwrap());
                }
                hashes
            })
        })
        .collect();
    let hashes: Vec<Hash> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(hashes.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(files_under(&root.join("blobs")).len(), 1);
    assert_eq!(files_under(&root.join("trees")).len(), 1);
    assert!(stores[0].verify().unwrap().is_clean());

    let mem = Arc::new(MemStore::new());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mem = Arc::clone(&mem);
            std::thread::spawn(move || mem.put_blob(&mut &b"same"[..]).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().hash, Hash::of(b"same"));
    }
    assert_eq!(mem.blob_count(), 1);
}

#[test]
fn derivation_locks_exclude_other_holders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let a = FsStore::open(&root).unwrap();
    let b = FsStore::open(&root).unwrap();
    let held = a.try_lock_derivation("drv-x").unwrap().expect("free lock");
    assert!(b.try_lock_derivation("drv-x").unwrap().is_none());
    assert!(b.try_lock_derivation("drv-y").unwrap().is_some());
    drop(held);
    let again = b.lock_derivation("drv-x").unwrap();
    assert!(a.try_lock_derivation("drv-x").unwrap().is_none());
    drop(again);
    assert!(a.try_lock_derivation("../escape").is_err());
    assert_eq!(a.log_path("drv-x").unwrap(), root.join("logs/drv-x.log"));
}

#[test]
fn gc_roots_are_written_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("store")).unwrap();
    let t = store.put_tree(&Tree::new(vec![]).unwrap()).unwrap();
    store.add_root("current", &Root::Tree { hash: t }).unwrap();
    let text = fs::read_to_string(store.root().join("roots/current")).unwrap();
    assert_eq!(text, format!("tree {t}\n"));
    assert!(store.add_root("a/b", &Root::Tree { hash: t }).is_err());
}

#[test]
fn store_location_precedence() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let all = env(&[
        ("CVMBUILD_STORE", "/env/store"),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/home/u"),
    ]);
    assert_eq!(
        resolve_store_dir(Some(Path::new("/cli")), all).unwrap(),
        PathBuf::from("/cli")
    );
    assert_eq!(
        resolve_store_dir(None, all).unwrap(),
        PathBuf::from("/env/store")
    );
    let no_env = env(&[
        ("CVMBUILD_STORE", ""),
        ("XDG_CACHE_HOME", "/xdg"),
        ("HOME", "/home/u"),
    ]);
    assert_eq!(
        resolve_store_dir(None, no_env).unwrap(),
        PathBuf::from("/xdg/cvmbuild/store")
    );
    let relative_xdg = env(&[("XDG_CACHE_HOME", "rel"), ("HOME", "/home/u")]);
    assert_eq!(
        resolve_store_dir(None, relative_xdg).unwrap(),
        PathBuf::from("/home/u/.cache/cvmbuild/store")
    );
    assert!(matches!(
        resolve_store_dir(None, env(&[])),
        Err(Error::NoLocation)
    ));
}

#[test]
fn export_materialises_modes_links_and_refuses_nonempty_dest() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("store")).unwrap();
    let exe = file_entry("exe", &store, b"#!/bin/sh\n", 0o4755);
    let ro = file_entry("ro", &store, b"read only\n", 0o444);
    let inner = store
        .put_tree(&Tree::new(vec![file_entry("secret", &store, b"s\n", 0o600)]).unwrap())
        .unwrap();
    let locked = Entry::root_owned("locked", Node::Directory { tree: inner }, 0o500);
    let link = Entry {
        name: "escape".into(),
        node: Node::Symlink {
            target: "../../etc/passwd".into(),
        },
        mode: 0o777,
        ..locked.clone()
    };
    let root = store
        .put_tree(&Tree::new(vec![exe, ro, locked, link]).unwrap())
        .unwrap();
    let out = dir.path().join("out");
    let report = export_tree(&store, &root, &out, 1_400_000_000).unwrap();
    let mode = |p: &str| {
        fs::symlink_metadata(out.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("exe"), 0o755);
    assert_eq!(mode("ro"), 0o444);
    assert_eq!(mode("locked"), 0o500);
    assert_eq!(mode("locked/secret"), 0o600);
    assert_eq!(fs::read(out.join("locked/secret")).unwrap(), b"s\n");
    assert_eq!(
        fs::read_link(out.join("escape")).unwrap(),
        PathBuf::from("../../etc/passwd")
    );
    // Every entry has the epoch's time (they carry none of their own),
    // so the read-only file is a copy: a hardlink would change the time of
    // the store's object, which keeps its own.
    let object = store.blob_path(&Hash::of(b"read only\n"));
    let object_time = fs::metadata(&object).unwrap().mtime();
    for p in ["exe", "ro", "locked", "locked/secret", "escape"] {
        assert_eq!(
            fs::symlink_metadata(out.join(p)).unwrap().mtime(),
            1_400_000_000,
            "{p}"
        );
    }
    assert_ne!(object_time, 1_400_000_000);
    assert_eq!(fs::metadata(&object).unwrap().mtime(), object_time);
    assert_eq!((report.hardlinked, report.copied), (0, 3));
    assert_eq!(report.setid_dropped, ["exe"]);
    // With the object's mode and time, the file shares its inode.
    let same_time = std::process::Command::new("touch")
        .args(["-d", "@1400000000"])
        .arg(&object)
        .status()
        .unwrap();
    assert!(same_time.success());
    let linked = dir.path().join("linked");
    let report = export_tree(&store, &root, &linked, 1_400_000_000).unwrap();
    assert_eq!((report.hardlinked, report.copied), (1, 2));
    assert_eq!(
        fs::metadata(linked.join("ro")).unwrap().ino(),
        fs::metadata(&object).unwrap().ino()
    );
    fs::set_permissions(linked.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();

    // Exporting the same tree again writes nothing; a directory holding
    // anything else is refused; an empty one is fine.
    assert!(
        export_tree(&store, &root, &out, 1_400_000_000)
            .unwrap()
            .unchanged
    );
    let other = store
        .put_tree(&Tree::new(vec![file_entry("ro", &store, b"other\n", 0o444)]).unwrap())
        .unwrap();
    assert!(matches!(
        export_tree(&store, &other, &out, 1_400_000_000),
        Err(Error::ExportDiffers { .. })
    ));
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    export_tree(&store, &root, &empty, 1_400_000_000).unwrap();

    // MemStore has no local files: everything is copied.
    let mem = MemStore::new();
    let f = file_entry("ro", &mem, b"read only\n", 0o444);
    let t = mem.put_tree(&Tree::new(vec![f]).unwrap()).unwrap();
    let report = export_tree(&mem, &t, &dir.path().join("mem"), 1_400_000_000).unwrap();
    assert_eq!((report.hardlinked, report.copied), (0, 1));
    // Let TempDir clean up even when the tests do not run as root.
    fs::set_permissions(out.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::set_permissions(empty.join("locked"), fs::Permissions::from_mode(0o700)).unwrap();
}

/// Streams zeros slowly forever, so the writer is mid-blob when killed.
struct Endless;

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_millis(1));
        let n = buf.len().min(4096);
        buf[..n].fill(0);
        Ok(n)
    }
}

/// Runs only as the child of `kill_9_mid_write_leaves_no_object`.
#[test]
fn child_writer_for_kill_test() {
    let Some(root) = std::env::var_os("CVMBUILD_KILL_TEST_STORE") else {
        return;
    };
    let store = FsStore::open(Path::new(&root)).unwrap();
    store.put_blob(&mut Endless).unwrap();
}

#[test]
fn kill_9_mid_write_leaves_no_object() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store_fs::child_writer_for_kill_test",
            "--test-threads=1",
        ])
        .env("CVMBUILD_KILL_TEST_STORE", &root)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child has written part of its temporary file.
    let deadline = SystemTime::now() + Duration::from_secs(60);
    let partial = loop {
        let found = root
            .join("tmp")
            .exists()
            .then(|| files_under(&root.join("tmp")));
        if let Some(f) = found.unwrap_or_default().into_iter().find(|f| {
            f.extension().is_some_and(|e| e == "tmp")
                && fs::metadata(f)
                    .map(|m| m.len() > 64 * 1024)
                    .unwrap_or(false)
        }) {
            break f;
        }
        assert!(SystemTime::now() < deadline, "child never started writing");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let store = FsStore::open(&root).unwrap();
    let report = store.verify().unwrap();
    assert!(report.is_clean() && report.blobs == 0, "{report:?}");
    // Too fresh to sweep yet (another process might just be starting)...
    assert!(partial.exists());
    drop(store);
    // ...but swept once old enough, since its session lock is free.
    for p in fs::read_dir(root.join("tmp")).unwrap() {
        let p = p.unwrap().path();
        if p.is_dir() {
            for f in fs::read_dir(&p).unwrap() {
                age(&f.unwrap().path());
            }
        }
        age(&p);
    }
    let _store = FsStore::open(&root).unwrap();
    assert!(!partial.exists());
    assert!(!partial.parent().unwrap().exists());
}

/// Names of one hardlinked file are one inode in a directory export (also
/// a copying one), and hard link entries in the tarball that GNU tar
/// restores as one inode; an equal file that is not linked stays apart.
#[test]
fn hardlinks_in_export_and_tar() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(&dir.path().join("store")).unwrap();
    let linked = |name: &str| {
        let mut e = file_entry(name, &store, b"same bytes\n", 0o755);
        e.flags.hardlink = true;
        e
    };
    let bin = store
        .put_tree(
            &Tree::new(vec![
                linked("gzip"),
                linked("gunzip"),
                file_entry("zcat", &store, b"same bytes\n", 0o755),
            ])
            .unwrap(),
        )
        .unwrap();
    let root = store
        .put_tree(
            &Tree::new(vec![Entry::root_owned(
                "bin",
                Node::Directory { tree: bin },
                0o755,
            )])
            .unwrap(),
        )
        .unwrap();
    let inodes = |top: &Path| {
        let ino = |n: &str| fs::metadata(top.join("bin").join(n)).unwrap().ino();
        (ino("gunzip"), ino("gzip"), ino("zcat"))
    };
    for copies in [false, true] {
        let out = dir.path().join(format!("out-{copies}"));
        let report = if copies {
            cvmbuild::store::export_tree_copies(&store, &root, &out, 1_400_000_000).unwrap()
        } else {
            export_tree(&store, &root, &out, 1_400_000_000).unwrap()
        };
        let (a, b, c) = inodes(&out);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(report.linked, 1);
        assert_eq!(fs::metadata(out.join("bin/gzip")).unwrap().nlink(), 2);
    }

    let tarball = dir.path().join("os.tar");
    cvmbuild::store::export_tar(&store, &root, &tarball, 1_400_000_000, &Default::default())
        .unwrap();
    let listing = std::process::Command::new("tar")
        .args(["-tvf"])
        .arg(&tarball)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with("bin/gzip link to bin/gunzip")),
        "{listing}"
    );
    let untar = dir.path().join("untar");
    fs::create_dir(&untar).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&untar)
        .status()
        .unwrap();
    assert!(st.success());
    let (a, b, c) = inodes(&untar);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(fs::read(untar.join("bin/gzip")).unwrap(), b"same bytes\n");
}

//! The extract builder against the reference tools: `rpm2cpio | cpio` for
//! contents, kinds, modes and link targets, `rpm -qp` for ownership.

use crate::support::rpm_fixture as helper;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cvmbuild::builders::extract::extract;
use cvmbuild::store::{export_tree, FsStore, Hash, MemStore, Node, Store};
use helper::{fixture, sh, COMPRESSIONS};

/// Everything the store knows about one path, flattened from the tree.
#[derive(Debug, Clone)]
struct Flat {
    node: Node,
    mode: u16,
    owner: String,
    group: String,
    config: bool,
    ghost: bool,
    hardlink: bool,
}

fn flatten(store: &dyn Store, tree: &Hash, prefix: &str, out: &mut BTreeMap<String, Flat>) {
    for e in store.get_tree(tree).unwrap().entries() {
        let path = format!("{prefix}/{}", e.name);
        if let Node::Directory { tree } = &e.node {
            flatten(store, tree, &path, out);
        }
        out.insert(
            path,
            Flat {
                node: e.node.clone(),
                mode: e.mode,
                owner: e.owner.clone(),
                group: e.group.clone(),
                config: e.flags.config,
                ghost: e.flags.ghost,
                hardlink: e.flags.hardlink,
            },
        );
    }
}

/// Walks a directory into path -> (kind letter, permission bits, link
/// target or content).
fn walk(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>, u64)> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.unwrap();
        let meta = entry.path().symlink_metadata().unwrap();
        let rel = format!("/{}", entry.path().strip_prefix(root).unwrap().display());
        let ft = meta.file_type();
        let (kind, data) = if ft.is_symlink() {
            let t = fs::read_link(entry.path()).unwrap();
            ('l', t.to_str().unwrap().as_bytes().to_vec())
        } else if ft.is_dir() {
            ('d', Vec::new())
        } else {
            ('f', fs::read(entry.path()).unwrap())
        };
        out.insert(
            rel,
            (kind, meta.permissions().mode() & 0o7777, data, meta.ino()),
        );
    }
    out
}

#[test]
fn extract_matches_rpm2cpio_for_every_compression() {
    let mut tree_hashes = Vec::new();
    for comp in COMPRESSIONS {
        let rpm = fixture(comp);
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(&dir.path().join("store")).unwrap();
        let x = extract(&store, &rpm).unwrap_or_else(|e| panic!("{e}"));
        tree_hashes.push(x.tree);

        let mut flat = BTreeMap::new();
        flatten(&store, &x.tree, "", &mut flat);

        // Reference: what rpm itself unpacks.
        let reference = dir.path().join("cpio");
        fs::create_dir(&reference).unwrap();
        sh(&format!(
            "cd '{}' && umask 022 && rpm2cpio '{}' | cpio -idm --no-absolute-filenames --quiet",
            reference.display(),
            rpm.display()
        ));
        let expected = walk(&reference);

        let exported = dir.path().join("out");
        // An epoch after every file's time: nothing clamped.
        let report = export_tree(&store, &x.tree, &exported, 4_000_000_000).unwrap();
        let got = walk(&exported);
        // Every file and symlink has the time rpm gives it (the header's
        // FILEMTIMES, as librpm reads them); directories the epoch.
        let q = std::process::Command::new("rpm")
            .args(["-qp", "--qf", "[%{FILEMTIMES} %{FILENAMES}\n]"])
            .arg(&rpm)
            .output()
            .unwrap();
        let header: BTreeMap<String, i64> = String::from_utf8_lossy(&q.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, p)| (p.to_string(), t.parse().unwrap()))
            .collect();
        for (rel, (kind, ..)) in &expected {
            let t = fs::symlink_metadata(exported.join(&rel[1..]))
                .unwrap()
                .mtime();
            let want = if *kind == 'd' {
                4_000_000_000
            } else {
                header[rel]
            };
            assert_eq!(t, want, "mtime of {rel}");
        }

        // The ghost is in the tree but not in the payload, nor exported.
        let ghost = &flat["/var/log/cvmfixture.log"];
        assert!(ghost.ghost);
        assert!(matches!(
            ghost.node,
            Node::File {
                blob: None,
                size: 38
            }
        ));
        assert!(!expected.contains_key("/var/log/cvmfixture.log"));
        assert!(report
            .skipped
            .iter()
            .any(|s| s.path == "var/log/cvmfixture.log"));
        let ghost_bytes = b"ghost content that must not be stored\n";
        assert!(!store.has_blob(&Hash::of(ghost_bytes)).unwrap());

        // /var/log exists only to hold the ghost: the tree has it (an
        // implied directory), cpio does not, since the ghost is not in the
        // payload.
        let implied_by_ghost = "/var/log";
        assert_eq!(flat[implied_by_ghost].mode, 0o755);
        let mut got = got;
        assert!(got.remove(implied_by_ghost).is_some());
        let non_ghost: Vec<_> = flat
            .iter()
            .filter(|(p, f)| !f.ghost && *p != implied_by_ghost)
            .collect();
        assert_eq!(
            non_ghost
                .iter()
                .map(|(p, _)| p.as_str())
                .collect::<Vec<_>>(),
            expected.keys().map(String::as_str).collect::<Vec<_>>(),
            "{comp}: same paths as cpio"
        );
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{comp}: export has the same paths as cpio"
        );

        for (path, (kind, mode, data, _)) in &expected {
            let f = &flat[path];
            let (gkind, gmode, gdata, _) = &got[path];
            assert_eq!(gkind, kind, "{comp} {path}: kind");
            assert_eq!(gdata, data, "{comp} {path}: content or link target");
            // The tree keeps setuid/setgid; the export drops them.
            assert_eq!(u32::from(f.mode), *mode, "{comp} {path}: tree mode");
            assert_eq!(*gmode, mode & 0o1777, "{comp} {path}: exported mode");
            match (&f.node, kind) {
                (
                    Node::File {
                        blob: Some(b),
                        size,
                    },
                    'f',
                ) => {
                    assert_eq!(*b, Hash::of(data), "{comp} {path}: blob");
                    assert_eq!(*size, data.len() as u64);
                }
                (Node::Directory { .. }, 'd') => {}
                (Node::Symlink { target }, 'l') => assert_eq!(target.as_bytes(), &data[..]),
                (node, kind) => panic!("{comp} {path}: {node:?} vs {kind}"),
            }
        }

        // Ownership and flags against rpm's own view of the header.
        let qf = sh(&format!(
            "rpm -qp --qf '[%{{FILENAMES}} %{{FILEUSERNAME}} %{{FILEGROUPNAME}}\\n]' '{}'",
            rpm.display()
        ));
        let mut listed = 0;
        for line in qf.lines() {
            let mut parts = line.split(' ');
            let (path, user, group) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            let f = &flat[path];
            assert_eq!(
                (f.owner.as_str(), f.group.as_str()),
                (user, group),
                "{path}"
            );
            listed += 1;
        }
        assert_eq!(listed, x.manifest.files.len());
        assert_eq!(flat["/etc/cvmfixture/fixture.conf"].owner, "daemon");
        assert_eq!(flat["/usr/share/cvmfixture/implied/dir/file"].mode, 0o2755);
        assert_eq!(flat["/usr/bin/cvmfixture-suid"].mode, 0o4755);
        assert!(flat["/etc/cvmfixture/fixture.conf"].config);

        // Directories implied but not listed get 0755 root root.
        for implied in [
            "/usr",
            "/usr/share/cvmfixture",
            "/usr/share/cvmfixture/implied",
        ] {
            let f = &flat[implied];
            assert_eq!(
                (f.mode, f.owner.as_str(), f.group.as_str()),
                (0o755, "root", "root")
            );
        }

        // The hardlink set of three shares one blob.
        let blob_of = |p: &str| match &flat[p].node {
            Node::File { blob: Some(b), .. } => *b,
            other => panic!("{p}: {other:?}"),
        };
        let link = blob_of("/usr/lib/cvmfixture/link1");
        assert_eq!(blob_of("/usr/lib/cvmfixture/link2"), link);
        assert_eq!(blob_of("/usr/lib/cvmfixture/deep/link3"), link);
        assert_eq!(
            fs::read(store.blob_path(&link)).unwrap(),
            b"shared bytes of a hardlink set\n"
        );
        // Names in one directory stay one file, as cpio makes them; the
        // name in another directory is a file of its own (hardlinks are
        // kept per directory, as CernVM-FS catalogs hold them).
        let (l1, l2, l3) = (
            "/usr/lib/cvmfixture/link1",
            "/usr/lib/cvmfixture/link2",
            "/usr/lib/cvmfixture/deep/link3",
        );
        assert_eq!(expected[l1].3, expected[l2].3, "cpio links them");
        assert!(flat[l1].hardlink && flat[l2].hardlink && !flat[l3].hardlink);
        assert_eq!(got[l1].3, got[l2].3);
        assert_ne!(got[l3].3, got[l1].3);
        assert_eq!(report.linked, 1);
        // A read-only file has the store object's mode but the header's
        // time, not the object's: a copy (a hardlink would retime the
        // store's object).
        assert_ne!(
            got["/usr/lib/cvmfixture/readonly"].3,
            fs::metadata(store.blob_path(&blob_of("/usr/lib/cvmfixture/readonly")))
                .unwrap()
                .ino()
        );
        assert!(report.hardlinked == 0 && report.copied >= 1);
        assert!(report
            .setid_dropped
            .contains(&"usr/bin/cvmfixture-suid".to_owned()));

        // Manifest.
        let m = &x.manifest;
        assert_eq!(m.nevra, format!("cvmfixture-{comp}-1.2-3.noarch"));
        let conf = m
            .files
            .iter()
            .find(|f| f.path == "/etc/cvmfixture/fixture.conf")
            .unwrap();
        assert!(conf.config && !conf.ghost);
        assert!(m
            .files
            .iter()
            .any(|f| f.path == "/var/log/cvmfixture.log" && f.ghost));
        let kinds: Vec<_> = m.scriptlets.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(kinds, ["post", "postun"]);
        assert!(m.scriptlets[0].body.contains("post-install of cvmfixture"));
        assert_eq!(m.scriptlets[1].program, ["/sbin/ldconfig"]);

        assert!(store.verify().unwrap().is_clean());
    }
    // Trees hold no package name or compression: the four packages ship the
    // same files, so they are the same tree.
    assert!(
        tree_hashes.windows(2).all(|w| w[0] == w[1]),
        "{tree_hashes:?}"
    );
}

#[test]
fn extract_output_registers_tree_and_manifest_blob() {
    let store = MemStore::new();
    let x = extract(&store, &fixture("zstd")).unwrap();
    let out = x.to_output(&store).unwrap();
    store.register_output("pkg-zstd", &out).unwrap();
    let back = store.lookup_output("pkg-zstd").unwrap().unwrap();
    assert_eq!(back, out);
    assert_eq!(back.meta["nevra"], "cvmfixture-zstd-1.2-3.noarch");
    let manifest_hash = Hash::from_hex(&back.meta["manifest"]).unwrap();
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut store.open_blob(&manifest_hash).unwrap(), &mut json).unwrap();
    let manifest: cvmbuild::builders::extract::Manifest = serde_json::from_slice(&json).unwrap();
    assert_eq!(manifest, x.manifest);
}

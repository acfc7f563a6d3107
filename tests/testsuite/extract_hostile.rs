//! The extract builder on damaged and hostile packages: clear errors that
//! name the file, nothing stored before the package checks out, and
//! dangerous entries recorded as data, never applied to the host.

use crate::support::rpm_fixture as helper;

use std::fs;
use std::path::{Path, PathBuf};

use cvmbuild::builders::extract::{extract, ExtractErrorKind};
use cvmbuild::store::{export_tree, MemStore, Node, Store};
use helper::fixture;
use rpm::{FileOptions, PackageBuilder, PackageMetadata};

fn copy_fixture(dir: &Path, name: &str) -> (PathBuf, Vec<u8>, u64) {
    let src = fixture("zstd");
    let bytes = fs::read(&src).unwrap();
    let payload = PackageMetadata::open(&src)
        .unwrap()
        .get_package_segment_offsets()
        .payload;
    (dir.join(name), bytes, payload)
}

/// Extracting a damaged file fails naming it, and stores no object at all.
fn assert_refused(path: &Path) -> ExtractErrorKind {
    let store = MemStore::new();
    let err = extract(&store, path).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "error does not name the file: {msg}"
    );
    assert_eq!((store.blob_count(), store.tree_count()), (0, 0), "{msg}");
    *err.kind
}

#[test]
fn flipped_payload_byte_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes, payload) = copy_fixture(dir.path(), "flipped.rpm");
    let at = payload as usize + (bytes.len() - payload as usize) / 2;
    bytes[at] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let kind = assert_refused(&path);
    assert!(
        matches!(kind, ExtractErrorKind::PayloadDigest { .. }),
        "{kind}"
    );
}

#[test]
fn truncated_package_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, bytes, payload) = copy_fixture(dir.path(), "truncated.rpm");
    fs::write(&path, &bytes[..payload as usize + 200]).unwrap();
    let kind = assert_refused(&path);
    assert!(
        matches!(kind, ExtractErrorKind::PayloadDigest { .. }),
        "{kind}"
    );

    // Cut inside the header: the header itself cannot be read.
    fs::write(&path, &bytes[..payload as usize - 100]).unwrap();
    let kind = assert_refused(&path);
    // Found by the structural pre-validation, before the rpm crate reads it.
    assert!(matches!(kind, ExtractErrorKind::Structure(_)), "{kind}");
}

#[test]
fn flipped_header_byte_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut bytes, payload) = copy_fixture(dir.path(), "header.rpm");
    // The last bytes of the main header's data store: the file list's tail.
    bytes[payload as usize - 20] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    assert_refused(&path);
}

#[test]
fn not_an_rpm_and_missing_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.rpm");
    fs::write(&path, b"this is not an rpm").unwrap();
    assert!(matches!(
        assert_refused(&path),
        ExtractErrorKind::Structure(_)
    ));
    let missing = dir.path().join("missing.rpm");
    assert!(matches!(
        assert_refused(&missing),
        ExtractErrorKind::Read(_)
    ));
}

#[test]
fn legacy_lzma_payload_is_refused_by_name() {
    let kind = assert_refused(&fixture("lzma"));
    match kind {
        ExtractErrorKind::UnsupportedCompression(name) => assert_eq!(name, "lzma"),
        other => panic!("{other}"),
    }
}

fn build(dir: &Path, name: &str, f: impl FnOnce(&mut PackageBuilder)) -> PathBuf {
    let mut b = PackageBuilder::new(name, "1.0", "MIT", "noarch", "hostile fixture");
    b.release("1");
    f(&mut b);
    let pkg = b.build().unwrap();
    let path = dir.join(format!("{name}.rpm"));
    pkg.write_file(&path).unwrap();
    path
}

#[test]
fn dot_dot_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "dotdot", |b| {
        b.with_file_contents(
            b"owned\n".to_vec(),
            FileOptions::new("/usr/../../etc/passwd"),
        )
        .unwrap();
    });
    match assert_refused(&path) {
        ExtractErrorKind::BadPath { path, reason } => {
            assert_eq!(path, "/usr/../../etc/passwd");
            assert!(reason.contains(".."), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn paths_through_symlinks_or_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "vialink", |b| {
        b.with_symlink(FileOptions::symlink("/opt/link", "/etc"))
            .unwrap()
            .with_file_contents(b"x\n".to_vec(), FileOptions::new("/opt/link/passwd"))
            .unwrap();
    });
    match assert_refused(&path) {
        ExtractErrorKind::NotADirectory { path, parent, what } => {
            assert_eq!(
                (path.as_str(), parent.as_str(), what),
                ("/opt/link/passwd", "/opt/link", "symlink")
            );
        }
        other => panic!("{other}"),
    }

    let path = build(dir.path(), "viafile", |b| {
        b.with_file_contents(b"x\n".to_vec(), FileOptions::new("/opt/f"))
            .unwrap()
            .with_file_contents(b"y\n".to_vec(), FileOptions::new("/opt/f/g"))
            .unwrap();
    });
    assert!(matches!(
        assert_refused(&path),
        ExtractErrorKind::NotADirectory {
            what: "non-directory",
            ..
        }
    ));
}

#[test]
fn devices_fifos_sockets_and_setuid_are_recorded_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(dir.path(), "special", |b| {
        b.with_special_file(FileOptions::character_device("/dev/null", 1, 3))
            .unwrap()
            .with_special_file(FileOptions::block_device("/dev/sda", 8, 0))
            .unwrap()
            .with_special_file(FileOptions::fifo("/run/fifo"))
            .unwrap()
            .with_special_file(FileOptions::socket("/run/sock"))
            .unwrap()
            .with_file_contents(
                b"#!/bin/sh\n".to_vec(),
                FileOptions::new("/usr/bin/su").permissions(0o4755),
            )
            .unwrap()
            .with_ghost(FileOptions::ghost_dir("/run/ghostdir").permissions(0o700))
            .unwrap();
    });
    let store = MemStore::new();
    let x = extract(&store, &path).unwrap();
    let root = store.get_tree(&x.tree).unwrap();
    let sub = |name: &str| match &root.get(name).unwrap().node {
        Node::Directory { tree } => store.get_tree(tree).unwrap(),
        other => panic!("{other:?}"),
    };
    let dev = sub("dev");
    assert_eq!(
        dev.get("null").unwrap().node,
        Node::CharDevice { major: 1, minor: 3 }
    );
    assert_eq!(
        dev.get("sda").unwrap().node,
        Node::BlockDevice { major: 8, minor: 0 }
    );
    let run = sub("run");
    assert_eq!(run.get("fifo").unwrap().node, Node::Fifo);
    assert_eq!(run.get("sock").unwrap().node, Node::Socket);
    let ghost_dir = run.get("ghostdir").unwrap();
    assert!(ghost_dir.flags.ghost && matches!(ghost_dir.node, Node::Directory { .. }));
    let su = sub("usr");
    let su = match &su.get("bin").unwrap().node {
        Node::Directory { tree } => store.get_tree(tree).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(su.get("su").unwrap().mode, 0o4755);

    let out = dir.path().join("out");
    let report = export_tree(&store, &x.tree, &out, 1_400_000_000).unwrap();
    for p in ["dev/null", "dev/sda", "run/fifo", "run/sock"] {
        assert!(out.join(p).symlink_metadata().is_err(), "{p} created");
        assert!(
            report.skipped.iter().any(|s| s.path == p),
            "{p} not reported"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(out.join("usr/bin/su"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(report.setid_dropped, ["usr/bin/su"]);
}

/// A package without a payload digest (as rpm < 4.14 made them) whose file
/// bytes do not match the header: only the per-file digest can notice.
#[test]
fn file_digest_mismatch_names_package_and_path() {
    use rpm::{Header, HeaderEntry, IndexTag, Package};

    let dir = tempfile::tempdir().unwrap();
    let mut pkg = Package::open(fixture("gzip")).unwrap();
    pkg.decompress_payload().unwrap();
    let dropped = [
        u32::from(IndexTag::RPMTAG_HEADERIMMUTABLE),
        u32::from(IndexTag::RPMTAG_PAYLOADSHA256),
        u32::from(IndexTag::RPMTAG_PAYLOADSHA256ALGO),
    ];
    let entries: Vec<HeaderEntry> = pkg
        .metadata
        .header
        .get_all_entries()
        .unwrap()
        .into_iter()
        .filter(|(tag, _)| !dropped.contains(tag))
        .map(|(tag, data)| HeaderEntry { tag, data })
        .collect();
    pkg.metadata.header = Header::from_entries(entries, IndexTag::RPMTAG_HEADERIMMUTABLE);
    // Same length, different bytes, inside big.txt (`seq 1 60000`).
    let at = pkg
        .payload
        .windows(7)
        .position(|w| w == b"\n12345\n")
        .unwrap();
    pkg.payload[at + 5] = b'6';
    pkg.clear_signatures().unwrap();
    let path = dir.path().join("tampered.rpm");
    pkg.write_file(&path).unwrap();

    let store = MemStore::new();
    let err = extract(&store, &path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tampered.rpm"), "{msg}");
    assert!(msg.contains("cvmfixture-gzip-1.2-3.noarch"), "{msg}");
    match *err.kind {
        ExtractErrorKind::FileDigest { path, .. } => {
            assert_eq!(path, "/usr/lib/cvmfixture/big.txt")
        }
        other => panic!("{other}"),
    }
}

#[test]
fn source_packages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpm/fixture.spec");
    helper::sh(&format!(
        "rpmbuild -bs --quiet --define '_topdir {}' --define 'comp src' '{}' >/dev/null 2>&1",
        dir.path().display(),
        spec.display()
    ));
    let srpm = dir.path().join("SRPMS/cvmfixture-src-1.2-3.src.rpm");
    assert!(matches!(
        assert_refused(&srpm),
        ExtractErrorKind::SourcePackage
    ));
}

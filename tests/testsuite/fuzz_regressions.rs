//! Inputs the fuzz targets (`fuzz/`, `fuzz_loop`) found failing, each
//! replayed through the same property function and, where it helps,
//! checked directly on the public API.

use cvmbuild::fuzzing;
use cvmbuild::repo::Evr;

/// `0:1.0_1-3:1.0_1` parsed as epoch 0, version `1.0_1-3:1.0_1`... and
/// displayed without the epoch, which reads back as epoch `1.0_1-3`
/// (an error) -- or, for `0:1:2`, silently as epoch 1, version 2.
#[test]
fn evr_with_colon_in_version_displays_its_epoch() {
    let e = Evr::parse("0:1:2").unwrap();
    assert_eq!((e.epoch, &*e.version), (0, "1:2"));
    assert_eq!(e.to_string(), "0:1:2");
    assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
    fuzzing::evr(b"\xfc:1.0~r\xff\xff\xff\xffc1t1-1\n0:1.0_1-3:1.0_1-3:1.0_1-3:1.0_1-3:1.0_1-3");
}

/// `1.0-1t1-1-` parses (as rpm does) to version `1.0-1t1-1` with an empty,
/// i.e. no, release; displayed as `1.0-1t1-1` it read back as release `1`.
#[test]
fn evr_with_dash_in_version_and_no_release_keeps_the_dash() {
    let e = Evr::parse("1.0-1t1-1-").unwrap();
    assert_eq!((&*e.version, e.release.as_deref()), ("1.0-1t1-1", None));
    assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
    fuzzing::evr(b"2:1.0~rc1-1t1-1-\n0:1.0_1-3el6\n1.0^git1-1-\n0:");
}

/// A `:` in the release (`0:1.0_1-32.:3a`) also needs the epoch written.
#[test]
fn evr_with_colon_in_release_displays_its_epoch() {
    let e = Evr::parse("0:1.0_1-32.:3a").unwrap();
    assert_eq!(e.release.as_deref(), Some("32.:3a"));
    assert_eq!(Evr::parse(&e.to_string()).unwrap(), e);
    fuzzing::evr(b"1.\n0:1.0_1-32.:3a\n1.2.3.a\n01.2");
}

/// A symlink target `usr/bin<//ba` was exported as `usr/bin</ba`: the tar
/// crate's `append_link` normalises short targets (`//`, `/./`, a
/// trailing `/`), while long ones went out raw. GNU tar must list every
/// target exactly as the tree stores it.
#[test]
fn tar_export_keeps_symlink_targets_byte_for_byte() {
    use cvmbuild::store::{export_tar, Entry, MemStore, Node, Store, Tree};
    let long = format!("{}//x/./y/", "d/".repeat(60));
    let targets = ["usr/bin<//ba", "a/./b", "dir/", "/abs//x", long.as_str()];
    let store = MemStore::new();
    let entries = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let node = Node::Symlink {
                target: t.to_string(),
            };
            Entry::root_owned(&format!("l{i}"), node, 0o777)
        })
        .collect();
    let root = store.put_tree(&Tree::new(entries).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("t.tar");
    export_tar(&store, &root, &tarball, 0, &Default::default()).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&tarball)
        .output()
        .expect("GNU tar");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8(out.stdout).unwrap();
    for (i, t) in targets.iter().enumerate() {
        assert!(
            listing
                .lines()
                .any(|l| l.ends_with(&format!("l{i} -> {t}"))),
            "l{i} -> {t} missing from:\n{listing}"
        );
    }
    let input = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/tar/seed-tree"),
    )
    .unwrap();
    fuzzing::tar_roundtrip(&input);
}

/// Issue #14, hole 5, as the `rpm` target finds it within seconds: a
/// signature-header entry whose data offset lies past the header's data
/// store makes the rpm crate slice out of range (`header.rs`: "range start
/// index ... out of range"), a panic instead of an error naming the
/// package. Fails until the header is validated before the rpm crate
/// reads it (branch `trust`).
#[test]
fn rpm_entry_offset_past_the_header_is_an_error_not_a_panic() {
    let seed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/rpm/seed-basesystem.rpm");
    let mut rpm = std::fs::read(&seed).unwrap();
    // Lead (96 bytes), then the signature header: magic, reserved, entry
    // count, data size, then 16-byte entries (tag, type, offset, count).
    assert_eq!(&rpm[96..99], b"\x8e\xad\xe8");
    let size = u32::from_be_bytes(rpm[108..112].try_into().unwrap());
    rpm[120..124].copy_from_slice(&(size + 10).to_be_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.rpm");
    std::fs::write(&path, &rpm).unwrap();
    let store = cvmbuild::store::MemStore::new();
    let result = std::panic::catch_unwind(|| {
        cvmbuild::builders::extract::extract(&store, &path).map(|x| x.tree)
    });
    let err = result.expect("extract panicked on a header entry past the header's end");
    let err = err.expect_err("a damaged header extracts");
    assert!(err.to_string().contains("bad.rpm"), "{err}");
    fuzzing::rpm(&rpm);
}

/// libFuzzer (`rich`, session 6): `(f/(- )` must not panic.
#[test]
fn rich_dep_with_slash_and_empty_group_does_not_panic() {
    fuzzing::rich(b"(f/(- )");
}

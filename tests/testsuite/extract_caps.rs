//! File capabilities (`%caps`): the `security.capability` attribute the
//! extract builder records must be the one the real tools write: libcap's
//! `setcap` for the same text, and `rpm -i` installing the same package.
//! Needs .ci/deps (libcap2-bin, rpm) and root, as CI has.

use crate::support::rpmrepo;

use cvmbuild::builders::extract::extract;
use cvmbuild::builders::filecaps::{vfs_cap_data, XATTR};
use cvmbuild::store::{export_tar, export_tree, Hash, MemStore, Node, Owners, Store};
use rpmrepo::{build_rpms, Pkg};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The file's `security.capability` as the kernel returns it (python3's
/// `os.getxattr`, so no `getfattr` output format is parsed), or `None`.
fn xattr(path: &Path) -> Option<Vec<u8>> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os,sys\ntry: sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2]).hex())\nexcept OSError: pass",
        ])
        .arg(path)
        .arg(XATTR)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    (!text.is_empty()).then(|| hex::decode(text).unwrap())
}

/// Every text libcap accepts gives the bytes `setcap` writes; every text
/// it refuses is refused.
#[test]
fn encoding_matches_setcap() {
    let dir = tempfile::tempdir().unwrap();
    let texts = [
        "cap_net_raw=ep",
        "cap_net_raw+ep",
        "cap_net_admin,cap_net_raw+p",
        "cap_net_bind_service=+ep",
        "CAP_SYS_ADMIN=eip",
        "cap_setuid,cap_setgid=ip",
        "cap_perfmon,cap_bpf=ep",
        "cap_checkpoint_restore+i",
        "cap_chown=p cap_kill=i",
        "=ep",
        "all=p",
        "=ep cap_sys_admin-ep",
        "=p cap_net_raw-p cap_net_raw+i",
        "cap_dac_override=pi-i",
        "12=p",
        "=",
        // Refused by both.
        "cap_no_such_thing=p",
        "+p",
        "cap_net_raw",
        "cap_net_raw=x",
        "cap_net_raw+p cap_sys_admin+ep",
        // Effective without permitted: libcap writes it.
        "cap_net_raw=e",
    ];
    let mut compared = 0;
    for (i, text) in texts.iter().enumerate() {
        let f = dir.path().join(format!("f{i}"));
        std::fs::write(&f, b"x").unwrap();
        let setcap = Command::new("setcap")
            .arg(text)
            .arg(&f)
            .output()
            .expect("setcap is installed (.ci/deps: libcap2-bin)");
        let ours = vfs_cap_data(text);
        if setcap.status.success() {
            let theirs = xattr(&f);
            assert_eq!(ours.as_ref().ok().cloned().flatten(), theirs, "{text:?}");
            compared += 1;
        } else {
            assert!(
                ours.is_err(),
                "{text:?}: setcap refuses it ({}) but cvmbuild gives {ours:?}",
                String::from_utf8_lossy(&setcap.stderr).trim()
            );
        }
    }
    assert!(compared >= 15, "only {compared} texts accepted by setcap");
}

fn xattrs_of(store: &dyn Store, tree: &Hash, at: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in store.get_tree(tree).unwrap().entries() {
        let path = format!("{at}/{}", e.name);
        if let Node::Directory { tree } = &e.node {
            xattrs_of(store, tree, &path, out);
        }
        if let Some(v) = e.xattrs.get(XATTR) {
            out.insert(path, v.clone());
        }
    }
}

/// A package built with `%caps` by rpmbuild: the extracted tree has the
/// attribute on exactly the files `rpm -i` installs with it, with the
/// same bytes.
#[test]
fn extracted_capabilities_equal_what_rpm_installs() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = Pkg::new("iputils-caps", "1.0", "1")
        .file_mode("/usr/bin/ping", b"#!/bin/sh\n", 0o755)
        .caps("/usr/bin/ping", "cap_net_raw=ep")
        .file_mode("/usr/sbin/arping", b"#!/bin/sh\n", 0o755)
        .caps("/usr/sbin/arping", "cap_net_admin,cap_net_raw+p")
        .file_mode("/usr/bin/plain", b"#!/bin/sh\n", 0o755);
    let rpm = &build_rpms(&[pkg], &dir.path().join("rpms"))[0];

    let store = MemStore::new();
    let x = extract(&store, rpm).unwrap();
    let mut ours = BTreeMap::new();
    xattrs_of(&store, &x.tree, "", &mut ours);
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        ["/usr/bin/ping", "/usr/sbin/arping"]
    );

    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let rpm_cmd = |args: &[&str]| {
        let out = Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rpm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    rpm_cmd(&["--initdb"]);
    rpm_cmd(&[
        "-i",
        "--nodeps",
        "--noscripts",
        "--nosignature",
        rpm.to_str().unwrap(),
    ]);
    for path in ["/usr/bin/ping", "/usr/sbin/arping", "/usr/bin/plain"] {
        let installed = xattr(&root.join(&path[1..]));
        assert_eq!(ours.get(path), installed.as_ref(), "{path}");
    }

    // The tarball carries them for GNU tar to restore (as root); the
    // directory export grants no privileges and says what it left out.
    let tarball = dir.path().join("os.tar");
    export_tar(&store, &x.tree, &tarball, 1_400_000_000, &Owners::default()).unwrap();
    let untar = dir.path().join("untar");
    std::fs::create_dir_all(&untar).unwrap();
    let out = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&untar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for path in ["/usr/bin/ping", "/usr/sbin/arping", "/usr/bin/plain"] {
        assert_eq!(
            ours.get(path),
            xattr(&untar.join(&path[1..])).as_ref(),
            "tar: {path}"
        );
    }
    let exported = dir.path().join("export");
    let report = export_tree(&store, &x.tree, &exported, 1_400_000_000).unwrap();
    assert_eq!(report.xattrs_dropped, ["usr/bin/ping", "usr/sbin/arping"]);
    assert_eq!(xattr(&exported.join("usr/bin/ping")), None);
}

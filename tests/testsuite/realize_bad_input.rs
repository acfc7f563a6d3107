//! Bad packages at realize level: the error names the package and its
//! repository, nothing is registered for it, `--keep-going` builds the
//! rest, and the store stays clean.

use crate::support::fixture as realize_util;

use cvmbuild::store::{FsStore, Store};
use realize_util::*;
use std::fs;
use std::process::Command;

/// Asserts that the derivation named `name` was recorded but has no
/// registered output.
fn assert_not_registered(f: &Fixture, name: &str) {
    let store = FsStore::open(&f.store()).unwrap();
    let id = store
        .drv_record_ids()
        .unwrap()
        .into_iter()
        .find(|id| {
            let rec: serde_json::Value =
                serde_json::from_slice(&store.drv_record(id).unwrap().unwrap()).unwrap();
            rec["name"] == name
        })
        .unwrap_or_else(|| panic!("{name} is recorded"));
    assert_eq!(store.lookup_output(&id).unwrap(), None, "{name}");
}

/// The line of the diagnostic about derivation `name` (`x NAME (ID)
/// failed: …`, as miette renders it off a terminal).
fn error_line<'a>(stderr: &'a str, name: &str) -> &'a str {
    stderr
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("x {name} (")))
        .unwrap_or_else(|| panic!("no error for {name}:\n{stderr}"))
}

fn realize(f: &Fixture, spec_args: &[&str]) -> (Option<i32>, String, String) {
    let spec = f.spec();
    let mut args = vec!["realize", spec.to_str().unwrap(), "--branch", "production"];
    args.extend_from_slice(spec_args);
    let out = f.run(&args);
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn checksum_and_size_mismatches_name_package_and_repository() {
    let f = Fixture::new();
    let bash = f.path("repos/sl6/Packages/bash-4.1.2-29.el6.x86_64.rpm");
    let mut bytes = fs::read(&bash).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&bash, bytes).unwrap();
    let sudo = f.path("repos/sl6/Packages/sudo-1.8.6p3-12.el6.x86_64.rpm");
    let bytes = fs::read(&sudo).unwrap();
    fs::write(&sudo, &bytes[..bytes.len() - 100]).unwrap();

    // Without --keep-going the run stops at the first failure (in a store
    // of its own, so the run below starts cold too).
    let spec = f.spec();
    let stop = run_in(
        &f.path("store2"),
        &[
            "-j",
            "1",
            "realize",
            spec.to_str().unwrap(),
            "--branch",
            "production",
            "--offline",
        ],
    );
    assert_eq!(stop.status.code(), Some(1), "{}", text(&stop));
    let stopped_built = built(&String::from_utf8(stop.stderr).unwrap()).len();

    let (code, _, err) = realize(&f, &["--offline", "--keep-going"]);
    assert_eq!(code, Some(1), "{err}");
    let l = error_line(&err, "fetch:bash-4.1.2-29.el6.x86_64");
    assert!(
        l.contains("bash-4.1.2-29.el6.x86_64 from repository `sl6`")
            && l.contains("sha256 mismatch"),
        "{l}"
    );
    let l = error_line(&err, "fetch:sudo-1.8.6p3-12.el6.x86_64");
    assert!(
        l.contains("sudo-1.8.6p3-12.el6.x86_64 from repository `sl6`")
            && l.contains("size mismatch"),
        "{l}"
    );
    // Each failure is printed once, under its diagnostic code, with the
    // way to its log.
    assert_eq!(err.matches("sha256 mismatch").count(), 1, "{err}");
    let short = l
        .split_once(" (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id)
        .unwrap();
    assert!(
        err.contains(&format!("help: the full build log: cvmbuild log {short}")),
        "{err}"
    );
    assert!(err.lines().any(|l| l.trim() == "build::failed"), "{err}");
    assert_not_registered(&f, "fetch:bash-4.1.2-29.el6.x86_64");
    assert_not_registered(&f, "fetch:sudo-1.8.6p3-12.el6.x86_64");
    // --keep-going built every other package.
    let b = built(&err);
    let fetched = b.iter().filter(|n| n.starts_with("fetch:")).count();
    let extracted = b.iter().filter(|n| n.starts_with("extract:")).count();
    let lock = fs::read_to_string(f.path("cernvm/cernvm.lock")).unwrap();
    let production = lock.split("[branch.production]").nth(1).unwrap();
    let packages = production.matches("[[branch.production.package]]").count();
    assert_eq!(fetched, packages - 2, "{err}");
    assert_eq!(extracted, packages - 2, "{err}");
    assert!(stopped_built < fetched + extracted);
    assert_verify_clean(&f.store());
}

#[test]
fn corrupt_truncated_and_lzma_packages_with_matching_checksums_are_refused() {
    let f = Fixture::new();
    let pkgs = f.path("repos/sl6/Packages");
    // A flipped payload byte and a truncated payload, with repository
    // metadata regenerated so the checksums match: extract must catch them.
    let bash = pkgs.join("bash-4.1.2-29.el6.x86_64.rpm");
    let mut bytes = fs::read(&bash).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&bash, bytes).unwrap();
    let coreutils = pkgs.join("coreutils-8.4-31.el6.x86_64.rpm");
    let bytes = fs::read(&coreutils).unwrap();
    fs::write(&coreutils, &bytes[..bytes.len() - 16]).unwrap();
    build_lzma_rpm(&f, &pkgs);
    let st = Command::new("createrepo_c")
        .args(["--quiet", "--update"])
        .arg(f.path("repos/sl6"))
        .status()
        .expect("createrepo_c is installed (.ci/deps)");
    assert!(st.success());
    let spec = fs::read_to_string(f.spec()).unwrap().replace(
        "packages = groups.minimal ++ groups.base ++ groups.cernvm",
        "packages = groups.minimal ++ groups.base ++ groups.cernvm ++ [\"legacy-lzma\"]",
    );
    assert!(spec.contains("legacy-lzma"));
    fs::write(f.spec(), spec).unwrap();

    let (code, _, err) = realize(&f, &["--keep-going"]);
    assert_eq!(code, Some(1), "{err}");
    for (name, why) in [
        ("extract:bash-4.1.2-29.el6.x86_64", "payload"),
        ("extract:coreutils-8.4-31.el6.x86_64", ""),
        ("extract:legacy-lzma-1.0-1.noarch", "lzma"),
    ] {
        let l = error_line(&err, name);
        assert!(
            l.contains(&format!("{name} from repository `sl6`")) && l.contains(why),
            "{l}"
        );
        assert_not_registered(&f, name);
    }
    assert!(built(&err)
        .iter()
        .any(|n| n == "extract:sudo-1.8.6p3-12.el6.x86_64"));
    assert_verify_clean(&f.store());
}

/// Builds `legacy-lzma-1.0-1.noarch.rpm` (an lzma payload, which rpm still
/// writes but repositories abandoned) into `dir` with rpmbuild.
fn build_lzma_rpm(f: &Fixture, dir: &std::path::Path) {
    let spec = f.path("legacy-lzma.spec");
    fs::write(
        &spec,
        "Name: legacy-lzma\nVersion: 1.0\nRelease: 1\nSummary: lzma payload\n\
         License: MIT\nBuildArch: noarch\nAutoReqProv: no\n%description\nold\n\
         %install\nmkdir -p %{buildroot}/usr/share/legacy\n\
         echo old > %{buildroot}/usr/share/legacy/file\n%files\n/usr/share/legacy\n",
    )
    .unwrap();
    let out = Command::new("rpmbuild")
        .args(["-bb", "--quiet", "--define"])
        .arg(format!("_topdir {}", f.path("rpmbuild").display()))
        .args(["--define", "_binary_payload w9.lzdio", "--define"])
        .arg(format!("_rpmdir {}", dir.display()))
        .args([
            "--define",
            "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
        ])
        .arg(&spec)
        .output()
        .expect("rpmbuild is installed (.ci/deps)");
    assert!(out.status.success(), "{}", text(&out));
}

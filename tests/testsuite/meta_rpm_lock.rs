//! The meta RPM that `realize` builds for each branch of the bundled example,
//! read back by Debian's librpm: its requires list is exactly the branch's
//! closure as the lock file pins it, its digests verify, and its
//! description names the branch.

use crate::support::fixture as realize_util;

use cvmbuild::lock::LockFile;
use realize_util::{text, Fixture};
use std::path::Path;
use std::process::Command;

fn rpm(args: &[&str], file: &Path) -> String {
    let out = Command::new("rpm")
        .args(args)
        .arg(file)
        .output()
        .expect("rpm is installed by .ci/deps");
    assert!(
        out.status.success(),
        "rpm {args:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn meta_rpm_requires_equal_the_lock_for_both_branches() {
    let fx = Fixture::new();
    let spec = fx.spec();
    let out = fx.run(&[
        "realize",
        spec.to_str().unwrap(),
        "--offline",
        "--locked",
        "--root",
        "meta-rpm",
        "--json",
    ]);
    assert!(out.status.success(), "realize failed:\n{}", text(&out));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lock = LockFile::read(&fx.path("cernvm/cernvm.lock")).unwrap();
    assert_eq!(
        lock.branch.keys().collect::<Vec<_>>(),
        ["development", "production"]
    );

    let summaries = summary.as_array().expect("one summary per branch");
    assert_eq!(summaries.len(), lock.branch.len(), "{summary:#}");
    for s in summaries {
        let branch = s["branch"].as_str().unwrap();
        let root = &s["outputs"]["meta-rpm"]["root"];
        assert_eq!(root["kind"], "blob", "{s:#}");
        let hex = root["hash"].as_str().unwrap();
        let blob = fx.store().join("blobs").join(&hex[..2]).join(hex);
        // `rpm` wants a file name ending in `.rpm`.
        let file = fx.path(&format!("{branch}.rpm"));
        std::fs::copy(&blob, &file).unwrap();

        let mut want: Vec<String> = lock.branch[branch]
            .package
            .iter()
            .map(|p| format!("{} = {}:{}-{}", p.name, p.epoch, p.version, p.release))
            .collect();
        want.sort();
        assert!(
            want.len() > 10,
            "{branch}: closure of {} packages",
            want.len()
        );
        let mut got: Vec<String> = rpm(&["-qp", "--requires"], &file)
            .lines()
            .filter(|l| !l.starts_with("rpmlib("))
            .map(str::to_string)
            .collect();
        got.sort();
        assert_eq!(got, want, "{branch}: requires differ from the lock");

        let k = rpm(&["-K", "--nosignature"], &file);
        assert!(k.trim_end().ends_with("digests OK"), "{branch}: {k}");
        let description = rpm(&["-qp", "--qf", "%{DESCRIPTION}"], &file);
        assert!(
            description.contains(&format!("branch {branch}")),
            "{branch}: description {description:?}"
        );
        let other = if branch == "production" {
            "development"
        } else {
            "production"
        };
        assert!(
            !description.contains(other),
            "{branch}: description {description:?} names {other}"
        );
    }
}

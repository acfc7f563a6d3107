//! The meta RPM read back by Debian's librpm tools.

use cvmbuild::builders::meta_rpm::MetaRpm;
use std::process::Command;

fn rpm(args: &[&str]) -> String {
    let out = Command::new("rpm")
        .args(args)
        .output()
        .expect("rpm is installed by .ci/deps");
    assert!(
        out.status.success(),
        "rpm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn rpm_reads_requires_and_verifies_digests() {
    let meta = MetaRpm {
        name: "cernvm-system".into(),
        version: "3.1.0.0".into(),
        release: "1".into(),
        branch: "production".into(),
        epoch: 1_400_000_000,
        requires: vec![
            "bash = 0:4.1.2-29.el6".into(),
            "cvmfs = 0:2.1.20-1.el6".into(),
            "kernel = 0:3.10.0-1.el6".into(),
            "perl = 4:5.10.1-136.el6".into(),
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(meta.file_name());
    std::fs::write(&path, meta.build().unwrap()).unwrap();
    let p = path.to_str().unwrap();

    let requires: Vec<String> = rpm(&["-qp", "--requires", p])
        .lines()
        .filter(|l| !l.starts_with("rpmlib("))
        .map(str::to_string)
        .collect();
    assert_eq!(requires, meta.requires);
    assert_eq!(
        rpm(&["-qp", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}", p]),
        "cernvm-system-3.1.0.0-1.noarch"
    );
    assert!(rpm(&["-qp", "--qf", "%{DESCRIPTION}", p]).contains("branch production"));
    let k = rpm(&["-K", "--nosignature", p]);
    assert!(k.trim_end().ends_with("digests OK"), "{k}");
}

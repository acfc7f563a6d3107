//! Running the real `cvmbuild` binary from integration tests, and making
//! its reports comparable across machines.

use std::path::Path;
use std::process::Output;

/// Runs `cvmbuild ARGS` in `cwd`, isolated there ([`super::cvmbuild`]:
/// the store at `cwd/store`).
pub fn cvmbuild_in(cwd: &Path, args: &[&str]) -> Output {
    super::cvmbuild(cwd)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

/// `out`, after asserting it exited 0 (showing its stderr otherwise).
pub fn ok(out: Output) -> Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Replaces every run of 12 or more lowercase hex digits (derivation ids,
/// blake3 and SHA hashes) with `<hash>`: they change with the store layout
/// version, the builders and createrepo_c; the rest of a report must not.
pub fn redact(s: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in s.chars().chain(std::iter::once('\n')) {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
            continue;
        }
        if run.len() >= 12 {
            out.push_str("<hash>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// Copies the directory `from` to `to` recursively (regular files and
/// directories, as the bundled examples have).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

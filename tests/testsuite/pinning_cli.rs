//! Pinning from the command line: `why`, `update`, `--locked`, and solver
//! failures reported against the spec.

use std::path::{Path, PathBuf};
use std::process::Output;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn run(args: &[&str], spec: &Path) -> Output {
    crate::support::cvmbuild(spec.parent().unwrap())
        .args(args)
        .arg(spec)
        .output()
        .unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// A scratch spec next to a link to the example repositories.
fn scratch(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(examples().join("repos"), dir.path().join("repos")).unwrap();
    let d = dir.path().join("spec");
    std::fs::create_dir(&d).unwrap();
    let spec = d.join("s.cvm");
    std::fs::write(&spec, body).unwrap();
    (dir, spec)
}

fn spec_with(packages: &str, pins: &str) -> String {
    format!(
        r#"let sl6 = repo {{ name = "sl6", url = "../repos/sl6" }}
let extras = repo {{ name = "cernvm", url = "../repos/cernvm" }}
branch main = release {{
  name = "t-system"
  version = "1.0"
  arch = "x86_64"
  repos = [sl6, extras]
  packages = [{packages}]
  pins = {{ {pins} }}
  exclude = ["*-debuginfo"]
}}
"#
    )
}

#[test]
fn why_gives_the_chain_and_the_reason_for_the_version() {
    let spec = examples().join("cernvm/cernvm.cvm");
    let sandbox = tempfile::tempdir().unwrap();
    let out = crate::support::cvmbuild(sandbox.path())
        .args(["why", "--branch", "production"])
        .arg(&spec)
        .arg("ncurses-libs")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let t = text(&out.stdout);
    assert!(t.contains("requires libtinfo.so.5()(64bit)"), "{t}");
    assert!(t.contains("groups.cvm:"), "{t}");
    let out = crate::support::cvmbuild(sandbox.path())
        .args(["why", "--branch", "production"])
        .arg(&spec)
        .arg("kernel")
        .output()
        .unwrap();
    let t = text(&out.stdout);
    assert!(
        t.contains("kernel-4.1.0-2.el6.x86_64 is newer") && t.contains("3.10.*"),
        "{t}"
    );
}

#[test]
fn locked_refuses_to_change_the_lock_and_update_reports_changes() {
    let (_d, spec) = scratch(&spec_with(r#""bash", "kernel""#, r#"kernel = "2.6.*""#));
    assert!(run(&["eval"], &spec).status.success());
    let lock = spec.with_extension("lock");
    let pinned = std::fs::read_to_string(&lock).unwrap();
    assert!(pinned.contains("version = \"2.6.32\""));

    std::fs::write(
        &spec,
        spec_with(r#""bash", "kernel""#, r#"kernel = "3.10.*""#),
    )
    .unwrap();
    let out = run(&["eval", "--locked"], &spec);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--locked forbids changing it"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&lock).unwrap(),
        pinned,
        "--locked must not write"
    );

    let out = run(&["update"], &spec);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("main: ~ kernel 2.6.32-431.el6 -> 3.10.0-1.el6"),
        "{}",
        text(&out.stdout)
    );
    let out = run(&["update", "--branch", "main"], &spec);
    assert!(text(&out.stdout).contains("main: closure unchanged"));
}

#[test]
fn update_of_a_name_outside_the_closure_is_an_error() {
    let (_d, spec) = scratch(&spec_with(r#""bash""#, ""));
    assert!(run(&["eval"], &spec).status.success());
    let out = crate::support::cvmbuild(_d.path())
        .arg("update")
        .arg(&spec)
        .arg("gdb")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("`gdb` is not in the locked closure"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn unknown_names_and_unsatisfiable_lists_point_at_the_spec() {
    let (_d, spec) = scratch(&spec_with(r#""bash", "bsah""#, ""));
    let out = run(&["eval"], &spec);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(
        e.contains("`bsah`") && e.contains("did you mean bash"),
        "{e}"
    );
    assert!(e.contains("s.cvm:8:"), "{e}");
    assert!(
        !spec.with_extension("lock").exists(),
        "a failed eval writes no lock"
    );

    let (_d, spec) = scratch(&spec_with(r#""bash", "kernel >= 9""#, ""));
    let out = run(&["eval"], &spec);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("cannot be satisfied"), "{e}");
    assert!(e.contains("kernel"), "{e}");
    assert!(e.lines().count() < 30, "short, not a dump: {e}");
}

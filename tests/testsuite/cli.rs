//! The command line's contract: exit codes, streams, diagnostics.

use std::path::Path;
use std::process::Output;

fn cvmbuild(args: &[&str]) -> Output {
    let sandbox = tempfile::tempdir().unwrap();
    crate::support::cvmbuild(sandbox.path())
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["eval"],
        &["graph", "x.cvm", "--format", "png"],
    ] {
        let out = cvmbuild(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn help_has_examples_and_exits_0() {
    let out = cvmbuild(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("Examples:") && text.contains("Exit status"),
        "{text}"
    );
}

#[test]
fn bad_spec_exits_1_with_a_located_diagnostic_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.cvm");
    std::fs::write(
        &spec,
        "let x = 1\nbranch b = release { name = \"n\" version = }\n",
    )
    .unwrap();
    let out = cvmbuild(&["eval", spec.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("bad.cvm:2:"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "NO_COLOR must disable colours: {err}"
    );
    assert!(!Path::new(&dir.path().join("bad.lock")).exists());
}

#[test]
fn unknown_branch_is_named() {
    let out = cvmbuild(&[
        "eval",
        "examples/cernvm/cernvm.cvm",
        "--branch",
        "nightly",
        "--offline",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("no branch `nightly`") && err.contains("production, development"),
        "{err}"
    );
}

#[test]
fn graph_dot_and_json() {
    let out = cvmbuild(&["graph", "examples/minimal/minimal.cvm", "--offline"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dot = String::from_utf8(out.stdout).unwrap();
    assert!(
        dot.starts_with("digraph cvmbuild {")
            && dot.contains("assemble")
            && dot.contains("style=dashed")
    );
    let out = cvmbuild(&[
        "graph",
        "examples/minimal/minimal.cvm",
        "--offline",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = v["nodes"].as_object().unwrap();
    for e in v["edges"].as_array().unwrap() {
        assert!(nodes.contains_key(e["from"].as_str().unwrap()));
        assert!(nodes.contains_key(e["to"].as_str().unwrap()));
    }
    assert!(v["roots"]["os-tree"].is_string());
}

/// `cvmbuild graph … | head -1`: the reader goes away before the result
/// is written; the program ends quietly with status 0 (as ripgrep does),
/// no panic message on stderr.
#[test]
fn a_reader_that_goes_away_ends_the_program_quietly() {
    let sandbox = tempfile::tempdir().unwrap();
    let mut child = crate::support::cvmbuild(sandbox.path())
        .args([
            "graph",
            "examples/cernvm/cernvm.cvm",
            "--branch",
            "production",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before the graph is evaluated, so its first write meets a
    // pipe with no reader.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

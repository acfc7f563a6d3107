//! Shared helpers for the `realize_*` tests: a private copy of the bundled
//! example (spec, lock and repositories) and a runner for the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory holding `cernvm/` and `repos/` copied from
/// `examples/`, so tests may move, damage or serve the repositories.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ex = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        for sub in ["cernvm", "repos"] {
            let st = Command::new("cp")
                .arg("-a")
                .arg(ex.join(sub))
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(st.success());
        }
        Fixture { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn spec(&self) -> PathBuf {
        self.path("cernvm/cernvm.cvm")
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// Runs `cvmbuild --store STORE ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        run_in(&self.store(), args)
    }

    /// `realize SPEC --branch production --offline ARGS...`, which must
    /// succeed; returns stdout and stderr.
    pub fn realize(&self, args: &[&str]) -> (String, String) {
        let spec = self.spec();
        let mut all = vec![
            "realize",
            spec.to_str().unwrap(),
            "--branch",
            "production",
            "--offline",
        ];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "realize failed:\n{}", text(&out));
        (
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

/// Runs `cvmbuild --store STORE ARGS...`, isolated in the store's parent
/// directory ([`super::cvmbuild`]).
pub fn run_in(store: &Path, args: &[&str]) -> Output {
    let sandbox = store.parent().expect("a store has a parent directory");
    super::cvmbuild(sandbox)
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

/// The keys that signed an output record (store-layout.md 2.11), in order.
pub fn record_signers(record: &serde_json::Value) -> Vec<&str> {
    record["signatures"]
        .as_array()
        .expect("a record has signatures")
        .iter()
        .map(|s| s["key"].as_str().expect("a signature names its key"))
        .collect()
}

/// Both streams, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `os-tree` and `meta-rpm` lines of a realize summary.
pub fn outputs(stdout: &str) -> Vec<String> {
    let v: Vec<String> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("os-tree") || l.trim_start().starts_with("meta-rpm"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(v.len(), 2, "no outputs in:\n{stdout}");
    v
}

/// The os-tree hash of a realize summary.
pub fn os_tree(stdout: &str) -> String {
    outputs(stdout)
        .into_iter()
        .find_map(|l| l.strip_prefix("os-tree tree ").map(str::to_string))
        .expect("os-tree is a tree")
}

/// Names of derivations a realize built (from its plain progress lines).
pub fn built(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("] built ").map(|(_, n)| n.to_string()))
        .collect()
}

/// Asserts `store verify` exits 0 and reports no damage.
pub fn assert_verify_clean(store: &Path) {
    let out = run_in(store, &["store", "verify"]);
    assert!(out.status.success(), "store verify:\n{}", text(&out));
    assert!(out.stdout.is_empty(), "store verify:\n{}", text(&out));
}

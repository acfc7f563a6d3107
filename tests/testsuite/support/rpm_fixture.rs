//! Shared by the extract tests: builds the rpmbuild fixtures once per test
//! binary (tests/fixtures/rpm/build.sh) and runs the reference tools.

// Each test binary includes this file and uses a different subset of it.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The payload compressions the fixtures cover, as in the package names.
pub const COMPRESSIONS: [&str; 4] = ["gzip", "xz", "zstd", "bzip2"];

/// Directory holding `cvmfixture-<compression>.rpm`, built on first use.
pub fn fixture_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("rpms");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpm/build.sh");
        let status = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .status()
            .expect("run build.sh");
        assert!(status.success(), "build.sh failed");
        (tmp, out)
    })
    .1
}

pub fn fixture(compression: &str) -> PathBuf {
    fixture_dir().join(format!("cvmfixture-{compression}.rpm"))
}

/// Runs a shell command, panicking with its stderr on failure.
pub fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

//! Realize speed on a closure of 320 generated packages (real RPMs built
//! with the rpm crate, indexed by createrepo_c): cold realize with -j 1 and
//! -j 2, a no-op realize (target: under 200 ms), and a second release that
//! differs in one package (only that package should be fetched and
//! extracted). Drives the release `cvmbuild` binary as a user would.
//!
//! Run: `cargo bench --bench realize_closure`

#[path = "generated.rs"]
mod generated;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = work.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    let t = Instant::now();
    let mut payload = 0u64;
    for i in 0..generated::PACKAGES {
        payload += generated::write_package(&repo, i, "1.0");
    }
    generated::write_package(&repo, 0, "2.0");
    run(Command::new("createrepo_c").args(["--quiet"]).arg(&repo));
    let repo_bytes: u64 = fs::read_dir(repo.join("Packages"))
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    println!(
        "generated {} packages ({} files, {:.1} MB of file contents, {:.1} MB of RPMs) in {:.1} s",
        generated::PACKAGES + 1,
        generated::PACKAGES * generated::FILES_PER_PACKAGE,
        payload as f64 / 1e6,
        repo_bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let spec = work.path().join("big.cvm");
    generated::write_spec(&spec);
    let bin = env!("CARGO_BIN_EXE_cvmbuild");
    let store = |name: &str| work.path().join(name);
    run(Command::new(bin)
        .arg("--store")
        .arg(store("eval-cache"))
        .arg("eval")
        .arg(&spec));

    let realize = |store: &Path, branch: &str, jobs: &str| -> (Duration, String) {
        let t = Instant::now();
        let out = run(Command::new(bin)
            .arg("--store")
            .arg(store)
            .args(["-j", jobs, "realize"])
            .arg(&spec)
            .args(["--branch", branch, "--offline"]));
        (t.elapsed(), out)
    };
    // Alternating, twice each, best of two: the machine is shared, and the
    // first run also warms the page cache for the RPMs.
    let mut cold1 = Duration::MAX;
    let mut cold2 = Duration::MAX;
    for round in 0..2 {
        for (jobs, best) in [("1", &mut cold1), ("2", &mut cold2)] {
            let s = store(&format!("cold-{jobs}-{round}"));
            *best = (*best).min(realize(&s, "one", jobs).0);
            if (round, jobs) != (1, "2") {
                fs::remove_dir_all(&s).unwrap();
            }
        }
    }
    println!(
        "cold realize (best of 2): -j 1 {:.2} s, -j 2 {:.2} s (speedup {:.2}x)",
        cold1.as_secs_f64(),
        cold2.as_secs_f64(),
        cold1.as_secs_f64() / cold2.as_secs_f64()
    );
    let mut noop: Vec<Duration> = (0..7)
        .map(|_| realize(&store("cold-2-1"), "one", "2").0)
        .collect();
    noop.sort();
    println!(
        "no-op realize: median {:.0} ms, min {:.0} ms (target < 200 ms)",
        noop[noop.len() / 2].as_secs_f64() * 1e3,
        noop[0].as_secs_f64() * 1e3
    );
    let (change, log) = realize(&store("cold-2-1"), "two", "2");
    let built: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split_once("] built ").map(|(_, n)| n))
        .collect();
    println!(
        "one-package change: {:.2} s, built {} derivations: {}",
        change.as_secs_f64(),
        built.len(),
        built.join(", ")
    );
}

/// Runs a command that must succeed; returns its stderr (progress lines).
fn run(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

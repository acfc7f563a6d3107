//! Loads the 12,690-package openSUSE universe (`../shared/data`) cold
//! (parsing primary.xml.gz) and from the binary cache, and prints wall time
//! and peak RSS for each.
//!
//! `cargo bench --bench repo_parse`
//!
//! Each measurement runs in a child process of its own, so its peak RSS
//! (`VmHWM`) is its own and not the maximum of everything before it.

use cvmbuild::repo::{load, RepoSource};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn source() -> RepoSource {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/opensuse-11.0-factory"
    ));
    assert!(
        dir.join("repodata/repomd.xml").is_file(),
        "benchmark data missing: {}",
        dir.display()
    );
    RepoSource {
        name: "opensuse-11.0-factory".into(),
        url: dir.display().to_string(),
        priority: 99,
        cost: 1000,
    }
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) this process has used, from
/// `/proc/self/stat` (clock ticks of 10 ms). Less disturbed than wall time
/// when the machine is shared.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// One measurement, in this (child) process.
fn measure(mode: &str, cache: &Path) {
    let src = [source()];
    let cache = (mode != "cold").then_some(cache);
    if mode == "fill" {
        load(&src, cache).unwrap();
        return;
    }
    let mut times: Vec<Duration> = Vec::new();
    let mut packages = 0;
    let cpu_start = cpu_time();
    for _ in 0..RUNS {
        let t = Instant::now();
        let pool = load(&src, cache).unwrap();
        times.push(t.elapsed());
        packages = pool.packages.len();
    }
    let cpu = (cpu_time() - cpu_start) / RUNS as u32;
    times.sort();
    println!(
        "{mode:>6}: {packages} packages, wall best {:.1} ms, median {:.1} ms over {RUNS} runs, CPU {:.0} ms per run, peak RSS {:.1} MiB",
        times[0].as_secs_f64() * 1e3,
        times[RUNS / 2].as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e3,
        peak_rss_kib() as f64 / 1024.0
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(mode), Some(cache)) = (
        args.iter().find_map(|a| a.strip_prefix("--mode=")),
        args.iter().find_map(|a| a.strip_prefix("--cache=")),
    ) {
        measure(mode, Path::new(cache));
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // `fill` writes the cache entry in a process of its own, so the
    // `cached` process never parses XML.
    for mode in ["cold", "fill", "cached"] {
        let status = Command::new(&exe)
            .arg(format!("--mode={mode}"))
            .arg(format!("--cache={}", cache.path().display()))
            .status()
            .unwrap();
        assert!(status.success(), "{mode} run failed");
    }
    let size: u64 = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "cache entry: {:.1} MiB (primary.xml.gz: {:.1} MiB)",
        size as f64 / 1048576.0,
        std::fs::metadata(Path::new(&source().url).join("repodata/primary.xml.gz"))
            .unwrap()
            .len() as f64
            / 1048576.0
    );
}

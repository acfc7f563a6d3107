//! Extraction throughput: cvmbuild's extract builder (into a fresh on-disk
//! store; nothing flushed: realize flushes once per output) side by side with
//! `rpm2cpio PKG | cpio -idm` (into a fresh directory, nothing fsynced) on the same RPMs, in one
//! run, with the ratio.
//!
//! The RPMs: every `*.rpm` in `$CVMBUILD_BENCH_RPMS` if set (e.g. packages
//! downloaded from a distribution), else three built here with the rpm
//! crate from this machine's real files: 60 MB of shared libraries with
//! zstd and with xz payloads, and up to 3,000 documentation files with gzip.
//!
//! Run: `cargo bench --bench extract_throughput`

use cvmbuild::store::FsStore;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 3;

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rpms: Vec<PathBuf> = match std::env::var_os("CVMBUILD_BENCH_RPMS") {
        Some(dir) => {
            let mut v: Vec<PathBuf> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
                .collect();
            v.sort();
            v
        }
        None => host_rpms(work.path()),
    };
    println!(
        "{:<28} {:>9} {:>7} {:>12} {:>12} {:>7}",
        "package", "content", "files", "cvmbuild", "rpm2cpio|cpio", "ratio"
    );
    let (mut total_bytes, mut total_ours, mut total_theirs) = (0u64, 0f64, 0f64);
    for rpm in &rpms {
        let mut content = 0u64;
        let mut files = 0usize;
        let ours = best(|n| {
            let store = FsStore::open(&work.path().join(format!("store-{n}"))).unwrap();
            let t = Instant::now();
            let x = cvmbuild::builders::extract::extract(&store, rpm).unwrap();
            let d = t.elapsed();
            files = x.manifest.files.len();
            drop(store);
            fs::remove_dir_all(work.path().join(format!("store-{n}"))).unwrap();
            d
        });
        let theirs = best(|n| {
            let dir = work.path().join(format!("cpio-{n}"));
            fs::create_dir(&dir).unwrap();
            let t = Instant::now();
            let st = Command::new("sh")
                .arg("-c")
                .arg("rpm2cpio \"$1\" | cpio -idm --no-absolute-filenames --quiet")
                .arg("sh")
                .arg(rpm)
                .current_dir(&dir)
                .status()
                .unwrap();
            let d = t.elapsed();
            assert!(st.success());
            content = walkdir::WalkDir::new(&dir)
                .into_iter()
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            fs::remove_dir_all(&dir).unwrap();
            d
        });
        let name = rpm.file_name().unwrap().to_string_lossy();
        println!(
            "{:<28} {:>7.1}MB {:>7} {:>8.1} MB/s {:>8.1} MB/s {:>6.2}x",
            &name[..name.len().min(28)],
            content as f64 / 1e6,
            files,
            content as f64 / 1e6 / ours.as_secs_f64(),
            content as f64 / 1e6 / theirs.as_secs_f64(),
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
        total_bytes += content;
        total_ours += ours.as_secs_f64();
        total_theirs += theirs.as_secs_f64();
    }
    println!(
        "total: {:.1} MB; cvmbuild {:.2} s ({:.1} MB/s), rpm2cpio|cpio {:.2} s ({:.1} MB/s); cvmbuild is {:.2}x as fast",
        total_bytes as f64 / 1e6,
        total_ours,
        total_bytes as f64 / 1e6 / total_ours,
        total_theirs,
        total_bytes as f64 / 1e6 / total_theirs,
        total_theirs / total_ours
    );
}

/// The fastest of [`RUNS`] runs (the least disturbed by other load).
fn best(mut f: impl FnMut(usize) -> Duration) -> Duration {
    (0..RUNS).map(&mut f).min().unwrap()
}

/// Packages this machine's real files: returns the RPM paths.
fn host_rpms(work: &Path) -> Vec<PathBuf> {
    let libs = pick("/usr/lib/x86_64-linux-gnu", 60_000_000, usize::MAX);
    let docs = pick("/usr/share/doc", u64::MAX, 3000);
    [
        ("host-libs-zstd", &libs, rpm::CompressionType::Zstd),
        ("host-libs-xz", &libs, rpm::CompressionType::Xz),
        ("host-docs-gzip", &docs, rpm::CompressionType::Gzip),
    ]
    .into_iter()
    .map(|(name, files, compression)| {
        let mut b = rpm::PackageBuilder::new(name, "1.0", "various", "x86_64", "host files");
        b.using_config(
            rpm::BuildConfig::default()
                .compression(compression)
                .source_date(1_400_000_000u32),
        );
        for f in files {
            let opts = rpm::FileOptions::new(f.to_string_lossy()).permissions(0o644);
            b.with_file(f, opts).unwrap();
        }
        let path = work.join(format!("{name}.rpm"));
        b.build().unwrap().write_file(&path).unwrap();
        path
    })
    .collect()
}

/// Regular files under `dir` (not following symlinks), sorted, until
/// `max_bytes` or `max_files`.
fn pick(dir: &str, max_bytes: u64, max_files: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let Ok(e) = e else { continue };
        let Ok(m) = e.metadata() else { continue };
        if !e.file_type().is_file() || fs::File::open(e.path()).is_err() {
            continue;
        }
        if bytes + m.len() > max_bytes || out.len() >= max_files {
            break;
        }
        bytes += m.len();
        out.push(e.into_path());
    }
    out
}

//! Extraction throughput: cvmbuild's extract builder (into a fresh on-disk
//! store; nothing flushed: realize flushes once per output) without and
//! with the signature check `gpgcheck` adds before it (`gpg::rpm::verify`
//! of the whole package), side by side with `rpm2cpio PKG | cpio -idm`
//! (into a fresh directory, nothing fsynced) on the same RPMs, in one run,
//! with the ratios.
//!
//! The RPMs: every `*.rpm` in `$CVMBUILD_BENCH_RPMS` if set (e.g. packages
//! downloaded from a distribution), else three built here with the rpm
//! crate from this machine's real files: 60 MB of shared libraries with
//! zstd and with xz payloads, and up to 3,000 documentation files with gzip.
//! Copies of them are signed for the run with a throw-away RSA 4096 key by
//! `gpg` and `rpmsign --addsign` (rpm 4.18: a header signature over a
//! header with a SHA-256 payload digest, what distributions ship), existing
//! signatures deleted first.
//!
//! Run: `cargo bench --bench extract_throughput`

use cvmbuild::gpg::Keyring;
use cvmbuild::store::FsStore;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 3;
const KEY: &str = "bench@test.invalid";

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let unsigned: Vec<PathBuf> = match std::env::var_os("CVMBUILD_BENCH_RPMS") {
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
    let (keys, rpms) = sign(work.path(), &unsigned);
    println!(
        "{:<24} {:>9} {:>6} {:>8} {:>12} {:>12} {:>7} {:>12} {:>7}",
        "package",
        "content",
        "files",
        "verify",
        "extract",
        "+gpgcheck",
        "ratio",
        "rpm2cpio|cpio",
        "vs cpio"
    );
    let (mut total_bytes, mut total_plain, mut total_checked, mut total_verify, mut total_theirs) =
        (0u64, 0f64, 0f64, 0f64, 0f64);
    for rpm in &rpms {
        let mut content = 0u64;
        let mut files = 0usize;
        // Without and with the check, alternating, so both see the same
        // load and page cache.
        let (mut plain, mut checked, mut verify) = (Duration::MAX, Duration::MAX, Duration::MAX);
        for n in 0..RUNS {
            for check in [false, true] {
                let dir = work.path().join(format!("store-{n}-{check}"));
                let store = FsStore::open(&dir).unwrap();
                let t = Instant::now();
                if check {
                    let mut f = fs::File::open(rpm).unwrap();
                    cvmbuild::gpg::rpm::verify(&keys, &mut f).unwrap();
                    verify = verify.min(t.elapsed());
                }
                let x = cvmbuild::builders::extract::extract(&store, rpm).unwrap();
                let d = t.elapsed();
                files = x.manifest.files.len();
                drop(store);
                fs::remove_dir_all(&dir).unwrap();
                let best = if check { &mut checked } else { &mut plain };
                *best = (*best).min(d);
            }
        }
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
        let rate = |d: Duration| content as f64 / 1e6 / d.as_secs_f64();
        println!(
            "{:<24} {:>7.1}MB {:>6} {:>6.3} s {:>7.1} MB/s {:>7.1} MB/s {:>6.3}x {:>7.1} MB/s {:>6.2}x",
            &name[..name.len().min(24)],
            content as f64 / 1e6,
            files,
            verify.as_secs_f64(),
            rate(plain),
            rate(checked),
            checked.as_secs_f64() / plain.as_secs_f64(),
            rate(theirs),
            theirs.as_secs_f64() / plain.as_secs_f64()
        );
        total_bytes += content;
        total_plain += plain.as_secs_f64();
        total_checked += checked.as_secs_f64();
        total_verify += verify.as_secs_f64();
        total_theirs += theirs.as_secs_f64();
    }
    let mb = total_bytes as f64 / 1e6;
    // On a loaded machine the difference of two best times is noisier than
    // the check's own time, so both are printed.
    println!(
        "signature check alone: {total_verify:.3} s, {:.1}% of the extraction time",
        100.0 * total_verify / total_plain
    );
    println!(
        "total: {mb:.1} MB; extract {total_plain:.2} s ({:.1} MB/s), with gpgcheck {total_checked:.2} s ({:.1} MB/s): gpgcheck costs {:.3}x; rpm2cpio|cpio {total_theirs:.2} s ({:.1} MB/s), cvmbuild without gpgcheck is {:.2}x as fast",
        mb / total_plain,
        mb / total_checked,
        total_checked / total_plain,
        mb / total_theirs,
        total_theirs / total_plain
    );
}

/// Signed copies of `rpms` in `work/signed`, and the public key they are
/// signed with.
fn sign(work: &Path, rpms: &[PathBuf]) -> (Keyring, Vec<PathBuf>) {
    // gpg-agent's socket lives in the home: keep its path short.
    let home = tempfile::Builder::new()
        .prefix("g")
        .tempdir_in("/tmp")
        .unwrap();
    let mut perm = fs::metadata(home.path()).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o700);
    fs::set_permissions(home.path(), perm).unwrap();
    let gpg = |args: &[&str]| {
        let out = Command::new("gpg")
            .env("GNUPGHOME", home.path())
            .args([
                "--batch",
                "--quiet",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ])
            .args(args)
            .output()
            .expect("gpg is needed");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    gpg(&["--quick-gen-key", KEY, "rsa4096", "sign", "never"]);
    let keys = Keyring::parse(&gpg(&["--export", "--armor", KEY])).unwrap();
    let dir = work.join("signed");
    fs::create_dir(&dir).unwrap();
    let signed: Vec<PathBuf> = rpms
        .iter()
        .map(|r| {
            let to = dir.join(r.file_name().unwrap());
            fs::copy(r, &to).unwrap();
            to
        })
        .collect();
    for (what, extra) in [
        ("--delsign", vec![]),
        (
            "--addsign",
            vec!["--define", "_gpg_name bench@test.invalid"],
        ),
    ] {
        let st = Command::new("rpmsign")
            .env("GNUPGHOME", home.path())
            .arg(what)
            .args(extra)
            .args(["--define", "__gpg /usr/bin/gpg"])
            .args(&signed)
            .output()
            .expect("rpmsign (package rpm) is needed");
        assert!(
            st.status.success(),
            "rpmsign {what}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home.path())
        .args(["--kill", "gpg-agent"])
        .status();
    (keys, signed)
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

//! Assemble with scriptlets on a closure of 300 generated packages (real
//! RPMs built with the rpm crate, each with a `%post`, every tenth with a
//! `%pre`, all on a busybox shell package) against the host's
//! `rpm -i --root --nodeps` of the very same RPM files, and the cost of
//! a one-package change (a second release pinning another version of one
//! package: fetch and extract that package, then assemble again) for an
//! early package (`pkg000`, step 2 of 301) and a late one (`pkg290`, step
//! 292), before (`CVMBUILD_CHECKPOINT_EVERY=0`: the whole transaction
//! reruns) and after (checkpoints every 16 steps: the change resumes from
//! the latest one before it), each in its own store. Drives the release
//! `cvmbuild` binary. Needs root, bubblewrap, rpm and createrepo_c.
//!
//! Run: `cargo bench --bench assemble_scriptlets`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cvmbuild::builders::scriptlets::checkpoint::EVERY;

const PACKAGES: usize = 300;
const FILES_PER_PACKAGE: usize = 8;
/// The late package a third release changes.
const LATE: usize = 290;

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = work.path().join("repo");
    let dir = repo.join("Packages");
    fs::create_dir_all(&dir).unwrap();
    let mut rpms = vec![write_shell(&dir)];
    for i in 0..PACKAGES {
        rpms.push(write_package(&dir, i, "1.0"));
    }
    write_package(&dir, 0, "2.0");
    write_package(&dir, LATE, "2.0");
    run(Command::new("createrepo_c").args(["--quiet"]).arg(&repo));

    let mut names: Vec<String> = (0..PACKAGES).map(|i| format!("\"pkg{i:03}\"")).collect();
    names.push("\"shell\"".into());
    let spec = work.path().join("s.cvm");
    fs::write(
        &spec,
        format!(
            "let r = repo {{ name = \"bench\", url = \"./repo\" }}\n\
             let base = release {{\n  name = \"bench-system\"\n  version = \"1.0\"\n  \
             arch = \"x86_64\"\n  repos = [r]\n  packages = [{}]\n  pins = {{ pkg000 = \"1.*\", pkg{LATE} = \"1.*\" }}\n  \
             epoch = 1400000000\n}}\n\
             branch one = base\n\
             branch early = base // {{ pins = {{ pkg000 = \"2.*\", pkg{LATE} = \"1.*\" }} }}\n\
             branch late = base // {{ pins = {{ pkg000 = \"1.*\", pkg{LATE} = \"2.*\" }} }}\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_cvmbuild");
    // Two stores: checkpoints every this many steps (0: none). Each
    // release is realized in one, then in the other, so that the load of
    // a shared machine weighs on both alike.
    let every = ["0".to_string(), EVERY.to_string()];
    let stores = every
        .clone()
        .map(|e| work.path().join(format!("store-{e}")));
    for store in &stores {
        // The lock (resolved closures) first, as a user's `eval` writes it.
        run(Command::new(bin)
            .arg("--store")
            .arg(store)
            .arg("eval")
            .arg(&spec));
    }
    let mut notes = Vec::new();
    // Per release, per store: realize and assemble seconds.
    let times = ["one", "early", "late"].map(|branch| {
        [0, 1].map(|k| {
            let (store, every) = (&stores[k], &every[k]);
            let logs_seen = assemble_logs(store);
            let t = Instant::now();
            run(Command::new(bin)
                .env("CVMBUILD_CHECKPOINT_EVERY", every)
                .arg("--store")
                .arg(store)
                .args(["-j", "2", "realize"])
                .arg(&spec)
                .args(["--branch", branch, "--offline"]));
            let realize = t.elapsed().as_secs_f64();
            let logs = assemble_logs(store);
            let new: Vec<&String> = logs.iter().filter(|l| !logs_seen.contains(*l)).collect();
            // What the checkpoints cost and saved, from the new log.
            for log in &new {
                let taken: Vec<f64> = log
                    .lines()
                    .filter(|l| l.starts_with("checkpoint after step "))
                    .filter_map(|l| l.split_once(" (")?.1.split_once(" s)")?.0.parse().ok())
                    .collect();
                if !taken.is_empty() {
                    notes.push(format!(
                        "{branch}, every {every}: {} checkpoints taken in {:.2} s",
                        taken.len(),
                        taken.iter().sum::<f64>()
                    ));
                }
                let shown =
                    |l: &&str| l.starts_with("resumed after ") || l.contains(" registered in ");
                for l in log.lines().filter(shown) {
                    notes.push(format!("{branch}, every {every}: {l}"));
                }
            }
            let assemble = new.first().and_then(|l| assemble_seconds(l));
            (realize, assemble.unwrap_or(f64::NAN))
        })
    });
    let before = times.map(|t| t[0]);
    let after = times.map(|t| t[1]);

    let root = work.path().join("rpm-root");
    fs::create_dir(&root).unwrap();
    let t = Instant::now();
    run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps"])
        .args(&rpms));
    let rpm_time = t.elapsed().as_secs_f64();
    println!(
        "{} packages, {} scriptlets; rpm -i --root of the same RPMs {rpm_time:.2} s",
        PACKAGES + 1,
        PACKAGES + PACKAGES / 10,
    );
    println!(
        "{:<34} {:>22} {:>22}",
        "realize (of which assemble), s",
        "before: no checkpoint",
        format!("after: every {EVERY} steps")
    );
    let rows = [
        "cold",
        "one-package change, early (step 2)",
        "one-package change, late (step 292)",
    ];
    for (k, row) in rows.iter().enumerate() {
        let cell = |(r, a): (f64, f64)| format!("{r:.2} ({a:.2})");
        println!("{row:<34} {:>22} {:>22}", cell(before[k]), cell(after[k]));
    }
    println!(
        "cold assemble / rpm = {:.2} before, {:.2} after",
        before[0].1 / rpm_time,
        after[0].1 / rpm_time
    );
    for n in notes {
        println!("{n}");
    }
}

/// The text of every assemble log in the store.
fn assemble_logs(store: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(store.join("logs")) else {
        return Vec::new();
    };
    rd.filter_map(|e| fs::read_to_string(e.ok()?.path()).ok())
        .filter(|t| t.contains("\nname assemble\n"))
        .collect()
}

/// The duration (`in N s` on the output line) of an assemble log.
fn assemble_seconds(log: &str) -> Option<f64> {
    log.lines()
        .filter(|l| l.starts_with("output "))
        .find_map(|l| l.rsplit_once(" in ")?.1.strip_suffix(" s")?.parse().ok())
}

/// `shell-1.0-1.x86_64.rpm`: busybox as `/bin/sh` and `/bin/echo`.
fn write_shell(dir: &Path) -> PathBuf {
    let mut b = rpm::PackageBuilder::new("shell", "1.0", "MIT", "x86_64", "busybox shell");
    b.using_config(rpm::BuildConfig::default().source_date(1_400_000_000u32))
        .release("1")
        .description("generated for bench/assemble_scriptlets.rs");
    b.with_file(
        "/bin/busybox",
        rpm::FileOptions::new("/bin/busybox").permissions(0o755),
    )
    .unwrap();
    for a in ["sh", "echo"] {
        b.with_symlink(rpm::FileOptions::symlink(format!("/bin/{a}"), "busybox"))
            .unwrap();
    }
    let path = dir.join("shell-1.0-1.x86_64.rpm");
    b.build().unwrap().write_file(&path).unwrap();
    path
}

/// `pkgNNN-VERSION-1.x86_64.rpm` with a `%post` (and for every tenth a
/// `%pre`) writing into the tree, requiring the shell for them.
fn write_package(dir: &Path, i: usize, version: &str) -> PathBuf {
    let name = format!("pkg{i:03}");
    let mut b = rpm::PackageBuilder::new(&name, version, "MIT", "x86_64", "benchmark package");
    b.using_config(rpm::BuildConfig::default().source_date(1_400_000_000u32))
        .release("1")
        .description("generated for bench/assemble_scriptlets.rs")
        .requires(rpm::Dependency::script_pre("shell"))
        .requires(rpm::Dependency::script_post("shell"))
        .post_install_script(format!("echo \"$1\" > /var/lib/{name}.post"));
    if i.is_multiple_of(10) {
        b.pre_install_script(format!("echo {name} >> /var/lib/pre.log"));
    }
    for k in 0..FILES_PER_PACKAGE {
        let seed = format!("{name}-{version}-{k}");
        let mut bytes = vec![0u8; 2048];
        blake3::Hasher::new()
            .update(seed.as_bytes())
            .finalize_xof()
            .fill(&mut bytes);
        let path = format!("/usr/share/{name}/data{k}");
        b.with_file_contents(bytes, rpm::FileOptions::new(path))
            .unwrap();
    }
    let path = dir.join(format!("{name}-{version}-1.x86_64.rpm"));
    b.build().unwrap().write_file(&path).unwrap();
    path
}

/// Runs a command that must succeed.
fn run(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

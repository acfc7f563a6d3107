//! Assemble with scriptlets on a closure of 300 generated packages (real
//! RPMs built with the rpm crate, each with a `%post`, every tenth with a
//! `%pre`, all on a busybox shell package) against the host's
//! `rpm -i --root --nodeps` of the very same RPM files, and the cost of
//! a one-package change (a second release pinning another version of one
//! package: fetch and extract that package, then assemble again, which
//! reruns the whole transaction). Drives the release `cvmbuild` binary.
//! Needs root, bubblewrap, rpm and createrepo_c.
//!
//! Run: `cargo bench --bench assemble_scriptlets`

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PACKAGES: usize = 300;
const FILES_PER_PACKAGE: usize = 8;

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
    run(Command::new("createrepo_c").args(["--quiet"]).arg(&repo));

    let mut names: Vec<String> = (0..PACKAGES).map(|i| format!("\"pkg{i:03}\"")).collect();
    names.push("\"shell\"".into());
    let spec = work.path().join("s.cvm");
    fs::write(
        &spec,
        format!(
            "let r = repo {{ name = \"bench\", url = \"./repo\" }}\n\
             let base = release {{\n  name = \"bench-system\"\n  version = \"1.0\"\n  \
             arch = \"x86_64\"\n  repos = [r]\n  packages = [{}]\n  pins = {{ pkg000 = \"1.*\" }}\n  \
             epoch = 1400000000\n}}\n\
             branch one = base\n\
             branch two = base // {{ pins = {{ pkg000 = \"2.*\" }} }}\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_cvmbuild");
    let store = work.path().join("store");
    // The lock (resolved closures) first, as a user's `eval` writes it.
    run(Command::new(bin)
        .arg("--store")
        .arg(&store)
        .arg("eval")
        .arg(&spec));
    let realize = |branch: &str| -> Duration {
        let t = Instant::now();
        run(Command::new(bin)
            .arg("--store")
            .arg(&store)
            .args(["-j", "2", "realize"])
            .arg(&spec)
            .args(["--branch", branch, "--offline"]));
        t.elapsed()
    };
    let cold = realize("one");
    let cold_assemble = assemble_seconds(&store);
    let change = realize("two");
    let all = assemble_seconds(&store);
    let change_assemble = all.iter().find(|s| !cold_assemble.contains(s)).copied();

    let root = work.path().join("rpm-root");
    fs::create_dir(&root).unwrap();
    let t = Instant::now();
    run(Command::new("rpm")
        .arg("--root")
        .arg(&root)
        .args(["--dbpath", "/var/lib/rpm", "-i", "--nodeps"])
        .args(&rpms));
    let rpm_time = t.elapsed();
    let ours = cold_assemble.first().copied().unwrap_or(f64::NAN);
    println!(
        "{} packages, {} scriptlets: cold realize {:.2} s, of which assemble {ours:.2} s; \
         rpm -i --root of the same RPMs {:.2} s (assemble / rpm = {:.2})",
        PACKAGES + 1,
        PACKAGES + PACKAGES / 10,
        cold.as_secs_f64(),
        rpm_time.as_secs_f64(),
        ours / rpm_time.as_secs_f64()
    );
    println!(
        "one-package change: realize {:.2} s, of which assemble {:.2} s (the whole transaction reruns)",
        change.as_secs_f64(),
        change_assemble.unwrap_or(f64::NAN)
    );
}

/// The durations (`in N s` on the output line) of every assemble log in
/// the store.
fn assemble_seconds(store: &Path) -> Vec<f64> {
    let mut out = Vec::new();
    for e in fs::read_dir(store.join("logs")).unwrap() {
        let text = fs::read_to_string(e.unwrap().path()).unwrap_or_default();
        if !text.contains("\nname assemble\n") {
            continue;
        }
        let secs = text
            .lines()
            .filter(|l| l.starts_with("output "))
            .filter_map(|l| {
                l.rsplit_once(" in ")?
                    .1
                    .strip_suffix(" s")?
                    .parse::<f64>()
                    .ok()
            })
            .next();
        out.extend(secs);
    }
    out
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

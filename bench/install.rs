//! Installing with scriptlets, against rpm itself: a generated closure of
//! 300 packages (real RPMs made with the rpm crate, indexed by
//! createrepo_c), each with a `%post` that writes a file and every tenth
//! with a `%pre` that adds an account, plus a `shell` package carrying
//! busybox as `/bin/sh`. Measured in the same run:
//!
//! - `rpm -i --root DIR --nodeps` of the very same RPM files (Debian's
//!   rpm, one transaction: unpack, scriptlets, database);
//! - `cvmbuild realize` cold (fetch, extract, assemble with scriptlets in
//!   bubblewrap, the database, the meta RPM);
//! - the install step alone: the same release realized after one with
//!   `scriptlets = false`, so that only assemble (materialise, run the
//!   scriptlets, read the tree back) and the meta RPM are left;
//! - the one-package change (pkg000 1.0 -> 2.0) after the cold realize.
//!
//! Run (as root, bubblewrap and rpm installed): `cargo bench --bench install`

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PACKAGES: usize = 300;
const FILES_PER_PACKAGE: usize = 8;
const APPLETS: &[&str] = &["sh", "mkdir", "cat", "echo", "touch"];

fn main() {
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let repo = work.path().join("repo");
    let pkgs = repo.join("Packages");
    fs::create_dir_all(&pkgs).unwrap();
    write_shell(&pkgs);
    for i in 0..PACKAGES {
        write_package(&pkgs, i, "1.0");
    }
    // The one-package change's new version, outside the rpm -i set.
    write_package(&pkgs, 0, "2.0");
    run(Command::new("createrepo_c").args(["--quiet"]).arg(&repo));

    let mut names: Vec<String> = vec!["\"shell\"".into()];
    names.extend((0..PACKAGES).map(|i| format!("\"pkg{i:03}\"")));
    let spec = work.path().join("install.cvm");
    fs::write(
        &spec,
        format!(
            "let r = repo {{ name = \"bench\", url = \"./repo\" }}\n\
             let base = release {{\n  name = \"bench-system\"\n  version = \"1.0.0.0\"\n  \
             arch = \"x86_64\"\n  repos = [r]\n  packages = [{}]\n  pins = {{ pkg000 = \"1.*\" }}\n  \
             epoch = 1400000000\n}}\n\
             branch one = base\n\
             branch two = base // {{ pins = {{ pkg000 = \"2.*\" }} }}\n\
             branch quiet = base // {{ scriptlets = false }}\n",
            names.join(", ")
        ),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_cvmbuild");
    let realize = |store: &Path, branch: &str| -> (Duration, String) {
        let t = Instant::now();
        let out = run(Command::new(bin)
            .arg("--store")
            .arg(store)
            .args(["realize"])
            .arg(&spec)
            .args(["--branch", branch, "--offline"]));
        (t.elapsed(), out)
    };
    // The lock (every branch) first: each realize below is offline.
    run(Command::new(bin)
        .arg("--store")
        .arg(work.path().join("eval-cache"))
        .arg("eval")
        .arg(&spec));

    let rpms: Vec<_> = fs::read_dir(&pkgs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().contains("-2.0-"))
        .collect();
    // Best of two for each, alternating: the machine is shared.
    let (mut rpm_i, mut cold, mut install) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for round in 0..2 {
        let root = work.path().join(format!("rpm-root-{round}"));
        fs::create_dir_all(&root).unwrap();
        let t = Instant::now();
        run(Command::new("rpm")
            .arg("--root")
            .arg(&root)
            .args([
                "--dbpath",
                "/var/lib/rpm",
                "-i",
                "--nodeps",
                "--nosignature",
            ])
            .args(&rpms));
        rpm_i = rpm_i.min(t.elapsed());
        assert!(
            root.join("var/lib/pkg299/installed").exists(),
            "rpm ran the scriptlets"
        );
        fs::remove_dir_all(&root).unwrap();

        let store = work.path().join(format!("cold-{round}"));
        cold = cold.min(realize(&store, "one").0);
        let store_q = work.path().join(format!("quiet-{round}"));
        realize(&store_q, "quiet");
        install = install.min(realize(&store_q, "one").0);
        fs::remove_dir_all(&store_q).unwrap();
        if round == 0 {
            fs::remove_dir_all(&store).unwrap();
        }
    }
    // The tree cvmbuild installed ran the scriptlets too (exported from
    // the store the cold realize filled).
    let tree = work.path().join("tree");
    run(Command::new(bin)
        .arg("--store")
        .arg(work.path().join("cold-1"))
        .arg("realize")
        .arg(&spec)
        .args(["--branch", "one", "--offline", "--out"])
        .arg(&tree));
    assert!(
        tree.join("var/lib/pkg299/installed").exists()
            && fs::read_to_string(tree.join("etc/passwd"))
                .unwrap()
                .contains("pkg290:x:1290:"),
        "cvmbuild ran the scriptlets"
    );
    let (change, _) = realize(&work.path().join("cold-1"), "two");
    let ratio = |d: Duration| d.as_secs_f64() / rpm_i.as_secs_f64();
    println!(
        "{} packages, {} with %pre, all with %post",
        PACKAGES + 1,
        PACKAGES / 10
    );
    println!("| step | seconds (best of 2) | vs rpm -i |");
    println!("| --- | --- | --- |");
    println!(
        "| rpm -i --root --nodeps | {:.2} | 1.00x |",
        rpm_i.as_secs_f64()
    );
    println!(
        "| cvmbuild realize, cold | {:.2} | {:.2}x |",
        cold.as_secs_f64(),
        ratio(cold)
    );
    println!(
        "| cvmbuild install step (after scriptlets = false) | {:.2} | {:.2}x |",
        install.as_secs_f64(),
        ratio(install)
    );
    println!(
        "| cvmbuild one-package change | {:.2} | {:.2}x |",
        change.as_secs_f64(),
        ratio(change)
    );
}

/// `shell-1.0-1`: busybox (the host's static one) as `/bin/sh` and a few
/// applets, and the account files the scriptlets extend.
fn write_shell(dir: &Path) {
    let mut b = builder("shell", "1.0");
    b.with_file(
        "/bin/busybox",
        rpm::FileOptions::new("/bin/busybox").permissions(0o755),
    )
    .unwrap();
    for a in APPLETS {
        b.with_symlink(rpm::FileOptions::symlink(format!("/bin/{a}"), "busybox"))
            .unwrap();
    }
    b.with_file_contents(
        "root:x:0:0:root:/root:/bin/sh\n",
        rpm::FileOptions::new("/etc/passwd").permissions(0o644),
    )
    .unwrap();
    b.with_file_contents(
        "root:x:0:\n",
        rpm::FileOptions::new("/etc/group").permissions(0o644),
    )
    .unwrap();
    write(dir, b, "shell-1.0-1.x86_64.rpm");
}

/// `pkgNNN-VERSION-1`: files, a `%post` that writes
/// `/var/lib/pkgNNN/installed`, and on every tenth a `%pre` that adds an
/// account.
fn write_package(dir: &Path, i: usize, version: &str) {
    let name = format!("pkg{i:03}");
    let mut b = builder(&name, version);
    for k in 0..FILES_PER_PACKAGE {
        let seed = format!("{name}-{version}-{k}");
        let size = 512 + (blake3::hash(seed.as_bytes()).as_bytes()[0] as usize) * 64;
        let mut bytes = vec![0u8; size];
        blake3::Hasher::new()
            .update(seed.as_bytes())
            .finalize_xof()
            .fill(&mut bytes);
        let path = match k {
            0 => format!("/usr/bin/{name}"),
            _ => format!("/usr/share/{name}/data{k}"),
        };
        let mode = if k == 0 { 0o755 } else { 0o644 };
        b.with_file_contents(bytes, rpm::FileOptions::new(path).permissions(mode))
            .unwrap();
    }
    b.requires(rpm::Dependency::script_post("shell"));
    b.post_install_script(format!(
        "mkdir -p /var/lib/{name}\necho \"$1\" > /var/lib/{name}/installed"
    ));
    if i.is_multiple_of(10) {
        b.requires(rpm::Dependency::script_pre("shell"));
        b.pre_install_script(format!(
            "echo '{name}:x:{uid}:{uid}::/:/bin/sh' >> /etc/passwd",
            uid = 1000 + i
        ));
    }
    write(dir, b, &format!("{name}-{version}-1.x86_64.rpm"));
}

fn builder(name: &str, version: &str) -> rpm::PackageBuilder {
    let mut b = rpm::PackageBuilder::new(name, version, "MIT", "x86_64", "benchmark package");
    b.using_config(
        rpm::BuildConfig::default()
            .compression(rpm::CompressionType::Zstd)
            .source_date(1_400_000_000u32),
    )
    .release("1")
    .description("generated for bench/install.rs");
    b
}

fn write(dir: &Path, mut b: rpm::PackageBuilder, file: &str) {
    b.build().unwrap().write_file(dir.join(file)).unwrap();
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

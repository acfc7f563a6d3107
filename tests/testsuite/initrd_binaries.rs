//! `initrd.binaries` with real programs: this Debian host's dynamically
//! linked `sqlite3` and `kmod`, `dash` behind `/bin/sh` and a `#!/bin/sh`
//! script, wrapped into a fixture RPM together with every library `ldd`
//! reports for them and the host's symlink chains on the way (`/bin ->
//! usr/bin`, `/lib64 -> usr/lib64`, the loader's absolute link into
//! `/lib/x86_64-linux-gnu`, `libfoo.so.N -> libfoo.so.N.M`). The initrd
//! built from a spec listing them must hold exactly what `ldd` names (by
//! `cpio -t`), run them under `chroot` with the host's output, and be
//! byte-identical when rebuilt in a fresh store. Broken specs (a binary
//! not in the tree, a library missing from it) fail naming the binary.
//!
//! Needs rpmbuild, createrepo_c, cpio, sqlite3, kmod, openssl (.ci/deps),
//! `ldd` and `chroot` (Debian essentials), and root for `chroot`.

use serde_json::Value;
use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The programs the initrd runs, as listed in the spec, with the argument
/// that makes them print something stable.
const RUN: &[(&str, &str)] = &[
    ("/usr/bin/sqlite3", "--version"),
    ("/bin/kmod", "--version"),
];
/// A script whose interpreter (`/bin/sh -> dash`) must come along.
const SCRIPT: &str = "/usr/sbin/hello";

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (run .ci/deps): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The absolute paths `ldd` reports for `bin` on this host (the loader
/// included, the vDSO not).
fn ldd(bin: &str) -> Vec<String> {
    let out = String::from_utf8(run(Command::new("ldd").arg(bin))).unwrap();
    let paths: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = l.split_once("=>").map_or(l, |(_, r)| r).trim();
            let p = p.split(" (").next().unwrap().trim();
            p.starts_with('/').then(|| p.to_string())
        })
        .collect();
    assert!(paths.len() >= 2, "ldd {bin} found too little: {out}");
    paths
}

/// Copies host path `path` into `root` as the host has it: each symlink on
/// the way (relative or absolute, as written) and the final file with its
/// mode. Returns the relative paths of what it placed (links and file).
fn stage(path: &str, root: &Path) -> Vec<String> {
    let mut todo: VecDeque<OsString> = Path::new(path)
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut cur = PathBuf::from("/");
    let mut placed = Vec::new();
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            cur.pop();
            continue;
        }
        if part == "." {
            continue;
        }
        let host = cur.join(&part);
        let rel = host.strip_prefix("/").unwrap().to_path_buf();
        let dst = root.join(&rel);
        let md = std::fs::symlink_metadata(&host).unwrap();
        if md.is_symlink() {
            let target = std::fs::read_link(&host).unwrap();
            if std::fs::symlink_metadata(&dst).is_err() {
                std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
                symlink(&target, &dst).unwrap();
            }
            placed.push(rel.display().to_string());
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            let parts: Vec<OsString> = target
                .components()
                .filter(|c| !matches!(c, Component::RootDir))
                .map(|c| c.as_os_str().to_owned())
                .collect();
            for p in parts.into_iter().rev() {
                todo.push_front(p);
            }
        } else if md.is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            cur = host;
        } else {
            if !dst.exists() {
                std::fs::copy(&host, &dst).unwrap();
                std::fs::set_permissions(&dst, md.permissions()).unwrap();
            }
            placed.push(rel.display().to_string());
            cur = host;
        }
    }
    placed
}

fn rpmbuild(name: &str, buildroot: &Path, files: &[&str], out: &Path, work: &Path) {
    let spec = work.join(format!("{name}.spec"));
    let mut text = format!(
        "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: initrd.binaries fixture\nLicense: MIT\n\
         BuildArch: x86_64\nAutoReqProv: no\n%description\nHost programs for cvmbuild's tests.\n\
         %install\ncp -a {}/. %{{buildroot}}/\n%files\n",
        buildroot.display()
    );
    for f in files {
        text.push_str(f);
        text.push('\n');
    }
    std::fs::write(&spec, text).unwrap();
    run(Command::new("rpmbuild")
        .arg("-bb")
        .arg("--quiet")
        .env("SOURCE_DATE_EPOCH", "1400000000")
        .args([
            "--define",
            &format!("_topdir {}", work.join("top").display()),
        ])
        .args(["--define", &format!("_rpmdir {}", out.display())])
        .args([
            "--define",
            "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
        ])
        .args(["--define", "_binary_payload w1.zstdio"])
        .args(["--define", "use_source_date_epoch_as_buildtime 1"])
        .args(["--define", "clamp_mtime_to_source_date_epoch 1"])
        .args(["--define", "_buildhost cvmbuild.test"])
        .args(["--define", "_build_id_links none"])
        .args(["--define", "debug_package %{nil}"])
        .args(["--define", "__os_install_post %{nil}"])
        .arg(&spec));
}

struct Fixture {
    dir: PathBuf,
    /// Per listed program: the paths (relative) `ldd` and the host's
    /// symlinks say the initrd must hold.
    expected: BTreeSet<String>,
}

/// The repository (`hostbins` and a stand-in `kernel`), made once.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("initrd-binaries");
        let _ = std::fs::remove_dir_all(&dir);
        let (repo, work) = (dir.join("repo"), dir.join("work"));
        let root = work.join("hostbins");
        std::fs::create_dir_all(&root).unwrap();

        let mut expected = BTreeSet::new();
        for (bin, _) in RUN {
            expected.extend(stage(bin, &root));
            for lib in ldd(bin) {
                expected.extend(stage(&lib, &root));
            }
        }
        expected.extend(stage("/bin/sh", &root));
        for lib in ldd("/bin/dash") {
            expected.extend(stage(&lib, &root));
        }
        let script = root.join(SCRIPT.trim_start_matches('/'));
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, "#!/bin/sh\necho \"hello from $0\"\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        expected.insert(SCRIPT.trim_start_matches('/').to_string());
        // In the tree but not listed: must stay out of the initrd. Its
        // libssl is not in the tree at all (for the missing-library case).
        stage("/usr/bin/openssl", &root);
        assert!(
            !root.join("usr/lib/x86_64-linux-gnu/libssl.so.3").exists(),
            "libssl came along; the missing-library case needs another program"
        );

        let top: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| format!("/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        let top: Vec<&str> = top.iter().map(String::as_str).collect();
        rpmbuild("hostbins", &root, &top, &repo, &work);

        // The kernel builder needs a package with modules.dep and vmlinuz
        // (in /usr/lib/modules: /lib is a symlink in this tree).
        let k = work.join("kernel");
        let mods = k.join("usr/lib/modules/1.0");
        std::fs::create_dir_all(&mods).unwrap();
        std::fs::write(mods.join("modules.dep"), "").unwrap();
        std::fs::write(mods.join("vmlinuz"), vec![0u8; 4096]).unwrap();
        rpmbuild("kernel", &k, &["/usr/lib/modules/1.0"], &repo, &work);

        run(Command::new("createrepo_c")
            .args(["--quiet", "--no-database", "--revision", "1"])
            .arg("--set-timestamp-to-revision")
            .arg(&repo));
        Fixture { dir, expected }
    })
}

/// Writes a spec listing `binaries` into a fresh directory under the
/// fixture and returns its path.
fn spec(name: &str, binaries: &[&str]) -> PathBuf {
    let f = fixture();
    let d = f.dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let list: Vec<String> = binaries.iter().map(|b| format!("\"{b}\"")).collect();
    let text = format!(
        r##"let host = repo {{ name = "host", url = "{}" }}
branch main = release {{
  name = "bins"
  version = "1.0"
  arch = "x86_64"
  repos = [host]
  packages = ["hostbins", "kernel"]
  epoch = 1400000000
  kernel = {{ package = "kernel", modules = [] }}
  initrd = {{ init = "#!/bin/sh\nexec /bin/sh\n", binaries = [{}], compression = "gzip" }}
}}
"##,
        f.dir.join("repo").display(),
        list.join(", ")
    );
    let p = d.join("bins.cvm");
    std::fs::write(&p, text).unwrap();
    p
}

fn realize(spec: &Path, store: &Path) -> std::process::Output {
    crate::support::cvmbuild(store.parent().unwrap())
        .arg("realize")
        .arg(spec)
        .args(["--json", "--root", "initrd", "--store"])
        .arg(store)
        .output()
        .unwrap()
}

/// Realizes `spec` into `store` and returns the initrd's bytes.
fn initrd(spec: &Path, store: &Path) -> Vec<u8> {
    let out = realize(spec, store);
    assert!(
        out.status.success(),
        "realize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let h = v[0]["outputs"]["initrd"]["root"]["hash"].as_str().unwrap();
    std::fs::read(store.join("blobs").join(&h[..2]).join(h)).unwrap()
}

#[test]
fn host_programs_run_from_the_initrd() {
    let listed: Vec<&str> = RUN.iter().map(|(b, _)| *b).chain([SCRIPT]).collect();
    let s = spec("good", &listed);
    let dir = s.parent().unwrap();
    let bytes = initrd(&s, &dir.join("store"));
    let img = dir.join("initrd.img");
    std::fs::write(&img, &bytes).unwrap();
    let cpio_bytes = run(Command::new("gzip").arg("-dc").arg(&img));
    let cpio = dir.join("initrd.cpio");
    std::fs::write(&cpio, &cpio_bytes).unwrap();

    // Every path ldd names (and each link leading to it) is a member.
    let listing = run(Command::new("cpio")
        .args(["-t", "--quiet", "-F"])
        .arg(&cpio));
    let members: BTreeSet<String> = String::from_utf8(listing)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = fixture().expected.difference(&members).collect();
    assert!(
        missing.is_empty(),
        "not in the initrd: {missing:?}\nmembers: {members:?}"
    );
    assert!(
        members.contains("lib64") && members.contains("bin"),
        "{members:?}"
    );
    assert!(
        !members.contains("usr/bin/openssl"),
        "an unlisted program came along"
    );
    // The kernel's modules went through the tree's /lib -> usr/lib.
    assert!(
        members.contains("usr/lib/modules/1.0/modules.dep"),
        "{members:?}"
    );

    // Unpacked, each program runs with only what the initrd holds.
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    run(Command::new("cpio")
        .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
        .arg(&cpio)
        .current_dir(&root));
    for (bin, arg) in RUN {
        let want = run(Command::new(bin).arg(arg));
        let got = run(Command::new("chroot").arg(&root).arg(bin).arg(arg));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{bin} {arg} in the initrd"
        );
    }
    let got = run(Command::new("chroot").arg(&root).arg(SCRIPT));
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("hello from {SCRIPT}\n")
    );

    // A fresh store gives the same bytes.
    assert!(
        initrd(&s, &dir.join("store2")) == bytes,
        "the initrd differs between two stores"
    );
}

/// Realizes a spec listing `binaries` and returns stderr, asserting failure.
fn fails(name: &str, binaries: &[&str]) -> String {
    let s = spec(name, binaries);
    let out = realize(&s, &s.parent().unwrap().join("store"));
    assert!(!out.status.success(), "realize {binaries:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn binary_not_in_the_tree_is_named() {
    let err = fails("missing-binary", &["/usr/bin/sqlite3", "/usr/bin/nope"]);
    assert!(
        err.contains("initrd: binary `/usr/bin/nope` is not in the OS tree of bins-1.0"),
        "{err}"
    );
}

#[test]
fn missing_library_is_named_with_the_binary_and_the_search_path() {
    let err = fails("missing-lib", &["/usr/bin/openssl"]);
    assert!(
        err.contains("initrd: `libssl.so.3` needed by `/usr/bin/openssl` not found in /lib64, /usr/lib64, /lib/x86_64-linux-gnu, /usr/lib/x86_64-linux-gnu, /lib, /usr/lib in the OS tree of bins-1.0"),
        "{err}"
    );
}

#[test]
fn relative_binary_is_an_eval_error() {
    let err = fails("relative", &["sqlite3"]);
    assert!(
        err.contains("initrd binary `sqlite3` is not a clean absolute path"),
        "{err}"
    );
    assert!(err.contains("bins.cvm"), "{err}");
}

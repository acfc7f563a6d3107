//! Bad input to the kernel, initrd and image builders: each error names
//! what is wrong and where. Uses the bundled example repository (its
//! kernel packages are stand-ins, which is what these cases need).

use cvmbuild::image::disk::{make, BootFiles};
use std::path::Path;

fn spec(dir: &Path, kernel: &str, extra: &str) -> std::path::PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repos/sl6");
    let text = format!(
        r#"let sl6 = repo {{ name = "sl6", url = "{}" }}
branch main = release {{
  name = "t"
  version = "1.0"
  arch = "x86_64"
  repos = [sl6]
  packages = ["kernel", "busybox"]
  pins = {{ kernel = "3.10.*" }}
  epoch = 1400000000
  {kernel}
  {extra}
}}
"#,
        repo.display()
    );
    let p = dir.join("t.cvm");
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs realize for `root`; returns stderr, asserting failure.
fn fails(spec: &Path, root: &str) -> String {
    let store = spec.parent().unwrap().join("store");
    let out = crate::support::cvmbuild(spec.parent().unwrap())
        .arg("realize")
        .arg(spec)
        .arg("--store")
        .arg(&store)
        .args(["--root", root])
        .output()
        .unwrap();
    assert!(!out.status.success(), "realize {root} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_module_is_named_with_the_package() {
    let t = tempfile::tempdir().unwrap();
    let s = spec(
        t.path(),
        r#"kernel = { package = "kernel", modules = ["no_such_mod"] }"#,
        "",
    );
    let err = fails(&s, "kernel");
    assert!(err.contains("module `no_such_mod`"), "{err}");
    assert!(err.contains("kernel-3.10.0-1.el6.x86_64"), "{err}");
    assert!(
        err.contains("/lib/modules/3.10.0-1.el6.x86_64/modules.dep"),
        "{err}"
    );
}

#[test]
fn kernel_package_without_lib_modules() {
    let t = tempfile::tempdir().unwrap();
    let s = spec(
        t.path(),
        r#"kernel = { package = "kernel-firmware", modules = [] }"#,
        "",
    );
    let err = fails(&s, "kernel");
    assert!(err.contains("kernel package kernel-firmware-"), "{err}");
    assert!(err.contains("has no /lib/modules"), "{err}");
}

#[test]
fn missing_init_script_is_named() {
    let t = tempfile::tempdir().unwrap();
    let s = spec(
        t.path(),
        r#"kernel = { package = "kernel", modules = [] }"#,
        r#"initrd = { init = ./no-such-init.sh }"#,
    );
    let err = fails(&s, "initrd");
    assert!(err.contains("no-such-init.sh"), "{err}");
    assert!(err.contains("t.cvm"), "{err}");
}

#[test]
fn image_size_too_small() {
    let t = tempfile::tempdir().unwrap();
    let (k, i) = (t.path().join("vmlinuz"), t.path().join("initrd"));
    std::fs::write(&k, vec![1u8; 3 << 20]).unwrap();
    std::fs::write(&i, vec![2u8; 1 << 20]).unwrap();
    let files = BootFiles {
        vmlinuz: &k,
        initrd: &i,
        cmdline: "console=ttyS0",
        epoch: 1,
    };
    let out = t.path().join("out");
    for (format, size) in [("raw", 4u64 << 20), ("qcow2", 4 << 20), ("iso", 1 << 20)] {
        let err = make(format, &files, Some(size), t.path(), &out)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("image size {size} bytes is too small")),
            "{format}: {err}"
        );
        assert!(err.contains("kernel 3145728"), "{format}: {err}");
    }
    let err = make("vdi", &files, None, t.path(), &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown image format `vdi`"), "{err}");
}

#[test]
fn unsupported_image_format_is_an_eval_error() {
    let t = tempfile::tempdir().unwrap();
    let s = spec(
        t.path(),
        r#"kernel = { package = "kernel", modules = [] }"#,
        r#"initrd = { init = "echo hi" }
  images = [{ format = "tar" }]"#,
    );
    let err = fails(&s, "os-tree");
    assert!(err.contains("image format `tar` is not supported"), "{err}");
    assert!(err.contains("iso, raw, hdd, qcow2"), "{err}");
}

#[test]
fn kernel_config_needs_the_packages_own_config() {
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("k.config"), "CONFIG_OVERLAY_FS=m\n").unwrap();
    let s = spec(
        t.path(),
        r#"kernel = { package = "kernel", modules = [], config = ./k.config }"#,
        "",
    );
    let err = fails(&s, "kernel");
    assert!(
        err.contains(
            "kernel package kernel-3.10.0-1.el6.x86_64 has no /boot/config-3.10.0-1.el6.x86_64"
        ),
        "{err}"
    );
    assert!(err.contains("k.config"), "{err}");

    // A fragment that is not .config syntax is named with its line.
    std::fs::write(t.path().join("k.config"), "# ok\nOVERLAY_FS=m\n").unwrap();
    let err = fails(&s, "kernel");
    assert!(err.contains("k.config:2: `OVERLAY_FS=m` is not"), "{err}");
}

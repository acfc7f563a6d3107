//! Boots what `cvmbuild realize` builds from the bundled boot example
//! (examples/boot/boot.cvm): RPMs wrapping Debian's real kernel and
//! busybox-static (examples/boot/make-repo.sh) pinned by the spec, the ISO and the raw disk under qemu (TCG, serial
//! console). The initrd's /init prints a marker with the release, the
//! branch (both from the kernel command line the image's boot loader
//! passes) and the loaded modules, then powers off. Also checks that a
//! rebuild in a fresh store gives byte-identical iso, raw and qcow2 images.
//! Going further: with the OS tree attached as a squashfs virtio disk, the
//! initrd overlays it with tmpfs and switches root; the OS's own init
//! prints the marker and shows that / is a writable overlay and that a
//! setuid file owned by the tree's own account kept its owner and mode.
//!
//! Needs .ci/deps (qemu-system-x86, syslinux, xorriso, mtools, dosfstools,
//! rpmbuild, createrepo_c) and apt access for the kernel package, which is
//! cached in the target directory.

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/boot");

/// The example's spec, after its repository was made as its comment says
/// (`bash examples/boot/make-repo.sh`, the .deb cached in the target dir).
fn spec() -> &'static Path {
    static SPEC: OnceLock<PathBuf> = OnceLock::new();
    SPEC.get_or_init(|| {
        let out = Command::new("bash")
            .arg(Path::new(EXAMPLE).join("make-repo.sh"))
            .arg(Path::new(env!("CARGO_TARGET_TMPDIR")).join("boot-debs"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "make-repo.sh failed (run .ci/deps): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Path::new(EXAMPLE).join("boot.cvm")
    })
}

/// Realizes the images into `store`; root name -> blob path, and the kept
/// modules as the markers list them (sorted, `,` after each).
fn realize(store: &Path) -> (BTreeMap<String, PathBuf>, String) {
    let out = crate::support::cvmbuild(store.parent().unwrap())
        .arg("realize")
        .arg(spec())
        .args(["--branch", "production", "--json", "--store"])
        .arg(store)
        .args(["--root", "kernel", "--root", "initrd", "--root", "rootfs"])
        .args([
            "--root",
            "image:iso",
            "--root",
            "image:raw",
            "--root",
            "image:qcow2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "realize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = v[0]["outputs"].as_object().unwrap();
    let modules = outputs["kernel"]["meta"]["modules"].as_str().unwrap();
    let paths = outputs
        .iter()
        .filter(|(_, o)| o["root"]["kind"] == "blob")
        .map(|(k, o)| {
            let h = o["root"]["hash"].as_str().unwrap();
            (k.clone(), store.join("blobs").join(&h[..2]).join(h))
        })
        .collect();
    (paths, format!("{modules},"))
}

/// Boots `drive_args` and returns the serial output, killing qemu after
/// 120 s (it powers off by itself in well under that).
fn boot(drive_args: &[&str]) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
            "-nodefaults",
            "-serial",
            "stdio",
            "-vga",
            "none",
        ])
        .args(drive_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 is installed (.ci/deps)");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = String::new();
    child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
    eprintln!("{drive_args:?}: {:.1} s", started.elapsed().as_secs_f64());
    s
}

fn assert_marker(serial: &str, what: &str, want: &str) {
    assert!(
        serial.lines().any(|l| l.ends_with(want)),
        "{what}: no marker `{want}` in the serial output:\n{serial}"
    );
}

#[test]
fn iso_and_raw_boot_and_rebuilds_are_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let (first, modules) = realize(&tmp.path().join("store1"));
    assert!(
        modules.contains("virtio_net,") && modules.contains("failover,"),
        "{modules}"
    );

    // The initrd is a newc archive that cpio lists, with the device nodes.
    let mut cpio = Vec::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(&first["initrd"]).unwrap())
        .unwrap()
        .read_to_end(&mut cpio)
        .unwrap();
    let mut c = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cpio is installed");
    std::io::Write::write_all(&mut c.stdin.take().unwrap(), &cpio).unwrap();
    let listing = String::from_utf8(c.wait_with_output().unwrap().stdout).unwrap();
    for p in ["init", "dev/console", "dev/null", "bin/busybox", "etc/motd"] {
        assert!(
            listing.lines().any(|l| l == p),
            "{p} not in the initrd:\n{listing}"
        );
    }
    assert!(listing.lines().any(|l| l.ends_with("/virtio_net.ko")));
    assert!(
        !listing.lines().any(|l| l.ends_with("/isofs.ko")),
        "trimmed module in the initrd"
    );

    let marker =
        format!("CVMBUILD-BOOT-OK release=ucernvm-1.0.0 branch=production modules={modules}");
    let iso = first["image:iso"].to_str().unwrap();
    assert_marker(&boot(&["-cdrom", iso]), "iso", &marker);
    let raw = format!(
        "file={},format=raw,snapshot=on",
        first["image:raw"].display()
    );
    assert_marker(&boot(&["-drive", &raw]), "raw", &marker);

    // The OS tree as a second disk: the initrd switches root into it.
    let rootfs = format!(
        "file={},format=raw,if=virtio,readonly=on",
        first["rootfs"].display()
    );
    let os_marker = format!(
        "CVMBUILD-OS-OK release=ucernvm-1.0.0 branch=production root=overlay probe=written owner=4242:4243:4750 modules={modules}"
    );
    let serial = boot(&["-boot", "d", "-cdrom", iso, "-drive", &rootfs]);
    assert_marker(&serial, "iso + rootfs", &os_marker);

    // A fresh store builds everything again; the outputs must not differ.
    let (second, _) = realize(&tmp.path().join("store2"));
    for k in ["initrd", "rootfs", "image:iso", "image:raw", "image:qcow2"] {
        let (a, b) = (
            std::fs::read(&first[k]).unwrap(),
            std::fs::read(&second[k]).unwrap(),
        );
        assert!(a == b, "{k} differs between two builds");
    }
    // `--out` with one image root writes that image as a file, as the
    // example's comment shows.
    let exported = tmp.path().join("ucernvm.iso");
    let out = crate::support::cvmbuild(tmp.path())
        .arg("realize")
        .arg(spec())
        .arg("--store")
        .arg(tmp.path().join("store1"))
        .args(["--root", "image:iso", "--out"])
        .arg(&exported)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let iso_bytes = std::fs::read(&first["image:iso"]).unwrap();
    assert!(
        std::fs::read(&exported).unwrap() == iso_bytes,
        "--out wrote other bytes than the image"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains(&format!("({} bytes)", iso_bytes.len())),
        "{summary}"
    );
    // The text summary reports the kernel's trimming, before and after.
    let out = crate::support::cvmbuild(tmp.path())
        .arg("realize")
        .arg(spec())
        .arg("--store")
        .arg(tmp.path().join("store1"))
        .args(["--root", "kernel"])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stdout);
    let kept = modules.matches(',').count();
    assert!(
        summary.contains(" MiB -> ") && summary.contains(&format!(" MiB, {kept} kept)")),
        "{summary}"
    );

    // μCernVM's budget: the whole boot image in at most 12 MB.
    let len = |k: &str| std::fs::metadata(&first[k]).unwrap().len();
    for k in ["image:iso", "image:raw", "image:qcow2"] {
        assert!(len(k) <= 12_000_000, "{k} is {} bytes", len(k));
    }
    eprintln!(
        "sizes: iso {} raw {} qcow2 {} rootfs {}",
        len("image:iso"),
        len("image:raw"),
        len("image:qcow2"),
        len("rootfs")
    );
}

/// `kernel.config` is checked against the real kernel package's
/// /boot/config: the example's own fragment passes (the boot test builds
/// it); unmet options fail the kernel derivation, each named with its line.
#[test]
fn unmet_kernel_config_names_each_option() {
    let tmp = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(spec()).unwrap();
    let repo = Path::new(EXAMPLE).join("repo");
    let text = example
        .replace("\"./repo\"", &format!("{:?}", repo.to_str().unwrap()))
        .replace(
            "config  = ./kernel.config",
            r#"config  = "CONFIG_TMPFS=y\nCONFIG_OVERLAY_FS=y\n# CONFIG_MODULES is not set\nCONFIG_HZ=1000\n""#,
        );
    assert_ne!(text, example);
    let spec = tmp.path().join("boot.cvm");
    std::fs::write(&spec, text).unwrap();
    std::fs::copy(
        Path::new(EXAMPLE).join("init.sh"),
        tmp.path().join("init.sh"),
    )
    .unwrap();
    let out = crate::support::cvmbuild(tmp.path())
        .arg("realize")
        .arg(&spec)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .args(["--root", "kernel"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("does not satisfy kernel.config (inline)"),
        "{err}"
    );
    assert!(err.contains("per its /boot/config-"), "{err}");
    for want in [
        "line 2: CONFIG_OVERLAY_FS=y wanted, the kernel has CONFIG_OVERLAY_FS=m",
        "line 3: CONFIG_MODULES=n wanted, the kernel has CONFIG_MODULES=y",
        "line 4: CONFIG_HZ=1000 wanted, the kernel has CONFIG_HZ=250",
    ] {
        assert!(err.contains(want), "no `{want}` in {err}");
    }
    assert!(!err.contains("CONFIG_TMPFS"), "{err}");
}

//! The external tools and boot loader files images are made with, and
//! their versions.
//!
//! An image's bytes depend on `xorriso`, `mkfs.fat`, `mtools`, `syslinux`
//! and `qemu-img` and on the boot loader binaries, so their versions (the
//! tools' own `--version` line, the files' BLAKE3) go into the image
//! derivation's parameters at eval time, and the builder refuses to run if
//! the machine has changed since.

use super::Error;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// isolinux's El Torito boot image (Debian package `isolinux`).
pub const ISOLINUX_BIN: &str = "/usr/lib/ISOLINUX/isolinux.bin";
/// The hybrid MBR that makes an ISO bootable from a disk (`isolinux`).
pub const ISOHDPFX_BIN: &str = "/usr/lib/ISOLINUX/isohdpfx.bin";
/// isolinux's core module (`syslinux-common`).
pub const LDLINUX_C32: &str = "/usr/lib/syslinux/modules/bios/ldlinux.c32";
/// syslinux's MBR boot code for raw disks (`syslinux-common`).
pub const MBR_BIN: &str = "/usr/lib/syslinux/mbr/mbr.bin";

/// Tools (with the argument that prints their version) and files per format.
fn needs(
    format: &str,
) -> (
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
) {
    match format {
        "iso" => (
            &[("xorriso", "-version")],
            &[ISOLINUX_BIN, ISOHDPFX_BIN, LDLINUX_C32],
        ),
        "raw" | "hdd" => (
            &[
                ("mkfs.fat", "--version"),
                ("mcopy", "--version"),
                ("syslinux", "--version"),
            ],
            &[MBR_BIN],
        ),
        "qcow2" => (
            &[
                ("mkfs.fat", "--version"),
                ("mcopy", "--version"),
                ("syslinux", "--version"),
                ("qemu-img", "--version"),
            ],
            &[MBR_BIN],
        ),
        "squashfs" => (&[("mksquashfs", "-version")], &[]),
        _ => (&[], &[]),
    }
}

/// Tool name or file path -> version line or `blake3:HEX`, or `missing`.
/// Each is looked up once per process.
pub fn versions(format: &str) -> BTreeMap<String, String> {
    static CACHE: OnceLock<Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let (tools, files) = needs(format);
    let mut out = BTreeMap::new();
    for (tool, arg) in tools {
        let mut c = cache.lock().expect("version cache");
        let v = c
            .entry(tool.to_string())
            .or_insert_with(|| tool_version(tool, arg));
        out.insert(tool.to_string(), v.clone());
    }
    for f in files {
        let mut c = cache.lock().expect("version cache");
        let v = c
            .entry(f.to_string())
            .or_insert_with(|| match std::fs::read(f) {
                Ok(b) => format!("blake3:{}", blake3::hash(&b).to_hex()),
                Err(_) => "missing".into(),
            });
        out.insert(f.to_string(), v.clone());
    }
    out
}

fn tool_version(tool: &str, arg: &str) -> String {
    match Command::new(tool).arg(arg).output() {
        Ok(o) => {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("unknown")
                .trim()
                .to_string()
        }
        Err(_) => "missing".into(),
    }
}

/// Checks that the machine still has what the derivation was evaluated
/// with; the error names the tool and both versions.
pub fn check(format: &str, recorded: &BTreeMap<String, String>) -> Result<(), Error> {
    for (what, now) in versions(format) {
        if now == "missing" {
            return Err(format!(
                "`{what}` is not installed; images need syslinux, syslinux-common, isolinux, squashfs-tools, xorriso, mtools, dosfstools and qemu-utils (see .ci/deps)"
            ).into());
        }
        match recorded.get(&what) {
            Some(v) if *v == now => {}
            v => {
                return Err(format!(
                    "`{what}` changed since eval (evaluated with {}, found {now}); run eval again",
                    v.map_or("nothing", String::as_str)
                )
                .into())
            }
        }
    }
    Ok(())
}

/// Runs `cmd` with `SOURCE_DATE_EPOCH` set (xorriso, mtools and syslinux
/// stamp times from it) and a fixed locale; the error carries the
/// command line and its stderr.
pub fn run(cmd: &mut Command, epoch: i64) -> Result<(), Error> {
    cmd.env("SOURCE_DATE_EPOCH", epoch.to_string())
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .env("MTOOLS_SKIP_CHECK", "1");
    let line = format!("{cmd:?}");
    let o = cmd.output().map_err(|e| format!("{line}: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "{line} failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )
        .into());
    }
    Ok(())
}

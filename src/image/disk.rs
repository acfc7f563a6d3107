//! Image assembly: the boot loader configuration and the three formats.
//!
//! - `iso`: a hybrid ISO 9660 image with isolinux (bootable as a CD and,
//!   through isolinux's hybrid MBR, as a disk), made by `xorriso`.
//! - `raw` (or `hdd`): an MBR disk whose single active FAT partition at 1 MiB holds
//!   syslinux, the kernel and the initrd. The partition table is written
//!   here; the file system by `mkfs.fat` + `mcopy`, the boot loader by
//!   `syslinux --install`.
//! - `qcow2`: the raw disk through `qemu-img convert` (byte-reproducible;
//!   vdi and vmdk are not, they embed random UUIDs, so they are not offered).
//!
//! Every input file is staged with mtime = the release's epoch and every
//! tool runs with `SOURCE_DATE_EPOCH`, so rebuilding gives the same bytes.

use super::tools;
use super::Error;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

/// What goes on every image.
pub struct BootFiles<'a> {
    pub vmlinuz: &'a Path,
    pub initrd: &'a Path,
    /// The kernel command line, release and branch included.
    pub cmdline: &'a str,
    pub epoch: i64,
}

/// The formats [`make`] builds.
/// `hdd` is μCernVM's name for the raw disk and gives the same bytes.
pub const FORMATS: &[&str] = &["iso", "raw", "hdd", "qcow2"];

/// Where the boot partition starts on raw disks: 1 MiB, as partitioning
/// tools align it.
const PART_START: u64 = 1 << 20;

/// The syslinux / isolinux configuration: boot straight into the kernel.
pub fn boot_config(cmdline: &str) -> String {
    format!(
        "DEFAULT cvmbuild\nPROMPT 0\nTIMEOUT 0\nLABEL cvmbuild\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND {cmdline}\n"
    )
}

/// Builds `format` into `out` inside scratch directory `work`. `size`, if
/// given, is the disk size (raw, qcow2) or the maximum size (iso).
pub fn make(
    format: &str,
    files: &BootFiles,
    size: Option<u64>,
    work: &Path,
    out: &Path,
) -> Result<(), Error> {
    match format {
        "iso" => {
            iso(files, work, out)?;
            let got = fs::metadata(out)
                .map_err(|e| format!("{}: {e}", out.display()))?
                .len();
            match size {
                Some(max) if got > max => Err(format!(
                    "image size {max} bytes is too small: the ISO needs {got} bytes (kernel {}, initrd {})",
                    len(files.vmlinuz),
                    len(files.initrd)
                ).into()),
                _ => Ok(()),
            }
        }
        "raw" | "hdd" => raw(files, size, work, out),
        "qcow2" => {
            let raw_path = work.join("disk.raw");
            raw(files, size, work, &raw_path)?;
            tools::run(
                Command::new("qemu-img")
                    .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                    .arg(&raw_path)
                    .arg(out),
                files.epoch,
            )
        }
        other => Err(format!(
            "unknown image format `{other}` (expected one of {})",
            FORMATS.join(", ")
        )
        .into()),
    }
}

fn len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Copies `src` to `dst` and stamps it (and nothing else) with the epoch.
fn stage(src: &Path, dst: &Path, epoch: i64) -> Result<(), Error> {
    if let Some(p) = dst.parent() {
        fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    fs::copy(src, dst)
        .map_err(|e| format!("copying {} to {}: {e}", src.display(), dst.display()))?;
    stamp(dst, epoch)
}

fn write_staged(dst: &Path, bytes: &[u8], epoch: i64) -> Result<(), Error> {
    fs::write(dst, bytes).map_err(|e| format!("{}: {e}", dst.display()))?;
    stamp(dst, epoch)
}

fn stamp(p: &Path, epoch: i64) -> Result<(), Error> {
    let t = UNIX_EPOCH + Duration::from_secs(epoch.max(0) as u64);
    File::open(p)
        .and_then(|f| f.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t)))
        .map_err(|e| format!("setting the time of {}: {e}", p.display()).into())
}

fn iso(f: &BootFiles, work: &Path, out: &Path) -> Result<(), Error> {
    let root = work.join("iso");
    stage(f.vmlinuz, &root.join("vmlinuz"), f.epoch)?;
    stage(f.initrd, &root.join("initrd.img"), f.epoch)?;
    stage(
        Path::new(tools::ISOLINUX_BIN),
        &root.join("isolinux/isolinux.bin"),
        f.epoch,
    )?;
    stage(
        Path::new(tools::LDLINUX_C32),
        &root.join("isolinux/ldlinux.c32"),
        f.epoch,
    )?;
    write_staged(
        &root.join("isolinux/isolinux.cfg"),
        boot_config(f.cmdline).as_bytes(),
        f.epoch,
    )?;
    stamp(&root.join("isolinux"), f.epoch)?;
    stamp(&root, f.epoch)?;
    tools::run(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-o"])
            .arg(out)
            .args([
                "-V",
                "CVMBUILD",
                "-r",
                "-J",
                "-isohybrid-mbr",
                tools::ISOHDPFX_BIN,
            ])
            .args(["-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin"])
            .args(["-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"])
            .arg(&root),
        f.epoch,
    )
}

fn raw(f: &BootFiles, size: Option<u64>, work: &Path, out: &Path) -> Result<(), Error> {
    let stage_dir = work.join("fat");
    fs::create_dir_all(&stage_dir).map_err(|e| format!("{}: {e}", stage_dir.display()))?;
    let (k, i) = (stage_dir.join("vmlinuz"), stage_dir.join("initrd.img"));
    stage(f.vmlinuz, &k, f.epoch)?;
    stage(f.initrd, &i, f.epoch)?;
    let cfg = stage_dir.join("syslinux.cfg");
    write_staged(&cfg, boot_config(f.cmdline).as_bytes(), f.epoch)?;

    // Contents plus room for ldlinux.sys/.c32 (~120 KiB), the FAT tables,
    // directory entries and cluster slack (~3%), in 64 KiB steps: a 9 MB
    // kernel + initrd gives an 11 MB disk, inside μCernVM's 12 MB.
    let content = len(&k) + len(&i) + len(&cfg);
    let fat_size = (content + content / 32 + 512 * 1024).div_ceil(64 * 1024) * 64 * 1024;
    let disk_size = match size {
        Some(s) if s < PART_START + fat_size => {
            return Err(format!(
                "image size {s} bytes is too small: the boot partition alone needs {} bytes at offset {PART_START} (kernel {}, initrd {})",
                fat_size,
                len(&k),
                len(&i)
            ).into())
        }
        Some(s) => s,
        None => PART_START + fat_size,
    };
    let fat = work.join("boot.fat");
    File::create(&fat)
        .and_then(|h| h.set_len(fat_size))
        .map_err(|e| format!("{}: {e}", fat.display()))?;
    let volid = format!("{:08x}", f.epoch as u32);
    tools::run(
        Command::new("mkfs.fat")
            .args(["--invariant", "-i", &volid, "-n", "CVMBUILD", "-h"])
            .arg((PART_START / 512).to_string())
            .arg(&fat),
        f.epoch,
    )?;
    tools::run(
        Command::new("mcopy")
            .args(["-m", "-i"])
            .arg(&fat)
            .args([&k, &i, &cfg])
            .arg("::/"),
        f.epoch,
    )?;
    tools::run(Command::new("syslinux").arg("--install").arg(&fat), f.epoch)?;

    let mut boot = vec![0u8; 512];
    File::open(&fat)
        .and_then(|mut h| h.read_exact(&mut boot))
        .map_err(|e| format!("{}: {e}", fat.display()))?;
    let ptype = partition_type(&boot)?;
    let mbr_code = fs::read(tools::MBR_BIN).map_err(|e| format!("{}: {e}", tools::MBR_BIN))?;
    let mbr = mbr(
        &mbr_code,
        f.epoch as u32,
        ptype,
        PART_START / 512,
        fat_size / 512,
    )?;

    let tmp: PathBuf = out.with_extension("partial");
    let mut disk = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let mut fat_bytes = File::open(&fat).map_err(|e| format!("{}: {e}", fat.display()))?;
    (|| -> std::io::Result<()> {
        disk.write_all(&mbr)?;
        disk.seek(SeekFrom::Start(PART_START))?;
        std::io::copy(&mut fat_bytes, &mut disk)?;
        disk.set_len(disk_size)?;
        disk.sync_all()
    })()
    .map_err(|e| format!("{}: {e}", tmp.display()))?;
    fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()).into())
}

/// The MBR partition type for the FAT `mkfs.fat` chose (it picks FAT12,
/// 16 or 32 by size), read from the boot sector's file system label.
fn partition_type(boot: &[u8]) -> Result<u8, Error> {
    match (&boot[54..59], &boot[82..87]) {
        (b"FAT12", _) => Ok(0x01),
        (b"FAT16", _) => Ok(0x0e),
        (_, b"FAT32") => Ok(0x0c),
        _ => Err("mkfs.fat wrote a boot sector without a FAT type label".into()),
    }
}

/// A 512-byte MBR: boot code (at most 440 bytes), disk signature, one
/// active partition of `ptype` from sector `start` for `count` sectors.
fn mbr(code: &[u8], signature: u32, ptype: u8, start: u64, count: u64) -> Result<[u8; 512], Error> {
    if code.len() > 440 {
        return Err(format!("MBR boot code is {} bytes; at most 440 fit", code.len()).into());
    }
    let (start32, count32) = match (u32::try_from(start), u32::try_from(count)) {
        (Ok(s), Ok(c)) => (s, c),
        _ => {
            return Err("the boot partition lies beyond 2 TiB, which an MBR cannot address".into())
        }
    };
    let mut m = [0u8; 512];
    m[..code.len()].copy_from_slice(code);
    m[440..444].copy_from_slice(&signature.to_le_bytes());
    let p = &mut m[446..462];
    p[0] = 0x80;
    p[1..4].copy_from_slice(&chs(start));
    p[4] = ptype;
    p[5..8].copy_from_slice(&chs(start + count - 1));
    p[8..12].copy_from_slice(&start32.to_le_bytes());
    p[12..16].copy_from_slice(&count32.to_le_bytes());
    m[510] = 0x55;
    m[511] = 0xaa;
    Ok(m)
}

/// Cylinder/head/sector of an LBA in the 255-head, 63-sector geometry,
/// saturated at 1023/254/63 as partitioning tools do.
fn chs(lba: u64) -> [u8; 3] {
    let (c, h, s) = (lba / (255 * 63), (lba / 63) % 255, lba % 63 + 1);
    let (c, h, s) = if c > 1023 { (1023, 254, 63) } else { (c, h, s) };
    [
        h as u8,
        (s as u8) | (((c >> 2) & 0xc0) as u8),
        (c & 0xff) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_entry() {
        let m = mbr(&[0xfa; 440], 0x1234_5678, 0x0e, 2048, 20480).unwrap();
        assert_eq!(&m[440..444], &[0x78, 0x56, 0x34, 0x12]);
        assert_eq!(m[446], 0x80);
        // LBA 2048 = C0 H32 S33, as fdisk writes it.
        assert_eq!(&m[447..450], &[32, 33, 0]);
        assert_eq!(m[450], 0x0e);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 2048);
        assert_eq!(u32::from_le_bytes(m[458..462].try_into().unwrap()), 20480);
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(chs(u64::from(u32::MAX)), [254, 0xff, 0xff]);
        assert!(mbr(&[0; 441], 0, 0x0e, 2048, 1).is_err());
    }
}

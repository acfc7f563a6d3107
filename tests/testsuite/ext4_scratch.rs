//! `cvmbuild-client make-ext4`: the ext2 file system busybox's `mke2fs`
//! makes (all μCernVM's initrd has) turned into ext4, judged by
//! e2fsprogs: `e2fsck -fn` clean, `dumpe2fs` shows the journal and the
//! ext4 features, the kernel mounts it as ext4 and writes extent files,
//! and it is still clean after that. Small disks (1 KiB blocks, a journal
//! in one run) and large ones (4 KiB blocks, a journal split across
//! groups) both. Anything else is refused with the device named and not
//! a byte changed. Needs root (loop mounts), busybox and e2fsprogs.

use std::path::Path;
use std::process::{Command, Output};

const CLIENT: &str = env!("CARGO_BIN_EXE_cvmbuild-client");

fn sh(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("the tool is installed (.ci/deps)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A sparse image of `size` bytes with busybox's ext2 on it.
fn busybox_ext2(path: &Path, size: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    sh(Command::new("busybox")
        .args(["mke2fs", "-F", "-L", "UROOT"])
        .arg(path));
}

fn make_ext4(path: &Path) -> Output {
    Command::new(CLIENT)
        .arg("make-ext4")
        .arg(path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn fsck_clean(path: &Path, when: &str) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{when}: e2fsck -fn {}: {}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dumpe2fs(path: &Path) -> String {
    String::from_utf8(sh(Command::new("dumpe2fs").arg("-h").arg(path)).stdout).unwrap()
}

fn field<'a>(sb: &'a str, name: &str) -> &'a str {
    sb.lines()
        .find_map(|l| l.strip_prefix(name))
        .map_or("", |v| v.trim_start_matches(':').trim())
}

#[test]
fn busybox_ext2_becomes_ext4_that_e2fsck_and_the_kernel_accept() {
    let tmp = tempfile::tempdir().unwrap();
    // 8 MiB: 1 KiB blocks, a 1024-block journal in one run; 5 GiB: 4 KiB
    // blocks, the largest journal, which no group's free space holds.
    for (size, block, journal, runs) in [
        (8u64 << 20, "1024", 1024, "1 extent"),
        (5 << 30, "4096", 32768, "2 extent"),
    ] {
        let img = tmp.path().join(format!("scratch-{size}.img"));
        busybox_ext2(&img, size);
        let before = dumpe2fs(&img);
        assert!(!field(&before, "Filesystem features").contains("has_journal"));
        assert_eq!(field(&before, "Block size"), block);

        let out = make_ext4(&img);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(&format!("journal of {journal} blocks in {runs}")),
            "{err}"
        );
        fsck_clean(&img, "after make-ext4");
        let sb = dumpe2fs(&img);
        let features: Vec<&str> = field(&sb, "Filesystem features").split(' ').collect();
        for f in [
            "has_journal",
            "extent",
            "huge_file",
            "dir_nlink",
            "large_file",
        ] {
            assert!(features.contains(&f), "no {f}: {features:?}");
        }
        assert_eq!(field(&sb, "Filesystem volume name"), "UROOT");
        assert_eq!(field(&sb, "Journal inode"), "8");
        assert_eq!(field(&sb, "Journal backup"), "inode blocks");
        assert_eq!(field(&sb, "Journal start"), "0", "an empty journal");
        let total = field(&sb, "Total journal blocks");
        assert_eq!(total, journal.to_string(), "{sb}");

        // The kernel mounts it as ext4 and writes extent-mapped files.
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        sh(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let written = std::fs::write(mnt.join("file"), &data)
            .and_then(|()| std::fs::create_dir_all(mnt.join("a/b")))
            .and_then(|()| std::fs::write(mnt.join("a/b/c"), b"c\n"));
        let attrs = Command::new("lsattr").arg(mnt.join("file")).output();
        sh(Command::new("umount").arg(&mnt));
        written.unwrap();
        let attrs = String::from_utf8(attrs.unwrap().stdout).unwrap();
        assert!(
            attrs.split_whitespace().next().unwrap_or("").contains('e'),
            "not extent-mapped: {attrs}"
        );
        fsck_clean(&img, "after writing through the kernel");

        // Twice: nothing more to do, not a byte changed.
        let bytes = std::fs::read(&img).unwrap();
        let out = make_ext4(&img);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("has a journal already"));
        assert!(std::fs::read(&img).unwrap() == bytes);
        std::fs::remove_file(&img).unwrap();
    }
}

#[test]
fn what_busybox_did_not_just_make_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let zeros = tmp.path().join("zeros.img");
    std::fs::write(&zeros, vec![0u8; 4 << 20]).unwrap();

    // Not clean: the state field says "not clean" (mounted, never
    // unmounted).
    let dirty = tmp.path().join("dirty.img");
    busybox_ext2(&dirty, 8 << 20);
    let mut b = std::fs::read(&dirty).unwrap();
    b[1024 + 0x3A] = 0;
    std::fs::write(&dirty, b).unwrap();

    // Checksummed metadata, which this step does not write.
    let csum = tmp.path().join("csum.img");
    std::fs::File::create(&csum)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    sh(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2", "-O", "metadata_csum"])
        .arg(&csum));

    for (img, why) in [
        (&zeros, "no ext2 superblock"),
        (&dirty, "not clean"),
        (&csum, "features beyond what busybox's mke2fs makes"),
    ] {
        let before = std::fs::read(img).unwrap();
        let out = make_ext4(img);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&img.display().to_string()) && err.contains(why),
            "{why}: {err}"
        );
        assert!(std::fs::read(img).unwrap() == before, "{why}: changed");
    }
}

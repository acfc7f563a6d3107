//! Boot outputs: the trimmed kernel, the initial ramdisk and the bootable
//! images (hybrid ISO, raw disk, qcow2), and the OS tree as a squashfs
//! root file system.
//!
//! Pure Rust where the format is simple and fully ours (cpio, compression,
//! the MBR partition table); the real tools where a boot loader must be
//! installed into a file system (`xorriso` with isolinux, `mkfs.fat`,
//! `mcopy`, `syslinux`) or a format is theirs (`qemu-img`). Their versions
//! are part of the image derivation's id ([`tools::versions`]).

pub mod compress;
pub mod cpio;
pub mod disk;
pub mod elf;
pub mod initrd;
pub mod kconfig;
pub mod kernel;
pub mod paths;
pub mod rootfs;
pub mod tools;

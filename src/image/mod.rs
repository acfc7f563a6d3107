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

/// Why a boot output could not be made. The text names the kernel
/// package, module, binary or tool concerned.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("{0}")]
    #[diagnostic(code(image::failed))]
    Failed(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] crate::store::Error),
    #[error("{0}")]
    #[diagnostic(code(image::io))]
    Io(#[from] std::io::Error),
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error::Failed(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Error {
        Error::Failed(s.to_string())
    }
}

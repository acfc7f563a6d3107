//! The read-only file-system interface between a mounted repository and
//! whatever presents it (the FUSE layer, `cvmbuild ls`/`cat`).
//!
//! Inode numbers are the client's own: stable for the lifetime of one
//! mount, equal for every name of one hardlink group, [`ROOT_INO`] for
//! the root. Errors carry the reason; a presenter logs it and hands the
//! reader only the errno.

/// An inode number as the kernel sees it.
pub type Ino = u64;

/// The root directory's inode (FUSE's `FUSE_ROOT_ID`).
pub const ROOT_INO: Ino = 1;

/// What kind of entry an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

/// Everything `stat` reports about an entry, as the catalog records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// The full `st_mode`, type bits and setuid/setgid/sticky included.
    pub mode: u32,
    /// File size; a symlink's target length; 0 for devices.
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    /// `makedev(major, minor)` for character and block devices, else 0.
    pub rdev: u64,
}

/// Why an operation failed. Everything but a plain absence is a reason
/// worth logging: the reader sees only [`FsError::errno`].
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("not a directory")]
    NotDirectory,
    #[error("is a directory")]
    IsDirectory,
    #[error("not a symbolic link")]
    NotSymlink,
    #[error("no such extended attribute")]
    NoAttribute,
    /// The repository could not be read or failed verification; the text
    /// names the object, URL and cause.
    #[error("{0}")]
    Io(String),
}

impl FsError {
    /// The errno a reader gets.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDirectory => libc::ENOTDIR,
            FsError::IsDirectory => libc::EISDIR,
            FsError::NotSymlink => libc::EINVAL,
            FsError::NoAttribute => libc::ENODATA,
            FsError::Io(_) => libc::EIO,
        }
    }
}

/// A read-only tree addressed by inode, as FUSE asks for it. Lookups load
/// what they need (nested catalogs, objects) on demand; implementations
/// are shared between FUSE worker threads.
pub trait ReadOnlyFs: Send + Sync {
    /// The attributes of `ino`.
    fn getattr(&self, ino: Ino) -> Result<Attr, FsError>;
    /// The entry `name` in directory `parent`.
    fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError>;
    /// Every entry of directory `dir` (without `.` and `..`), sorted by name.
    fn readdir(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Attr)>, FsError>;
    /// A symlink's target.
    fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError>;
    /// Up to `size` bytes of a regular file from `offset` (fewer only at
    /// the end of the file).
    fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError>;
    /// Names of the extended attributes of `ino`, the informational
    /// `user.*` ones included.
    fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError>;
    /// The value of extended attribute `name` of `ino`.
    fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError>;
}

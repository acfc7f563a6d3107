//! Presents any [`ReadOnlyFs`] as a read-only FUSE mount (the `fuser`
//! crate, FUSE protocol spoken in Rust; no libfuse).
//!
//! How the mount is made: `fuser`'s pure-Rust mounter opens `/dev/fuse`
//! and calls `mount(2)` itself (`fd=N,rootmode=…,user_id=…,group_id=…`).
//! Only when that is refused with `EPERM` (not root) does it run the
//! setuid `fusermount3`/`fusermount` helper. So root (the μCernVM initrd,
//! which has no fusermount) mounts with the syscall alone, and an ordinary
//! user needs Debian's `fuse3` package, as for any FUSE file system.
//!
//! The tree under a pinned root catalog never changes, so the kernel is
//! told to keep everything: entry and attribute replies carry [`TTL`],
//! open files keep their page cache between opens (`FOPEN_KEEP_CACHE`),
//! directory listings are cached (`FOPEN_CACHE_DIR`), symlink targets too
//! (`FUSE_CACHE_SYMLINKS`). Permission checks are the kernel's
//! (`default_permissions`), against the modes the catalogs record.
//!
//! Errors reach the reader as [`FsError::errno`]; the reason goes to the
//! [`Log`] the caller gives (a plain absence is not logged: `ENOENT` is
//! the normal answer to a search path probe).

use super::vfs::{Attr, FsError, Ino, Kind, ReadOnlyFs};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, MountOption, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyEntry, ReplyOpen, ReplyXattr, Request, SessionACL,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the kernel may trust an entry or attribute reply: the tree
/// of a pinned root catalog is immutable, so as long as it likes (30 days
/// keeps clear of any jiffies overflow on 32-bit kernels).
pub const TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the reasons behind failed operations go (the CLI prints them on
/// stderr); shared by the FUSE worker threads.
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// How to mount.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `source` column of `/proc/mounts` (upstream shows `cvmfs2`).
    pub fsname: String,
    /// Honour setuid bits and device nodes (`suid,dev`), as a root file
    /// system needs; otherwise `nosuid,nodev`, upstream's default.
    pub suid: bool,
    /// FUSE worker threads (at least 1).
    pub threads: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            fsname: "cvmfs2".into(),
            suid: false,
            threads: 4,
        }
    }
}

/// Why a mount could not be made or ended badly.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum MountError {
    #[error("mount point {path}: {source}")]
    #[diagnostic(code(mount::mountpoint))]
    MountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount point {0} is not a directory")]
    #[diagnostic(code(mount::not_directory))]
    NotDirectory(PathBuf),
    #[error("mount point {0} is busy: something is already mounted there")]
    #[diagnostic(code(mount::busy), help("unmount it first (umount MOUNTPOINT)"))]
    Busy(PathBuf),
    #[error("mount point {0} is not empty")]
    #[diagnostic(
        code(mount::not_empty),
        help("mount on an empty directory; what is in it would be hidden")
    )]
    NotEmpty(PathBuf),
    #[error("cannot mount FUSE on {path}: {source}")]
    #[diagnostic(
        code(mount::fuse),
        help(
            "FUSE needs /dev/fuse (`modprobe fuse`); as a user, also fusermount3 (Debian's fuse3)"
        )
    )]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting {path}: {source}")]
    #[diagnostic(code(mount::unmount))]
    Unmount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("FUSE session on {path} ended with an error: {source}")]
    #[diagnostic(code(mount::session))]
    Session {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a mount point that is missing, not a directory, already a
/// mount point (or a dead FUSE mount) or not empty, before anything is
/// mounted on it. Returns its canonical path.
pub fn check_mountpoint(path: &Path) -> Result<PathBuf, MountError> {
    let io = |source: std::io::Error| {
        if source.raw_os_error() == Some(libc::ENOTCONN) {
            // A FUSE mount whose server died: stat says "transport endpoint
            // is not connected".
            MountError::Busy(path.to_path_buf())
        } else {
            MountError::MountPoint {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let canonical = path.canonicalize().map_err(io)?;
    if !std::fs::metadata(&canonical).map_err(io)?.is_dir() {
        return Err(MountError::NotDirectory(path.to_path_buf()));
    }
    let mountinfo = std::fs::read("/proc/self/mountinfo").map_err(io)?;
    if is_mount_point(&mountinfo, canonical.as_os_str().as_bytes()) {
        return Err(MountError::Busy(canonical));
    }
    if std::fs::read_dir(&canonical).map_err(io)?.next().is_some() {
        return Err(MountError::NotEmpty(canonical));
    }
    Ok(canonical)
}

/// Whether `path` is the mount point (field 5) of a line of
/// `/proc/self/mountinfo`, whose paths escape space, tab, newline and
/// backslash as `\ooo`.
fn is_mount_point(mountinfo: &[u8], path: &[u8]) -> bool {
    mountinfo.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(4)
            .is_some_and(|field| unescape_octal(field) == path)
    })
}

fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let digits = s.get(i + 1..i + 4);
        match digits {
            Some(d) if s[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                out.push(d.iter().fold(0u8, |v, c| (v << 3) | (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    out
}

/// A live mount. Dropping it unmounts.
pub struct Mount {
    session: fuser::BackgroundSession,
    mountpoint: PathBuf,
}

/// Mounts `fs` read-only on `mountpoint` (checked with
/// [`check_mountpoint`] first) and serves it from background threads.
pub fn mount(
    fs: Arc<dyn ReadOnlyFs>,
    mountpoint: &Path,
    options: &Options,
    log: Log,
) -> Result<Mount, MountError> {
    let mountpoint = check_mountpoint(mountpoint)?;
    let mut mount_options = vec![
        MountOption::RO,
        MountOption::FSName(options.fsname.clone()),
        MountOption::Subtype("cvmfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    if options.suid {
        mount_options.extend([MountOption::Suid, MountOption::Dev]);
    } else {
        mount_options.extend([MountOption::NoSuid, MountOption::NoDev]);
    }
    let mut config = fuser::Config::default();
    config.mount_options = mount_options;
    // Root mounts for everyone (an OS tree is read by all users); a user's
    // mount stays the user's, as fusermount allows without configuration.
    config.acl = if nix_euid_is_root() {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = options.threads > 1;
    let server = Server {
        fs,
        log,
        dirs: Mutex::new(HashMap::new()),
        next_fh: AtomicU64::new(1),
        parents: Mutex::new(HashMap::new()),
    };
    let session =
        fuser::spawn_mount2(server, &mountpoint, &config).map_err(|source| MountError::Mount {
            path: mountpoint.clone(),
            source,
        })?;
    Ok(Mount {
        session,
        mountpoint,
    })
}

fn nix_euid_is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

impl Mount {
    /// The canonical mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Something that unmounts this mount from another thread (a signal
    /// handler thread); [`Mount::wait`] then returns.
    pub fn unmounter(&self) -> Unmounter {
        Unmounter(self.mountpoint.clone())
    }

    /// Blocks until the file system is unmounted, by [`Unmounter::unmount`]
    /// or by anyone's `umount`.
    pub fn wait(self) -> Result<(), MountError> {
        let path = self.mountpoint.clone();
        self.session
            .join()
            .map_err(|source| MountError::Session { path, source })
    }
}

/// Unmounts a mount point (see [`Mount::unmounter`]).
#[derive(Clone, Debug)]
pub struct Unmounter(PathBuf);

/// How an unmount went.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// Gone at once.
    Now,
    /// Still in use (an open file, a process's working directory):
    /// detached from the name space, served until the last user is done.
    Lazily,
    /// Nothing was mounted there any more.
    AlreadyGone,
}

impl Unmounter {
    /// Unmounts with `umount2(2)`, lazily if the mount is busy; as a user
    /// (the syscall says `EPERM`), through `fusermount3 -u` / `fusermount -u`.
    pub fn unmount(&self) -> Result<Unmounted, MountError> {
        let err = |source| MountError::Unmount {
            path: self.0.clone(),
            source,
        };
        let c_path = std::ffi::CString::new(self.0.as_os_str().as_bytes())
            .map_err(|e| err(std::io::Error::other(e)))?;
        let umount2 = |flags| {
            // SAFETY: c_path is a valid NUL-terminated string.
            if unsafe { libc::umount2(c_path.as_ptr(), flags) } == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        };
        match umount2(0) {
            Ok(()) => Ok(Unmounted::Now),
            Err(e) => match e.raw_os_error() {
                Some(libc::EBUSY) => umount2(libc::MNT_DETACH)
                    .map(|()| Unmounted::Lazily)
                    .map_err(err),
                Some(libc::EINVAL) => Ok(Unmounted::AlreadyGone),
                Some(libc::EPERM) => self.fusermount_unmount().map_err(err),
                _ => Err(err(e)),
            },
        }
    }

    fn fusermount_unmount(&self) -> std::io::Result<Unmounted> {
        let mut last = std::io::Error::other("no fusermount3 or fusermount found");
        for helper in ["fusermount3", "fusermount"] {
            match std::process::Command::new(helper)
                .args(["-u", "-z", "--"])
                .arg(&self.0)
                .output()
            {
                Ok(out) if out.status.success() => return Ok(Unmounted::Now),
                Ok(out) => {
                    return Err(std::io::Error::other(format!(
                        "{helper} -u: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )))
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

/// An open directory's entries, as [`ReadOnlyFs::readdir`] gave them.
type Listing = Arc<Vec<(Vec<u8>, Attr)>>;

/// The `fuser` file system: translates kernel requests into
/// [`ReadOnlyFs`] calls.
struct Server {
    fs: Arc<dyn ReadOnlyFs>,
    log: Log,
    /// Listings of open directories by handle: readdir comes in pieces at
    /// increasing offsets, and one listing must serve them all.
    dirs: Mutex<HashMap<u64, Listing>>,
    next_fh: AtomicU64,
    /// Parent of every directory seen, for the `..` entry of a listing.
    parents: Mutex<HashMap<Ino, Ino>>,
}

impl Server {
    /// The errno for `e`, logging the reason unless it is a plain absence.
    fn fail(&self, op: &str, ino: Ino, name: Option<&[u8]>, e: FsError) -> Errno {
        if !matches!(e, FsError::NotFound | FsError::NoAttribute) {
            let name = name
                .map(|n| format!(" {:?}", String::from_utf8_lossy(n)))
                .unwrap_or_default();
            (self.log)(&format!("{op}(inode {ino}{name}): {e}"));
        }
        Errno::from_i32(e.errno())
    }

    fn remember_parent(&self, parent: Ino, attr: &Attr) {
        if attr.kind == Kind::Directory {
            let mut parents = self.parents.lock().unwrap_or_else(|p| p.into_inner());
            parents.insert(attr.ino, parent);
        }
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

/// `makedev` (glibc's encoding, as [`Attr::rdev`] holds it) to the
/// kernel's 32-bit `new_encode_dev`, which is what `fuse_attr.rdev` carries.
fn kernel_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev);
    let minor = libc::minor(rdev);
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

fn time(secs: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + nanos
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let mtime = time(a.mtime, a.mtime_ns);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: file_type(a.kind),
        // The permission bits, setuid/setgid/sticky included (the type
        // bits travel in `kind`).
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: kernel_rdev(a.rdev),
        blksize: 4096,
        flags: 0,
    }
}

/// Answers an xattr request: the size when asked for it (`size` 0), the
/// bytes when they fit, `ERANGE` when they do not.
fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    match u32::try_from(data.len()) {
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len <= size => reply.data(data),
        _ => reply.error(Errno::ERANGE),
    }
}

impl Filesystem for Server {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Optional speed-ups: a kernel without them still works.
        for cap in [
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_PARALLEL_DIROPS,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(attr) => {
                self.remember_parent(parent.0, &attr);
                reply.entry(&TTL, &file_attr(&attr), Generation(0));
            }
            Err(e) => reply.error(self.fail("lookup", parent.0, Some(name.as_bytes()), e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &file_attr(&attr)),
            Err(e) => reply.error(self.fail("getattr", ino.0, None, e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.fail("readlink", ino.0, None, e)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        match self.fs.read(ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(self.fail("read", ino.0, None, e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.readdir(ino.0) {
            Ok(entries) => {
                for (_, attr) in &entries {
                    self.remember_parent(ino.0, attr);
                }
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
                dirs.insert(fh, Arc::new(entries));
                reply.opened(
                    FileHandle(fh),
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
                );
            }
            Err(e) => reply.error(self.fail("opendir", ino.0, None, e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = {
            let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            dirs.get(&fh.0).cloned()
        };
        let Some(entries) = entries else {
            return reply.error(Errno::EBADF);
        };
        let parent = {
            let parents = self.parents.lock().unwrap_or_else(|p| p.into_inner());
            parents.get(&ino.0).copied().unwrap_or(ino.0)
        };
        let dots = [
            (ino.0, FileType::Directory, OsStr::new(".")),
            (parent, FileType::Directory, OsStr::new("..")),
        ];
        let children = entries
            .iter()
            .map(|(name, a)| (a.ino, file_type(a.kind), OsStr::from_bytes(name)));
        // Offsets are positions in this listing; the kernel hands back the
        // one after the last entry it took.
        for (i, (child, kind, name)) in dots.into_iter().chain(children).enumerate() {
            let position = i as u64;
            if position < offset {
                continue;
            }
            if reply.add(INodeNo(child), position + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: fuser::ReplyEmpty,
    ) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.remove(&fh.0);
        reply.ok();
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.fs.getxattr(ino.0, name.as_bytes()) {
            Ok(value) => reply_xattr(reply, size, &value),
            Err(e) => reply.error(self.fail("getxattr", ino.0, Some(name.as_bytes()), e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.listxattr(ino.0) {
            Ok(names) => {
                let mut list = Vec::new();
                for name in names {
                    list.extend_from_slice(&name);
                    list.push(0);
                }
                reply_xattr(reply, size, &list);
            }
            Err(e) => reply.error(self.fail("listxattr", ino.0, None, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Really mounts a small in-memory tree (root and /dev/fuse needed: the
    //! test fails without them) and reads it back through the kernel.
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::process::Command;
    use std::sync::mpsc;

    /// A v2 `security.capability` value: cap_net_bind_service=ep.
    const CAP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    struct Node {
        attr: Attr,
        data: Vec<u8>,
        children: Vec<(&'static str, Ino)>,
        xattrs: Vec<(&'static str, Vec<u8>)>,
    }

    /// Inode 1 `/`, 2 `/dir`, 3 `/dir/file` = `/hard`, 4 `/link`, 5
    /// `/suid`, 6 `/fifo`, 7 `/null`, 8 `/big`, 9 `/broken` (unreadable).
    struct MemFs(HashMap<Ino, Node>);

    fn attr(ino: Ino, kind: Kind, mode: u32, size: u64, nlink: u32) -> Attr {
        Attr {
            ino,
            kind,
            mode,
            size,
            mtime: 1_600_000_000 + ino as i64,
            mtime_ns: 0,
            uid: 1000 + ino as u32,
            gid: 2000 + ino as u32,
            nlink,
            rdev: 0,
        }
    }

    fn big() -> Vec<u8> {
        (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    impl MemFs {
        fn new() -> MemFs {
            let node = |attr, data: &[u8], children, xattrs| Node {
                attr,
                data: data.to_vec(),
                children,
                xattrs,
            };
            let mut null = attr(7, Kind::CharDevice, 0o20666, 0, 1);
            null.rdev = libc::makedev(1, 3);
            let nodes = [
                node(
                    attr(1, Kind::Directory, 0o40755, 4096, 3),
                    b"",
                    vec![
                        ("big", 8),
                        ("broken", 9),
                        ("dir", 2),
                        ("fifo", 6),
                        ("hard", 3),
                        ("link", 4),
                        ("null", 7),
                        ("suid", 5),
                    ],
                    vec![("user.fqrn", b"test.cern.ch".to_vec())],
                ),
                node(
                    attr(2, Kind::Directory, 0o40750, 4096, 2),
                    b"",
                    vec![("file", 3)],
                    vec![],
                ),
                node(
                    attr(3, Kind::File, 0o100644, 6, 2),
                    b"hello\n",
                    vec![],
                    vec![],
                ),
                node(
                    attr(4, Kind::Symlink, 0o120777, 8, 1),
                    b"dir/file",
                    vec![],
                    vec![],
                ),
                node(
                    attr(5, Kind::File, 0o104755, 3, 1),
                    b"suid",
                    vec![],
                    vec![("security.capability", CAP.to_vec())],
                ),
                node(attr(6, Kind::Fifo, 0o10600, 0, 1), b"", vec![], vec![]),
                node(null, b"", vec![], vec![]),
                node(
                    attr(8, Kind::File, 0o100444, 300_000, 1),
                    &big(),
                    vec![],
                    vec![],
                ),
                node(attr(9, Kind::File, 0o100644, 10, 1), b"", vec![], vec![]),
            ];
            MemFs(nodes.into_iter().map(|n| (n.attr.ino, n)).collect())
        }

        fn node(&self, ino: Ino) -> Result<&Node, FsError> {
            self.0.get(&ino).ok_or(FsError::NotFound)
        }
    }

    impl ReadOnlyFs for MemFs {
        fn getattr(&self, ino: Ino) -> Result<Attr, FsError> {
            Ok(self.node(ino)?.attr.clone())
        }
        fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr, FsError> {
            let dir = self.node(parent)?;
            let (_, ino) = dir
                .children
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .ok_or(FsError::NotFound)?;
            self.getattr(*ino)
        }
        fn readdir(&self, dir: Ino) -> Result<Vec<(Vec<u8>, Attr)>, FsError> {
            let dir = self.node(dir)?;
            if dir.attr.kind != Kind::Directory {
                return Err(FsError::NotDirectory);
            }
            dir.children
                .iter()
                .map(|(n, ino)| Ok((n.as_bytes().to_vec(), self.getattr(*ino)?)))
                .collect()
        }
        fn readlink(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
            Ok(self.node(ino)?.data.clone())
        }
        fn read(&self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, FsError> {
            if ino == 9 {
                return Err(FsError::Io(
                    "object 9f00 from http://x/: hash mismatch".into(),
                ));
            }
            let data = &self.node(ino)?.data;
            let start = (offset as usize).min(data.len());
            let end = (start + size as usize).min(data.len());
            Ok(data[start..end].to_vec())
        }
        fn listxattr(&self, ino: Ino) -> Result<Vec<Vec<u8>>, FsError> {
            let node = self.node(ino)?;
            Ok(node
                .xattrs
                .iter()
                .map(|(n, _)| n.as_bytes().to_vec())
                .collect())
        }
        fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
            let node = self.node(ino)?;
            let (_, v) = node
                .xattrs
                .iter()
                .find(|(n, _)| n.as_bytes() == name)
                .ok_or(FsError::NoAttribute)?;
            Ok(v.clone())
        }
    }

    fn mount_mem(dir: &Path) -> (Mount, Arc<Mutex<Vec<String>>>) {
        assert!(
            Path::new("/dev/fuse").exists(),
            "this test needs FUSE: /dev/fuse is missing (modprobe fuse)"
        );
        let logged = Arc::new(Mutex::new(Vec::new()));
        let sink = logged.clone();
        let log: Log = Arc::new(move |m: &str| sink.lock().unwrap().push(m.to_string()));
        let options = Options {
            suid: true,
            ..Options::default()
        };
        let m = mount(Arc::new(MemFs::new()), dir, &options, log).expect("mount");
        (m, logged)
    }

    /// Waits for the session to end, failing after 10 s instead of hanging.
    fn wait_ended(m: Mount) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || tx.send(m.wait().map_err(|e| e.to_string())));
        let ended = rx.recv_timeout(Duration::from_secs(10));
        assert_eq!(
            ended,
            Ok(Ok(())),
            "session did not end cleanly after unmount"
        );
    }

    fn run(cmd: &str, args: &[&str]) -> String {
        let out = Command::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd} is needed (bash .ci/deps): {e}"));
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn serves_the_tree_through_the_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let (m, logged) = mount_mem(&mnt);
        let p = |rel: &str| mnt.join(rel);
        let md = |rel: &str| std::fs::symlink_metadata(p(rel)).unwrap();

        let names: Vec<String> = std::fs::read_dir(&mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            ["big", "broken", "dir", "fifo", "hard", "link", "null", "suid"]
        );

        let mem = MemFs::new();
        for (rel, ino) in [
            ("", 1),
            ("dir", 2),
            ("dir/file", 3),
            ("link", 4),
            ("suid", 5),
        ] {
            let a = mem.getattr(ino).unwrap();
            let m = md(rel);
            assert_eq!(
                (
                    m.ino(),
                    m.mode(),
                    m.size(),
                    m.uid(),
                    m.gid(),
                    m.nlink(),
                    m.mtime()
                ),
                (
                    a.ino,
                    a.mode,
                    a.size,
                    a.uid,
                    a.gid,
                    u64::from(a.nlink),
                    a.mtime
                ),
                "{rel}"
            );
        }
        // One file under two names: one inode, link count 2.
        assert_eq!(md("hard").ino(), md("dir/file").ino());
        assert_eq!(md("hard").nlink(), 2);
        assert_eq!(md("suid").mode() & 0o7777, 0o4755);
        assert!(md("fifo").file_type().is_fifo());
        assert!(md("null").file_type().is_char_device());
        assert_eq!(md("null").rdev(), libc::makedev(1, 3));

        assert_eq!(
            std::fs::read_link(p("link")).unwrap(),
            Path::new("dir/file")
        );
        assert_eq!(std::fs::read(p("link")).unwrap(), b"hello\n");
        assert_eq!(std::fs::read(p("big")).unwrap(), big());

        // A failed read: EIO to the reader, the reason in the log.
        let err = std::fs::read(p("broken")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
        assert!(
            logged
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("hash mismatch")),
            "{:?}",
            logged.lock().unwrap()
        );
        let err = std::fs::metadata(p("missing")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        // Read-only: writes are refused by the kernel.
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(p("big"))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");

        // Extended attributes as getfattr and getcap see them.
        let root = mnt.to_str().unwrap();
        let attrs = run("getfattr", &["-d", "-m", "-", "--absolute-names", root]);
        assert!(attrs.contains("user.fqrn=\"test.cern.ch\""), "{attrs}");
        let suid = p("suid");
        let caps = run("getcap", &[suid.to_str().unwrap()]);
        assert!(caps.contains("cap_net_bind_service=ep"), "{caps}");

        // Busy: already a mount point; and a non-empty directory.
        assert!(matches!(check_mountpoint(&mnt), Err(MountError::Busy(_))));
        assert!(matches!(
            check_mountpoint(tmp.path()),
            Err(MountError::NotEmpty(_))
        ));

        // Unmounted by anyone's umount: the session ends.
        run("umount", &[root]);
        wait_ended(m);
        assert!(check_mountpoint(&mnt).is_ok());
    }

    #[test]
    fn unmounter_unmounts_and_lazily_when_busy() {
        let tmp = tempfile::tempdir().unwrap();
        let (m, _) = mount_mem(tmp.path());
        assert_eq!(m.unmounter().unmount().unwrap(), Unmounted::Now);
        wait_ended(m);

        let (m, _) = mount_mem(tmp.path());
        let open = std::fs::File::open(tmp.path().join("big")).unwrap();
        assert_eq!(m.unmounter().unmount().unwrap(), Unmounted::Lazily);
        assert!(check_mountpoint(tmp.path()).is_ok(), "detached at once");
        drop(open);
        wait_ended(m);
    }

    #[test]
    fn mount_points_are_checked_before_mounting() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            check_mountpoint(&file),
            Err(MountError::NotDirectory(_))
        ));
        assert!(matches!(
            check_mountpoint(tmp.path()),
            Err(MountError::NotEmpty(_))
        ));
        assert!(matches!(
            check_mountpoint(&tmp.path().join("nope")),
            Err(MountError::MountPoint { .. })
        ));
        let proc_line = b"36 35 98:0 / /mnt/with\\040space rw - ext4 /dev/x rw\n";
        assert!(is_mount_point(proc_line, b"/mnt/with space"));
        assert!(!is_mount_point(proc_line, b"/mnt/with"));
    }
}

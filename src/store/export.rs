//! Materialising a stored tree as a real directory (the CLI's `--out`).
//!
//! The export never grants privileges and never escapes `dest`: setuid and
//! setgid bits and extended attributes (file capabilities) are dropped,
//! device nodes, FIFOs and sockets are not created,
//! ownership is not applied, and since every name is a validated single path
//! component and every directory is one this function created, no path it
//! writes can pass through a symlink.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Error, Hash, Node, Result, Store};

/// Permission bits an export may apply: everything but setuid and setgid.
const EXPORT_MASK: u16 = 0o1777;

/// An entry the export did not create, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// Path relative to the export root, `/`-separated.
    pub path: String,
    pub reason: &'static str,
}

/// What [`export_tree`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Files that share the store's inode (no bytes copied).
    pub hardlinked: u64,
    /// Names of hardlinked files made as links to an earlier name of the
    /// same file in their directory.
    pub linked: u64,
    pub copied: u64,
    /// Paths whose setuid/setgid bits were dropped.
    pub setid_dropped: Vec<String>,
    /// Paths whose extended attributes (e.g. `security.capability`) were
    /// not set.
    pub xattrs_dropped: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// The destination already held exactly this tree; nothing was written
    /// (the counts are zero, the notes still say what the tree has that
    /// an export cannot apply).
    pub unchanged: bool,
}

/// What [`export_tree_with`] does when `dest` already holds something
/// other than the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfDifferent {
    /// Fail with [`Error::ExportDiffers`], touching nothing.
    Refuse,
    /// Write the tree beside `dest` and swap the two atomically
    /// (`renameat2(RENAME_EXCHANGE)`), then delete the old contents.
    Replace,
}

/// Writes the tree `root` into `dest` (see [`export_tree_with`]), refusing
/// a destination that holds anything but this tree.
///
/// File bytes are hardlinked from the store when the store keeps them on
/// the same file system *and* the wanted permission bits equal the store
/// object's (read-only `0444`), because changing the mode of a hardlink
/// would change the store object; otherwise they are copied. Directory modes
/// are applied after their contents are written so read-only directories
/// can be exported. Ownership is not applied; every file, symlink and
/// directory gets its time as an output of epoch `epoch` gives it
/// ([`super::Entry::mtime_at`]), so a store object is hardlinked only when
/// it already has that time. Names of one hardlinked file
/// ([`super::Flags::hardlink`]) are hard links to each other.
pub fn export_tree(
    store: &dyn Store,
    root: &Hash,
    dest: &Path,
    epoch: u64,
) -> Result<ExportReport> {
    export_tree_with(store, root, dest, epoch, IfDifferent::Refuse)
}

/// Writes the tree `root` as the directory `dest`, so that re-running an
/// export is safe and an interrupted one leaves nothing that looks done:
///
/// - `dest` already holds exactly this tree (what an export of it writes):
///   nothing is written and the report says [`ExportReport::unchanged`];
/// - `dest` is missing or an empty directory: the tree is written into a
///   hidden sibling `.NAME.cvmbuild-PID` and renamed into place, so a
///   failure (removed again) or a kill (a hidden leftover) never leaves a
///   partial tree at `dest`;
/// - `dest` holds something else: `if_different` decides.
pub fn export_tree_with(
    store: &dyn Store,
    root: &Hash,
    dest: &Path,
    epoch: u64,
    if_different: IfDifferent,
) -> Result<ExportReport> {
    let how = How {
        from_store: true,
        epoch,
    };
    export(store, root, dest, how, if_different)
}

/// [`export_tree`] without hardlinks to store objects: every file is a
/// copy, so the only files sharing an inode are the names of one
/// hardlinked file (what `mksquashfs` needs to find exactly those).
pub fn export_tree_copies(
    store: &dyn Store,
    root: &Hash,
    dest: &Path,
    epoch: u64,
) -> Result<ExportReport> {
    let how = How {
        from_store: false,
        epoch,
    };
    export(store, root, dest, how, IfDifferent::Refuse)
}

/// How an export writes: whether it may hardlink store objects, and the
/// epoch its times are clamped to.
#[derive(Clone, Copy)]
struct How {
    from_store: bool,
    epoch: u64,
}

/// Whether `dest` must be swapped with the new tree rather than renamed
/// over (rename(2) replaces only an empty directory).
enum Target {
    Absent,
    Empty,
    Different,
}

fn export(
    store: &dyn Store,
    root: &Hash,
    dest: &Path,
    how: How,
    if_different: IfDifferent,
) -> Result<ExportReport> {
    let export_err = |reason: String| Error::Export {
        path: dest.to_path_buf(),
        reason,
    };
    let target = match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let mut rd = fs::read_dir(dest).map_err(|e| Error::io(dest, e))?;
            if rd.next().is_none() {
                Target::Empty
            } else {
                let mut report = ExportReport::default();
                match difference(store, root, dest, "", how.epoch, &mut report)? {
                    None => {
                        report.unchanged = true;
                        return Ok(report);
                    }
                    Some(difference) if if_different == IfDifferent::Refuse => {
                        return Err(Error::ExportDiffers {
                            path: dest.to_path_buf(),
                            difference,
                        })
                    }
                    Some(_) => Target::Different,
                }
            }
        }
        Ok(_) => {
            return Err(export_err(
                "destination exists and is not a directory".into(),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Target::Absent,
        Err(e) => return Err(Error::io(dest, e)),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| export_err("not a directory name".into()))?;
    let tmp = dest.with_file_name(format!(
        ".{}.cvmbuild-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    if fs::symlink_metadata(&tmp).is_ok() {
        // Left by a killed run whose process id we now have.
        remove_all(&tmp)?;
    }
    fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let mut report = ExportReport::default();
    let written = export_dir(store, root, &tmp, "", how, &mut report)
        .and_then(|()| set_time(&tmp, how.epoch))
        .and_then(|()| install(&tmp, dest, &target));
    if let Err(e) = written {
        let _ = remove_all(&tmp);
        return Err(e);
    }
    Ok(report)
}

/// Moves the finished tree `tmp` to `dest`.
fn install(tmp: &Path, dest: &Path, target: &Target) -> Result<()> {
    match target {
        Target::Absent => fs::rename(tmp, dest).map_err(|e| Error::io(dest, e)),
        Target::Empty => {
            // Keep the mode the user gave the directory they made.
            let mode = fs::metadata(dest).map_err(|e| Error::io(dest, e))?;
            fs::set_permissions(tmp, mode.permissions()).map_err(|e| Error::io(tmp, e))?;
            fs::rename(tmp, dest).map_err(|e| Error::io(dest, e))
        }
        Target::Different => {
            exchange(tmp, dest)?;
            // `tmp` now names the old contents.
            remove_all(tmp)
        }
    }
}

/// Swaps two paths atomically: no moment exists at which `b` is missing.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Export {
            path: p.to_path_buf(),
            reason: "path contains a NUL byte".into(),
        })
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc != 0 {
        return Err(Error::io(b, io::Error::last_os_error()));
    }
    Ok(())
}

/// Deletes an exported tree, whose read-only directories would stop
/// `remove_dir_all` when not running as root.
fn remove_all(path: &Path) -> Result<()> {
    fn writable(dir: &Path) -> io::Result<()> {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                writable(&e.path())?;
            }
        }
        Ok(())
    }
    writable(path)
        .and_then(|()| fs::remove_dir_all(path))
        .map_err(|e| Error::io(path, e))
}

/// The first way the directory `dir` differs from what exporting the tree
/// `hash` writes there, as `PATH: what`, or `None` if it is exactly that.
/// Fills the report's notes (dropped bits, skipped entries) as an export
/// would.
fn difference(
    store: &dyn Store,
    hash: &Hash,
    dir: &Path,
    rel: &str,
    epoch: u64,
    report: &mut ExportReport,
) -> Result<Option<String>> {
    let tree = store.get_tree(hash)?;
    let links = tree.hardlinks();
    let mut expected = std::collections::BTreeSet::new();
    for (i, e) in tree.entries().iter().enumerate() {
        let path = dir.join(&e.name);
        let rel_path = if rel.is_empty() {
            e.name.clone()
        } else {
            format!("{rel}/{}", e.name)
        };
        note(e, &rel_path, report);
        let found = fs::symlink_metadata(&path);
        expected.insert(e.name.as_str());
        let differs = |what: &str| Ok(Some(format!("{rel_path}: {what}")));
        let perm = |md: &fs::Metadata| (md.permissions().mode() & 0o7777) as u16;
        match &e.node {
            Node::File {
                blob: Some(blob),
                size,
            } => {
                let Ok(md) = &found else {
                    return differs("missing");
                };
                if !md.is_file() {
                    return differs("not a regular file");
                }
                if perm(md) != e.mode & EXPORT_MASK {
                    return differs("different permissions");
                }
                match links[i] {
                    Some(h) if h.first != i => {
                        let first = dir.join(&tree.entries()[h.first].name);
                        let same = fs::symlink_metadata(&first)
                            .is_ok_and(|f| (f.dev(), f.ino()) == (md.dev(), md.ino()));
                        if !same {
                            return differs("not a hard link to the other names of its file");
                        }
                    }
                    _ => {
                        if !same_content(store, blob, *size, &path, md)? {
                            return differs("different content");
                        }
                    }
                }
            }
            Node::Directory { tree } => {
                let Ok(md) = &found else {
                    return differs("missing");
                };
                if !md.is_dir() {
                    return differs("not a directory");
                }
                if perm(md) != e.mode & EXPORT_MASK {
                    return differs("different permissions");
                }
                if let Some(d) = difference(store, tree, &path, &rel_path, epoch, report)? {
                    return Ok(Some(d));
                }
            }
            Node::Symlink { target } => {
                let Ok(md) = &found else {
                    return differs("missing");
                };
                if !md.file_type().is_symlink()
                    || fs::read_link(&path)
                        .map_err(|err| Error::io(&path, err))?
                        .as_os_str()
                        != target.as_str()
                {
                    return differs("a different symlink");
                }
            }
            // Ghost files, devices, FIFOs, sockets: never exported.
            Node::File { blob: None, .. }
            | Node::CharDevice { .. }
            | Node::BlockDevice { .. }
            | Node::Fifo
            | Node::Socket => {
                if found.is_ok() {
                    return differs("exists, but an export does not create it");
                }
                skipped(e, &rel_path, report);
                continue;
            }
        }
        // What an export writes, it writes with the entry's time.
        if found.is_ok_and(|md| md.mtime() != e.mtime_at(epoch) as i64) {
            return differs("a different modification time");
        }
    }
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let name = e.file_name();
        if !expected.contains(name.to_string_lossy().as_ref()) {
            let shown = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            return Ok(Some(format!("{shown}: not in the tree")));
        }
    }
    Ok(None)
}

/// Whether the file at `path` holds the blob: the same inode as the
/// store's copy (a hardlinked export), else the same size and blake3.
fn same_content(
    store: &dyn Store,
    blob: &Hash,
    size: u64,
    path: &Path,
    md: &fs::Metadata,
) -> Result<bool> {
    let same_inode = store
        .local_blob_path(blob)
        .and_then(|p| fs::metadata(p).ok())
        .is_some_and(|s| (s.dev(), s.ino()) == (md.dev(), md.ino()));
    if same_inode {
        return Ok(true);
    }
    if md.len() != size {
        return Ok(false);
    }
    let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    io::copy(&mut f, &mut hasher).map_err(|e| Error::io(path, e))?;
    Ok(Hash(*hasher.finalize().as_bytes()) == *blob)
}

/// Records what an export of `e` cannot apply (setuid/setgid, xattrs).
fn note(e: &super::Entry, rel_path: &str, report: &mut ExportReport) {
    if e.mode & !EXPORT_MASK != 0 && !e.flags.ghost {
        report.setid_dropped.push(rel_path.to_string());
    }
    if !e.xattrs.is_empty() && !e.flags.ghost {
        report.xattrs_dropped.push(rel_path.to_string());
    }
}

/// Records an entry an export never creates, and why.
fn skipped(e: &super::Entry, rel_path: &str, report: &mut ExportReport) {
    let reason = match e.node {
        Node::File { blob: None, .. } => "ghost file: no content",
        Node::CharDevice { .. } | Node::BlockDevice { .. } => {
            "device node: recorded, never created on the host"
        }
        Node::Fifo => "fifo: recorded, never created on the host",
        Node::Socket => "socket: recorded, never created on the host",
        _ => return,
    };
    report.skipped.push(Skipped {
        path: rel_path.to_string(),
        reason,
    });
}

fn export_dir(
    store: &dyn Store,
    hash: &Hash,
    dir: &Path,
    rel: &str,
    how: How,
    report: &mut ExportReport,
) -> Result<()> {
    let tree = store.get_tree(hash)?;
    let links = tree.hardlinks();
    for (i, e) in tree.entries().iter().enumerate() {
        let path = dir.join(&e.name);
        let rel_path = if rel.is_empty() {
            e.name.clone()
        } else {
            format!("{rel}/{}", e.name)
        };
        let mode = e.mode & EXPORT_MASK;
        let mtime = e.mtime_at(how.epoch);
        note(e, &rel_path, report);
        match &e.node {
            Node::File { blob: None, .. }
            | Node::CharDevice { .. }
            | Node::BlockDevice { .. }
            | Node::Fifo
            | Node::Socket => skipped(e, &rel_path, report),
            Node::File {
                blob: Some(blob), ..
            } => match links[i] {
                // A later name of a file written above: link to its first.
                Some(h) if h.first != i => {
                    let first = dir.join(&tree.entries()[h.first].name);
                    fs::hard_link(&first, &path).map_err(|err| Error::io(&path, err))?;
                    report.linked += 1;
                }
                _ => export_file(store, blob, &path, (mode, mtime), how, report)?,
            },
            Node::Directory { tree } => {
                // Owner-only while filling, so a read-only directory mode
                // cannot stop us writing its children.
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|err| Error::io(&path, err))?;
                export_dir(store, tree, &path, &rel_path, how, report)?;
                set_mode(&path, mode)?;
                set_time(&path, mtime)?;
            }
            Node::Symlink { target } => {
                std::os::unix::fs::symlink(target, &path).map_err(|err| Error::io(&path, err))?;
                set_time(&path, mtime)?;
            }
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u16) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode.into()))
        .map_err(|e| Error::io(path, e))
}

/// Sets the modification time of `path` itself (not of what a symlink
/// points to) to `sec`.`nsec`, leaving its access time.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, e))?;
    let omit = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::UTIME_OMIT,
    };
    let t = libc::timespec {
        tv_sec: sec as _,
        tv_nsec: nsec as _,
    };
    let times = [omit, t];
    // SAFETY: `c` is a NUL-terminated path and `times` two timespecs, both
    // alive for the call; utimensat keeps neither.
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`set_mtime`] to whole seconds, as the store's error.
fn set_time(path: &Path, secs: u64) -> Result<()> {
    let sec = i64::try_from(secs).unwrap_or(i64::MAX);
    set_mtime(path, sec, 0).map_err(|e| Error::io(path, e))
}

/// Writes one file with permission bits and time `(mode, mtime)`.
fn export_file(
    store: &dyn Store,
    blob: &Hash,
    path: &PathBuf,
    (mode, mtime): (u16, u64),
    how: How,
    report: &mut ExportReport,
) -> Result<()> {
    if let Some(src) = store.local_blob_path(blob).filter(|_| how.from_store) {
        // Changing a hardlink's mode or time would change the store
        // object (and every other export of it).
        let same_inode_attrs = fs::metadata(&src)
            .map(|m| {
                m.permissions().mode() & 0o7777 == u32::from(mode) && m.mtime() == mtime as i64
            })
            .unwrap_or(false);
        if same_inode_attrs && fs::hard_link(&src, path).is_ok() {
            report.hardlinked += 1;
            return Ok(());
        }
    }
    let mut reader = store.open_blob(blob)?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    io::copy(&mut reader, &mut out).map_err(|e| Error::io(path, e))?;
    drop(out);
    set_mode(path, mode)?;
    set_time(path, mtime)?;
    report.copied += 1;
    Ok(())
}

/// Copies the blob `hash` (an image, an initrd) to the file `dest`, through
/// a temporary file in the same directory renamed into place, so `dest` is
/// either its old self or the complete blob, never a prefix. Returns the
/// number of bytes written.
pub fn export_blob(store: &dyn Store, hash: &Hash, dest: &Path) -> Result<u64> {
    if dest.is_dir() {
        return Err(Error::Export {
            path: dest.to_path_buf(),
            reason: "this output is a file and the destination is a directory".into(),
        });
    }
    let name = dest.file_name().ok_or_else(|| Error::Export {
        path: dest.to_path_buf(),
        reason: "not a file name".into(),
    })?;
    let tmp = dest.with_file_name(format!(
        ".{}.cvmbuild-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let write = || -> io::Result<u64> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        let n = io::copy(
            &mut store.open_blob(hash).map_err(io::Error::other)?,
            &mut f,
        )?;
        f.sync_all()?;
        fs::rename(&tmp, dest)?;
        Ok(n)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(dest, e)
    })
}

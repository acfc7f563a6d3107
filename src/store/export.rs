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
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
}

/// Writes the tree `root` into `dest`, which must not exist yet or be an
/// empty directory.
///
/// File bytes are hardlinked from the store when the store keeps them on
/// the same file system *and* the wanted permission bits equal the store
/// object's (read-only `0444`), because changing the mode of a hardlink
/// would change the store object; otherwise they are copied. Directory modes
/// are applied after their contents are written so read-only directories
/// can be exported. Ownership and timestamps are not applied. Names of one
/// hardlinked file ([`super::Flags::hardlink`]) are hard links to each
/// other.
pub fn export_tree(store: &dyn Store, root: &Hash, dest: &Path) -> Result<ExportReport> {
    export(store, root, dest, true)
}

/// [`export_tree`] without hardlinks to store objects: every file is a
/// copy, so the only files sharing an inode are the names of one
/// hardlinked file (what `mksquashfs` needs to find exactly those).
pub fn export_tree_copies(store: &dyn Store, root: &Hash, dest: &Path) -> Result<ExportReport> {
    export(store, root, dest, false)
}

fn export(store: &dyn Store, root: &Hash, dest: &Path, from_store: bool) -> Result<ExportReport> {
    let export_err = |reason: String| Error::Export {
        path: dest.to_path_buf(),
        reason,
    };
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {
            let mut rd = fs::read_dir(dest).map_err(|e| Error::io(dest, e))?;
            if rd.next().is_some() {
                return Err(export_err("destination directory is not empty".into()));
            }
        }
        Ok(_) => {
            return Err(export_err(
                "destination exists and is not a directory".into(),
            ))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::create_dir(dest).map_err(|e| Error::io(dest, e))?;
        }
        Err(e) => return Err(Error::io(dest, e)),
    }
    let mut report = ExportReport::default();
    export_dir(store, root, dest, "", from_store, &mut report)?;
    Ok(report)
}

fn export_dir(
    store: &dyn Store,
    hash: &Hash,
    dir: &Path,
    rel: &str,
    from_store: bool,
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
        let skip = |report: &mut ExportReport, reason| {
            report.skipped.push(Skipped {
                path: rel_path.clone(),
                reason,
            })
        };
        let mode = e.mode & EXPORT_MASK;
        if e.mode & !EXPORT_MASK != 0 && !e.flags.ghost {
            report.setid_dropped.push(rel_path.clone());
        }
        if !e.xattrs.is_empty() && !e.flags.ghost {
            report.xattrs_dropped.push(rel_path.clone());
        }
        match &e.node {
            Node::File { blob: None, .. } => skip(report, "ghost file: no content"),
            Node::File {
                blob: Some(blob), ..
            } => match links[i] {
                // A later name of a file written above: link to its first.
                Some(h) if h.first != i => {
                    let first = dir.join(&tree.entries()[h.first].name);
                    fs::hard_link(&first, &path).map_err(|err| Error::io(&path, err))?;
                    report.linked += 1;
                }
                _ => export_file(store, blob, &path, mode, from_store, report)?,
            },
            Node::Directory { tree } => {
                // Owner-only while filling, so a read-only directory mode
                // cannot stop us writing its children.
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&path)
                    .map_err(|err| Error::io(&path, err))?;
                export_dir(store, tree, &path, &rel_path, from_store, report)?;
                set_mode(&path, mode)?;
            }
            Node::Symlink { target } => {
                std::os::unix::fs::symlink(target, &path).map_err(|err| Error::io(&path, err))?
            }
            Node::CharDevice { .. } | Node::BlockDevice { .. } => {
                skip(report, "device node: recorded, never created on the host")
            }
            Node::Fifo => skip(report, "fifo: recorded, never created on the host"),
            Node::Socket => skip(report, "socket: recorded, never created on the host"),
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u16) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode.into()))
        .map_err(|e| Error::io(path, e))
}

fn export_file(
    store: &dyn Store,
    blob: &Hash,
    path: &PathBuf,
    mode: u16,
    from_store: bool,
    report: &mut ExportReport,
) -> Result<()> {
    if let Some(src) = store.local_blob_path(blob).filter(|_| from_store) {
        let same_mode = fs::metadata(&src)
            .map(|m| m.permissions().mode() & 0o7777 == u32::from(mode))
            .unwrap_or(false);
        if same_mode && fs::hard_link(&src, path).is_ok() {
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

//! The tree walk of a publish: store tree entries in publish order, each
//! turned into its catalog row (mode with the file-type bits, numeric
//! owners from the tree's own account files, content, hardlink group).

use super::catalog::{self, Row};
use super::object::Stored;
use super::publish::{CVMBUILD_DIR, MARKER, UNKNOWN_ID};
use super::{Error, Result};
use crate::store::{Hardlink, Hash, Node, Owners, Store};
use libc::{S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFREG, S_IFSOCK};
use std::collections::BTreeSet;

/// Longest full path accepted (PATH_MAX less the terminating NUL).
const MAX_PATH: usize = 4095;

/// A numeric owner, or [`UNKNOWN_ID`] (remembered in `unknown`) for a name
/// the tree's `/etc/passwd` or `/etc/group` does not list.
pub(super) fn numeric(found: Option<u64>, name: &str, unknown: &mut BTreeSet<String>) -> u32 {
    match found.and_then(|id| u32::try_from(id).ok()) {
        Some(id) => id,
        None => {
            unknown.insert(name.to_string());
            UNKNOWN_ID
        }
    }
}

/// A name the catalog can hold as a path component: the store's own name
/// rules ([`crate::store::validate_name`]) and the path length limit.
pub(super) fn check_name(dir: &str, name: &str) -> Result<()> {
    let shown = if dir.is_empty() { "/" } else { dir };
    if let Err(e) = crate::store::validate_name(name) {
        return Err(Error::Input(format!("cannot publish in {shown:?}: {e}")));
    }
    if dir.len() + 1 + name.len() > MAX_PATH {
        return Err(Error::Input(format!(
            "cannot publish {name:?} in {shown:?}: the name makes a path longer than {MAX_PATH} bytes"
        )));
    }
    Ok(())
}

/// What a row's content is.
pub(super) enum Content {
    None,
    Empty,
    Blob(Hash, u64),
    Extra(String),
}

/// One entry of the tree in publish order.
pub(super) struct Item {
    pub(super) path: String,
    pub(super) mode: u32,
    pub(super) flags: u32,
    pub(super) size: u64,
    pub(super) symlink: String,
    pub(super) uid: u32,
    pub(super) gid: u32,
    /// Link count: 1, or 2 + subdirectories for directories.
    pub(super) links: u64,
    pub(super) mtime: i64,
    pub(super) content: Content,
    /// The `xattr` column ([`catalog::xattr_blob`]).
    pub(super) xattr: Option<Vec<u8>>,
    /// For names of a hardlinked file: which one of its directory.
    pub(super) hardlink: Option<Hardlink>,
}

impl Item {
    pub(super) fn row(&self, content: Option<Stored>) -> Row {
        let (digest, chunks, flags) = match content {
            Some(Stored::Whole(d)) => (Some(d), Vec::new(), self.flags),
            Some(Stored::Chunks(c)) => (None, c, self.flags | catalog::FLAG_CHUNKED),
            None => (None, Vec::new(), self.flags),
        };
        Row {
            path: self.path.clone(),
            digest,
            size: self.size,
            mode: self.mode,
            mtime: self.mtime,
            flags,
            symlink: self.symlink.clone(),
            uid: self.uid,
            gid: self.gid,
            hardlinks: self.links,
            chunks,
            xattr: self.xattr.clone(),
        }
    }
}

pub(super) struct Walk<'a> {
    pub(super) store: &'a dyn Store,
    pub(super) owners: &'a Owners,
    pub(super) nested_wanted: &'a BTreeSet<String>,
    pub(super) epoch: i64,
    pub(super) items: Vec<Item>,
    /// Mountpoints found (directories named in `nested_wanted`).
    pub(super) nested: Vec<String>,
    pub(super) unknown: BTreeSet<String>,
}

impl Walk<'_> {
    pub(super) fn root(&mut self, tree: &Hash, extra: &[(String, Vec<u8>)]) -> Result<()> {
        let t = self.store.get_tree(tree)?;
        let subdirs = t
            .entries()
            .iter()
            .filter(|e| matches!(e.node, Node::Directory { .. }))
            .count() as u64;
        self.items.push(self.dir_item(
            String::new(),
            0o755,
            0,
            0,
            subdirs + u64::from(!extra.is_empty()),
        ));
        if !extra.is_empty() && t.entries().iter().any(|e| e.name == CVMBUILD_DIR) {
            return Err(Error::Input(format!(
                "the tree already has /{CVMBUILD_DIR}, where cvmbuild publishes the meta RPM"
            )));
        }
        // `.cvmbuild` sorts before letters but after `-`, so merge it into
        // the sorted walk rather than appending it.
        let mut done_extra = extra.is_empty();
        for (e, link) in t.entries().iter().zip(t.hardlinks()) {
            if !done_extra && e.name.as_str() > CVMBUILD_DIR {
                self.extra(extra)?;
                done_extra = true;
            }
            self.entry("", e, link)?;
        }
        if !done_extra {
            self.extra(extra)?;
        }
        Ok(())
    }

    pub(super) fn extra(&mut self, extra: &[(String, Vec<u8>)]) -> Result<()> {
        let dir = format!("/{CVMBUILD_DIR}");
        self.items.push(self.dir_item(dir.clone(), 0o755, 0, 0, 0));
        let mut files: Vec<&(String, Vec<u8>)> = extra.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, bytes) in files {
            check_name(&dir, name)?;
            self.items.push(Item {
                path: format!("{dir}/{name}"),
                mode: S_IFREG | 0o644,
                flags: catalog::FLAG_FILE,
                size: bytes.len() as u64,
                symlink: String::new(),
                uid: 0,
                gid: 0,
                links: 1,
                mtime: self.epoch,
                content: if bytes.is_empty() {
                    Content::Empty
                } else {
                    Content::Extra(name.clone())
                },
                xattr: None,
                hardlink: None,
            });
        }
        Ok(())
    }

    pub(super) fn dir_item(
        &self,
        path: String,
        perm: u16,
        uid: u32,
        gid: u32,
        subdirs: u64,
    ) -> Item {
        Item {
            path,
            mode: S_IFDIR | u32::from(perm),
            flags: catalog::FLAG_DIR,
            size: 4096,
            symlink: String::new(),
            uid,
            gid,
            links: 2 + subdirs,
            mtime: self.epoch,
            content: Content::None,
            xattr: None,
            hardlink: None,
        }
    }

    /// `link`: which hardlinked file of `dir` the entry is a name of
    /// ([`crate::store::Tree::hardlinks`]).
    pub(super) fn entry(
        &mut self,
        dir: &str,
        e: &crate::store::Entry,
        link: Option<Hardlink>,
    ) -> Result<()> {
        check_name(dir, &e.name)?;
        if e.flags.ghost {
            return Ok(());
        }
        let path = format!("{dir}/{}", e.name);
        let xattr = catalog::xattr_blob(&e.xattrs)
            .map_err(|why| Error::Input(format!("cannot publish {path}: {why}")))?;
        let uid = numeric(self.owners.uid(&e.owner), &e.owner, &mut self.unknown);
        let gid = numeric(self.owners.gid(&e.group), &e.group, &mut self.unknown);
        let perm = u32::from(e.mode);
        let mtime = e.mtime_at(self.epoch.max(0) as u64) as i64;
        let base = |mode: u32, flags: u32, size: u64| Item {
            path: path.clone(),
            mode,
            flags,
            size,
            symlink: String::new(),
            uid,
            gid,
            links: 1,
            mtime,
            content: Content::None,
            xattr: xattr.clone(),
            hardlink: None,
        };
        let item = match &e.node {
            Node::File { size, blob } => Item {
                hardlink: link,
                content: match blob {
                    Some(_) if *size == 0 => Content::Empty,
                    Some(b) => Content::Blob(*b, *size),
                    None => Content::None,
                },
                ..base(S_IFREG | perm, catalog::FLAG_FILE, *size)
            },
            Node::Symlink { target } => {
                if target.contains('\0') {
                    return Err(Error::Input(format!(
                        "cannot publish {path}: symlink target contains NUL"
                    )));
                }
                Item {
                    symlink: target.clone(),
                    ..base(
                        S_IFLNK | 0o777,
                        catalog::FLAG_FILE | catalog::FLAG_SYMLINK,
                        target.len() as u64,
                    )
                }
            }
            Node::CharDevice { major, minor } => base(
                S_IFCHR | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                makedev(*major, *minor),
            ),
            Node::BlockDevice { major, minor } => base(
                S_IFBLK | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                makedev(*major, *minor),
            ),
            Node::Fifo => base(
                S_IFIFO | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                0,
            ),
            Node::Socket => base(
                S_IFSOCK | perm,
                catalog::FLAG_FILE | catalog::FLAG_SPECIAL,
                0,
            ),
            Node::Directory { tree } => {
                let t = self.store.get_tree(tree)?;
                let subdirs = t
                    .entries()
                    .iter()
                    .filter(|c| matches!(c.node, Node::Directory { .. }))
                    .count() as u64;
                self.items.push(Item {
                    xattr,
                    ..self.dir_item(path.clone(), e.mode, uid, gid, subdirs)
                });
                let mountpoint = self.nested_wanted.contains(&path);
                if mountpoint {
                    self.nested.push(path.clone());
                }
                let has_marker = t.entries().iter().any(|c| c.name == MARKER);
                let mut marker_done = !mountpoint || has_marker;
                for (c, link) in t.entries().iter().zip(t.hardlinks()) {
                    if !marker_done && c.name.as_str() > MARKER {
                        self.marker(&path);
                        marker_done = true;
                    }
                    self.entry(&path, c, link)?;
                }
                if !marker_done {
                    self.marker(&path);
                }
                return Ok(());
            }
        };
        self.items.push(item);
        Ok(())
    }

    pub(super) fn marker(&mut self, dir: &str) {
        self.items.push(Item {
            path: format!("{dir}/{MARKER}"),
            mode: S_IFREG | 0o644,
            flags: catalog::FLAG_FILE,
            size: 0,
            symlink: String::new(),
            uid: 0,
            gid: 0,
            links: 1,
            mtime: self.epoch,
            content: Content::Empty,
            xattr: None,
            hardlink: None,
        });
    }
}

/// glibc's `makedev`, as `stat` reports `st_rdev`.
pub(super) fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn names_the_catalog_cannot_hold_are_refused() {
        assert!(check_name("/usr", "bin").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b", &"x".repeat(256)] {
            let e = check_name("/usr", bad).unwrap_err().to_string();
            assert!(e.contains("cannot publish") && e.contains("/usr"), "{e}");
        }
        let deep = "/d".repeat(2047);
        assert!(check_name(&deep, "abc").is_err());
    }

    #[test]
    pub(super) fn makedev_matches_glibc() {
        assert_eq!(makedev(1, 3), 0x103);
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(makedev(4096, 256), (1 << 44) | (1 << 20));
    }
}

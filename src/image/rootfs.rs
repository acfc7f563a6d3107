//! The OS tree as a read-only root file system image (squashfs), for the
//! initrd to mount as the lower layer of an overlay with a tmpfs upper
//! layer and switch root into, as μCernVM does with CernVM-FS.
//!
//! The tree is exported from the store into a scratch directory (contents,
//! directories, symlinks; files copied, so the only files sharing an inode
//! are the names of one hardlinked file, which mksquashfs keeps as
//! hardlinks) with the entries' times clamped to the epoch, and packed by
//! `mksquashfs` (which takes `SOURCE_DATE_EPOCH` from [`tools::run`] and
//! clamps the same way) with one processor
//! (block order never depends on scheduling). What an unprivileged export
//! cannot create on the host
//! comes from a pseudo-file (`-pf`) with one definition per entry: the
//! full mode (setuid and setgid included) and numeric owner of every path,
//! mapped through the tree's own `/etc/passwd` and `/etc/group` as `rpm`
//! would (a name found in neither becomes root, and is reported), and the
//! device nodes, FIFOs and sockets themselves. The image is therefore the
//! same whoever builds it. Extended attributes (file capabilities) cannot
//! be added by squashfs-tools 4.5 and are reported.

use super::tools;
use super::Error;
use crate::store::{export_tree_copies, Hash, Node, Owners, Store};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Packs `tree` into the squashfs image `out`, using `work` for the export.
/// Returns what the image does not hold as the tree says (`path: reason`:
/// ghosts, capabilities, owners unknown to the tree), for the build log.
pub fn squashfs(
    store: &dyn Store,
    tree: &Hash,
    epoch: i64,
    work: &Path,
    out: &Path,
) -> Result<Vec<String>, Error> {
    let root = work.join("root");
    // Files keep their packages' times (clamped to the epoch, as
    // mksquashfs also clamps to the SOURCE_DATE_EPOCH tools::run sets).
    export_tree_copies(store, tree, &root, epoch.max(0) as u64)
        .map_err(|e| format!("exporting the OS tree: {e}"))?;
    let owners =
        Owners::from_tree(store, tree).map_err(|e| format!("reading the tree's owners: {e}"))?;
    let mut p = Pseudo {
        store,
        owners: &owners,
        epoch,
        text: String::new(),
        notes: Vec::new(),
        unknown: BTreeSet::new(),
    };
    p.dir(tree, "")?;
    let pseudo = work.join("pseudo");
    std::fs::write(&pseudo, &p.text).map_err(|e| format!("{}: {e}", pseudo.display()))?;
    tools::run(
        Command::new("mksquashfs")
            .arg(&root)
            .arg(out)
            .args(["-noappend", "-quiet", "-no-progress", "-no-xattrs"])
            .args(["-root-mode", "755", "-root-uid", "0", "-root-gid", "0"])
            .arg("-pf")
            .arg(&pseudo)
            .args(["-processors", "1", "-comp", "gzip"]),
        epoch,
    )?;
    Ok(p.notes)
}

/// Writes the pseudo-file definitions of a tree, in tree order.
struct Pseudo<'a> {
    store: &'a dyn Store,
    owners: &'a Owners,
    epoch: i64,
    text: String,
    notes: Vec<String>,
    /// Owner and group names already reported as unknown.
    unknown: BTreeSet<String>,
}

impl Pseudo<'_> {
    fn dir(&mut self, tree: &Hash, rel: &str) -> Result<(), Error> {
        let t = self
            .store
            .get_tree(tree)
            .map_err(|e| format!("reading the OS tree: {e}"))?;
        for e in t.entries() {
            let path = format!("{rel}{}", e.name);
            if let Node::File { blob: None, .. } = e.node {
                self.notes.push(format!("/{path}: ghost file: no content"));
                continue;
            }
            if path.contains('\n') {
                return Err(format!(
                    "/{path:?}: a name with a line feed cannot be given to mksquashfs"
                )
                .into());
            }
            if !e.xattrs.is_empty() {
                self.notes.push(format!(
                    "/{path}: extended attributes (file capabilities) not applied: squashfs-tools 4.5 cannot add them"
                ));
            }
            let uid = self.id(&e.owner, "user", Owners::uid);
            let gid = self.id(&e.group, "group", Owners::gid);
            let name = escape(&path);
            let (mode, epoch) = (e.mode, self.epoch);
            let _ = match &e.node {
                Node::File { .. } | Node::Directory { .. } => {
                    writeln!(self.text, "{name} m {mode:o} {uid} {gid}")
                }
                Node::Symlink { .. } => writeln!(self.text, "{name} m 777 {uid} {gid}"),
                Node::CharDevice { major, minor } => writeln!(
                    self.text,
                    "{name} C {epoch} {mode:o} {uid} {gid} {major} {minor}"
                ),
                Node::BlockDevice { major, minor } => writeln!(
                    self.text,
                    "{name} B {epoch} {mode:o} {uid} {gid} {major} {minor}"
                ),
                Node::Fifo => writeln!(self.text, "{name} I {epoch} {mode:o} {uid} {gid} f"),
                Node::Socket => writeln!(self.text, "{name} I {epoch} {mode:o} {uid} {gid} s"),
            };
            if let Node::Directory { tree } = &e.node {
                self.dir(tree, &format!("{path}/"))?;
            }
        }
        Ok(())
    }

    /// The numeric id of `name`, root (0) if the tree does not know it.
    fn id(&mut self, name: &str, what: &str, lookup: fn(&Owners, &str) -> Option<u64>) -> u64 {
        lookup(self.owners, name).unwrap_or_else(|| {
            if self.unknown.insert(format!("{what} {name}")) {
                self.notes.push(format!(
                    "{what} {name} is not in the tree's /etc/{}: owned by root",
                    if what == "user" { "passwd" } else { "group" }
                ));
            }
            0
        })
    }
}

/// A path as mksquashfs reads pseudo-file names: white space, quotes and
/// backslashes escaped with a backslash.
fn escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c.is_whitespace() || c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

//! The OS tree as a read-only root file system image (squashfs), for the
//! initrd to mount as the lower layer of an overlay with a tmpfs upper
//! layer and switch root into, as μCernVM does with CernVM-FS.
//!
//! The tree is exported from the store into a scratch directory and packed
//! by `mksquashfs` with every time set to the epoch (it takes
//! `SOURCE_DATE_EPOCH` from [`tools::run`]), one processor (block
//! order never depends on scheduling) and no hardlink detection (the export
//! hardlinks equal store objects; in the OS they are separate files).
//! Owners are flattened to root: the export does not apply owners, and
//! mapping the tree's user names to ids needs its `/etc/passwd`.

use super::tools;
use crate::store::{export_tree, Hash, Store};
use std::path::Path;
use std::process::Command;

/// Packs `tree` into the squashfs image `out`, using `work` for the export.
/// Returns what the export skipped (`path: reason`: device nodes, ghosts),
/// for the build log.
pub fn squashfs(
    store: &dyn Store,
    tree: &Hash,
    epoch: i64,
    work: &Path,
    out: &Path,
) -> Result<Vec<String>, String> {
    let root = work.join("root");
    let report =
        export_tree(store, tree, &root).map_err(|e| format!("exporting the OS tree: {e}"))?;
    tools::run(
        Command::new("mksquashfs")
            .arg(&root)
            .arg(out)
            .args([
                "-noappend",
                "-quiet",
                "-no-progress",
                "-no-xattrs",
                "-no-hardlinks",
                "-all-root",
            ])
            .args(["-processors", "1", "-comp", "gzip"]),
        epoch,
    )?;
    Ok(report
        .skipped
        .iter()
        .map(|s| format!("/{}: {}", s.path, s.reason))
        .collect())
}

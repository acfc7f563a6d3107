//! The garbage collector (store-layout.md 2.9): deletes every object, output
//! registration, derivation record and build log that no GC root reaches.
//!
//! Safety against concurrent builds rests on one lock, `gc.lock`: every
//! process that writes objects and then registers outputs and roots holds it
//! shared for the whole of that work ([`FsStore::lock_builds`]), and the
//! collector holds it exclusively from marking to the last deletion. So the
//! collector never sees a half-finished realize: an object written a moment
//! ago but not yet referenced by a root cannot be deleted, and the store's
//! "object already present, skip writing" shortcut can never be fooled by an
//! object deleted under it.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;

use super::fs::io_err;
use super::{Error, FsStore, GcRoot, Hash, Node, Output, Result, Root, Store};

/// A hold on `gc.lock`, shared (builders) or exclusive (the collector);
/// released when dropped or when the process dies.
#[derive(Debug)]
pub struct BuildsLock {
    _file: File,
}

/// What [`gc`] removed (or, in a dry run, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub live_blobs: u64,
    pub live_trees: u64,
    pub blobs_removed: u64,
    pub trees_removed: u64,
    /// Bytes of object files removed.
    pub bytes_freed: u64,
    /// Derivations whose registered output was dropped from the index.
    pub outputs_unregistered: Vec<String>,
    pub records_removed: u64,
    pub logs_removed: u64,
}

/// Looks up the input derivations of a recorded derivation: `Ok(None)` when
/// there is no record, `Err` when the record is unreadable or damaged.
pub type InputsOf<'a> = &'a dyn Fn(&str) -> std::result::Result<Option<Vec<String>>, String>;

impl FsStore {
    fn gc_lock_file(&self) -> Result<File> {
        let path = self.root().join("gc.lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))
    }

    /// Held shared by every process that builds, records derivations or adds
    /// roots, from before its first write until its roots are registered.
    /// Blocks while a collection runs.
    pub fn lock_builds(&self) -> Result<BuildsLock> {
        let file = self.gc_lock_file()?;
        file.lock_shared()
            .map_err(io_err(&self.root().join("gc.lock")))?;
        Ok(BuildsLock { _file: file })
    }

    /// Taken exclusively by a collection; `waiting` is called once if
    /// running builds make it wait.
    fn lock_collector(&self, waiting: &dyn Fn()) -> Result<BuildsLock> {
        let file = self.gc_lock_file()?;
        let path = self.root().join("gc.lock");
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                waiting();
                file.lock().map_err(io_err(&path))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        Ok(BuildsLock { _file: file })
    }
}

/// Everything the roots reach.
#[derive(Default)]
struct Live {
    drvs: BTreeSet<String>,
    trees: HashSet<Hash>,
    blobs: HashSet<Hash>,
}

impl Live {
    fn mark_tree(&mut self, store: &FsStore, root: Hash) -> Result<()> {
        let mut stack = vec![root];
        while let Some(h) = stack.pop() {
            if !self.trees.insert(h) {
                continue;
            }
            let tree = match store.get_tree(&h) {
                Ok(t) => t,
                // Already gone: nothing below it to keep (verify reports it).
                Err(Error::Missing { .. }) => continue,
                // A damaged tree hides its children: refuse to guess.
                Err(e) => return Err(e),
            };
            for e in tree.entries() {
                match &e.node {
                    Node::Directory { tree } => stack.push(*tree),
                    Node::File {
                        blob: Some(blob), ..
                    } => {
                        self.blobs.insert(*blob);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// An output's root, and every metadata value that names a stored
    /// object (builders keep manifests and the like as blobs and refer to
    /// them by hash in `meta`; no other metadata value is 64 hex digits).
    fn mark_output(&mut self, store: &FsStore, out: &Output) -> Result<()> {
        match out.root {
            Root::Tree { hash } => self.mark_tree(store, hash)?,
            Root::Blob { hash, .. } => {
                self.blobs.insert(hash);
            }
        }
        for v in out.meta.values() {
            if let Some(h) = Hash::from_hex(v) {
                if store.has_tree(&h)? {
                    self.mark_tree(store, h)?;
                } else {
                    self.blobs.insert(h);
                }
            }
        }
        Ok(())
    }
}

/// Collects garbage: marks what the roots reach, then unregisters dead
/// outputs, deletes dead derivation records and logs, and last deletes dead
/// objects (so a crash midway leaves unreferenced objects, never a
/// registered output with missing objects). With `dry_run`, only counts.
pub fn gc(
    store: &FsStore,
    inputs_of: InputsOf,
    dry_run: bool,
    waiting: &dyn Fn(),
) -> Result<GcReport> {
    let _lock = store.lock_collector(waiting)?;
    let mut live = Live::default();
    let mut drv_stack = Vec::new();
    for (name, root) in store.roots()? {
        match root {
            GcRoot::Tree(h) => live.mark_tree(store, h)?,
            GcRoot::Blob(h) => {
                live.blobs.insert(h);
            }
            GcRoot::Drv(id) => drv_stack.push((name, id)),
        }
    }
    while let Some((via, id)) = drv_stack.pop() {
        if !live.drvs.insert(id.clone()) {
            continue;
        }
        if let Some(out) = store.lookup_output(&id)? {
            live.mark_output(store, &out)?;
        }
        let inputs = inputs_of(&id).map_err(|reason| {
            Error::Gc(format!(
                "derivation {id} (reached from root {via}): {reason}; nothing was deleted"
            ))
        })?;
        for input in inputs.into_iter().flatten() {
            drv_stack.push((via.clone(), input));
        }
    }
    let mut report = GcReport {
        live_blobs: live.blobs.len() as u64,
        live_trees: live.trees.len() as u64,
        ..GcReport::default()
    };

    for (id, parsed) in store.all_outputs()? {
        // Unreadable rows are left for `verify` to report.
        if parsed.is_ok() && !live.drvs.contains(&id) {
            if !dry_run {
                store.unregister_output(&id)?;
            }
            report.outputs_unregistered.push(id);
        }
    }
    let dead: Vec<String> = store
        .drv_record_ids()?
        .into_iter()
        .filter(|id| !live.drvs.contains(id))
        .collect();
    if !dry_run {
        store.remove_drv_records(&dead)?;
    }
    report.records_removed = dead.len() as u64;
    let logs = store.root().join("logs");
    for entry in fs::read_dir(&logs).map_err(io_err(&logs))? {
        let entry = entry.map_err(io_err(&logs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_suffix(".log") else {
            continue;
        };
        if !live.drvs.contains(id) {
            if !dry_run {
                remove(&entry.path())?;
            }
            report.logs_removed += 1;
        }
    }
    for (dir, keep, removed) in [
        ("blobs", &live.blobs, &mut report.blobs_removed),
        ("trees", &live.trees, &mut report.trees_removed),
    ] {
        for (path, hash, size) in objects(&store.root().join(dir))? {
            if !keep.contains(&hash) {
                if !dry_run {
                    remove(&path)?;
                }
                *removed += 1;
                report.bytes_freed += size;
            }
        }
    }
    Ok(report)
}

fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// `dir/xx/<hex>` object files with their sizes; anything else (stray
/// files, which `verify` reports) is left alone.
fn objects(dir: &Path) -> Result<Vec<(std::path::PathBuf, Hash, u64)>> {
    let mut out = Vec::new();
    for shard in fs::read_dir(dir).map_err(io_err(dir))? {
        let shard = shard.map_err(io_err(dir))?.path();
        if !shard.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&shard).map_err(io_err(&shard))? {
            let entry = entry.map_err(io_err(&shard))?;
            let name = entry.file_name();
            let Some(hash) = name.to_str().and_then(Hash::from_hex) else {
                continue;
            };
            let meta = entry.metadata().map_err(io_err(&entry.path()))?;
            if meta.is_file() {
                out.push((entry.path(), hash, meta.len()));
            }
        }
    }
    Ok(out)
}

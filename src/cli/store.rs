//! `gc`, `root` and `store`: store maintenance.

use super::Global;
use clap::Args;
use miette::{miette, Result};
use serde_json::json;

#[derive(Args, Debug)]
pub struct GcArgs {
    /// Report what would be deleted; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable report on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also drop parsed-repodata cache entries unused for this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub cache_days: u64,
}

pub(super) fn gc_cmd(g: &Global, a: GcArgs) -> Result<i32> {
    let dir = g.store_dir()?;
    let store = crate::store::FsStore::open(&dir)?;
    let inputs_of =
        |id: &str| crate::build::records::inputs_of(&store, id).map_err(|e| e.to_string());
    let waiting = || eprintln!("gc: waiting for running builds to finish");
    let r = crate::store::gc(&store, &inputs_of, a.dry_run, &waiting)?;
    let cache_dir = super::repodata_cache(&dir);
    let keep = std::time::Duration::from_secs(a.cache_days.saturating_mul(86400));
    let c = crate::repo::prune_cache(&cache_dir, keep, a.dry_run)
        .map_err(|e| miette!("pruning {}: {e}", cache_dir.display()))?;
    if a.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "dry_run": a.dry_run, "bytes_freed": r.bytes_freed,
                "blobs_removed": r.blobs_removed, "trees_removed": r.trees_removed,
                "live_blobs": r.live_blobs, "live_trees": r.live_trees,
                "outputs_unregistered": r.outputs_unregistered,
                "records_removed": r.records_removed, "logs_removed": r.logs_removed,
                "cache_entries_removed": c.entries, "cache_bytes_freed": c.bytes,
            }))
            .expect("plain data")
        );
    } else {
        outln!(
            "{} {} blobs and {} trees ({} bytes), {} outputs, {} derivation records, {} logs; kept {} blobs and {} trees",
            if a.dry_run { "would remove" } else { "removed" },
            r.blobs_removed,
            r.trees_removed,
            r.bytes_freed,
            r.outputs_unregistered.len(),
            r.records_removed,
            r.logs_removed,
            r.live_blobs,
            r.live_trees
        );
        if c.entries > 0 {
            outln!(
                "{} {} repodata cache entries unused for {} days ({} bytes)",
                if a.dry_run { "would remove" } else { "removed" },
                c.entries,
                a.cache_days,
                c.bytes
            );
        }
    }
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum RootCommand {
    /// Keep TARGET: a tree or blob hash, or a derivation (keeps its output
    /// and its inputs' outputs): its id or output hash (unique prefixes), a
    /// root name, or an output name realized on one branch.
    Add {
        name: String,
        target: String,
        /// Print the root as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Stop keeping what root NAME keeps (the next `gc` may delete it).
    Remove { name: String },
    /// Print every root: name, kind (drv, tree, blob), what it keeps.
    List {
        /// `[{"name", "kind", "target"}]` on stdout.
        #[arg(long)]
        json: bool,
    },
}

/// A root's kind and target as printed: `drv ID`, `tree HASH`, `blob HASH`.
fn root_parts(root: &crate::store::GcRoot) -> (&'static str, String) {
    use crate::store::GcRoot;
    match root {
        GcRoot::Tree(h) => ("tree", h.to_hex()),
        GcRoot::Blob(h) => ("blob", h.to_hex()),
        GcRoot::Drv(id) => ("drv", id.clone()),
    }
}

pub(super) fn root_cmd(g: &Global, c: RootCommand) -> Result<i32> {
    use crate::store::{GcRoot, Hash, Store};
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    match c {
        RootCommand::Add { name, target, json } => {
            let _builds = store.lock_builds()?;
            let hash = Hash::from_hex(&target);
            let root = if let Some(h) = hash.filter(|h| store.has_tree(h).unwrap_or(false)) {
                GcRoot::Tree(h)
            } else if let Some(h) = hash.filter(|h| store.has_blob(h).unwrap_or(false)) {
                GcRoot::Blob(h)
            } else {
                GcRoot::Drv(super::ids::resolve(&store, &target, Some("a tree or blob"))?.0)
            };
            store.add_gc_root(&name, &root)?;
            let (kind, what) = root_parts(&root);
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"name": name, "kind": kind, "target": what})
                    )
                    .expect("plain data")
                );
            } else {
                eprintln!("root {name} -> {kind} {what}");
            }
        }
        RootCommand::Remove { name } => {
            if !store.remove_root(&name)? {
                return Err(miette!(code = "cli::no-root", "there is no root `{name}`"));
            }
        }
        RootCommand::List { json } => {
            let roots = store.roots()?;
            if json {
                let list: Vec<_> = roots
                    .iter()
                    .map(|(name, root)| {
                        let (kind, what) = root_parts(root);
                        json!({"name": name, "kind": kind, "target": what})
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("plain data")
                );
            } else {
                for (name, root) in &roots {
                    let (kind, what) = root_parts(root);
                    outln!("{name}\t{kind}\t{what}");
                }
            }
        }
    }
    Ok(0)
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Re-hash every object and check every reference; exit 1 on damage.
    Verify {
        /// Machine-readable report on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn store_cmd(g: &Global, c: StoreCommand) -> Result<i32> {
    use crate::store::Store;
    let StoreCommand::Verify { json: as_json } = c;
    let store = crate::store::FsStore::open(&g.store_dir()?)?;
    let mut r = store.verify()?;
    let mut records = 0u64;
    for id in store.drv_record_ids()? {
        records += 1;
        if let Err(problem) = crate::build::records::load(&store, &id) {
            r.damage.push(crate::store::Damage {
                kind: crate::store::ObjectKind::Record,
                id: id.clone(),
                problem: problem.to_string(),
            });
        }
    }
    if as_json {
        let damage: Vec<_> = r
            .damage
            .iter()
            .map(|d| json!({"kind": format!("{:?}", d.kind).to_lowercase(), "id": d.id, "problem": d.problem}))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "blobs": r.blobs, "trees": r.trees, "outputs": r.outputs,
                "records": records, "damage": damage,
            }))
            .expect("plain data")
        );
    } else {
        for d in &r.damage {
            outln!(
                "damaged {} {}: {}",
                format!("{:?}", d.kind).to_lowercase(),
                d.id,
                d.problem
            );
        }
        eprintln!(
            "checked {} blobs, {} trees, {} outputs, {} derivation records: {}",
            r.blobs,
            r.trees,
            r.outputs,
            records,
            if r.is_clean() {
                "clean".to_string()
            } else {
                format!("{} problems", r.damage.len())
            }
        );
    }
    Ok(if r.is_clean() { 0 } else { 1 })
}

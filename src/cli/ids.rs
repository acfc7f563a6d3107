//! Naming a recorded derivation on the command line without its spec, the
//! way Nix users name store paths: by derivation id, by the hash of the
//! tree or blob it built (each a unique prefix), by GC root name
//! (`cernvm-production-os-tree`), or by output name (`os-tree`) when one
//! root of the store ends in it.

use crate::eval::DrvId;
use crate::store::{FsStore, GcRoot};
use miette::{miette, Result};
use std::collections::BTreeSet;

/// The one recorded derivation `key` names in `store`. `or_else` names
/// what else the command would have taken (`show`: "a spec file"), for the
/// error when nothing matches.
pub(super) fn resolve(store: &FsStore, key: &str, or_else: Option<&str>) -> Result<DrvId> {
    let roots = store.roots()?;
    let root_drv = |name: &str| {
        roots.iter().find_map(|(n, r)| match r {
            GcRoot::Drv(id) if n == name => Some(id.clone()),
            _ => None,
        })
    };
    if let Some(id) = root_drv(key) {
        return Ok(DrvId(id));
    }
    let mut ids: BTreeSet<String> = crate::build::records::find(store, key)?
        .into_iter()
        .map(|d| d.0)
        .collect();
    if ids.contains(key) {
        return Ok(DrvId(key.to_string()));
    }
    ids.extend(store.drvs_by_output_prefix(key)?);
    match ids.len() {
        1 => return Ok(DrvId(ids.pop_first().expect("one id"))),
        0 => {}
        n => {
            let shown: Vec<String> = ids.iter().take(5).map(|id| describe(store, id)).collect();
            return Err(miette!(
                code = "cli::ambiguous-drv",
                help = format!(
                    "give more of the id or hash; matches include {}",
                    shown.join(", ")
                ),
                "`{key}` matches {n} derivations (by id or output hash)"
            ));
        }
    }
    // An output name: the roots `realize` adds are SPEC-BRANCH-OUTPUT.
    let suffix = format!("-{key}");
    let named: Vec<&str> = roots
        .iter()
        .filter(|(n, r)| n.ends_with(&suffix) && matches!(r, GcRoot::Drv(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    match named.as_slice() {
        [one] => Ok(DrvId(root_drv(one).expect("a drv root"))),
        [] => Err(miette!(
            code = "cli::no-drv",
            help = "pass a derivation id, an output hash (unique prefixes are fine), a GC root name (`cvmbuild root list`) or an output name such as os-tree",
            "`{key}` {} a derivation recorded in {}",
            or_else.map_or("names no".to_string(), |o| format!("is neither {o} nor")),
            store.root().display()
        )),
        many => Err(miette!(
            code = "cli::ambiguous-drv",
            help = format!("name one of the roots: {}", many.join(", ")),
            "output `{key}` is realized on {} branches",
            many.len()
        )),
    }
}

/// `ID (NAME)` of a recorded derivation, for ambiguity messages.
fn describe(store: &FsStore, id: &str) -> String {
    let short = &id[..12.min(id.len())];
    match crate::build::records::load(store, id) {
        Ok(Some(d)) => format!("{short} ({})", d.name),
        _ => short.to_string(),
    }
}

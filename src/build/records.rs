//! Derivation records: the typed side of the store's `drvs/<id>.json`.
//!
//! `realize` and `eval` record every derivation of the graphs they plan, so
//! the store alone can answer `show ID`, `log` and `diff`, and the garbage
//! collector can follow a rooted derivation to its inputs.

use crate::drv::FORMAT;
use crate::eval::{Derivation, DrvId, Graph};
use crate::store::FsStore;

/// The bytes of a record: the canonical serialisation without its format
/// line, i.e. plain canonical JSON.
fn record_bytes(drv: &Derivation) -> Vec<u8> {
    drv.canonical_bytes()[FORMAT.len()..].to_vec()
}

/// Records every derivation of `graph` that is not recorded yet (one
/// `stat` per derivation when all are, so a no-op realize stays fast).
pub fn record_graph(store: &FsStore, graph: &Graph) -> Result<(), crate::store::Error> {
    for (id, drv) in graph.topo() {
        store.put_drv_record(&id.0, &record_bytes(drv))?;
    }
    Ok(())
}

/// Loads the record of `id` and checks that it hashes to `id`.
pub fn load(store: &FsStore, id: &str) -> Result<Option<Derivation>, String> {
    let Some(bytes) = store.drv_record(id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let drv: Derivation = serde_json::from_slice(&bytes)
        .map_err(|e| format!("derivation record {id} is unreadable: {e}"))?;
    let actual = drv.id();
    if actual.0 != id {
        return Err(format!(
            "derivation record {id} is damaged: its content hashes to {actual}"
        ));
    }
    Ok(Some(drv))
}

/// Full ids of recorded derivations starting with `prefix`.
pub fn find(store: &FsStore, prefix: &str) -> Result<Vec<DrvId>, crate::store::Error> {
    Ok(store
        .drv_record_ids()?
        .into_iter()
        .filter(|id| id.starts_with(prefix))
        .map(DrvId)
        .collect())
}

/// Input derivation ids of a recorded derivation, for the garbage collector.
pub fn inputs_of(store: &FsStore, id: &str) -> Result<Option<Vec<String>>, String> {
    Ok(load(store, id)?.map(|d| d.input_drvs().map(|i| i.0.clone()).collect()))
}

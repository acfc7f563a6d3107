//! Derivation records: the typed side of the store's `drvs` table.
//!
//! `realize` and `eval` record every derivation of the graphs they plan, so
//! the store alone can answer `show ID`, `log` and `diff`, and the garbage
//! collector can follow a rooted derivation to its inputs.

use crate::drv::FORMAT;
use crate::eval::{Derivation, DrvId, Graph};
use crate::store::FsStore;

/// Records every derivation of `graph` that is not recorded yet, in one
/// store transaction; only the missing ones are copied, so a no-op
/// realize or a repeated eval writes nothing. A record is the canonical
/// serialisation without its format line, i.e. plain canonical JSON: the
/// bytes the graph hashed for the id, so nothing is serialised again.
///
/// A repeated eval first asks only for the graph's [`Graph::tops`] (a few
/// ids instead of thousands): a record's inputs are recorded with it in
/// the same transaction (ids hash their inputs, so any graph holding a
/// derivation holds its whole input closure) and `gc` removes a record
/// only with everything that reaches it, so recorded tops mean a recorded
/// graph.
pub fn record_graph(store: &FsStore, graph: &Graph) -> Result<(), crate::store::Error> {
    if store
        .missing_drv_records(graph.tops().map(|id| id.0.as_str()))?
        .is_empty()
    {
        return Ok(());
    }
    let missing: std::collections::HashSet<&str> = store
        .missing_drv_records(graph.nodes().map(|(id, _, _)| id.0.as_str()))?
        .into_iter()
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let batch: Vec<(&str, Vec<u8>)> = graph
        .nodes()
        .filter(|(id, _, _)| missing.contains(&id.0.as_str()))
        .map(|(id, _, bytes)| (id.0.as_str(), bytes[FORMAT.len()..].to_vec()))
        .collect();
    store.put_drv_records(&batch)
}

/// Why a recorded derivation cannot be used.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] crate::store::Error),
    #[error("derivation record {id} is unreadable: {reason}")]
    #[diagnostic(
        code(store::record),
        help("`cvmbuild store verify` lists damaged records; evaluating the spec again records it anew")
    )]
    Unreadable { id: String, reason: String },
    #[error("derivation record {id} is damaged: its content hashes to {actual}")]
    #[diagnostic(
        code(store::record),
        help("`cvmbuild store verify` lists damaged records; evaluating the spec again records it anew")
    )]
    Damaged { id: String, actual: DrvId },
}

/// Loads the record of `id` and checks that it hashes to `id`.
pub fn load(store: &FsStore, id: &str) -> Result<Option<Derivation>, Error> {
    let Some(bytes) = store.drv_record(id)? else {
        return Ok(None);
    };
    let drv: Derivation = serde_json::from_slice(&bytes).map_err(|e| Error::Unreadable {
        id: id.to_string(),
        reason: e.to_string(),
    })?;
    let actual = drv.id();
    if actual.0 != id {
        return Err(Error::Damaged {
            id: id.to_string(),
            actual,
        });
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
pub fn inputs_of(store: &FsStore, id: &str) -> Result<Option<Vec<String>>, Error> {
    Ok(load(store, id)?.map(|d| d.input_drvs().map(|i| i.0.clone()).collect()))
}

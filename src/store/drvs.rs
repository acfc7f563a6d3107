//! Derivation records (store-layout.md 2.6): the canonical JSON of every
//! derivation `eval` or `realize` planned, so that `show`, `log`, `diff`
//! and the garbage collector can follow a derivation and its inputs
//! without the spec.
//!
//! Records live in the `drvs` table of the store's index, written in one
//! transaction per graph: a closure of 2,500 packages plans about 5,000
//! derivations, and one file per record (the first layout) made file
//! creation most of a cold `eval`. A transaction also makes a batch all or
//! nothing, so a record is never half-written.
//!
//! The store treats a record as opaque bytes named by the derivation id;
//! whoever reads one checks that it hashes to its id (`build::load_drv`), so
//! a damaged record is detected rather than believed.

use std::fs;
use std::io::ErrorKind;

use rusqlite::{params, OptionalExtension};

use super::fs::io_err;
use super::{validate_id, Error, FsStore, Result};

/// A write transaction that takes the write lock when it begins. A
/// deferred one takes it at its first write, and in WAL mode, if another
/// process committed since its snapshot was taken, SQLite fails it at once
/// (`SQLITE_BUSY_SNAPSHOT`) instead of waiting out the busy timeout, as
/// two realizes recording the same graph at once can.
fn immediate(conn: &mut rusqlite::Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

impl FsStore {
    /// Ids among `ids` that have no record yet, in the order given: lets a
    /// caller serialise only the derivations it must record, so a no-op
    /// `realize` or a repeated `eval` writes nothing. The ids are asked
    /// for a few hundred per statement: one query per derivation was a
    /// tenth of a warm `eval`.
    pub fn missing_drv_records<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<&'a str>> {
        const CHUNK: usize = 500;
        let ids: Vec<&'a str> = ids.into_iter().collect();
        let conn = self.index();
        let mut found = std::collections::HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut stmt =
                conn.prepare_cached(&format!("SELECT id FROM drvs WHERE id IN ({marks})"))?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(chunk), |r| r.get::<_, String>(0))?;
            for id in rows {
                found.insert(id?);
            }
        }
        Ok(ids.into_iter().filter(|id| !found.contains(*id)).collect())
    }

    /// Records each `(id, json)` unless a record of that id is already
    /// there (records never change: the id is a hash of the content), all
    /// in one transaction: after a crash either every record of the batch
    /// is there or none is.
    pub fn put_drv_records(&self, records: &[(&str, Vec<u8>)]) -> Result<()> {
        for (id, _) in records {
            validate_id(id)?;
        }
        let mut conn = self.index();
        let tx = immediate(&mut conn)?;
        {
            let mut stmt =
                tx.prepare_cached("INSERT OR IGNORE INTO drvs (id, json) VALUES (?1, ?2)")?;
            for (id, json) in records {
                stmt.execute(params![id, json])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The record of `id`, if any.
    pub fn drv_record(&self, id: &str) -> Result<Option<Vec<u8>>> {
        validate_id(id)?;
        Ok(self
            .index()
            .prepare_cached("SELECT json FROM drvs WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))
            .optional()?)
    }

    /// Ids of every recorded derivation, sorted.
    pub fn drv_record_ids(&self) -> Result<Vec<String>> {
        let conn = self.index();
        let mut stmt = conn.prepare_cached("SELECT id FROM drvs ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    /// Deletes records (the garbage collector, for dead derivations), in
    /// one transaction: one flush however many there are.
    pub(super) fn remove_drv_records(&self, ids: &[String]) -> Result<()> {
        let mut conn = self.index();
        let tx = immediate(&mut conn)?;
        {
            let mut stmt = tx.prepare_cached("DELETE FROM drvs WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves records of the first layout (`drvs/<id>.json`, one file each)
    /// into the index: one transaction for all of them, then the files are
    /// removed. A crash between the two leaves files that the next open
    /// imports again, which changes nothing (same id, same bytes). Costs one
    /// read of an empty directory once a store is converted.
    pub(super) fn import_file_records(&self) -> Result<()> {
        let dir = self.root().join("drvs");
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(id) = name.strip_suffix(".json") else {
                continue;
            };
            if validate_id(id).is_err() {
                continue;
            }
            let path = entry.path();
            match fs::read(&path) {
                Ok(json) => found.push((id.to_owned(), json, path)),
                // Another process imported it meanwhile.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        if found.is_empty() {
            return Ok(());
        }
        let batch: Vec<(&str, Vec<u8>)> = found
            .iter()
            .map(|(id, json, _)| (id.as_str(), json.clone()))
            .collect();
        self.put_drv_records(&batch)?;
        for (_, _, path) in &found {
            match fs::remove_file(path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(Error::io(path, e)),
                _ => {}
            }
        }
        Ok(())
    }
}

//! Derivation records (`drvs/<id>.json`, store-layout.md 2.6): the
//! canonical JSON of every derivation `eval` or `realize` planned, so that
//! `show`, `log`, `diff` and the garbage collector can follow a derivation
//! and its inputs without the spec.
//!
//! The store treats a record as opaque bytes named by the derivation id;
//! whoever reads one checks that it hashes to its id (`build::load_drv`), so
//! a damaged record is detected rather than believed.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::PathBuf;

use super::fs::{io_err, TempGuard};
use super::{validate_id, Error, FsStore, Result};

impl FsStore {
    fn drv_path(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.root().join("drvs").join(format!("{id}.json")))
    }

    /// Records `json` under `id` unless a record is already there (records
    /// never change: the id is a hash of the content). Written to a
    /// temporary file and renamed, so a reader never sees half a record.
    /// Not fsynced: a record lost in a power cut is written again by the
    /// next `eval` or `realize`, and readers check it against its id.
    pub fn put_drv_record(&self, id: &str, json: &[u8]) -> Result<()> {
        let dest = self.drv_path(id)?;
        if dest.symlink_metadata().is_ok() {
            return Ok(());
        }
        let (tmp, mut f) = self.temp_file()?;
        let guard = TempGuard(tmp);
        f.write_all(json).map_err(io_err(&guard.0))?;
        drop(f);
        fs::rename(&guard.0, &dest).map_err(io_err(&dest))
    }

    /// The record of `id`, if any.
    pub fn drv_record(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let path = self.drv_path(id)?;
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Ids of every recorded derivation, sorted.
    pub fn drv_record_ids(&self) -> Result<Vec<String>> {
        let dir = self.root().join("drvs");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                if validate_id(id).is_ok() {
                    out.push(id.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes a record (the garbage collector, for dead derivations).
    pub(super) fn remove_drv_record(&self, id: &str) -> Result<()> {
        let path = self.drv_path(id)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(path, e)),
            _ => Ok(()),
        }
    }
}

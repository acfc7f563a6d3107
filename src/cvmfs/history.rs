//! The history database: named snapshots (tags) and branches
//! (cvmfs-format.md section 8). It is small, so it is read whole, changed in
//! memory and written as a new object on every publish or promote.

use super::{Error, Result};
use rusqlite::{params, Connection};
use serde::Serialize;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key));
CREATE TABLE branches (branch TEXT, parent TEXT, initial_revision INTEGER,
  CONSTRAINT pk_branch PRIMARY KEY (branch),
  FOREIGN KEY (parent) REFERENCES branches (branch),
  CHECK ((branch <> '') OR (parent IS NULL)),
  CHECK ((branch = '') OR (parent IS NOT NULL)));
CREATE TABLE tags (name TEXT, hash TEXT, revision INTEGER, timestamp INTEGER, channel INTEGER,
  description TEXT, size INTEGER, branch TEXT,
  CONSTRAINT pk_tags PRIMARY KEY (name),
  FOREIGN KEY (branch) REFERENCES branches (branch));
CREATE TABLE recycle_bin (hash TEXT, flags INTEGER, CONSTRAINT pk_hash PRIMARY KEY (hash));
";

/// The head of the repository: always the newest revision.
pub const TRUNK: &str = "trunk";
/// The head before the newest revision.
pub const TRUNK_PREVIOUS: &str = "trunk-previous";

/// One named snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub name: String,
    /// Root catalog hash text (no `C`).
    pub hash: String,
    pub revision: u64,
    pub timestamp: u64,
    pub description: String,
    /// Uncompressed root catalog size.
    pub size: u64,
    /// History branch ("" = trunk).
    pub branch: String,
}

/// A history branch: its parent and the first revision tagged on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    pub name: String,
    pub initial_revision: u64,
}

/// The whole history of a repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// Sorted by name.
    pub tags: Vec<Tag>,
    /// Named branches (children of the trunk branch ""), sorted by name.
    pub branches: Vec<Branch>,
}

impl History {
    pub fn tag(&self, name: &str) -> Option<&Tag> {
        self.tags.iter().find(|t| t.name == name)
    }

    /// Adds or moves a tag; a branch named by the tag is created on first use.
    pub fn set(&mut self, tag: Tag) {
        if !tag.branch.is_empty() && !self.branches.iter().any(|b| b.name == tag.branch) {
            self.branches.push(Branch {
                name: tag.branch.clone(),
                initial_revision: tag.revision,
            });
            self.branches.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.tags.retain(|t| t.name != tag.name);
        self.tags.push(tag);
        self.tags.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Reads a history database file.
    pub fn read(bytes: &[u8], scratch: &Path) -> Result<History> {
        std::fs::write(scratch, bytes).map_err(|e| Error::io(scratch, e))?;
        let r = Self::read_db(scratch);
        let _ = std::fs::remove_file(scratch);
        r
    }

    fn read_db(path: &Path) -> Result<History> {
        let db = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let mut q = db.prepare(
            "SELECT name, hash, revision, timestamp, description, size, branch FROM tags ORDER BY name",
        )?;
        let tags = q
            .query_map([], |r| {
                Ok(Tag {
                    name: r.get(0)?,
                    hash: r.get(1)?,
                    revision: r.get::<_, i64>(2)? as u64,
                    timestamp: r.get::<_, i64>(3)? as u64,
                    description: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    size: r.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64,
                    branch: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut q = db.prepare(
            "SELECT branch, initial_revision FROM branches WHERE branch <> '' ORDER BY branch",
        )?;
        let branches = q
            .query_map([], |r| {
                Ok(Branch {
                    name: r.get(0)?,
                    initial_revision: r.get::<_, i64>(1)? as u64,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(History { tags, branches })
    }

    /// Writes the database to `scratch` and returns its bytes.
    pub fn write(&self, fqrn: &str, previous: Option<&str>, scratch: &Path) -> Result<Vec<u8>> {
        let _ = std::fs::remove_file(scratch);
        let r = self
            .write_db(fqrn, previous, scratch)
            .and_then(|()| std::fs::read(scratch).map_err(|e| Error::io(scratch, e)));
        let _ = std::fs::remove_file(scratch);
        r
    }

    fn write_db(&self, fqrn: &str, previous: Option<&str>, path: &Path) -> Result<()> {
        let mut db = Connection::open(path)?;
        db.execute_batch("PRAGMA journal_mode=DELETE; PRAGMA foreign_keys=ON;")?;
        db.execute_batch(SCHEMA)?;
        let tx = db.transaction()?;
        {
            let mut prop = tx.prepare("INSERT INTO properties (key, value) VALUES (?1, ?2)")?;
            prop.execute(params!["schema", 1.0f64])?;
            prop.execute(params!["schema_revision", 3])?;
            prop.execute(params!["fqrn", fqrn])?;
            if let Some(p) = previous {
                prop.execute(params!["previous_revision", p])?;
            }
            tx.execute(
                "INSERT INTO branches (branch, parent, initial_revision) VALUES ('', NULL, 0)",
                [],
            )?;
            let mut br = tx.prepare(
                "INSERT INTO branches (branch, parent, initial_revision) VALUES (?1, '', ?2)",
            )?;
            for b in &self.branches {
                br.execute(params![b.name, b.initial_revision as i64])?;
            }
            let mut ins = tx.prepare(
                "INSERT INTO tags (name, hash, revision, timestamp, channel, description, size, branch)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)",
            )?;
            for t in &self.tags {
                ins.execute(params![
                    t.name,
                    t.hash,
                    t.revision as i64,
                    t.timestamp as i64,
                    t.description,
                    t.size as i64,
                    t.branch
                ])?;
            }
        }
        tx.commit()?;
        db.close().map_err(|(_, e)| e)?;
        Ok(())
    }
}

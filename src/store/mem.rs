//! An in-memory store for tests and for builders that want a scratch store.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{
    check_children, missing_children, validate_id, BlobRef, Damage, Error, Hash, ObjectKind,
    Output, Result, Root, Store, Tree, VerifyReport, VerifyingReader,
};

#[derive(Default)]
struct Inner {
    blobs: HashMap<Hash, Arc<[u8]>>,
    trees: HashMap<Hash, Arc<[u8]>>,
    outputs: HashMap<String, Output>,
}

/// Keeps everything in memory behind one lock; objects are immutable
/// `Arc<[u8]>`, so readers never hold the lock while reading bytes.
#[derive(Default)]
pub struct MemStore {
    inner: RwLock<Inner>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// Number of distinct blobs stored (lets tests observe deduplication and
    /// that a failed extraction stored nothing).
    pub fn blob_count(&self) -> usize {
        self.read().blobs.len()
    }

    pub fn tree_count(&self) -> usize {
        self.read().trees.len()
    }

    // A poisoned lock only means another thread panicked mid-operation;
    // every mutation here is a single map insert, so the data is consistent.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemStore {
    fn put_blob(&self, r: &mut dyn Read) -> Result<BlobRef> {
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes).map_err(Error::Read)?;
        let hash = Hash::of(&bytes);
        let size = bytes.len() as u64;
        self.write()
            .blobs
            .entry(hash)
            .or_insert_with(|| bytes.into());
        Ok(BlobRef { hash, size })
    }

    fn open_blob(&self, hash: &Hash) -> Result<Box<dyn Read + Send>> {
        let bytes = self.read().blobs.get(hash).cloned().ok_or(Error::Missing {
            kind: "blob",
            hash: *hash,
        })?;
        Ok(Box::new(VerifyingReader::new(Cursor::new(bytes), *hash)))
    }

    fn blob_size(&self, hash: &Hash) -> Result<Option<u64>> {
        Ok(self.read().blobs.get(hash).map(|b| b.len() as u64))
    }

    fn put_tree(&self, tree: &Tree) -> Result<Hash> {
        check_children(self, tree)?;
        let bytes = tree.encode();
        let hash = Hash::of(&bytes);
        self.write()
            .trees
            .entry(hash)
            .or_insert_with(|| bytes.into());
        Ok(hash)
    }

    fn get_tree(&self, hash: &Hash) -> Result<Tree> {
        let bytes = self.read().trees.get(hash).cloned().ok_or(Error::Missing {
            kind: "tree",
            hash: *hash,
        })?;
        Tree::decode(&bytes)
    }

    fn has_tree(&self, hash: &Hash) -> Result<bool> {
        Ok(self.read().trees.contains_key(hash))
    }

    fn register_output(&self, drv_id: &str, out: &Output) -> Result<()> {
        validate_id(drv_id)?;
        let present = match out.root {
            Root::Tree { hash } => self.has_tree(&hash)?,
            Root::Blob { hash, .. } => self.has_blob(&hash)?,
        };
        if !present {
            let (kind, hash) = match out.root {
                Root::Tree { hash } => ("tree", hash),
                Root::Blob { hash, .. } => ("blob", hash),
            };
            return Err(Error::Missing { kind, hash });
        }
        let mut inner = self.write();
        match inner.outputs.get(drv_id) {
            Some(existing) if existing != out => Err(Error::OutputConflict {
                drv_id: drv_id.to_owned(),
            }),
            Some(_) => Ok(()),
            None => {
                inner.outputs.insert(drv_id.to_owned(), out.clone());
                Ok(())
            }
        }
    }

    fn lookup_output(&self, drv_id: &str) -> Result<Option<Output>> {
        Ok(self.read().outputs.get(drv_id).cloned())
    }

    fn verify(&self) -> Result<VerifyReport> {
        let (blobs, trees, outputs) = {
            let inner = self.read();
            (
                inner.blobs.clone(),
                inner.trees.clone(),
                inner.outputs.clone(),
            )
        };
        let mut report = VerifyReport {
            blobs: blobs.len() as u64,
            trees: trees.len() as u64,
            outputs: outputs.len() as u64,
            damage: Vec::new(),
        };
        for (hash, bytes) in &blobs {
            if Hash::of(bytes) != *hash {
                report.damage.push(Damage {
                    kind: ObjectKind::Blob,
                    id: hash.to_hex(),
                    problem: "content does not match its hash".into(),
                });
            }
        }
        for (hash, bytes) in &trees {
            let problem = if Hash::of(bytes) != *hash {
                vec!["content does not match its hash".to_owned()]
            } else {
                match Tree::decode(bytes) {
                    Ok(tree) => missing_children(self, &tree)?,
                    Err(e) => vec![e.to_string()],
                }
            };
            report
                .damage
                .extend(problem.into_iter().map(|problem| Damage {
                    kind: ObjectKind::Tree,
                    id: hash.to_hex(),
                    problem,
                }));
        }
        for (drv_id, out) in &outputs {
            let present = match out.root {
                Root::Tree { hash } => trees.contains_key(&hash),
                Root::Blob { hash, .. } => blobs.contains_key(&hash),
            };
            if !present {
                report.damage.push(Damage {
                    kind: ObjectKind::Output,
                    id: drv_id.clone(),
                    problem: "root object missing".into(),
                });
            }
        }
        report.damage.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(report)
    }
}

//! A local store with binary caches behind it: what this machine lacks is
//! read through from the remotes and kept, so the scheduler (and every
//! builder) works against one [`Store`] and never learns where an object
//! came from.
//!
//! The shape is tvix castore's caching combinator (a near store in front
//! of far ones, filled on a miss), narrowed to what is safe here:
//!
//! - Writes go to the local store only; remotes are written by
//!   `cvmbuild copy --to`, never as a side effect of a build.
//! - An output comes from a remote only through [`Store::find_output`]
//!   with `substitute`, which checks the record's signature against the
//!   substituter's trusted keys and fetches (and verifies) the closure
//!   before the output is registered locally. [`Store::lookup_output`]
//!   stays this machine's answer: the build lock's "did another process
//!   build it meanwhile" and `gc` are about the local store.
//! - Presence questions (`has_blob`, `has_tree`, `blob_size`) are the
//!   local store's too: the closure rule of [`Store::put_tree`] is about
//!   what is stored here, and builders ask them to decide whether to
//!   write, where a round trip per miss would only slow them down.
//! - A read of an object that is not here (`open_blob`, `get_tree`) asks
//!   the remotes in order and fills the local store with the verified
//!   object (a tree with its closure) before answering from it.

use super::remote::{self, Substituter};
use super::{BlobRef, Error, Found, Hash, ObjectKind, Output, Result, Store, Tree, VerifyReport};
use std::io::Read;
use std::path::PathBuf;

/// `local`, reading through to `layers` in order.
pub struct Substituting<'a> {
    local: &'a dyn Store,
    layers: &'a [Substituter],
}

impl<'a> Substituting<'a> {
    pub fn new(local: &'a dyn Store, layers: &'a [Substituter]) -> Substituting<'a> {
        Substituting { local, layers }
    }

    /// Fetches a missing object into the local store from the first layer
    /// that has it. `Ok(false)`: none has it; a layer's failure is the
    /// answer (a damaged or half-sent object is never stored).
    fn fill(&self, kind: ObjectKind, hash: &Hash) -> Result<bool> {
        for s in self.layers {
            match s.remote.fetch_object(self.local, kind, *hash) {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(remote::Error::Store(e)) => return Err(e),
                Err(e) => return Err(Error::Remote(Box::new(e))),
            }
        }
        Ok(false)
    }
}

impl Store for Substituting<'_> {
    fn put_blob(&self, r: &mut dyn Read) -> Result<BlobRef> {
        self.local.put_blob(r)
    }

    fn open_blob(&self, hash: &Hash) -> Result<Box<dyn Read + Send>> {
        match self.local.open_blob(hash) {
            Err(Error::Missing { .. }) if self.fill(ObjectKind::Blob, hash)? => {
                self.local.open_blob(hash)
            }
            r => r,
        }
    }

    fn blob_size(&self, hash: &Hash) -> Result<Option<u64>> {
        self.local.blob_size(hash)
    }

    fn has_blob(&self, hash: &Hash) -> Result<bool> {
        self.local.has_blob(hash)
    }

    fn put_tree(&self, tree: &Tree) -> Result<Hash> {
        self.local.put_tree(tree)
    }

    fn get_tree(&self, hash: &Hash) -> Result<Tree> {
        match self.local.get_tree(hash) {
            Err(Error::Missing { .. }) if self.fill(ObjectKind::Tree, hash)? => {
                self.local.get_tree(hash)
            }
            r => r,
        }
    }

    fn has_tree(&self, hash: &Hash) -> Result<bool> {
        self.local.has_tree(hash)
    }

    fn register_output(&self, drv_id: &str, out: &Output) -> Result<()> {
        self.local.register_output(drv_id, out)
    }

    fn lookup_output(&self, drv_id: &str) -> Result<Option<Output>> {
        self.local.lookup_output(drv_id)
    }

    fn find_output(
        &self,
        drv_id: &str,
        substitute: bool,
        refused: &mut Vec<remote::Error>,
    ) -> Result<Found> {
        if let Some(out) = self.local.lookup_output(drv_id)? {
            return Ok(Found::Here(out));
        }
        if substitute {
            for s in self.layers {
                match s.substitute(self.local, drv_id) {
                    Ok(Some(out)) => return Ok(Found::Substituted(out)),
                    Ok(None) => {}
                    Err(e) => refused.push(e),
                }
            }
        }
        Ok(Found::Absent)
    }

    fn verify(&self) -> Result<VerifyReport> {
        self.local.verify()
    }

    fn local_blob_path(&self, hash: &Hash) -> Option<PathBuf> {
        self.local.local_blob_path(hash)
    }
}

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
use super::{BlobRef, Error, Found, Hash, Output, Result, Store, Tree, VerifyReport};
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

    /// Fetches a missing object (`tree`: a tree with its closure, else a
    /// blob) into the local store from the first layer that has it. `Ok(false)`: none has it; a layer's failure is the
    /// answer (a damaged or half-sent object is never stored).
    fn fill(&self, tree: bool, hash: &Hash) -> Result<bool> {
        for s in self.layers {
            let r = if tree {
                s.remote.fetch_missing_tree(self.local, *hash)
            } else {
                s.remote.fetch_missing_blob(self.local, *hash)
            };
            match r {
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
            Err(Error::Missing { .. }) if self.fill(false, hash)? => self.local.open_blob(hash),
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
            Err(Error::Missing { .. }) if self.fill(true, hash)? => self.local.get_tree(hash),
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

/// Read-through on its own: a "remote" that is an [`super::FsStore`]
/// directory (2.11 uses the same object paths) served by a minimal HTTP
/// server, a [`super::MemStore`] in front.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::remote::Remote;
    use crate::store::{Entry, FsStore, MemStore, Node};
    use std::io::{BufRead, BufReader, Write};
    use std::path::Path;

    /// Serves `root` with GET and HEAD, one request per connection, until
    /// the test process ends.
    fn serve(root: &Path) -> String {
        let root = root.to_path_buf();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                let mut h = String::new();
                while reader.read_line(&mut h).unwrap_or(0) > 0 && h != "\r\n" {
                    h.clear();
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let body = std::fs::read(root.join(path.trim_start_matches('/')))
                    .ok()
                    .filter(|_| !path.contains(".."));
                let (status, body) = match body {
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", Vec::new()),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                if method == "GET" {
                    let _ = conn.write_all(&body);
                }
            }
        });
        url
    }

    #[test]
    fn reads_fill_the_local_store_and_presence_stays_local() {
        let dir = tempfile::tempdir().unwrap();
        let far = FsStore::open(dir.path()).unwrap();
        std::fs::write(
            dir.path().join(remote::MARKER),
            "cvmbuild binary cache, layout 1\n",
        )
        .unwrap();
        let a = far.put_blob(&mut &b"hello from afar"[..]).unwrap();
        let b = far.put_blob(&mut &b"damaged on the way"[..]).unwrap();
        let tree = Tree::new(vec![Entry::root_owned("greeting", Node::file(&a), 0o644)]).unwrap();
        let t = far.put_tree(&tree).unwrap();
        let layers = [Substituter::new(
            Remote::new(&serve(dir.path())).unwrap(),
            Vec::new(),
        )];
        let near = MemStore::new();
        let layered = Substituting::new(&near, &layers);

        // Presence is the local store's: nothing is fetched for it.
        assert!(!layered.has_tree(&t).unwrap());
        assert!(!layered.has_blob(&a.hash).unwrap());
        assert_eq!(layers[0].remote.fetched().objects, 0);

        // A tree read brings its closure; then it is local.
        assert_eq!(layered.get_tree(&t).unwrap(), tree);
        assert!(near.has_tree(&t).unwrap() && near.has_blob(&a.hash).unwrap());
        let mut text = String::new();
        layered
            .open_blob(&a.hash)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "hello from afar");
        // The cache marker, the tree, its blob.
        assert_eq!(layers[0].remote.fetched().objects, 3);

        // Not on the remote either: the local store's own answer.
        let nowhere = Hash::of(b"nowhere");
        assert!(matches!(
            layered.open_blob(&nowhere),
            Err(Error::Missing { .. })
        ));
        assert!(matches!(
            layered.get_tree(&nowhere),
            Err(Error::Missing { .. })
        ));

        // An object that does not hash to its name is refused, not stored.
        let hex = b.hash.to_hex();
        let path = dir.path().join("blobs").join(&hex[..2]).join(&hex);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"damaged on the wax").unwrap();
        match layered.open_blob(&b.hash) {
            Err(Error::Remote(e)) => assert!(
                matches!(*e, remote::Error::Damaged { hash, .. } if hash == b.hash),
                "{e}"
            ),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a damaged blob was served"),
        }
        assert!(!near.has_blob(&b.hash).unwrap());
    }
}

//! The content-addressed store: blobs (file contents), trees (directories)
//! and the output index (derivation id -> output root).
//!
//! The model follows tvix's castore: a file's bytes are stored once, named by
//! their blake3 hash, and a directory is a canonical, sorted list of entries
//! naming its children by hash. Assembling an OS tree from package trees
//! therefore writes only small tree objects and never copies file bytes.
//! `store-layout.md` section 2 is the normative description; this module
//! implements exactly that.

mod drvs;
mod export;
mod fs;
mod gc;
mod layered;
mod location;
mod mem;
pub mod remote;
mod roots;
mod tar;
mod tree;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use export::{
    export_blob, export_tree, export_tree_copies, export_tree_with, set_mtime, ExportReport,
    IfDifferent, Skipped,
};
pub use fs::{DrvLock, FsStore};
pub use gc::{gc, BuildsLock, GcReport, InputsOf};
pub use layered::Substituting;
pub use location::resolve_store_dir;
pub use mem::MemStore;
pub use roots::GcRoot;
pub use tar::{export_tar, Owners, TarReport};
pub use tree::{validate_name, Entry, Flags, Hardlink, Node, Tree};

/// A blake3 digest naming a blob (the bytes themselves) or a tree (its
/// canonical encoding).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The blake3 hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Lower-case hex, the spelling used in file names and the index.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lower-case hex digits; anything else is `None` so
    /// that a stray file name in the store is never mistaken for an object.
    pub fn from_hex(s: &str) -> Option<Hash> {
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl From<blake3::Hash> for Hash {
    fn from(h: blake3::Hash) -> Hash {
        Hash(*h.as_bytes())
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        Hash::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("expected 64 lower-case hex digits"))
    }
}

/// A stored blob: its hash and length in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub hash: Hash,
    pub size: u64,
}

/// What a derivation produced: a tree (a directory, the usual case) or a
/// single blob (a fetched RPM, an ISO image), so single-file outputs need no
/// wrapper directory with an invented file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Root {
    Tree { hash: Hash },
    Blob { hash: Hash, size: u64 },
}

/// A registered build output: its root plus small string metadata chosen by
/// the builder (e.g. `nevra`, `manifest` -> hash of a manifest blob). Metadata
/// is a sorted map so its serialisation is deterministic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    pub root: Root,
    pub meta: BTreeMap<String, String>,
}

impl Output {
    /// A blob output with its metadata (what builders of files return).
    pub fn blob<const N: usize>(blob: BlobRef, meta: [(&str, String); N]) -> Output {
        Output {
            root: Root::Blob {
                hash: blob.hash,
                size: blob.size,
            },
            meta: meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        }
    }
}

/// Which kind of thing a [`Damage`] record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    Blob,
    Tree,
    Output,
    /// A file in an object directory whose name is not an object name.
    Stray,
    /// A derivation record (`drvs/<id>.json`) that does not hash to its id.
    Record,
}

/// One problem found by [`Store::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub kind: ObjectKind,
    /// The object's hash in hex, the derivation id, or the stray path.
    pub id: String,
    pub problem: String,
}

/// The result of re-hashing every object in a store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub blobs: u64,
    pub trees: u64,
    pub outputs: u64,
    pub damage: Vec<Damage>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading blob content: {0}")]
    Read(#[source] io::Error),
    #[error("invalid name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid tree: {0}")]
    InvalidTree(String),
    #[error("{kind} {hash} is not in the store")]
    Missing { kind: &'static str, hash: Hash },
    #[error("{kind} {hash} is damaged: {reason}")]
    Corrupt {
        kind: &'static str,
        hash: Hash,
        reason: String,
    },
    #[error("invalid derivation id or root name {0:?}: use 1-200 characters from [A-Za-z0-9._+-], not starting with '.'")]
    InvalidId(String),
    #[error("derivation {drv_id} already has a different output registered")]
    OutputConflict { drv_id: String },
    #[error("output index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("output index holds an unreadable row for {drv_id}: {reason}")]
    BadIndexRow { drv_id: String, reason: String },
    #[error("no store location: pass --store, set CVMBUILD_STORE, or set HOME or XDG_CACHE_HOME")]
    NoLocation,
    #[error("GC root {name:?} is unreadable ({text:?}); fix or remove roots/{name}")]
    BadRoot { name: String, text: String },
    #[error("gc: {0}")]
    Gc(String),
    #[error("not substituted, and --substitute-only forbids building {drv_id} here")]
    #[diagnostic(
        code(store::not_substituted),
        help("no substituter has a usable output for it (refused substitutes are warned about above); push it with `cvmbuild copy --to`, or realize without --substitute-only")
    )]
    NotSubstituted { drv_id: String },
    /// A read through a [`Substituting`] store that the remote could not
    /// answer with a verified object.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Remote(Box<remote::Error>),
    #[error("export to {path}: {reason}")]
    Export { path: PathBuf, reason: String },
    #[error("export to {path}: the directory holds something else ({difference})")]
    #[diagnostic(
        code(store::export_differs),
        help("pass --replace to build the new tree beside it and swap the two atomically, or remove the directory, or choose another --out")
    )]
    ExportDiffers { path: PathBuf, difference: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A content-addressed store. Implementations are shared between rayon
/// worker threads (and, for [`FsStore`], between processes), so every method
/// takes `&self` and must be safe to call concurrently; putting the same
/// object twice at the same time succeeds for both callers.
pub trait Store: Send + Sync {
    /// Streams `r` into the store, hashing while writing. Storing bytes that
    /// are already present stores nothing new.
    fn put_blob(&self, r: &mut dyn Read) -> Result<BlobRef>;

    /// Opens a blob for reading. The reader re-hashes the bytes and fails
    /// with `InvalidData` at the end if they do not match `hash`, so damage
    /// on disk is never passed on silently.
    fn open_blob(&self, hash: &Hash) -> Result<Box<dyn Read + Send>>;

    /// The size of a stored blob, or `None` if it is absent.
    fn blob_size(&self, hash: &Hash) -> Result<Option<u64>>;

    fn has_blob(&self, hash: &Hash) -> Result<bool> {
        Ok(self.blob_size(hash)?.is_some())
    }

    /// Stores a tree and returns its hash. Every blob and subtree it names
    /// must already be in the store (a tree is only ever stored on top of its
    /// complete closure), and every file's size must match its blob.
    fn put_tree(&self, tree: &Tree) -> Result<Hash>;

    /// Reads and decodes a tree; fails with [`Error::Corrupt`] if the stored
    /// bytes no longer hash to `hash`.
    fn get_tree(&self, hash: &Hash) -> Result<Tree>;

    fn has_tree(&self, hash: &Hash) -> Result<bool>;

    /// Records `out` as the output of `drv_id`. The root object must be in
    /// the store. Registering the identical output again is a no-op;
    /// registering a different one is [`Error::OutputConflict`], because a
    /// derivation id names one build result.
    fn register_output(&self, drv_id: &str, out: &Output) -> Result<()>;

    /// The output registered in this store, without asking anyone else.
    fn lookup_output(&self, drv_id: &str) -> Result<Option<Output>>;

    /// The scheduler's lookup: this store's own output, else, with
    /// `substitute` and a store that has layers behind it
    /// ([`Substituting`]), one fetched from them with its closure and now
    /// registered here. A substitute that was refused (unsigned, untrusted,
    /// damaged, unreachable) is a warning for the caller, so it goes to
    /// `refused` and the lookup goes on; the error is only this store's.
    fn find_output(
        &self,
        drv_id: &str,
        substitute: bool,
        refused: &mut Vec<remote::Error>,
    ) -> Result<Found> {
        let _ = (substitute, refused);
        Ok(self
            .lookup_output(drv_id)?
            .map_or(Found::Absent, Found::Here))
    }

    /// Re-hashes every object and checks every tree's and output's
    /// references; lists what is wrong instead of stopping at the first
    /// problem.
    fn verify(&self) -> Result<VerifyReport>;

    /// A path to the blob's bytes on the local file system, if the backend
    /// keeps one; `export_tree` hardlinks from it instead of copying.
    fn local_blob_path(&self, _hash: &Hash) -> Option<PathBuf> {
        None
    }
}

/// What [`Store::find_output`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    /// Registered in this store before the call.
    Here(Output),
    /// Fetched from a store behind this one, closure and all, verified,
    /// and registered here now.
    Substituted(Output),
    Absent,
}

/// Checks the closure rule of [`Store::put_tree`]: every child is present
/// and every non-ghost file's size equals its blob's size.
pub(crate) fn check_children(store: &dyn Store, tree: &Tree) -> Result<()> {
    for e in tree.entries() {
        match &e.node {
            Node::File {
                size,
                blob: Some(blob),
            } => match store.blob_size(blob)? {
                None => {
                    return Err(Error::Missing {
                        kind: "blob",
                        hash: *blob,
                    })
                }
                Some(actual) if actual != *size => {
                    return Err(Error::InvalidTree(format!(
                        "entry {:?} says {size} bytes but blob {blob} has {actual}",
                        e.name
                    )))
                }
                Some(_) => {}
            },
            Node::Directory { tree } if !store.has_tree(tree)? => {
                return Err(Error::Missing {
                    kind: "tree",
                    hash: *tree,
                });
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lists the references of a decoded tree that are missing from the store,
/// for [`Store::verify`].
pub(crate) fn missing_children(store: &dyn Store, tree: &Tree) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for e in tree.entries() {
        match &e.node {
            Node::File {
                blob: Some(blob), ..
            } if !store.has_blob(blob)? => {
                out.push(format!("entry {:?}: blob {blob} missing", e.name))
            }
            Node::Directory { tree } if !store.has_tree(tree)? => {
                out.push(format!("entry {:?}: tree {tree} missing", e.name))
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Derivation ids and root names become file names under `locks/`, `logs/`
/// and `roots/`, so they are restricted to a portable, unambiguous alphabet.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_owned()))
    }
}

/// Wraps a blob reader so that reaching the end with bytes that do not hash
/// to the expected value is an error rather than silent corruption.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    expected: Hash,
    done: bool,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(inner: R, expected: Hash) -> Self {
        VerifyingReader {
            inner,
            hasher: blake3::Hasher::new(),
            expected,
            done: false,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.done = true;
            let actual = Hash::from(self.hasher.finalize());
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is damaged: content hashes to {actual}",
                        self.expected
                    ),
                ));
            }
        } else {
            self.hasher.update(&buf[..n]);
        }
        Ok(n)
    }
}

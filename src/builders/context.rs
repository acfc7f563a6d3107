//! What a builder gets: the derivation, its inputs' outputs, checked
//! source files, the environment, and a log.

use super::Error;
use crate::drv::{Derivation, DrvId};
use crate::repo::fetch::Location;
use crate::store::{Output, Root, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What builders may need beyond their inputs: where repositories are (for
/// fetch) and where spec-local source files live.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// Repository name -> location, from the spec.
    pub repos: BTreeMap<String, Location>,
    /// Repository name -> the keys its packages must be signed with, for
    /// repositories with `gpgcheck` (fetch verifies against them).
    pub signing_keys: BTreeMap<String, std::sync::Arc<crate::gpg::Keyring>>,
    /// Directory of the main spec file: source inputs' origins are relative
    /// to it.
    pub spec_dir: PathBuf,
    /// Directory of published CernVM-FS repositories (`<dir>/<fqrn>`).
    pub publish_dir: Option<PathBuf>,
    /// Directory of CernVM-FS repository keys (`<fqrn>.masterkey`, ...).
    pub keys_dir: Option<PathBuf>,
}

/// Everything a builder gets.
pub struct BuildCx<'a> {
    pub store: &'a dyn Store,
    pub id: &'a DrvId,
    pub drv: &'a Derivation,
    /// Outputs of the input derivations, by role.
    pub inputs: BTreeMap<String, Output>,
    /// Source inputs, by role: paths whose content was checked against the
    /// hash recorded in the derivation.
    pub sources: BTreeMap<String, PathBuf>,
    pub env: &'a Env,
    log: Mutex<Vec<String>>,
}

impl<'a> BuildCx<'a> {
    /// A context whose log starts with the derivation's identity.
    pub fn new(
        store: &'a dyn Store,
        id: &'a DrvId,
        drv: &'a Derivation,
        inputs: BTreeMap<String, Output>,
        sources: BTreeMap<String, PathBuf>,
        env: &'a Env,
    ) -> BuildCx<'a> {
        let log = vec![
            format!("derivation {id}"),
            format!("name {}", drv.name),
            format!("builder {}", drv.builder),
        ];
        BuildCx {
            store,
            id,
            drv,
            inputs,
            sources,
            env,
            log: Mutex::new(log),
        }
    }

    /// Appends a line to the derivation's build log (`cvmbuild log DRV`).
    pub fn log(&self, line: impl Into<String>) {
        self.log.lock().expect("log lock").push(line.into());
    }

    /// The log so far, consuming the context.
    pub fn into_log(self) -> Vec<String> {
        self.log.into_inner().expect("log lock")
    }

    /// A parameter, for builders' error messages when one is missing.
    pub fn param(&self, key: &str) -> Result<&serde_json::Value, Error> {
        self.drv
            .params
            .get(key)
            .ok_or_else(|| format!("{}: missing parameter `{key}`", self.drv.name).into())
    }

    /// The single input blob of role `role`, as a file on local disk.
    pub fn input_blob_file(&self, role: &str) -> Result<BlobFile, Error> {
        match self.inputs.get(role).map(|o| &o.root) {
            Some(Root::Blob { hash, .. }) => self.blob_file(hash),
            _ => Err(format!("{}: input `{role}` is not a file", self.drv.name).into()),
        }
    }

    /// Blob `hash` as a file on local disk, for builders whose tools read
    /// files: the store's own file when it keeps one; else the blob read
    /// through the store (a layered store fetches it from a remote,
    /// verified, and keeps it locally) and, if the store still has no file
    /// of it, spooled to a temporary file.
    pub fn blob_file(&self, hash: &crate::store::Hash) -> Result<BlobFile, Error> {
        if let Some(p) = self.store.local_blob_path(hash) {
            return Ok(BlobFile::Local(p));
        }
        let mut reader = self.store.open_blob(hash)?;
        if let Some(p) = self.store.local_blob_path(hash) {
            return Ok(BlobFile::Local(p));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("cvmbuild-blob-")
            .tempfile()?;
        std::io::copy(&mut reader, &mut tmp)?;
        Ok(BlobFile::Spooled(tmp))
    }
}

/// A blob as a file a builder's tools can open ([`BuildCx::blob_file`]).
pub enum BlobFile {
    /// The store's own file of it.
    Local(PathBuf),
    /// A temporary copy, removed on drop.
    Spooled(tempfile::NamedTempFile),
}

impl BlobFile {
    pub fn path(&self) -> &Path {
        match self {
            BlobFile::Local(p) => p,
            BlobFile::Spooled(t) => t.path(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    /// A store that keeps no files (as a remote-only backend) gets its
    /// blob spooled, byte for byte, to a file that goes away with it.
    #[test]
    fn a_blob_without_a_local_file_is_spooled() {
        let store = MemStore::new();
        let bytes = b"an rpm, say".repeat(1000);
        let blob = store.put_blob(&mut bytes.as_slice()).unwrap();
        let drv = Derivation {
            name: "extract:x".into(),
            builder: crate::drv::Builder::builtin("extract", 1),
            inputs: BTreeMap::new(),
            params: serde_json::json!({}),
            outputs: vec!["out".into()],
        };
        let id = drv.id();
        let env = Env::default();
        let inputs = BTreeMap::from([(
            "rpm".to_string(),
            Output {
                root: Root::Blob {
                    hash: blob.hash,
                    size: bytes.len() as u64,
                },
                meta: BTreeMap::new(),
            },
        )]);
        let cx = BuildCx::new(&store, &id, &drv, inputs, BTreeMap::new(), &env);
        let file = cx.input_blob_file("rpm").unwrap();
        assert!(matches!(file, BlobFile::Spooled(_)));
        let path = file.path().to_path_buf();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        drop(file);
        assert!(!path.exists());
    }
}

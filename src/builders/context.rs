//! What a builder gets: the derivation, its inputs' outputs, checked
//! source files, the environment, and a log.

use super::Error;
use crate::drv::{Derivation, DrvId};
use crate::repo::fetch::Location;
use crate::store::{Output, Root, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;
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

    /// The single input blob of role `role`, as a local file path (the
    /// file-system store keeps blobs as files; a remote backend would spool
    /// to a temporary file here).
    pub fn input_blob_path(&self, role: &str) -> Result<PathBuf, Error> {
        match self.inputs.get(role).map(|o| &o.root) {
            Some(Root::Blob { hash, .. }) => self.store.local_blob_path(hash).ok_or_else(|| {
                format!("{}: input `{role}` is not on local disk", self.drv.name).into()
            }),
            _ => Err(format!("{}: input `{role}` is not a file", self.drv.name).into()),
        }
    }
}

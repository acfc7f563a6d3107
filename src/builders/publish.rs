//! The `publish` builder: publishes the assembled OS tree (plus the meta
//! RPM under `/.cvmbuild/`) as a new revision of the spec's CernVM-FS
//! repository, outside the store (docs/cvmfs.md).
//!
//! The registered output is a small JSON record of what was published
//! (revision, root catalog, tag), so realizing the same derivation again is
//! a cache hit and writes nothing; `promote` works on the repository itself
//! and never invalidates it.

use super::{BuildCx, Error as BuildError};
use crate::cvmfs;
use crate::store::{Output, Root};
use std::io::Read;

/// Whitelist validity in days (upstream's default).
const WHITELIST_DAYS: u64 = 30;

pub fn build(cx: &BuildCx) -> Result<Output, BuildError> {
    let text = |k: &str| -> Result<String, BuildError> {
        cx.param(k)?
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{}: parameter `{k}` is not a string", cx.drv.name).into())
    };
    let fqrn = text("repository")?;
    let nested: Vec<String> = serde_json::from_value(cx.param("nested")?.clone())?;
    let epoch = cx
        .param("epoch")?
        .as_u64()
        .ok_or_else(|| format!("{}: parameter `epoch` is not a number", cx.drv.name))?;
    let Some(Root::Tree { hash: tree }) = cx.inputs.get("tree").map(|o| o.root) else {
        return Err(format!("{}: input `tree` is not a tree", cx.drv.name).into());
    };
    let mut extra = Vec::new();
    if let Some(meta) = cx.inputs.get("meta") {
        let Root::Blob { hash, .. } = meta.root else {
            return Err(format!("{}: input `meta` is not a file", cx.drv.name).into());
        };
        let name = meta
            .meta
            .get("file")
            .cloned()
            .unwrap_or_else(|| "meta.rpm".to_string());
        let mut bytes = Vec::new();
        cx.store.open_blob(&hash)?.read_to_end(&mut bytes)?;
        extra.push((name, bytes));
    }
    let (Some(root), Some(keys_dir)) = (&cx.env.publish_dir, &cx.env.keys_dir) else {
        return Err(format!(
            "{}: no CernVM-FS publish directory or key directory configured",
            cx.drv.name
        )
        .into());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let opts = cvmfs::Options {
        repo_dir: root.join(&fqrn),
        keys_dir: keys_dir.clone(),
        now,
        whitelist_days: WHITELIST_DAYS,
    };
    let req = cvmfs::Request {
        fqrn: fqrn.clone(),
        nested,
        tag: text("tag")?,
        branch: text("branch")?,
        epoch,
        extra,
    };
    let p = cvmfs::publish(cx.store, &tree, &req, &opts)?;
    cx.log(format!(
        "{}: revision {} ({}), tag {}, root catalog {}",
        opts.repo_dir.display(),
        p.revision,
        if p.new_revision {
            "new"
        } else {
            "already published"
        },
        p.tag,
        p.root_catalog
    ));
    cx.log(format!(
        "{} entries; {} objects written ({} bytes), {} already present; {} catalogs written",
        p.entries, p.objects_written, p.bytes_written, p.objects_reused, p.catalogs_written
    ));
    for n in &p.skipped_nested {
        cx.log(format!(
            "nested catalog {n} skipped: not a directory in the tree"
        ));
    }
    if !p.unknown_owners.is_empty() {
        cx.log(format!(
            "owners not in the tree's /etc/passwd or /etc/group, published as {}: {}",
            cvmfs::UNKNOWN_ID,
            p.unknown_owners.join(", ")
        ));
    }
    let blob = cx
        .store
        .put_blob(&mut serde_json::to_vec_pretty(&p)?.as_slice())?;
    Ok(Output::blob(
        blob,
        [
            ("repository", p.fqrn),
            ("revision", p.revision.to_string()),
            ("tag", p.tag),
            ("root-catalog", p.root_catalog),
        ],
    ))
}

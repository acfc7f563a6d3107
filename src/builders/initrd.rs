//! The `initrd` builder: the spec's binaries with what they need from the
//! OS tree, package trees, the trimmed kernel's modules, the spec's files
//! and init script, as a compressed `newc` cpio archive.

use super::{BuildCx, Error as BuildError};
use crate::image::{compress::Compression, cpio, elf, initrd, paths};
use crate::store::{Output, Root};
use serde_json::Value as Json;
use std::collections::BTreeMap;

pub fn build(cx: &BuildCx) -> Result<Output, BuildError> {
    let name = &cx.drv.name;
    let compression = Compression::parse(cx.param("compression")?.as_str().unwrap_or_default())
        .map_err(|e| format!("{name}: {e}"))?;
    let epoch = cx.param("epoch")?.as_i64().unwrap_or(0);
    let mtime = u32::try_from(epoch)
        .map_err(|_| format!("{name}: epoch {epoch} does not fit a cpio mtime"))?;
    let binaries: Vec<String> = serde_json::from_value(cx.param("binaries")?.clone())?;

    let mut trees = Vec::new();
    if !binaries.is_empty() {
        trees.push(("binaries".to_string(), binaries_tree(cx, &binaries)?));
    }
    for (role, out) in &cx.inputs {
        if let (Some(pkg), Root::Tree { hash }) = (role.strip_prefix("pkg:"), out.root) {
            trees.push((format!("package {pkg}"), hash));
        }
    }
    // The kernel's modules, without the kernel image itself.
    let kernel = cx
        .inputs
        .get("kernel")
        .ok_or_else(|| format!("{name}: no `kernel` input"))?;
    let Root::Tree { hash: ktree } = kernel.root else {
        return Err(format!("{name}: the kernel input is not a tree").into());
    };
    let mut kflat = paths::walk(cx.store, &ktree)?;
    kflat.retain(|p, _| p.starts_with("lib/"));
    trees.push((
        "kernel modules".to_string(),
        paths::build(cx.store, &kflat)?,
    ));

    let files: BTreeMap<String, Json> = serde_json::from_value(cx.param("files")?.clone())?;
    let mut contents = Vec::new();
    for (dest, v) in files {
        contents.push((
            dest.clone(),
            text_or_source(cx, v, &format!("file:{dest}"), &format!("file `{dest}`"))?,
        ));
    }
    let init = text_or_source(cx, cx.param("init")?.clone(), "init", "init script")?;

    let members = initrd::members(cx.store, &trees, &contents, init)?;
    let mut raw = Vec::new();
    let size = cpio::write(&mut raw, &members, mtime)?;
    let packed = compression.compress(&raw)?;
    let blob = cx.store.put_blob(&mut packed.as_slice())?;
    cx.log(format!(
        "{} entries, cpio {size} bytes, {compression:?} {} bytes",
        members.len(),
        blob.size
    ));
    Ok(Output::blob(
        blob,
        [
            ("compression", format!("{compression:?}").to_lowercase()),
            ("entries", members.len().to_string()),
            ("cpio-bytes", size.to_string()),
        ],
    ))
}

/// Inline text from the parameters, or the bytes of the source input
/// `role` (checked against the derivation's hash by the scheduler).
fn text_or_source(cx: &BuildCx, v: Json, role: &str, what: &str) -> Result<Vec<u8>, BuildError> {
    if let Json::String(s) = v {
        return Ok(s.into_bytes());
    }
    let path = cx.sources.get(role).ok_or_else(|| {
        format!(
            "{}: the {what} is neither inline nor a source input",
            cx.drv.name
        )
    })?;
    std::fs::read(path)
        .map_err(|e| format!("{}: {what} {}: {e}", cx.drv.name, path.display()).into())
}

/// The listed binaries, their interpreters and libraries from the `os-tree`
/// input (see [`elf::Closure`]), stored as a tree to layer like a package.
fn binaries_tree(cx: &BuildCx, binaries: &[String]) -> Result<crate::store::Hash, BuildError> {
    let name = &cx.drv.name;
    let os = cx
        .inputs
        .get("os-tree")
        .ok_or_else(|| format!("{name}: `binaries` given but no `os-tree` input"))?;
    let Root::Tree { hash } = os.root else {
        return Err(format!("{name}: the os-tree input is not a tree").into());
    };
    let release = cx.param("release")?.as_str().unwrap_or_default();
    let flat = paths::walk(cx.store, &hash)?;
    let label = format!("the OS tree of {release}");
    let mut closure =
        elf::Closure::new(cx.store, &flat, &label).map_err(|e| format!("{name}: {e}"))?;
    for b in binaries {
        closure.add(b).map_err(|e| format!("{name}: {e}"))?;
    }
    let entries = closure.into_entries();
    cx.log(format!(
        "binaries: {} with {} files and symlinks from the OS tree",
        binaries.join(" "),
        entries
            .values()
            .filter(|e| !matches!(e.node, crate::store::Node::Directory { .. }))
            .count()
    ));
    Ok(paths::build(cx.store, &entries)?)
}

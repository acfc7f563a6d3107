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
            0o644,
            text_or_source(cx, v, &format!("file:{dest}"), &format!("file `{dest}`"))?,
        ));
    }
    if let Some(boot) = cx.drv.params.get("boot").filter(|b| !b.is_null()) {
        contents.extend(boot_files(cx, boot)?);
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

/// Where `initrd.boot` puts the client, the key and the defaults; the
/// example's /init (examples/boot/init.sh) reads them from here.
const CLIENT: &str = "/bin/cvmbuild-client";
const DEFAULTS: &str = "/etc/ucernvm/defaults";
const KEYS: &str = "/etc/ucernvm/keys";

/// `initrd.boot`'s files: the client binary (which must be static: the
/// initrd has no C library for it), the master public key, and the
/// defaults as a shell fragment that /init sources before the kernel
/// command line overrides them.
fn boot_files(cx: &BuildCx, boot: &Json) -> Result<Vec<(String, u32, Vec<u8>)>, BuildError> {
    let name = &cx.drv.name;
    let text = |k: &str| boot[k].as_str().unwrap_or_default().to_string();
    let fqrn = text("repository");
    if fqrn.is_empty()
        || !fqrn
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        || fqrn.starts_with('.')
    {
        return Err(format!("{name}: initrd.boot.repository `{fqrn}` is not a repository name like cernvm-prod.cern.ch").into());
    }
    let client = text_or_source(cx, Json::Null, "boot:client", "cvmbuild-client binary")?;
    check_static(&client).map_err(|e| {
        format!("{name}: initrd.boot.client: {e}; build it with `cargo build --profile client --target x86_64-unknown-linux-musl --bin cvmbuild-client`")
    })?;
    let key = text_or_source(cx, boot["key"].clone(), "boot:key", "master public key")?;
    if !key.starts_with(b"-----BEGIN PUBLIC KEY-----") {
        return Err(format!(
            "{name}: initrd.boot.key is not a PEM public key (want the repository's `<fqrn>.pub` from the keys directory)"
        )
        .into());
    }
    let servers: Vec<String> = serde_json::from_value(boot["servers"].clone())?;
    let key_path = format!("{KEYS}/{fqrn}.pub");
    let vars = [
        ("CVMFS_REPOSITORY", fqrn.clone()),
        ("CVMFS_SERVER", servers.join(";")),
        ("CVMFS_PROXY", text("proxy")),
        ("CVMFS_TAG", text("tag")),
        ("CERNVM_PATH", text("path")),
        ("CVMFS_CLIENT", CLIENT.to_string()),
    ];
    let mut defaults = String::from(
        "# Baked in by cvmbuild from initrd.boot; the kernel command line overrides.\n",
    );
    for (k, v) in vars {
        defaults.push_str(&format!("{k}='{}'\n", v.replace('\'', r"'\''")));
    }
    cx.log(format!(
        "boot: {fqrn} from {}, tag {}, client {} bytes",
        servers.join(";"),
        text("tag"),
        client.len()
    ));
    Ok(vec![
        (CLIENT.to_string(), 0o755, client),
        (key_path, 0o644, key),
        (DEFAULTS.to_string(), 0o644, defaults.into_bytes()),
    ])
}

/// An x86-64 ELF executable that needs no loader or shared library.
fn check_static(bytes: &[u8]) -> Result<(), String> {
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| format!("not an ELF executable: {e}"))?;
    if elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err("not an x86-64 executable".into());
    }
    if let Some(i) = elf.interpreter {
        return Err(format!("dynamically linked (needs {i})"));
    }
    if !elf.libraries.is_empty() {
        return Err(format!(
            "needs shared libraries {}",
            elf.libraries.join(" ")
        ));
    }
    Ok(())
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

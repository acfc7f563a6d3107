//! Builtin builders: the code that turns a derivation's inputs into its
//! output in the store. [`run`] dispatches on the derivation's builder;
//! each builder module has a `build(&BuildCx)` adapter next to its logic.

pub mod assemble;
pub mod extract;
pub mod fetch;
pub mod filecaps;
pub mod image;
pub mod initrd;
pub mod kernel;
pub mod meta_rpm;
pub mod publish;
pub mod rootfs;

use crate::build::{BuildCx, BuildError};
use crate::eval::Builder;
use crate::store::{Output, Root};
use std::collections::BTreeMap;

/// Runs the builder a derivation names.
pub fn run(cx: &BuildCx) -> Result<Output, BuildError> {
    let name = match &cx.drv.builder {
        Builder::Builtin { name, .. } => name.as_str(),
        Builder::External { tool, .. } => {
            return Err(format!("{}: no builder for external tool `{tool}`", cx.drv.name).into())
        }
    };
    match name {
        "fetch" => fetch::build(cx),
        "extract" => extract_build(cx),
        "assemble" => assemble_build(cx),
        "meta-rpm" => meta_rpm_build(cx),
        "kernel" => kernel::build(cx),
        "initrd" => initrd::build(cx),
        "image" => image::build(cx),
        "rootfs" => rootfs::build(cx),
        "publish" => publish::build(cx),
        other => Err(format!(
            "{}: builder `{other}` is not implemented in this version of cvmbuild",
            cx.drv.name
        )
        .into()),
    }
}

/// The single input blob of a derivation, as a local file path (the store
/// keeps blobs as files; other backends would copy to a temp file here).
fn input_blob_path(cx: &BuildCx, role: &str) -> Result<std::path::PathBuf, BuildError> {
    match cx.inputs.get(role).map(|o| &o.root) {
        Some(Root::Blob { hash, .. }) => cx
            .store
            .local_blob_path(hash)
            .ok_or_else(|| format!("{}: input `{role}` is not on local disk", cx.drv.name).into()),
        _ => Err(format!("{}: input `{role}` is not a file", cx.drv.name).into()),
    }
}

fn extract_build(cx: &BuildCx) -> Result<Output, BuildError> {
    let path = input_blob_path(cx, "rpm")?;
    let repo = cx.inputs["rpm"]
        .meta
        .get("repo")
        .map_or("?", String::as_str);
    let x = extract::extract(cx.store, &path)
        .map_err(|e| format!("{} from repository `{repo}`: {e}", cx.drv.name))?;
    cx.log(format!(
        "{}: {} paths, {} scriptlets recorded (not run)",
        x.manifest.nevra,
        x.manifest.files.len(),
        x.manifest.scriptlets.len()
    ));
    Ok(x.to_output(cx.store)?)
}

/// `name` of a `name-[epoch:]version-release.arch` label: version and
/// release never contain `-`, names may.
fn name_of(nevra: &str) -> &str {
    let no_arch = nevra.rsplit_once('.').map_or(nevra, |(a, _)| a);
    let mut parts = no_arch.rsplitn(3, '-');
    let (_, _, name) = (parts.next(), parts.next(), parts.next());
    name.unwrap_or(nevra)
}

fn assemble_build(cx: &BuildCx) -> Result<Output, BuildError> {
    let mut packages = Vec::new();
    let mut scriptlets = Vec::new();
    for (role, out) in &cx.inputs {
        let Some(nevra) = role.strip_prefix("pkg:") else {
            continue;
        };
        let Root::Tree { hash } = out.root else {
            return Err(format!("assemble: {nevra} is not a tree").into());
        };
        if let Some(m) = out
            .meta
            .get("manifest")
            .and_then(|h| crate::store::Hash::from_hex(h))
        {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut cx.store.open_blob(&m)?, &mut bytes)?;
            let manifest: extract::Manifest = serde_json::from_slice(&bytes)?;
            for s in manifest.scriptlets {
                scriptlets.push(format!("{nevra} %{}", s.kind));
            }
        }
        packages.push(assemble::PackageTree {
            nevra: nevra.to_string(),
            name: name_of(nevra).to_string(),
            tree: hash,
        });
    }
    let prefer: BTreeMap<String, String> = serde_json::from_value(cx.param("prefer")?.clone())?;
    let a = assemble::assemble(cx.store, &packages, &prefer)?;
    let manifest = cx
        .store
        .put_blob(&mut assemble::manifest_json(&a.owners).as_slice())?;
    let not_run = cx
        .store
        .put_blob(&mut serde_json::to_vec(&scriptlets)?.as_slice())?;
    cx.log(format!(
        "{} packages, {} paths; {} scriptlets not run",
        packages.len(),
        a.owners.len(),
        scriptlets.len()
    ));
    for s in &scriptlets {
        cx.log(format!("not run: {s}"));
    }
    Ok(Output {
        root: Root::Tree { hash: a.tree },
        meta: BTreeMap::from([
            ("manifest".to_string(), manifest.hash.to_hex()),
            ("scriptlets-not-run".to_string(), not_run.hash.to_hex()),
        ]),
    })
}

fn meta_rpm_build(cx: &BuildCx) -> Result<Output, BuildError> {
    let meta: meta_rpm::MetaRpm = serde_json::from_value(cx.drv.params.clone())?;
    let bytes = meta.build()?;
    let blob = cx.store.put_blob(&mut bytes.as_slice())?;
    cx.log(format!(
        "{} ({} requires)",
        meta.file_name(),
        meta.requires.len()
    ));
    Ok(Output {
        root: Root::Blob {
            hash: blob.hash,
            size: blob.size,
        },
        meta: BTreeMap::from([("file".to_string(), meta.file_name())]),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_of_nevra() {
        assert_eq!(super::name_of("bash-4.1.2-29.el6.x86_64"), "bash");
        assert_eq!(
            super::name_of("openssh-server-5.3p1-94.el6.x86_64"),
            "openssh-server"
        );
        assert_eq!(super::name_of("perl-4:5.10.1-136.el6.x86_64"), "perl");
    }
}

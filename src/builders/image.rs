//! The `image` builder: the trimmed kernel and the initrd on a bootable
//! ISO, raw disk or qcow2 image ([`crate::image::disk`]), with the release
//! and branch on the kernel command line.

use super::{BuildCx, Error as BuildError};
use crate::image::{disk, paths, tools};
use crate::store::{Node, Output, Root};
use std::collections::BTreeMap;

pub fn build(cx: &BuildCx) -> Result<Output, BuildError> {
    let name = &cx.drv.name;
    let p = |k: &str| -> Result<String, BuildError> {
        Ok(cx
            .param(k)?
            .as_str()
            .map(str::to_string)
            .unwrap_or_default())
    };
    let format = p("format")?;
    let recorded: BTreeMap<String, String> = serde_json::from_value(cx.param("tools")?.clone())?;
    tools::check(&format, &recorded).map_err(|e| format!("{name}: {e}"))?;
    let epoch = cx.param("epoch")?.as_i64().unwrap_or(0);
    let size = cx.param("size")?.as_u64();
    let cmdline = command_line(
        &p("cmdline")?,
        &p("release")?,
        &p("version")?,
        &p("branch")?,
    )
    .map_err(|e| format!("{name}: {e}"))?;

    let kernel = cx
        .inputs
        .get("kernel")
        .ok_or_else(|| format!("{name}: no `kernel` input"))?;
    let Root::Tree { hash: ktree } = kernel.root else {
        return Err(format!("{name}: the kernel input is not a tree").into());
    };
    let vmlinuz = match paths::lookup(cx.store, &ktree, "vmlinuz")?.map(|e| e.node) {
        Some(Node::File { blob: Some(h), .. }) => cx.blob_file(&h)?,
        _ => return Err(format!("{name}: the kernel output has no vmlinuz").into()),
    };
    let initrd = cx.input_blob_file("initrd")?;

    let work = tempfile::Builder::new()
        .prefix("cvmbuild-image-")
        .tempdir()?;
    let out = work.path().join(format!("image.{format}"));
    let files = disk::BootFiles {
        vmlinuz: vmlinuz.path(),
        initrd: initrd.path(),
        cmdline: &cmdline,
        epoch,
    };
    disk::make(&format, &files, size, work.path(), &out).map_err(|e| format!("{name}: {e}"))?;
    let blob = cx.store.put_blob(&mut std::fs::File::open(&out)?)?;
    cx.log(format!(
        "{format}: {} bytes; command line: {cmdline}",
        blob.size
    ));
    Ok(Output::blob(
        blob,
        [
            ("format", format.clone()),
            (
                "file",
                format!("{}-{}.{format}", p("release")?, p("version")?),
            ),
            ("cmdline", cmdline),
        ],
    ))
}

/// The spec's command line plus what the booted system needs to know
/// about itself: `cvmbuild.release=NAME-VERSION` and `cvmbuild.branch=B`.
/// No `cvmfs_repository_tag=`: the initrd's default tag (`initrd.boot.tag`,
/// else the branch) is what a μCernVM image follows, and the user's own
/// `cvmfs_repository_tag=` is the only override. Values with white space
/// would split into several kernel parameters, so they are refused.
fn command_line(base: &str, release: &str, version: &str, branch: &str) -> Result<String, String> {
    for (what, v) in [
        ("release", release),
        ("version", version),
        ("branch", branch),
    ] {
        if v.is_empty() || v.chars().any(char::is_whitespace) {
            return Err(format!("{what} `{v}` cannot be passed on the kernel command line (empty or has white space)"));
        }
    }
    let extra = format!("cvmbuild.release={release}-{version} cvmbuild.branch={branch}");
    Ok(if base.trim().is_empty() {
        extra
    } else {
        format!("{} {extra}", base.trim())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_carries_release_and_branch() {
        let c = super::command_line("console=ttyS0", "cernvm", "3.1", "production").unwrap();
        assert_eq!(
            c,
            "console=ttyS0 cvmbuild.release=cernvm-3.1 cvmbuild.branch=production"
        );
        assert!(super::command_line("", "a b", "1", "p")
            .unwrap_err()
            .contains("release"));
    }
}

//! The `rootfs` builder: the assembled OS tree as a squashfs image
//! ([`crate::image::rootfs`]) for the initrd to overlay and switch into.

use super::{BuildCx, Error as BuildError};
use crate::image::{rootfs, tools};
use crate::store::{Output, Root};
use std::collections::BTreeMap;

pub fn build(cx: &BuildCx) -> Result<Output, BuildError> {
    let name = &cx.drv.name;
    let recorded: BTreeMap<String, String> = serde_json::from_value(cx.param("tools")?.clone())?;
    tools::check("squashfs", &recorded).map_err(|e| format!("{name}: {e}"))?;
    let epoch = cx.param("epoch")?.as_i64().unwrap_or(0);
    let Some(Root::Tree { hash }) = cx.inputs.get("tree").map(|o| o.root) else {
        return Err(format!("{name}: input `tree` is not a tree").into());
    };
    let work = tempfile::Builder::new()
        .prefix("cvmbuild-rootfs-")
        .tempdir()?;
    let out = work.path().join("root.squashfs");
    let notes = rootfs::squashfs(cx.store, &hash, epoch, work.path(), &out)
        .map_err(|e| format!("{name}: {e}"))?;
    for n in &notes {
        cx.log(format!("not as the tree says: {n}"));
    }
    let blob = cx.store.put_blob(&mut std::fs::File::open(&out)?)?;
    cx.log(format!("squashfs: {} bytes", blob.size));
    Ok(Output::blob(blob, [("format", "squashfs".to_string())]))
}

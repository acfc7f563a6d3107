//! The `kernel` builder: [`crate::image::kernel::trim`] on the extracted
//! kernel package, with the size before and after trimming in the log, and
//! the spec's `kernel.config` checked against the package's own config.

use super::{BuildCx, Error as BuildError};
use crate::image::kernel;
use crate::store::{Output, Root};
use std::collections::BTreeMap;

pub fn build(cx: &BuildCx) -> Result<Output, BuildError> {
    let pkg = cx
        .inputs
        .get("package")
        .ok_or_else(|| format!("{}: no `package` input", cx.drv.name))?;
    let Root::Tree { hash } = pkg.root else {
        return Err(format!("{}: the kernel package input is not a tree", cx.drv.name).into());
    };
    let label = pkg.meta.get("nevra").map_or("(unnamed)", String::as_str);
    let modules: Vec<String> = serde_json::from_value(cx.param("modules")?.clone())?;
    let t = kernel::trim(cx.store, &hash, label, &modules)?;
    // `kernel.config`: inline in the parameters, or a source file.
    let config = match (cx.param("config")?.as_str(), cx.sources.get("config")) {
        (Some(text), _) => Some((text.to_string(), "inline".to_string())),
        (None, Some(path)) => Some((
            std::fs::read_to_string(path)
                .map_err(|e| format!("{}: kernel.config {}: {e}", cx.drv.name, path.display()))?,
            path.display().to_string(),
        )),
        (None, None) => None,
    };
    if let Some((text, origin)) = config {
        kernel::check_config(cx.store, &hash, label, &t.version, &text, &origin)?;
        cx.log(format!("{label}: satisfies kernel.config ({origin})"));
    }
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    cx.log(format!(
        "{label}: kernel {}; modules {} ({:.1} MiB) -> {} ({:.1} MiB)",
        t.version,
        t.modules_before.0,
        mib(t.modules_before.1),
        t.modules_after.0,
        mib(t.modules_after.1)
    ));
    cx.log(format!("kept: {}", t.kept.join(" ")));
    if !t.builtin.is_empty() {
        cx.log(format!("built into the kernel: {}", t.builtin.join(" ")));
    }
    Ok(Output {
        root: Root::Tree { hash: t.tree },
        meta: BTreeMap::from([
            ("version".to_string(), t.version),
            ("modules".to_string(), t.kept.join(",")),
            (
                "modules-bytes-before".to_string(),
                t.modules_before.1.to_string(),
            ),
            (
                "modules-bytes-after".to_string(),
                t.modules_after.1.to_string(),
            ),
        ]),
    })
}

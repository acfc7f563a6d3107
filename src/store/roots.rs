//! GC roots (`roots/<name>`, store-layout.md 2.6): what the garbage
//! collector must keep.
//!
//! A root names either an object (a tree or blob, kept with its closure) or
//! a derivation. A derivation root keeps the derivation's output and,
//! through the derivation records (`drvs/`), the outputs of everything it
//! was built from, so that after a `gc` a release differing in one package
//! still finds every other package extracted (Nix's `keep-outputs`).

use std::fs;
use std::io::{ErrorKind, Write};

use super::fs::{io_err, sync_dir, TempGuard};
use super::{validate_id, Error, FsStore, Hash, Result};

/// What a root keeps alive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GcRoot {
    Tree(Hash),
    Blob(Hash),
    /// A derivation id: its output and its inputs' outputs, transitively.
    Drv(String),
}

impl GcRoot {
    /// The one-line file format: `tree <hex>`, `blob <hex>` or `drv <id>`.
    fn to_line(&self) -> String {
        match self {
            GcRoot::Tree(h) => format!("tree {h}\n"),
            GcRoot::Blob(h) => format!("blob {h}\n"),
            GcRoot::Drv(id) => format!("drv {id}\n"),
        }
    }

    fn parse(text: &str) -> Option<GcRoot> {
        let (kind, arg) = text.trim_end_matches('\n').split_once(' ')?;
        match kind {
            "tree" => Hash::from_hex(arg).map(GcRoot::Tree),
            "blob" => Hash::from_hex(arg).map(GcRoot::Blob),
            "drv" => validate_id(arg).ok().map(|()| GcRoot::Drv(arg.to_owned())),
            _ => None,
        }
    }
}

impl FsStore {
    /// Records a GC root `roots/<name>`, replacing any previous root of that
    /// name atomically (temporary file, fsync, rename, fsync directory).
    pub fn add_gc_root(&self, name: &str, root: &GcRoot) -> Result<()> {
        validate_id(name)?;
        if let GcRoot::Drv(id) = root {
            validate_id(id)?;
        }
        let (tmp, mut f) = self.temp_file()?;
        let guard = TempGuard(tmp);
        f.write_all(root.to_line().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io_err(&guard.0))?;
        let dest = self.root().join("roots").join(name);
        fs::rename(&guard.0, &dest).map_err(io_err(&dest))?;
        sync_dir(&self.root().join("roots"))
    }

    /// Removes the root `name`; false if there was none.
    pub fn remove_root(&self, name: &str) -> Result<bool> {
        validate_id(name)?;
        let path = self.root().join("roots").join(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.root().join("roots")).map(|()| true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Every root, sorted by name. A root file that cannot be parsed is an
    /// error rather than being ignored: ignoring it would let `gc` delete
    /// what its author meant to keep.
    pub fn roots(&self) -> Result<Vec<(String, GcRoot)>> {
        let dir = self.root().join("roots");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let text = fs::read_to_string(&path).map_err(io_err(&path))?;
            let root = GcRoot::parse(&text).ok_or_else(|| Error::BadRoot {
                name: name.clone(),
                text: text.trim_end().chars().take(200).collect(),
            })?;
            out.push((name, root));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lines_round_trip_and_junk_is_refused() {
        let h = Hash::of(b"x");
        for r in [
            GcRoot::Tree(h),
            GcRoot::Blob(h),
            GcRoot::Drv("ab".repeat(32)),
        ] {
            assert_eq!(GcRoot::parse(&r.to_line()), Some(r));
        }
        assert_eq!(GcRoot::parse("tree 00"), None);
        assert_eq!(GcRoot::parse("drv ../x"), None);
        assert_eq!(GcRoot::parse("link abc"), None);
    }
}

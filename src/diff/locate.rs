//! From a place in a release (`initrd.compression`, the shopping-list entry
//! `gdb`) to the spec line that wrote it, with that line's text.
//!
//! Spans survive evaluation, so a field inherited from a shared `base`
//! record points at `base`, and a list entry concatenated from an imported
//! group file points into that file: the line to edit, not the line that
//! merely mentions it.

use crate::lang::{SourceMap, Span, Value, ValueKind};
use serde::Serialize;
use std::path::Path;

/// A line of a spec file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Loc {
    /// The file, relative to the working directory when inside it.
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// The whole line, without its indentation and line break.
    pub text: String,
}

/// One step of a path into a release value.
pub enum Seg<'a> {
    Field(&'a str),
    /// The element of a list of records whose field `key` is the string `value`
    /// (an image by its format).
    Item {
        key: &'a str,
        value: &'a str,
    },
}

/// The value at `path` in a branch's release value, if the spec sets it.
pub fn find<'v>(root: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    let mut v = root;
    for seg in path {
        v = match (seg, &v.kind) {
            (Seg::Field(f), ValueKind::Record(r)) => r.get(f)?,
            (Seg::Item { key, value }, ValueKind::List(items)) => items.iter().find(|i| {
                matches!(&i.kind, ValueKind::Record(r)
                    if matches!(r.get(key).map(|x| &x.kind), Some(ValueKind::Str(s)) if s == value))
            })?,
            _ => return None,
        };
    }
    Some(v)
}

/// The line where `span` starts.
pub fn loc(sources: &SourceMap, span: Span) -> Loc {
    let (line, _) = sources.line_col(span);
    let text = sources
        .text(span.file)
        .lines()
        .nth(line - 1)
        .unwrap_or("")
        .trim()
        .to_string();
    Loc {
        file: display_path(sources.path(span.file)),
        line,
        text,
    }
}

fn display_path(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang;

    #[test]
    fn finds_nested_fields_list_items_and_their_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.cvm");
        let text = "let base = release {\n  name = \"n\"\n  version = \"1.0\"\n  arch = \"x86_64\"\n  repos = []\n  packages = [\"a\"]\n  initrd = {\n    init = \"#!/bin/sh\"\n    compression = \"xz\"\n  }\n  images = [{ format = \"iso\" }, { format = \"qcow2\", size = \"2G\" }]\n}\nbranch b = base // { version = \"2.0\" }\n";
        let spec = lang::load_str(&path, text).unwrap();
        let v = &spec.branches[0].value;
        let at = |p: &[Seg]| loc(&spec.sources, find(v, p).unwrap().span);
        let c = at(&[Seg::Field("initrd"), Seg::Field("compression")]);
        assert_eq!((c.line, c.text.as_str()), (9, "compression = \"xz\""));
        // The override, not the base, wrote the version.
        assert_eq!(at(&[Seg::Field("version")]).line, 13);
        let size = at(&[
            Seg::Field("images"),
            Seg::Item {
                key: "format",
                value: "qcow2",
            },
            Seg::Field("size"),
        ]);
        assert_eq!(size.line, 11);
        assert!(find(v, &[Seg::Field("kernel")]).is_none());
    }
}

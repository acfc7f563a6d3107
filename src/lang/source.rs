//! Source files and byte spans.
//!
//! Every value produced by the language remembers the span of the expression
//! that produced it, so that later stages (evaluation, solving, building) can
//! point at the spec line responsible for a problem. Spans are byte offsets
//! into the file text; line and column are computed only when needed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::Error;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub u32);

/// A byte range `start..end` in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The smallest span covering both `self` and `other` (same file).
    pub(crate) fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub(crate) fn len(self) -> usize {
        (self.end - self.start) as usize
    }
}

/// All files read while loading a spec, by [`FileId`].
///
/// Kept alongside the evaluated values so that any later stage can turn a
/// [`Span`] into a located, labelled diagnostic.
#[derive(Clone, Debug, Default)]
pub struct SourceMap {
    files: Vec<(PathBuf, Arc<str>)>,
}

impl SourceMap {
    pub(crate) fn add(&mut self, path: PathBuf, text: Arc<str>) -> FileId {
        // The loader refuses texts longer than u32::MAX bytes before this,
        // and a spec never has that many files, so the cast is lossless.
        let id = FileId(self.files.len() as u32);
        self.files.push((path, text));
        id
    }

    /// The absolute, normalized path of a file.
    pub fn path(&self, f: FileId) -> &Path {
        &self.files[f.0 as usize].0
    }

    /// Every file read while loading, in the order first read (the main
    /// file first): the inputs a spec's result depends on, besides the
    /// files named by path literals.
    pub fn iter(&self) -> impl Iterator<Item = (FileId, &Path)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, (p, _))| (FileId(i as u32), p.as_path()))
    }

    /// The full text of a file.
    pub fn text(&self, f: FileId) -> &Arc<str> {
        &self.files[f.0 as usize].1
    }

    /// 1-based line and column (in characters) of the start of `span`.
    pub fn line_col(&self, span: Span) -> (usize, usize) {
        let text = self.text(span.file);
        let start = (span.start as usize).min(text.len());
        let before = text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// `path:line:col` of the start of `span`, for mentioning a place in
    /// another file inside a diagnostic's help text.
    pub(crate) fn location(&self, span: Span) -> String {
        let (line, col) = self.line_col(span);
        format!("{}:{line}:{col}", self.path(span.file).display())
    }

    /// Build a diagnostic at a span, for later stages (eval/solver) to
    /// report spec errors. Its code is `cvm::spec`; use
    /// [`Error::with_code`] and [`Error::with_help`] to refine it.
    pub fn error(&self, span: Span, message: impl Into<String>, label: impl Into<String>) -> Error {
        Error::at(self, "cvm::spec", span, message, label)
    }
}

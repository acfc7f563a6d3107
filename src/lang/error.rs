//! The one error type of the language: a located, labelled diagnostic.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use super::source::{FileId, SourceMap, Span};

/// A spec error.
///
/// Implements [`std::error::Error`] and [`miette::Diagnostic`]: it carries
/// the named source (file path and text), one or more labelled spans in that
/// file, a stable code such as `cvm::parse` and optional help. Spans in
/// other files than the primary one cannot be drawn in the same snippet, so
/// they are mentioned in the help text as `path:line:col` instead.
#[derive(Debug)]
pub struct Error {
    // Boxed so that `Result<T, Error>` stays small on the happy path.
    inner: Box<Inner>,
}

#[derive(Debug)]
struct Inner {
    code: &'static str,
    message: String,
    file: Option<FileId>,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    help: Vec<String>,
}

impl Error {
    fn new(inner: Inner) -> Error {
        Error {
            inner: Box::new(inner),
        }
    }

    /// An error at `span`, labelled `label`.
    pub(crate) fn at(
        sources: &SourceMap,
        code: &'static str,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Error {
        let name = sources.path(span.file).display().to_string();
        Error::new(Inner {
            code,
            message: message.into(),
            file: Some(span.file),
            source: Some(NamedSource::new(name, sources.text(span.file).clone())),
            labels: vec![LabeledSpan::new_primary_with_span(
                Some(label.into()),
                (span.start as usize, span.len()),
            )],
            help: Vec::new(),
        })
    }

    /// An error about a file as a whole, e.g. one that cannot be read.
    pub(crate) fn io(path: &Path, message: impl fmt::Display) -> Error {
        Error::new(Inner {
            code: "cvm::io",
            message: format!("cannot read `{}`: {message}", path.display()),
            file: None,
            source: None,
            labels: Vec::new(),
            help: Vec::new(),
        })
    }

    /// Add a secondary label, e.g. "first defined here". A span in another
    /// file than the primary one becomes a help line `label: path:line:col`.
    pub fn with_label(mut self, sources: &SourceMap, span: Span, label: &str) -> Error {
        if self.inner.file == Some(span.file) {
            self.inner.labels.push(LabeledSpan::new_with_span(
                Some(label.to_owned()),
                (span.start as usize, span.len()),
            ));
        } else {
            self.inner
                .help
                .push(format!("{label}: {}", sources.location(span)));
        }
        self
    }

    /// Replace the diagnostic code (e.g. `cvm::solve`).
    pub fn with_code(mut self, code: &'static str) -> Error {
        self.inner.code = code;
        self
    }

    /// Add a line of help text.
    pub fn with_help(mut self, help: impl Into<String>) -> Error {
        self.inner.help.push(help.into());
        self
    }

    /// The stable diagnostic code, e.g. `cvm::unknown-field`.
    pub fn code_str(&self) -> &'static str {
        self.inner.code
    }

    /// The message without location or labels.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.message)
    }
}

impl std::error::Error for Error {}

impl Diagnostic for Error {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.inner.code))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        if self.inner.help.is_empty() {
            None
        } else {
            Some(Box::new(self.inner.help.join("\n")))
        }
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.inner.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.inner.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.inner.labels.iter().cloned()))
        }
    }
}

#[cfg(test)]
mod tests {
    /// Callers wrap errors in `miette::Report` and send them across
    /// threads (the build scheduler is parallel).
    #[test]
    fn error_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<super::Error>();
    }
}

//! The `.cvm` specification language.
//!
//! A small, pure, deterministic language: no clock, environment or
//! network; the only input besides the main file is the files it imports
//! and the existence of the files named by path literals. The result of
//! loading a spec is a list of named branches, each a validated `release`
//! record, plus the [`SourceMap`] needed to report errors against any value
//! later on. The language is documented in `lang/reference.md` and its
//! grammar in `lang/grammar.ebnf`.
//!
//! Pipeline: `lexer` (nom) -> `parser` (recursive descent, AST in `ast`)
//! -> `eval` (scoping, imports, operators), with the constructor schemas in
//! `schema`.
//!
//! Errors are [`Error`]s: miette diagnostics with the source file, labelled
//! spans, a stable code (`cvm::parse`, `cvm::type`, ...) and help. Print one
//! with `miette::Report::new(err)`; later stages create their own at a
//! value's span with [`SourceMap::error`].
//!
//! Equality of [`Value`]s ignores spans (see the `value` module docs), so
//! values can be compared and deduplicated regardless of where and how they
//! were written.

mod ast;
mod error;
mod eval;
mod lexer;
mod parser;
mod schema;
mod source;
pub(crate) mod suggest;
mod value;

use std::path::Path;

pub use error::Error;
pub use source::{FileId, SourceMap, Span};
pub use value::{Field, Record, Tag, Value, ValueKind};

/// Maximum nesting of expressions (and of interpolations), so that no
/// input can exhaust the stack of the recursive parser and evaluator.
const MAX_DEPTH: usize = 128;

/// A named branch of the spec: `branch NAME = EXPR`.
#[derive(Clone, Debug)]
pub struct Branch {
    pub name: String,
    pub name_span: Span,
    /// A record tagged [`Tag::Release`], validated against its schema.
    pub value: Value,
}

/// A loaded spec: its branches in declaration order and every source file
/// read to produce them.
#[derive(Clone, Debug)]
pub struct Spec {
    pub sources: SourceMap,
    pub branches: Vec<Branch>,
}

/// Load and evaluate the main spec file at `path`.
pub fn load(path: &Path) -> Result<Spec, Error> {
    eval::load_main(path, None)
}

/// Like [`load`], with the main file's text given; `path` still names it
/// and imports and path literals are resolved relative to its directory.
pub fn load_str(path: &Path, text: &str) -> Result<Spec, Error> {
    eval::load_main(path, Some(text))
}

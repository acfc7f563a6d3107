//! Syntax tree of one `.cvm` file, as produced by the parser.

use super::source::Span;
use super::value::Tag;

#[derive(Debug)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug)]
pub(crate) enum ExprKind {
    Bool(bool),
    Int(i64),
    Str(Vec<Part>),
    /// A path literal as written, e.g. `./keys/epel.asc`.
    Path(String),
    Var(String),
    List(Vec<Expr>),
    Record(Vec<RecordField>),
    /// `e.name`: the record expression, the field name and its span.
    Select(Box<Expr>, String, Span),
    /// `l op r`, with the span of the operator.
    Binary(BinOp, Span, Box<Expr>, Box<Expr>),
    /// `repo e` or `release e`.
    Construct(Tag, Box<Expr>),
    /// `import "path"`, as written.
    Import(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    /// `//`
    Update,
    /// `++`
    Concat,
    /// `--`
    Diff,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Update => "//",
            BinOp::Concat => "++",
            BinOp::Diff => "--",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Part {
    Lit(String),
    Interp(Expr),
}

#[derive(Debug)]
pub(crate) struct RecordField {
    pub key: String,
    pub key_span: Span,
    pub value: Expr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeclKind {
    Let,
    Branch,
}

#[derive(Debug)]
pub(crate) struct Decl {
    pub kind: DeclKind,
    /// The span of the `let` or `branch` keyword.
    pub keyword_span: Span,
    pub name: String,
    pub name_span: Span,
    pub expr: Expr,
}

#[derive(Debug)]
pub(crate) struct File {
    pub decls: Vec<Decl>,
    pub trailing: Option<Expr>,
}

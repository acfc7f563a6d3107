//! Evaluated values.
//!
//! Equality ignores spans: `PartialEq` on [`Value`] and [`Field`] compares
//! only what a value *is*, never where it was written, so reformatting a
//! spec, moving a field or adding comments does not change equality.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::source::Span;

/// A value and the span of the expression that produced it.
///
/// `PartialEq`/`Eq` ignore `span` (and the spans of nested values).
#[derive(Clone, Debug)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.kind == other.kind
    }
}

impl Eq for Value {}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Bool(bool),
    Int(i64),
    Str(String),
    /// An absolute, lexically normalized path to an existing file.
    Path(PathBuf),
    List(Vec<Value>),
    Record(Record),
}

impl ValueKind {
    /// The type as named in diagnostics and in the reference: `string`,
    /// `list`, `repo`, ...
    pub fn type_name(&self) -> &'static str {
        match self {
            ValueKind::Bool(_) => "boolean",
            ValueKind::Int(_) => "integer",
            ValueKind::Str(_) => "string",
            ValueKind::Path(_) => "path",
            ValueKind::List(_) => "list",
            ValueKind::Record(r) => match r.tag {
                Some(tag) => tag.name(),
                None => "record",
            },
        }
    }
}

/// `noun` with its indefinite article, for messages: "an integer".
pub(crate) fn a(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// A record: fields sorted by name, and the constructor that validated it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Record {
    pub tag: Option<Tag>,
    pub fields: BTreeMap<String, Field>,
}

impl Record {
    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name).map(|f| &f.value)
    }
}

/// A record field. `PartialEq` ignores `key_span`.
#[derive(Clone, Debug)]
pub struct Field {
    /// Where the field's name was written (for a field set by `//`, in the
    /// overriding record).
    pub key_span: Span,
    pub value: Value,
}

impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        self.value == other.value
    }
}

impl Eq for Field {}

/// Which typed constructor validated a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tag {
    Repo,
    Release,
}

impl Tag {
    pub fn name(self) -> &'static str {
        match self {
            Tag::Repo => "repo",
            Tag::Release => "release",
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

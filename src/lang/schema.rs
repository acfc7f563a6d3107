//! The schemas of the typed constructors `repo` and `release`.
//!
//! Table-driven so that adding a field is one line: each schema is a list
//! of [`FieldSpec`]s and [`check`] walks a record against it. The tables
//! are mirrored in `lang/reference.md`; a unit test keeps them in sync.

use super::error::Error;
use super::source::{SourceMap, Span};
use super::suggest::nearest;
use super::value::{a, Record, Tag, Value, ValueKind};

/// The type of a field.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    Str,
    Int,
    Bool,
    /// `string|path`
    StrOrPath,
    /// `list<T>`
    List(&'static Ty),
    /// `T or list<T>`: one item or several (`gpgkey`).
    OneOrList(&'static Ty),
    /// `record<T>`: an untagged record with arbitrary keys, values of type T.
    Map(&'static Ty),
    /// A record validated by the given constructor.
    Tagged(Tag),
    /// An untagged record with a fixed set of fields.
    Struct(&'static [FieldSpec]),
    /// A string that must be one of these.
    Enum(&'static [&'static str]),
}

impl Ty {
    fn describe(self) -> String {
        match self {
            Ty::Str => "string".into(),
            Ty::Int => "integer".into(),
            Ty::Bool => "boolean".into(),
            Ty::StrOrPath => "string or path".into(),
            Ty::List(t) => format!("list<{}>", t.describe()),
            Ty::OneOrList(t) => format!("{} or list<{}>", t.describe(), t.describe()),
            Ty::Map(t) => format!("record<{}>", t.describe()),
            Ty::Tagged(tag) => tag.name().into(),
            Ty::Struct(_) => "record".into(),
            Ty::Enum(values) => format!("one of {}", quoted(values)),
        }
    }
}

#[derive(Debug)]
pub(crate) struct FieldSpec {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

const fn req(name: &'static str, ty: Ty) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        required: false,
    }
}

const STRINGS: Ty = Ty::List(&Ty::Str);

pub(crate) const REPO: &[FieldSpec] = &[
    opt("name", Ty::Str),
    req("url", Ty::StrOrPath),
    opt("gpgkey", Ty::OneOrList(&Ty::StrOrPath)),
    opt("gpgcheck", Ty::Bool),
    opt("repo_gpgcheck", Ty::Bool),
    opt("priority", Ty::Int),
    opt("cost", Ty::Int),
    opt("enabled", Ty::Bool),
    opt("exclude", STRINGS),
];

pub(crate) const KERNEL: &[FieldSpec] = &[
    req("package", Ty::Str),
    opt("modules", STRINGS),
    opt("cmdline", Ty::Str),
    opt("config", Ty::StrOrPath),
];

pub(crate) const INITRD: &[FieldSpec] = &[
    req("init", Ty::StrOrPath),
    opt("files", Ty::Map(&Ty::StrOrPath)),
    opt("binaries", STRINGS),
    opt("packages", STRINGS),
    opt("compression", Ty::Enum(&["gzip", "xz", "zstd", "none"])),
    opt("boot", Ty::Struct(BOOT)),
];

/// What a μCernVM-style initrd needs to find its OS on CernVM-FS.
pub(crate) const BOOT: &[FieldSpec] = &[
    req("repository", Ty::Str),
    req("servers", STRINGS),
    opt("proxy", Ty::Str),
    opt("tag", Ty::Str),
    opt("path", Ty::Str),
    opt("key", Ty::StrOrPath),
    req("client", Ty::StrOrPath),
];

pub(crate) const IMAGE: &[FieldSpec] = &[
    req("format", Ty::Enum(&["iso", "raw", "hdd", "qcow2", "tar"])),
    opt("size", Ty::Str),
];

pub(crate) const CVMFS: &[FieldSpec] = &[
    req("repository", Ty::Str),
    opt("nested", STRINGS),
    opt("tag", Ty::Str),
];

pub(crate) const RELEASE: &[FieldSpec] = &[
    req("name", Ty::Str),
    req("version", Ty::Str),
    req("arch", Ty::Str),
    req("repos", Ty::List(&Ty::Tagged(Tag::Repo))),
    req("packages", STRINGS),
    opt("pins", Ty::Map(&Ty::Str)),
    opt("exclude", STRINGS),
    opt("installonly", STRINGS),
    opt("multilib", Ty::Bool),
    opt("scriptlets", Ty::Bool),
    opt("epoch", Ty::Int),
    opt("prefer", Ty::Map(&Ty::Str)),
    opt("kernel", Ty::Struct(KERNEL)),
    opt("initrd", Ty::Struct(INITRD)),
    opt("images", Ty::List(&Ty::Struct(IMAGE))),
    opt("cvmfs", Ty::Struct(CVMFS)),
];

fn schema(tag: Tag) -> &'static [FieldSpec] {
    match tag {
        Tag::Repo => REPO,
        Tag::Release => RELEASE,
    }
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Validate the fields of `record` (the value at `span`) against the schema
/// of `tag`. The first problem in source order is reported.
pub(crate) fn check(
    sources: &SourceMap,
    tag: Tag,
    record: &Record,
    span: Span,
) -> Result<(), Error> {
    check_fields(sources, schema(tag), tag.name(), record, span)
}

fn check_fields(
    sources: &SourceMap,
    spec: &'static [FieldSpec],
    context: &str,
    record: &Record,
    span: Span,
) -> Result<(), Error> {
    let mut fields: Vec<_> = record.fields.iter().collect();
    fields.sort_by_key(|(_, f)| (f.key_span.file, f.key_span.start));
    for (name, field) in fields {
        let Some(fs) = spec.iter().find(|fs| fs.name == name) else {
            let names = spec.iter().map(|fs| fs.name);
            let help = match nearest(name, names.clone()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "the fields of `{context}` are: {}",
                    names.collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(Error::at(
                sources,
                "cvm::unknown-field",
                field.key_span,
                format!("unknown field `{name}` in `{context}`"),
                "unknown field",
            )
            .with_help(help));
        };
        check_value(sources, fs.ty, &format!("{context}.{name}"), &field.value)?;
    }
    if let Some(missing) = spec
        .iter()
        .find(|fs| fs.required && !record.fields.contains_key(fs.name))
    {
        return Err(Error::at(
            sources,
            "cvm::missing-field",
            span,
            format!("missing field `{}` in `{context}`", missing.name),
            format!("this {context} has no `{}`", missing.name),
        )
        .with_help(format!(
            "add `{} = <{}>`",
            missing.name,
            missing.ty.describe()
        )));
    }
    Ok(())
}

fn check_value(sources: &SourceMap, ty: Ty, context: &str, value: &Value) -> Result<(), Error> {
    let ok = match (ty, &value.kind) {
        (Ty::Str, ValueKind::Str(_))
        | (Ty::Int, ValueKind::Int(_))
        | (Ty::Bool, ValueKind::Bool(_))
        | (Ty::StrOrPath, ValueKind::Str(_) | ValueKind::Path(_)) => true,
        (Ty::List(t), ValueKind::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_value(sources, *t, &format!("{context}[{i}]"), item)?;
            }
            true
        }
        (Ty::OneOrList(t), ValueKind::List(_)) => {
            return check_value(sources, Ty::List(t), context, value)
        }
        (Ty::OneOrList(t), _) => return check_value(sources, *t, context, value),
        (Ty::Map(t), ValueKind::Record(r)) if r.tag.is_none() => {
            for (k, f) in &r.fields {
                check_value(sources, *t, &format!("{context}.\"{k}\""), &f.value)?;
            }
            true
        }
        (Ty::Tagged(tag), ValueKind::Record(r)) => r.tag == Some(tag),
        (Ty::Struct(spec), ValueKind::Record(r)) if r.tag.is_none() => {
            return check_fields(sources, spec, context, r, value.span)
        }
        (Ty::Enum(values), ValueKind::Str(s)) => {
            if values.contains(&s.as_str()) {
                return Ok(());
            }
            let e = Error::at(
                sources,
                "cvm::bad-enum",
                value.span,
                format!("invalid value \"{s}\" for `{context}`"),
                format!("expected one of {}", quoted(values)),
            );
            return Err(match nearest(s, values.iter().copied()) {
                Some(n) => e.with_help(format!("did you mean \"{n}\"?")),
                None => e,
            });
        }
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let found = value.kind.type_name();
    let e = Error::at(
        sources,
        "cvm::type",
        value.span,
        format!("expected {} for `{context}`, found {found}", ty.describe()),
        format!("this is {}", a(found)),
    );
    Err(match (ty, &value.kind) {
        (Ty::Tagged(tag), ValueKind::Record(r)) if r.tag.is_none() => {
            e.with_help(format!("construct it with `{tag} {{ ... }}`"))
        }
        _ => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every schema field appears in the reference's tables, so the
    /// documentation cannot silently fall behind the code.
    #[test]
    fn reference_documents_every_field() {
        let reference = include_str!("../../lang/reference.md");
        for (table, spec) in [
            ("repo", REPO),
            ("release", RELEASE),
            ("kernel", KERNEL),
            ("initrd", INITRD),
            ("initrd.boot", BOOT),
            ("images", IMAGE),
            ("cvmfs", CVMFS),
        ] {
            for fs in spec {
                let row = format!("| `{}` | `{}` |", fs.name, fs.ty.describe());
                assert!(
                    reference.contains(&row),
                    "{table}: missing row starting {row}"
                );
            }
        }
    }
}

//! Loading and evaluating files: scoping, imports, operators, constructors.
//!
//! Evaluation is strict and pure: each `let` is evaluated once, in order,
//! and the only outside input is reading imported files and checking that
//! path literals exist. Every file is parsed and evaluated at most once; its
//! value is cached by canonical path, which also detects import cycles.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::ast::{BinOp, Decl, DeclKind, Expr, ExprKind, Part};
use super::error::Error;
use super::source::{FileId, SourceMap, Span};
use super::suggest::nearest;
use super::value::{a, Field, Record, Tag, Value, ValueKind};
use super::{lexer, parser, schema, Branch, Spec};

/// How many files may be in the middle of importing one another. Bounds
/// recursion (and thus stack use) for long import chains.
const MAX_IMPORT_DEPTH: usize = 64;

/// Bounds that turn a "bomb" (doubling `let`s, an import diamond whose
/// files each concatenate the previous one twice, a quadratic `--`) into a
/// spec error instead of an allocation failure or minutes of work. Each is
/// far above what a description of an operating system needs; they are
/// documented in `lang/reference.md`, section 10.
///
/// The size of a value: 1 for each value it contains (itself included),
/// plus the bytes of its strings, paths and field names.
const MAX_VALUE_SIZE: u64 = 1 << 20;
/// Longest string, in bytes.
const MAX_STRING: usize = 1 << 18;
/// Deepest nesting of lists and records inside a value. Values built
/// through `let`s can nest deeper than expressions do, and deep values
/// would exhaust the stack when compared, copied or dropped.
const MAX_VALUE_DEPTH: u32 = 256;
/// Most files (the main file and every imported one) a spec may read.
const MAX_FILES: usize = 1000;
/// Largest imported file, in bytes.
const MAX_IMPORT_BYTES: u64 = 16 << 20;
/// Most evaluation steps: one per expression evaluated, plus one per unit
/// of size copied by a name, field access or import, plus the comparisons
/// of `--`.
const MAX_STEPS: u64 = 50_000_000;

/// A value's size and nesting depth (see [`MAX_VALUE_SIZE`]), carried along
/// with it so that bounds are checked in constant time per operation.
#[derive(Clone, Copy, Debug)]
struct Size {
    weight: u64,
    depth: u32,
}

impl Size {
    const LEAF: Size = Size {
        weight: 1,
        depth: 0,
    };

    /// Measures a value by walking it (its depth is already bounded).
    fn of(kind: &ValueKind) -> Size {
        let bytes = |n: usize| Size {
            weight: 1 + n as u64,
            depth: 0,
        };
        match kind {
            ValueKind::Bool(_) | ValueKind::Int(_) => Size::LEAF,
            ValueKind::Str(s) => bytes(s.len()),
            ValueKind::Path(p) => bytes(p.as_os_str().len()),
            ValueKind::List(items) => items
                .iter()
                .fold(Size::container(), |acc, v| acc.add(Size::of(&v.kind), 0)),
            ValueKind::Record(r) => r.fields.iter().fold(Size::container(), |acc, (k, f)| {
                acc.add(Size::of(&f.value.kind), k.len())
            }),
        }
    }

    /// An empty list or record.
    fn container() -> Size {
        Size {
            weight: 1,
            depth: 1,
        }
    }

    /// This container with `child` (and a key of `key` bytes) added.
    fn add(self, child: Size, key: usize) -> Size {
        Size {
            weight: self.weight + child.weight + key as u64,
            depth: self.depth.max(child.depth + 1),
        }
    }
}

/// Load the main file at `path`; `text` is its contents if already known.
pub(crate) fn load_main(path: &Path, text: Option<&str>) -> Result<Spec, Error> {
    let path = resolve(path);
    let text: Arc<str> = match text {
        Some(t) => t.into(),
        None => fs::read_to_string(&path)
            .map_err(|e| Error::io(&path, e))?
            .into(),
    };
    let mut loader = Loader {
        sources: SourceMap::default(),
        files: HashMap::new(),
        stack: Vec::new(),
        steps: 0,
    };
    let file = loader.add_file(path.clone(), text)?;
    loader.files.insert(path, None);
    loader.stack.push(file);
    let FileResult { branches, .. } = loader.eval_file(file, true)?;
    Ok(Spec {
        sources: loader.sources,
        branches,
    })
}

/// Canonical path if the file exists (so that two spellings of one file
/// share a cache entry), else the absolute, lexically normalized path.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(p) = fs::canonicalize(path) {
        return p;
    }
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    normalize(&abs)
}

/// Remove `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

struct Loader {
    sources: SourceMap,
    /// Files by canonical path: `None` while being evaluated, then the
    /// file's value.
    files: HashMap<PathBuf, Option<FileValue>>,
    /// The files being evaluated, outermost (the main file) first.
    stack: Vec<FileId>,
    /// Evaluation steps so far (see [`MAX_STEPS`]).
    steps: u64,
}

#[derive(Clone)]
struct FileValue {
    value: Value,
    size: Size,
    /// The value is the record of the file's `let`s rather than an
    /// expression, so each import gives it the span of the `import` itself.
    from_lets: bool,
}

struct FileResult {
    value: FileValue,
    branches: Vec<Branch>,
}

struct Binding {
    name: String,
    name_span: Span,
    value: Value,
    size: Size,
}

/// What an expression can see: the `let`s evaluated so far in its file,
/// and all declarations (to explain forward references).
struct Scope<'a> {
    file: FileId,
    lets: Vec<Binding>,
    decls: &'a [Decl],
}

impl Loader {
    fn add_file(&mut self, path: PathBuf, text: Arc<str>) -> Result<FileId, Error> {
        if u32::try_from(text.len()).is_err() {
            return Err(Error::io(&path, "file is larger than 4 GiB"));
        }
        Ok(self.sources.add(path, text))
    }

    fn err(&self, code: &'static str, span: Span, message: String, label: &str) -> Error {
        Error::at(&self.sources, code, span, message, label)
    }

    fn eval_file(&mut self, file: FileId, main: bool) -> Result<FileResult, Error> {
        let tokens = lexer::lex(&self.sources, file)?;
        let ast = parser::parse(&self.sources, file, &tokens)?;
        let mut scope = Scope {
            file,
            lets: Vec::new(),
            decls: &ast.decls,
        };
        let mut branches: Vec<Branch> = Vec::new();
        for decl in &ast.decls {
            match decl.kind {
                DeclKind::Let => {
                    if let Some(first) = scope.lets.iter().find(|b| b.name == decl.name) {
                        return Err(self
                            .err(
                                "cvm::duplicate-let",
                                decl.name_span,
                                format!("`{}` is defined twice", decl.name),
                                "defined again here",
                            )
                            .with_label(&self.sources, first.name_span, "first defined here")
                            .with_help("names cannot be redefined; choose another name"));
                    }
                    let (value, size) = self.eval_sized(&decl.expr, &scope)?;
                    scope.lets.push(Binding {
                        name: decl.name.clone(),
                        name_span: decl.name_span,
                        value,
                        size,
                    });
                }
                DeclKind::Branch => {
                    if !main {
                        return Err(self
                            .err(
                                "cvm::branch-in-import",
                                decl.keyword_span.to(decl.name_span),
                                format!("branch `{}` is declared in an imported file", decl.name),
                                "branch in an imported file",
                            )
                            .with_help("branches may only be declared in the main file"));
                    }
                    if let Some(first) = branches.iter().find(|b| b.name == decl.name) {
                        return Err(self
                            .err(
                                "cvm::duplicate-branch",
                                decl.name_span,
                                format!("branch `{}` is declared twice", decl.name),
                                "declared again here",
                            )
                            .with_label(&self.sources, first.name_span, "first declared here"));
                    }
                    let value = self.eval(&decl.expr, &scope)?;
                    if !matches!(&value.kind, ValueKind::Record(r) if r.tag == Some(Tag::Release)) {
                        let found = value.kind.type_name();
                        let mut e = self
                            .err(
                                "cvm::type",
                                value.span,
                                format!("branch `{}` must be a release, found {found}", decl.name),
                                &format!("this is {}", a(found)),
                            )
                            .with_help("construct it with `release { ... }`");
                        if value.span != decl.expr.span {
                            e = e.with_label(&self.sources, decl.expr.span, "the branch's value");
                        }
                        return Err(e);
                    }
                    branches.push(Branch {
                        name: decl.name.clone(),
                        name_span: decl.name_span,
                        value,
                    });
                }
            }
        }
        let text_len = self.sources.text(file).len() as u32;
        let value = match &ast.trailing {
            Some(expr) if main => {
                return Err(self
                    .err(
                        "cvm::trailing-expr",
                        expr.span,
                        "the main file cannot end with an expression".into(),
                        "trailing expression",
                    )
                    .with_help(
                        "only imported files have a value; name it with `branch NAME = ...` or `let NAME = ...`",
                    ))
            }
            Some(expr) => {
                let (value, size) = self.eval_sized(expr, &scope)?;
                FileValue {
                    value,
                    size,
                    from_lets: false,
                }
            }
            None => {
                let span = Span {
                    file,
                    start: 0,
                    end: text_len,
                };
                let mut size = Size::container();
                for b in &scope.lets {
                    size = self.grow(size, b.size, b.name.len(), span)?;
                }
                let fields = scope
                    .lets
                    .into_iter()
                    .map(|b| {
                        let field = Field {
                            key_span: b.name_span,
                            value: b.value,
                        };
                        (b.name, field)
                    })
                    .collect();
                FileValue {
                    value: Value {
                        kind: ValueKind::Record(Record { tag: None, fields }),
                        span,
                    },
                    size,
                    from_lets: true,
                }
            }
        };
        if main && branches.is_empty() {
            let (span, label) = match ast.decls.last() {
                Some(d) => (
                    d.keyword_span.to(d.name_span),
                    "the last declaration; no `branch` is declared",
                ),
                None => (
                    Span {
                        file,
                        start: 0,
                        end: 0,
                    },
                    "this file declares nothing",
                ),
            };
            return Err(self
                .err(
                    "cvm::no-branch",
                    span,
                    "the main file declares no branch".into(),
                    label,
                )
                .with_help("declare one: `branch production = release { ... }`"));
        }
        Ok(FileResult { value, branches })
    }

    fn eval(&mut self, expr: &Expr, scope: &Scope<'_>) -> Result<Value, Error> {
        Ok(self.eval_sized(expr, scope)?.0)
    }

    /// Counts `n` evaluation steps against [`MAX_STEPS`].
    fn step(&mut self, n: u64, span: Span) -> Result<(), Error> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > MAX_STEPS {
            return Err(self
                .err(
                    "cvm::limit",
                    span,
                    format!("evaluation takes more than {MAX_STEPS} steps"),
                    "the limit was reached here",
                )
                .with_help("a spec describes an operating system; it cannot compute for long (see the reference, section 10)"));
        }
        Ok(())
    }

    /// `size` with `child` added, if it stays within the bounds.
    fn grow(&self, size: Size, child: Size, key: usize, span: Span) -> Result<Size, Error> {
        self.bounded(size.add(child, key), span)
    }

    /// `size` itself, if within [`MAX_VALUE_SIZE`] and [`MAX_VALUE_DEPTH`].
    fn bounded(&self, size: Size, span: Span) -> Result<Size, Error> {
        let message = if size.weight > MAX_VALUE_SIZE {
            format!("this value is larger than the limit of {MAX_VALUE_SIZE} (values and bytes)")
        } else if size.depth > MAX_VALUE_DEPTH {
            format!("lists and records nest more than {MAX_VALUE_DEPTH} deep in this value")
        } else {
            return Ok(size);
        };
        Err(self
            .err("cvm::limit", span, message, "too large")
            .with_help(
            "values are bounded so that no spec can exhaust memory (see the reference, section 10)",
        ))
    }

    /// Evaluates `expr`, returning its value and size.
    fn eval_sized(&mut self, expr: &Expr, scope: &Scope<'_>) -> Result<(Value, Size), Error> {
        let span = expr.span;
        self.step(1, span)?;
        let (kind, size) = match &expr.kind {
            ExprKind::Bool(b) => (ValueKind::Bool(*b), Size::LEAF),
            ExprKind::Int(n) => (ValueKind::Int(*n), Size::LEAF),
            ExprKind::Str(parts) => {
                let s = self.string(parts, scope)?;
                if s.len() > MAX_STRING {
                    return Err(self.string_too_long(span));
                }
                let kind = ValueKind::Str(s);
                let size = self.bounded(Size::of(&kind), span)?;
                (kind, size)
            }
            ExprKind::Path(raw) => {
                let kind = ValueKind::Path(self.path(raw, span)?);
                let size = Size::of(&kind);
                (kind, size)
            }
            ExprKind::Var(name) => return self.var(name, span, scope),
            ExprKind::List(items) => {
                let mut size = Size::container();
                let mut out = Vec::with_capacity(items.len());
                for e in items {
                    let (v, s) = self.eval_sized(e, scope)?;
                    size = self.grow(size, s, 0, e.span)?;
                    out.push(v);
                }
                (ValueKind::List(out), size)
            }
            ExprKind::Record(fields) => {
                let mut size = Size::container();
                let mut out: BTreeMap<String, Field> = BTreeMap::new();
                for f in fields {
                    if let Some(first) = out.get(&f.key) {
                        return Err(self
                            .err(
                                "cvm::duplicate-key",
                                f.key_span,
                                format!("field `{}` is defined twice", f.key),
                                "defined again here",
                            )
                            .with_label(&self.sources, first.key_span, "first defined here")
                            .with_help("to change a field of an existing record, use `//`"));
                    }
                    let (value, s) = self.eval_sized(&f.value, scope)?;
                    size = self.grow(size, s, f.key.len(), f.value.span)?;
                    out.insert(
                        f.key.clone(),
                        Field {
                            key_span: f.key_span,
                            value,
                        },
                    );
                }
                (
                    ValueKind::Record(Record {
                        tag: None,
                        fields: out,
                    }),
                    size,
                )
            }
            ExprKind::Select(inner, name, name_span) => {
                let v = self.eval(inner, scope)?;
                let v = self.select(v, name, *name_span)?;
                let size = Size::of(&v.kind);
                self.step(size.weight, span)?;
                return Ok((v, size));
            }
            ExprKind::Binary(op, op_span, l, r) => {
                let (l, ls) = self.eval_sized(l, scope)?;
                let (r, rs) = self.eval_sized(r, scope)?;
                if let (BinOp::Diff, ValueKind::List(a)) = (op, &l.kind) {
                    // Each element is compared with all of `r`.
                    self.step((a.len() as u64).saturating_mul(rs.weight), span)?;
                } else {
                    // `++` and `//` give at most both operands together:
                    // refused before the result is built.
                    self.bounded(
                        Size {
                            weight: ls.weight + rs.weight,
                            depth: ls.depth.max(rs.depth),
                        },
                        span,
                    )?;
                }
                let kind = self.binary(*op, *op_span, l, r, span)?;
                let size = Size::of(&kind);
                self.step(size.weight, span)?;
                (kind, size)
            }
            ExprKind::Construct(tag, arg) => {
                let (v, size) = self.eval_sized(arg, scope)?;
                let kind = match v.kind {
                    ValueKind::Record(mut r) if r.tag.is_none() || r.tag == Some(*tag) => {
                        schema::check(&self.sources, *tag, &r, v.span)?;
                        r.tag = Some(*tag);
                        ValueKind::Record(r)
                    }
                    other => {
                        let found = other.type_name();
                        return Err(self.err(
                            "cvm::type",
                            v.span,
                            format!("`{tag}` takes a record, found {found}"),
                            &format!("this is {}", a(found)),
                        ));
                    }
                };
                (kind, size)
            }
            ExprKind::Import(rel) => return self.import(rel, span, scope.file),
        };
        Ok((Value { kind, span }, size))
    }

    fn string(&mut self, parts: &[Part], scope: &Scope<'_>) -> Result<String, Error> {
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Interp(e) => {
                    let v = self.eval(e, scope)?;
                    if let ValueKind::Str(s) = &v.kind {
                        if out.len() + s.len() > MAX_STRING {
                            return Err(self.string_too_long(e.span));
                        }
                    }
                    match &v.kind {
                        ValueKind::Str(s) => out.push_str(s),
                        ValueKind::Int(n) => out.push_str(&n.to_string()),
                        ValueKind::Path(p) => out.push_str(&p.to_string_lossy()),
                        other => {
                            let found = other.type_name();
                            return Err(self
                                .err(
                                    "cvm::type",
                                    e.span,
                                    format!("cannot interpolate {} into a string", a(found)),
                                    &format!("this is {}", a(found)),
                                )
                                .with_help(
                                    "only strings, integers and paths can be interpolated",
                                ));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn string_too_long(&self, span: Span) -> Error {
        self.err(
            "cvm::limit",
            span,
            format!("the string would be longer than the limit of {MAX_STRING} bytes"),
            "too long",
        )
        .with_help(
            "values are bounded so that no spec can exhaust memory (see the reference, section 10)",
        )
    }

    fn path(&self, raw: &str, span: Span) -> Result<PathBuf, Error> {
        let dir = self
            .sources
            .path(span.file)
            .parent()
            .unwrap_or(Path::new("/"));
        let path = normalize(&dir.join(raw));
        // `metadata` follows symbolic links and never opens the file, so a
        // FIFO or device is named, never read (reading would block).
        let what = match fs::metadata(&path) {
            Ok(m) if m.is_file() => return Ok(path),
            Ok(m) => not_regular(&m.file_type()),
            Err(_) => "does not exist",
        };
        Err(self
            .err(
                "cvm::path-missing",
                span,
                format!("path `{raw}` {what}"),
                "no such file",
            )
            .with_help(format!(
                "paths are relative to the directory of the file containing them; this one resolves to `{}`",
                path.display()
            )))
    }

    fn var(&mut self, name: &str, span: Span, scope: &Scope<'_>) -> Result<(Value, Size), Error> {
        if let Some(b) = scope.lets.iter().rev().find(|b| b.name == name) {
            // The copy costs as much as the value is large.
            self.step(b.size.weight, span)?;
            return Ok((b.value.clone(), b.size));
        }
        let mut e = self.err(
            "cvm::unknown-ident",
            span,
            format!("unknown name `{name}`"),
            "not defined",
        );
        let declared = |kind| {
            scope
                .decls
                .iter()
                .find(|d| d.kind == kind && d.name == name)
        };
        if let Some(d) = declared(DeclKind::Let) {
            // The use is either inside the `let` being defined or before it.
            e = if d.name_span.start < span.start {
                e.with_label(&self.sources, d.name_span, "being defined here")
                    .with_help("a `let` cannot refer to itself: there is no recursion")
            } else {
                e.with_label(&self.sources, d.name_span, "defined here, later")
                    .with_help("a `let` is only visible after its definition")
            };
        } else if let Some(d) = declared(DeclKind::Branch) {
            e = e
                .with_label(&self.sources, d.name_span, "this is a branch")
                .with_help(
                    "branches cannot be referenced; bind the release with `let` and use that name",
                );
        } else {
            let names = scope.lets.iter().map(|b| b.name.as_str());
            if let Some(n) = nearest(name, names.chain(["true", "false"])) {
                e = e.with_help(format!("did you mean `{n}`?"));
            }
        }
        Err(e)
    }

    fn select(&self, v: Value, name: &str, name_span: Span) -> Result<Value, Error> {
        let ValueKind::Record(mut r) = v.kind else {
            let found = v.kind.type_name();
            return Err(self
                .err(
                    "cvm::type",
                    name_span,
                    format!("cannot access field `{name}` of {}", a(found)),
                    "field access",
                )
                .with_label(
                    &self.sources,
                    v.span,
                    &format!("this is {}, not a record", a(found)),
                ));
        };
        if let Some(f) = r.fields.remove(name) {
            return Ok(f.value);
        }
        let names: Vec<&str> = r.fields.keys().map(String::as_str).collect();
        let mut e = self
            .err(
                "cvm::unknown-field",
                name_span,
                format!(
                    "the {} has no field `{name}`",
                    r.tag.map_or("record", Tag::name)
                ),
                "no such field",
            )
            .with_label(&self.sources, v.span, "this record");
        if let Some(n) = nearest(name, names.iter().copied()) {
            e = e.with_help(format!("did you mean `{n}`?"));
        }
        Err(if names.is_empty() {
            e.with_help("the record is empty")
        } else {
            e.with_help(format!("its fields are: {}", names.join(", ")))
        })
    }

    fn binary(
        &self,
        op: BinOp,
        op_span: Span,
        l: Value,
        r: Value,
        span: Span,
    ) -> Result<ValueKind, Error> {
        Ok(match (op, l.kind, r.kind) {
            (BinOp::Concat, ValueKind::List(mut a), ValueKind::List(b)) => {
                a.extend(b);
                ValueKind::List(a)
            }
            (BinOp::Concat, ValueKind::Str(a), ValueKind::Str(b)) => {
                if a.len() + b.len() > MAX_STRING {
                    return Err(self.string_too_long(span));
                }
                ValueKind::Str(a + &b)
            }
            (BinOp::Diff, ValueKind::List(a), ValueKind::List(b)) => {
                ValueKind::List(a.into_iter().filter(|x| !b.contains(x)).collect())
            }
            (BinOp::Update, ValueKind::Record(mut a), ValueKind::Record(b)) => {
                let tag = match (a.tag, b.tag) {
                    (Some(x), Some(y)) if x != y => {
                        return Err(self
                            .err(
                                "cvm::type",
                                op_span,
                                format!("cannot update a {x} with a {y}"),
                                "incompatible records",
                            )
                            .with_label(&self.sources, l.span, &format!("this is a {x}"))
                            .with_label(&self.sources, r.span, &format!("this is a {y}")));
                    }
                    (x, y) => x.or(y),
                };
                a.fields.extend(b.fields);
                a.tag = tag;
                if let Some(tag) = tag {
                    schema::check(&self.sources, tag, &a, span)?;
                }
                ValueKind::Record(a)
            }
            (op, lk, rk) => {
                let need = match op {
                    BinOp::Concat => "two lists or two strings",
                    BinOp::Diff => "two lists",
                    BinOp::Update => "two records",
                };
                let (ta, tb) = (lk.type_name(), rk.type_name());
                return Err(self
                    .err(
                        "cvm::type",
                        op_span,
                        format!("`{}` needs {need}, found {ta} and {tb}", op.symbol()),
                        "operator",
                    )
                    .with_label(&self.sources, l.span, &format!("this is {}", a(ta)))
                    .with_label(&self.sources, r.span, &format!("this is {}", a(tb))));
            }
        })
    }

    fn import(&mut self, rel: &str, span: Span, from: FileId) -> Result<(Value, Size), Error> {
        let dir = self.sources.path(from).parent().unwrap_or(Path::new("/"));
        let target = normalize(&dir.join(rel));
        let Ok(canon) = fs::canonicalize(&target) else {
            return Err(self
                .err(
                    "cvm::import-missing",
                    span,
                    format!("cannot import `{rel}`: no such file"),
                    "imported here",
                )
                .with_help(format!(
                    "imports are relative to the importing file; this one resolves to `{}`",
                    target.display()
                )));
        };
        match self.files.get(&canon) {
            Some(Some(done)) => {
                let mut fv = done.clone();
                self.step(fv.size.weight, span)?;
                if fv.from_lets {
                    fv.value.span = span;
                }
                return Ok((fv.value, fv.size));
            }
            Some(None) => return Err(self.cycle(&canon, span)),
            None => {}
        }
        if self.stack.len() >= MAX_IMPORT_DEPTH {
            return Err(self.err(
                "cvm::too-deep",
                span,
                format!("imports are nested more than {MAX_IMPORT_DEPTH} deep"),
                "import",
            ));
        }
        if self.sources.iter().count() >= MAX_FILES {
            return Err(self
                .err(
                    "cvm::limit",
                    span,
                    format!("the spec imports more than {MAX_FILES} files"),
                    "import",
                )
                .with_help("see the reference, section 10"));
        }
        // Checked before opening: opening a FIFO would block, reading a
        // device might never end.
        let meta = fs::metadata(&canon).map_err(|e| {
            self.err(
                "cvm::io",
                span,
                format!("cannot read `{rel}`: {e}"),
                "imported here",
            )
        })?;
        if !meta.is_file() {
            return Err(self.err(
                "cvm::io",
                span,
                format!(
                    "cannot import `{rel}`: it {}",
                    not_regular(&meta.file_type())
                ),
                "imported here",
            ));
        }
        if meta.len() > MAX_IMPORT_BYTES {
            return Err(self
                .err(
                    "cvm::limit",
                    span,
                    format!(
                        "cannot import `{rel}`: it is larger than the limit of {MAX_IMPORT_BYTES} bytes"
                    ),
                    "imported here",
                )
                .with_help("see the reference, section 10"));
        }
        let text = fs::read_to_string(&canon).map_err(|e| {
            self.err(
                "cvm::io",
                span,
                format!("cannot read `{rel}`: {e}"),
                "imported here",
            )
        })?;
        let file = self.add_file(canon.clone(), text.into())?;
        self.files.insert(canon.clone(), None);
        self.stack.push(file);
        let result = self.eval_file(file, false);
        self.stack.pop();
        // An error inside the imported file says how it was reached; with
        // nested imports each level adds a line, innermost first.
        let mut fv = result
            .map_err(|e| e.with_label(&self.sources, span, "imported from"))?
            .value;
        self.files.insert(canon, Some(fv.clone()));
        if fv.from_lets {
            fv.value.span = span;
        }
        Ok((fv.value, fv.size))
    }

    /// The error for an `import` of a file that is still being evaluated.
    fn cycle(&self, canon: &Path, span: Span) -> Error {
        // Paths are shown relative to the main file's directory: shorter,
        // and the same on every machine.
        let base = self
            .sources
            .path(FileId(0))
            .parent()
            .unwrap_or(Path::new("/"));
        let show = |p: &Path| p.strip_prefix(base).unwrap_or(p).display().to_string();
        let mut chain: Vec<String> = Vec::new();
        let mut seen = false;
        for f in &self.stack {
            let p = self.sources.path(*f);
            seen |= p == canon;
            if seen {
                chain.push(show(p));
            }
        }
        chain.push(show(canon));
        self.err(
            "cvm::import-cycle",
            span,
            "import cycle".into(),
            "this import closes the cycle",
        )
        .with_help(format!(
            "the files import each other: {}",
            chain.join(" -> ")
        ))
    }
}

/// What a file that is not a regular file is, for messages.
fn not_regular(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "is a directory, not a file"
    } else if t.is_fifo() {
        "is a FIFO (named pipe), not a regular file"
    } else if t.is_char_device() || t.is_block_device() {
        "is a device, not a regular file"
    } else if t.is_socket() {
        "is a socket, not a regular file"
    } else {
        "is not a regular file"
    }
}

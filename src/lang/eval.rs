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
}

#[derive(Clone)]
struct FileValue {
    value: Value,
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
                    let value = self.eval(&decl.expr, &scope)?;
                    scope.lets.push(Binding {
                        name: decl.name.clone(),
                        name_span: decl.name_span,
                        value,
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
            Some(expr) => FileValue {
                value: self.eval(expr, &scope)?,
                from_lets: false,
            },
            None => {
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
                        span: Span {
                            file,
                            start: 0,
                            end: text_len,
                        },
                    },
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
        let span = expr.span;
        let kind = match &expr.kind {
            ExprKind::Bool(b) => ValueKind::Bool(*b),
            ExprKind::Int(n) => ValueKind::Int(*n),
            ExprKind::Str(parts) => ValueKind::Str(self.string(parts, scope)?),
            ExprKind::Path(raw) => ValueKind::Path(self.path(raw, span)?),
            ExprKind::Var(name) => return self.var(name, span, scope),
            ExprKind::List(items) => ValueKind::List(
                items
                    .iter()
                    .map(|e| self.eval(e, scope))
                    .collect::<Result<_, _>>()?,
            ),
            ExprKind::Record(fields) => {
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
                    let value = self.eval(&f.value, scope)?;
                    out.insert(
                        f.key.clone(),
                        Field {
                            key_span: f.key_span,
                            value,
                        },
                    );
                }
                ValueKind::Record(Record {
                    tag: None,
                    fields: out,
                })
            }
            ExprKind::Select(inner, name, name_span) => {
                let v = self.eval(inner, scope)?;
                return self.select(v, name, *name_span);
            }
            ExprKind::Binary(op, op_span, l, r) => {
                let l = self.eval(l, scope)?;
                let r = self.eval(r, scope)?;
                self.binary(*op, *op_span, l, r, span)?
            }
            ExprKind::Construct(tag, arg) => {
                let v = self.eval(arg, scope)?;
                match v.kind {
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
                }
            }
            ExprKind::Import(rel) => return self.import(rel, span, scope.file),
        };
        Ok(Value { kind, span })
    }

    fn string(&mut self, parts: &[Part], scope: &Scope<'_>) -> Result<String, Error> {
        let mut out = String::new();
        for part in parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Interp(e) => {
                    let v = self.eval(e, scope)?;
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

    fn path(&self, raw: &str, span: Span) -> Result<PathBuf, Error> {
        let dir = self
            .sources
            .path(span.file)
            .parent()
            .unwrap_or(Path::new("/"));
        let path = normalize(&dir.join(raw));
        if path.is_file() {
            return Ok(path);
        }
        let what = if path.is_dir() {
            "is a directory, not a file"
        } else {
            "does not exist"
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

    fn var(&self, name: &str, span: Span, scope: &Scope<'_>) -> Result<Value, Error> {
        if let Some(b) = scope.lets.iter().rev().find(|b| b.name == name) {
            return Ok(b.value.clone());
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
            (BinOp::Concat, ValueKind::Str(a), ValueKind::Str(b)) => ValueKind::Str(a + &b),
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

    fn import(&mut self, rel: &str, span: Span, from: FileId) -> Result<Value, Error> {
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
                if fv.from_lets {
                    fv.value.span = span;
                }
                return Ok(fv.value);
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
        Ok(fv.value)
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

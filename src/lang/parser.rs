//! Recursive-descent parser over the token list.
//!
//! Hand-written over tokens rather than nom combinators over text because
//! every failure must name what was expected in its context ("expected `=`
//! after field name `version`") and point back at unclosed openers; nom's
//! generic errors cannot carry that without re-implementing this anyway.

use super::ast::{BinOp, Decl, DeclKind, Expr, ExprKind, File, Part, RecordField};
use super::error::Error;
use super::lexer::{StrPart, Tok, Token};
use super::source::{FileId, SourceMap, Span};
use super::value::Tag;
use super::MAX_DEPTH;

/// Parse a whole file.
pub(crate) fn parse(sources: &SourceMap, file: FileId, tokens: &[Token]) -> Result<File, Error> {
    let mut p = Parser {
        sources,
        text: sources.text(file),
        tokens,
        pos: 0,
        depth: 0,
    };
    p.file()
}

struct Parser<'a> {
    sources: &'a SourceMap,
    text: &'a str,
    tokens: &'a [Token],
    pos: usize,
    depth: usize,
}

/// Is this the end of the file (rather than the `}` ending an
/// interpolation, which is also lexed as `Eof` but is one character wide)?
fn is_file_end(t: &Token) -> bool {
    t.tok == Tok::Eof && t.span.start == t.span.end
}

/// Can this token start an expression?
fn starts_expr(t: &Tok) -> bool {
    matches!(
        t,
        Tok::Ident(_)
            | Tok::Int(_)
            | Tok::Str(_)
            | Tok::Path(_)
            | Tok::True
            | Tok::False
            | Tok::LBracket
            | Tok::LBrace
            | Tok::LParen
            | Tok::Repo
            | Tok::Release
            | Tok::Import
    )
}

fn keyword_name(t: &Tok) -> Option<&'static str> {
    Some(match t {
        Tok::Let => "let",
        Tok::Branch => "branch",
        Tok::Import => "import",
        Tok::Repo => "repo",
        Tok::Release => "release",
        Tok::True => "true",
        Tok::False => "false",
        _ => return None,
    })
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &'a Token {
        // The token list always ends with `Eof`, and `bump` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> &'a Token {
        let t = self.peek();
        if self.pos + 1 < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    fn eat(&mut self, tok: &Tok) -> Option<&'a Token> {
        if &self.peek().tok == tok {
            Some(self.bump())
        } else {
            None
        }
    }

    /// How a token is shown after "found": its text, shortened.
    fn describe(&self, t: &Token) -> String {
        if is_file_end(t) {
            return "end of file".into();
        }
        let src = self
            .text
            .get(t.span.start as usize..t.span.end as usize)
            .unwrap_or("");
        let line = src.lines().next().unwrap_or("");
        let short: String = line.chars().take(40).collect();
        if short.len() < src.len() {
            format!("`{short}...`")
        } else {
            format!("`{short}`")
        }
    }

    fn error(&self, span: Span, message: String, label: &str) -> Error {
        Error::at(self.sources, "cvm::parse", span, message, label)
    }

    /// "expected X, found Y" at the next token.
    fn expected(&self, what: &str, label: &str) -> Error {
        let t = self.peek();
        self.error(
            t.span,
            format!("expected {what}, found {}", self.describe(t)),
            label,
        )
    }

    /// An error at a token that fails to close the construct opened at
    /// `open`; the opener is labelled too.
    fn unclosed(&self, what: &str, construct: &str, open: Span) -> Error {
        let t = self.peek();
        let prefix = if is_file_end(t) {
            format!("unterminated {construct}: ")
        } else {
            String::new()
        };
        let found = self.describe(t);
        let label = if is_file_end(t) {
            "file ends here".to_owned()
        } else {
            format!("expected {what} here")
        };
        self.error(
            t.span,
            format!("{prefix}expected {what}, found {found}"),
            &label,
        )
        .with_label(self.sources, open, &format!("{construct} starts here"))
    }

    fn keyword_as_name(&self, t: &Token, kw: &str, quoted_ok: bool) -> Error {
        let e = self.error(
            t.span,
            format!("`{kw}` is a keyword and cannot be used as a name"),
            "keyword",
        );
        if quoted_ok {
            e.with_help(format!("quote it to use it as a field name: \"{kw}\""))
        } else {
            e.with_help("choose another name")
        }
    }

    fn file(&mut self) -> Result<File, Error> {
        let mut decls = Vec::new();
        loop {
            let t = self.peek();
            match t.tok {
                Tok::Let | Tok::Branch => decls.push(self.decl()?),
                Tok::Eof => {
                    return Ok(File {
                        decls,
                        trailing: None,
                    })
                }
                ref tok if starts_expr(tok) => break,
                _ => {
                    return Err(self.expected(
                        "`let`, `branch` or an expression",
                        "expected a declaration here",
                    ))
                }
            }
        }
        let trailing = self.expr()?;
        let t = self.peek();
        match t.tok {
            Tok::Eof => Ok(File {
                decls,
                trailing: Some(trailing),
            }),
            Tok::Let | Tok::Branch => Err(self
                .error(
                    t.span,
                    "declarations must come before the trailing expression".into(),
                    "declaration after the trailing expression",
                )
                .with_label(self.sources, trailing.span, "trailing expression")),
            _ => Err(self.expected(
                "an operator or end of file after the trailing expression",
                "unexpected here",
            )),
        }
    }

    fn decl(&mut self) -> Result<Decl, Error> {
        let kw = self.bump();
        let (kind, kw_text) = match kw.tok {
            Tok::Let => (DeclKind::Let, "let"),
            _ => (DeclKind::Branch, "branch"),
        };
        let t = self.peek();
        let name = match &t.tok {
            Tok::Ident(name) => name.clone(),
            tok => {
                if let Some(k) = keyword_name(tok) {
                    return Err(self.keyword_as_name(t, k, false));
                }
                return Err(self.expected(&format!("a name after `{kw_text}`"), "expected a name"));
            }
        };
        self.bump();
        if self.eat(&Tok::Eq).is_none() {
            return Err(self.expected(
                &format!("`=` after `{kw_text} {name}`"),
                "expected `=` here",
            ));
        }
        let expr = self.expr()?;
        Ok(Decl {
            kind,
            keyword_span: kw.span,
            name,
            name_span: t.span,
            expr,
        })
    }

    /// Count one more level of syntax-tree depth. Evaluation and dropping
    /// recurse over the tree, so its depth is bounded to keep hostile input
    /// from overflowing the stack; callers restore `depth` when done.
    fn enter(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let t = self.peek();
            return Err(self
                .error(t.span, "expression nested too deeply".into(), "too deep")
                .with_code("cvm::too-deep")
                .with_help(format!("at most {MAX_DEPTH} levels of nesting are allowed")));
        }
        Ok(())
    }

    /// expr = update
    fn expr(&mut self) -> Result<Expr, Error> {
        let saved = self.depth;
        self.enter()?;
        let r = self.update();
        self.depth = saved;
        r
    }

    /// update = concat { "//" concat }
    fn update(&mut self) -> Result<Expr, Error> {
        let saved = self.depth;
        let mut left = self.concat()?;
        while let Some(op) = self.eat(&Tok::Update) {
            self.enter()?;
            let right = self.concat()?;
            left = binary(BinOp::Update, op.span, left, right);
        }
        self.depth = saved;
        Ok(left)
    }

    /// concat = app { ("++" | "--") app }
    fn concat(&mut self) -> Result<Expr, Error> {
        let saved = self.depth;
        let mut left = self.app()?;
        loop {
            let op = match self.peek().tok {
                Tok::Concat => BinOp::Concat,
                Tok::Diff => BinOp::Diff,
                _ => {
                    self.depth = saved;
                    return Ok(left);
                }
            };
            self.enter()?;
            let op_span = self.bump().span;
            let right = self.app()?;
            left = binary(op, op_span, left, right);
        }
    }

    /// app = ("repo" | "release") app | "import" STRING | postfix
    fn app(&mut self) -> Result<Expr, Error> {
        let t = self.peek();
        let tag = match t.tok {
            Tok::Repo => Tag::Repo,
            Tok::Release => Tag::Release,
            Tok::Import => return self.import(),
            _ => return self.postfix(),
        };
        self.bump();
        let saved = self.depth;
        self.enter()?;
        let arg = self.app()?;
        self.depth = saved;
        Ok(Expr {
            span: t.span.to(arg.span),
            kind: ExprKind::Construct(tag, Box::new(arg)),
        })
    }

    fn import(&mut self) -> Result<Expr, Error> {
        let kw = self.bump();
        let t = self.peek();
        let path = match &t.tok {
            Tok::Str(parts) => match parts.as_slice() {
                [StrPart::Lit(s)] => s.clone(),
                _ => {
                    return Err(self.error(
                        t.span,
                        "the path of an `import` must be a plain string".into(),
                        "interpolation is not allowed here",
                    ))
                }
            },
            _ => {
                return Err(self.expected(
                    "a string literal after `import`",
                    "expected a file name like \"groups.cvm\"",
                ))
            }
        };
        self.bump();
        let span = kw.span.to(t.span);
        if self.peek().tok == Tok::Dot {
            return Err(self
                .expected("an operator or the end of the expression", "unexpected `.`")
                .with_help(format!(
                    "field access binds tighter than `import`; write `(import \"{path}\").field`"
                )));
        }
        Ok(Expr {
            kind: ExprKind::Import(path),
            span,
        })
    }

    /// postfix = atom { "." (IDENT | STRING) }
    fn postfix(&mut self) -> Result<Expr, Error> {
        let saved = self.depth;
        let mut e = self.atom()?;
        while self.eat(&Tok::Dot).is_some() {
            self.enter()?;
            let t = self.peek();
            let name = match &t.tok {
                Tok::Ident(n) => n.clone(),
                Tok::Str(_) => self.plain_string(t, "a field name")?,
                tok => {
                    if let Some(k) = keyword_name(tok) {
                        return Err(self.keyword_as_name(t, k, true));
                    }
                    return Err(self.expected("a field name after `.`", "expected a field name"));
                }
            };
            self.bump();
            e = Expr {
                span: e.span.to(t.span),
                kind: ExprKind::Select(Box::new(e), name, t.span),
            };
        }
        self.depth = saved;
        Ok(e)
    }

    /// The text of a string token that must not contain interpolation.
    fn plain_string(&self, t: &Token, what: &str) -> Result<String, Error> {
        match &t.tok {
            Tok::Str(parts) => match parts.as_slice() {
                [StrPart::Lit(s)] => Ok(s.clone()),
                _ => Err(self.error(
                    t.span,
                    format!("interpolation is not allowed in {what}"),
                    "interpolated string",
                )),
            },
            _ => Err(self.expected(what, "expected here")),
        }
    }

    fn atom(&mut self) -> Result<Expr, Error> {
        let t = self.peek();
        let kind = match &t.tok {
            Tok::Ident(n) => ExprKind::Var(n.clone()),
            Tok::Int(n) => ExprKind::Int(*n),
            Tok::True => ExprKind::Bool(true),
            Tok::False => ExprKind::Bool(false),
            Tok::Path(p) => ExprKind::Path(p.clone()),
            Tok::Str(parts) => ExprKind::Str(self.string(parts)?),
            Tok::LBracket => return self.list(),
            Tok::LBrace => return self.record(),
            Tok::LParen => {
                self.bump();
                let inner = self.expr()?;
                if self.eat(&Tok::RParen).is_none() {
                    return Err(self.unclosed("`)`", "parenthesis", t.span));
                }
                return Ok(inner);
            }
            _ => return Err(self.expected("an expression", "expected an expression here")),
        };
        self.bump();
        Ok(Expr { kind, span: t.span })
    }

    fn string(&mut self, parts: &'a [StrPart]) -> Result<Vec<Part>, Error> {
        let mut out = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                StrPart::Lit(s) => out.push(Part::Lit(s.clone())),
                StrPart::Interp(tokens, span) => {
                    let mut sub = Parser {
                        sources: self.sources,
                        text: self.text,
                        tokens,
                        pos: 0,
                        depth: self.depth,
                    };
                    if sub.peek().tok == Tok::Eof {
                        return Err(self.error(
                            *span,
                            "empty interpolation".into(),
                            "expected an expression inside `${}`",
                        ));
                    }
                    let e = sub.expr()?;
                    if sub.peek().tok != Tok::Eof {
                        return Err(sub.unclosed("`}`", "interpolation", *span));
                    }
                    out.push(Part::Interp(e));
                }
            }
        }
        Ok(out)
    }

    /// list = "[" { expr [","] } "]"
    fn list(&mut self) -> Result<Expr, Error> {
        let open = self.bump().span;
        let mut items = Vec::new();
        loop {
            if let Some(close) = self.eat(&Tok::RBracket) {
                return Ok(Expr {
                    kind: ExprKind::List(items),
                    span: open.to(close.span),
                });
            }
            if !starts_expr(&self.peek().tok) {
                return Err(self.unclosed("an expression or `]`", "list", open));
            }
            items.push(self.expr()?);
            self.eat(&Tok::Comma);
        }
    }

    /// record = "{" { key "=" expr [","] } "}"
    fn record(&mut self) -> Result<Expr, Error> {
        let open = self.bump().span;
        let mut fields = Vec::new();
        loop {
            if let Some(close) = self.eat(&Tok::RBrace) {
                return Ok(Expr {
                    kind: ExprKind::Record(fields),
                    span: open.to(close.span),
                });
            }
            let t = self.peek();
            let key = match &t.tok {
                Tok::Ident(k) => k.clone(),
                Tok::Str(_) => self.plain_string(t, "a field name")?,
                tok => {
                    if let Some(k) = keyword_name(tok) {
                        return Err(self.keyword_as_name(t, k, true));
                    }
                    return Err(self.unclosed("a field name or `}`", "record", open));
                }
            };
            self.bump();
            if self.eat(&Tok::Eq).is_none() {
                return Err(self.expected(
                    &format!("`=` after field name `{key}`"),
                    "expected `=` here",
                ));
            }
            let value = self.expr()?;
            fields.push(RecordField {
                key,
                key_span: t.span,
                value,
            });
            self.eat(&Tok::Comma);
        }
    }
}

fn binary(op: BinOp, op_span: Span, left: Expr, right: Expr) -> Expr {
    Expr {
        span: left.span.to(right.span),
        kind: ExprKind::Binary(op, op_span, Box::new(left), Box::new(right)),
    }
}

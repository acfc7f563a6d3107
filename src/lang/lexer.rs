//! Tokenizer, written with nom combinators over the complete file text.
//!
//! Lexing is a separate pass so that the parser can say precisely what it
//! expected and what token it found instead. Strings are lexed into literal
//! chunks and interpolations; an interpolation holds its own token list,
//! ended by an `Eof` token placed on its closing `}`.

use nom::branch::alt;
use nom::bytes::complete::{tag, take_till, take_while, take_while1};
use nom::character::complete::{char, digit1, multispace1, satisfy};
use nom::combinator::{opt, recognize, value};
use nom::sequence::pair;
use nom::{IResult, Parser};

use super::error::Error;
use super::source::{FileId, SourceMap, Span};
use super::MAX_DEPTH;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Int(i64),
    Str(Vec<StrPart>),
    Path(String),
    Let,
    Branch,
    Import,
    Repo,
    Release,
    True,
    False,
    Eq,
    Comma,
    Dot,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    LParen,
    RParen,
    Concat,
    Diff,
    Update,
    /// End of the file, or the closing `}` of an interpolation.
    Eof,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StrPart {
    Lit(String),
    /// `${ ... }`: the tokens inside and the span of the whole `${...}`.
    Interp(Vec<Token>, Span),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub span: Span,
}

fn keyword(word: &str) -> Option<Tok> {
    Some(match word {
        "let" => Tok::Let,
        "branch" => Tok::Branch,
        "import" => Tok::Import,
        "repo" => Tok::Repo,
        "release" => Tok::Release,
        "true" => Tok::True,
        "false" => Tok::False,
        _ => return None,
    })
}

pub(crate) fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

pub(crate) fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-')
}

/// Whitespace and `#` comments.
fn trivia(mut i: &str) -> &str {
    loop {
        let r: IResult<&str, &str> = alt((
            multispace1,
            recognize(pair(char('#'), take_till(|c| c == '\n'))),
        ))
        .parse(i);
        match r {
            Ok((rest, _)) => i = rest,
            Err(_) => return i,
        }
    }
}

fn punct(i: &str) -> IResult<&str, Tok> {
    alt((
        value(Tok::Concat, tag("++")),
        value(Tok::Diff, tag("--")),
        value(Tok::Update, tag("//")),
        value(Tok::Eq, char('=')),
        value(Tok::Comma, char(',')),
        value(Tok::LBracket, char('[')),
        value(Tok::RBracket, char(']')),
        value(Tok::LBrace, char('{')),
        value(Tok::RBrace, char('}')),
        value(Tok::LParen, char('(')),
        value(Tok::RParen, char(')')),
    ))
    .parse(i)
}

fn path(i: &str) -> IResult<&str, &str> {
    recognize(pair(alt((tag("./"), tag("../"))), take_while(is_path_char))).parse(i)
}

fn ident(i: &str) -> IResult<&str, &str> {
    recognize(pair(satisfy(is_ident_start), take_while(is_ident_char))).parse(i)
}

fn int(i: &str) -> IResult<&str, &str> {
    recognize(pair(opt(char('-')), digit1)).parse(i)
}

/// Lex a whole file.
pub(crate) fn lex(sources: &SourceMap, file: FileId) -> Result<Vec<Token>, Error> {
    let text = sources.text(file).clone();
    let mut lexer = Lexer {
        sources,
        file,
        text: &text,
    };
    let (tokens, _) = lexer.tokens(0, None, 0)?;
    Ok(tokens)
}

struct Lexer<'a> {
    sources: &'a SourceMap,
    file: FileId,
    text: &'a str,
}

impl Lexer<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        // Files longer than u32::MAX bytes are refused before lexing.
        Span {
            file: self.file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// Where "end of file" is shown: after the last non-blank character, so
    /// that the label lands on a visible line rather than past the final
    /// newline.
    fn end(&self) -> usize {
        self.text.trim_end().len()
    }

    fn error(&self, start: usize, end: usize, message: String, label: &str) -> Error {
        Error::at(
            self.sources,
            "cvm::parse",
            self.span(start, end),
            message,
            label,
        )
    }

    /// Lex tokens from byte `pos`. With `interp = Some(open)` (the offset of
    /// the `${`), stop at the `}` that closes the interpolation and return
    /// the offset after it.
    fn tokens(
        &mut self,
        mut pos: usize,
        interp: Option<usize>,
        depth: usize,
    ) -> Result<(Vec<Token>, usize), Error> {
        let mut out = Vec::new();
        let mut braces = 0usize;
        loop {
            pos = self.text.len() - trivia(&self.text[pos..]).len();
            let rest = &self.text[pos..];
            let Some(c) = rest.chars().next() else {
                let pos = self.end();
                if let Some(open) = interp {
                    return Err(self
                        .error(
                            pos,
                            pos,
                            "unterminated interpolation: expected `}`, found end of file".into(),
                            "file ends here",
                        )
                        .with_label(
                            self.sources,
                            self.span(open, open + 2),
                            "interpolation starts here",
                        ));
                }
                out.push(Token {
                    tok: Tok::Eof,
                    span: self.span(pos, pos),
                });
                return Ok((out, pos));
            };
            if c == '}' && braces == 0 && interp.is_some() {
                out.push(Token {
                    tok: Tok::Eof,
                    span: self.span(pos, pos + 1),
                });
                return Ok((out, pos + 1));
            }
            let (tok, len) = if c == '"' {
                let (parts, end) = self.string(pos, interp, depth)?;
                (Tok::Str(parts), end - pos)
            } else if let Ok((r, p)) = path(rest) {
                (Tok::Path(p.to_owned()), rest.len() - r.len())
            } else if let Ok((r, t)) = punct(rest) {
                match t {
                    Tok::LBrace => braces += 1,
                    Tok::RBrace => braces = braces.saturating_sub(1),
                    _ => {}
                }
                (t, rest.len() - r.len())
            } else if let Ok((r, digits)) = int(rest) {
                if r.starts_with(is_ident_char) {
                    let bad = rest.len() - r.len() + ident_tail(r);
                    return Err(self.error(
                        pos,
                        pos + bad,
                        format!("invalid number `{}`", &rest[..bad]),
                        "not a number",
                    )
                    .with_help("integers are decimal digits with an optional leading `-`; names cannot start with a digit"));
                }
                let n = digits.parse::<i64>().map_err(|_| {
                    self.error(
                        pos,
                        pos + digits.len(),
                        format!("integer `{digits}` does not fit in 64 bits"),
                        "out of range",
                    )
                })?;
                (Tok::Int(n), digits.len())
            } else if let Ok((r, word)) = ident(rest) {
                let tok = keyword(word).unwrap_or_else(|| Tok::Ident(word.to_owned()));
                (tok, rest.len() - r.len())
            } else if c == '.' {
                (Tok::Dot, 1)
            } else {
                let shown = c.escape_debug();
                return Err(self
                    .error(
                        pos,
                        pos + c.len_utf8(),
                        format!("unexpected character `{shown}`"),
                        "not valid here",
                    )
                    .with_help(char_help(c)));
            };
            out.push(Token {
                tok,
                span: self.span(pos, pos + len),
            });
            pos += len;
        }
    }

    /// Lex a string starting at the `"` at `open`; returns its parts and the
    /// offset after the closing `"`.
    /// `interp` is the offset of the `${` the string is inside, if any.
    fn string(
        &mut self,
        open: usize,
        interp: Option<usize>,
        depth: usize,
    ) -> Result<(Vec<StrPart>, usize), Error> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut pos = open + 1;
        // Strings end at the end of their line: a missing quote is then
        // reported on the line where it is missing, not at some later
        // quote that happened to pair up with it.
        let unterminated = |this: &Self, end: usize| {
            if let Some(interp) = interp {
                // `"${x"`: the quote meant to close the outer string opened
                // a new one inside the interpolation; the real mistake is
                // the missing `}`.
                return this
                    .error(
                        interp,
                        interp + 2,
                        "unterminated interpolation: expected `}`".into(),
                        "interpolation starts here",
                    )
                    .with_label(
                        this.sources,
                        this.span(open, open + 1),
                        "this quote starts a string inside the interpolation",
                    )
                    .with_help(
                        "close the interpolation with `}` before the string's closing quote",
                    );
            }
            this.error(
                open,
                open + 1,
                "unterminated string: expected a closing `\"` on the same line".into(),
                "string starts here",
            )
            .with_label(this.sources, this.span(end, end), "line ends here")
            .with_help("strings cannot span lines; write a line break as `\\n`")
        };
        loop {
            let rest = &self.text[pos..];
            let chunk: IResult<&str, &str> =
                take_while1(|c| !matches!(c, '"' | '\\' | '$' | '\n' | '\r')).parse(rest);
            if let Ok((_, s)) = chunk {
                lit.push_str(s);
                pos += s.len();
                continue;
            }
            let mut chars = rest.chars();
            match chars.next() {
                None | Some('\n' | '\r') => return Err(unterminated(self, pos)),
                Some('"') => break,
                Some('\\') => {
                    let escaped = match chars.next() {
                        None | Some('\n' | '\r') => return Err(unterminated(self, pos)),
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('$') => '$',
                        Some(other) => {
                            return Err(self
                                .error(
                                    pos,
                                    pos + 1 + other.len_utf8(),
                                    format!("unknown escape `\\{}`", other.escape_debug()),
                                    "unknown escape",
                                )
                                .with_help("the escapes are \\\" \\\\ \\n \\t \\$"))
                        }
                    };
                    lit.push(escaped);
                    pos += 2;
                }
                Some(_) if rest.starts_with("${") => {
                    if depth >= MAX_DEPTH {
                        return Err(self
                            .error(
                                pos,
                                pos + 2,
                                "interpolations are nested too deeply".into(),
                                "too deep",
                            )
                            .with_code("cvm::too-deep"));
                    }
                    if !lit.is_empty() {
                        parts.push(StrPart::Lit(std::mem::take(&mut lit)));
                    }
                    let (tokens, end) = self.tokens(pos + 2, Some(pos), depth + 1)?;
                    parts.push(StrPart::Interp(tokens, self.span(pos, end)));
                    pos = end;
                }
                Some(_) => {
                    lit.push('$');
                    pos += 1;
                }
            }
        }
        if !lit.is_empty() || parts.is_empty() {
            parts.push(StrPart::Lit(lit));
        }
        Ok((parts, pos + 1))
    }
}

fn ident_tail(s: &str) -> usize {
    s.find(|c| !is_ident_char(c)).unwrap_or(s.len())
}

fn char_help(c: char) -> String {
    match c {
        '-' => "`--` is list difference; a negative integer is written `-1`".into(),
        '+' => "`++` concatenates lists or strings".into(),
        '/' => "`//` updates a record; a path starts with `./` or `../`".into(),
        '\'' => "strings use double quotes: \"...\"".into(),
        ':' => "fields are written `name = value`".into(),
        ';' => "no `;` is needed: declarations are separated by whitespace, fields and list elements optionally by commas".into(),
        _ => "see lang/reference.md for the tokens of the language".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn toks(text: &str) -> Result<Vec<Tok>, Error> {
        let mut map = SourceMap::default();
        let f = map.add(PathBuf::from("/t.cvm"), text.into());
        Ok(lex(&map, f)?.into_iter().map(|t| t.tok).collect())
    }

    #[test]
    fn operators_paths_and_negative_numbers() {
        assert_eq!(
            toks("a--b ++ -1 // ./x/y.asc ../z . # c\n").unwrap(),
            vec![
                Tok::Ident("a".into()),
                Tok::Diff,
                Tok::Ident("b".into()),
                Tok::Concat,
                Tok::Int(-1),
                Tok::Update,
                Tok::Path("./x/y.asc".into()),
                Tok::Path("../z".into()),
                Tok::Dot,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn string_escapes_and_interpolation() {
        let t = toks(r#""a\"\\\n\t\$ ${ {x="}"}.x } $b""#).unwrap();
        let Tok::Str(parts) = &t[0] else {
            panic!("not a string: {t:?}")
        };
        assert_eq!(parts[0], StrPart::Lit("a\"\\\n\t$ ".into()));
        assert!(matches!(&parts[1], StrPart::Interp(inner, _) if inner.len() == 8));
        assert_eq!(parts[2], StrPart::Lit(" $b".into()));
    }

    #[test]
    fn lexical_errors() {
        for bad in [
            "\"abc",
            "\"\\q\"",
            "\"${ a",
            "12ab",
            "99999999999999999999",
            "@",
            "\"\\",
        ] {
            assert_eq!(toks(bad).unwrap_err().code_str(), "cvm::parse", "{bad}");
        }
    }
}

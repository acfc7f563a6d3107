//! Parser for rpm's boolean ("rich") dependencies, following librpm's
//! `rpmrichParse` so we accept exactly what rpm accepts:
//!
//! ```text
//! rich    := '(' operand (op operand)* ')'
//! operand := rich | name [cmp evr]
//! op      := and | or | if | else | unless | with | without
//! ```
//!
//! Only `and`, `or` and `with` chain (`(a or b or c)`); `if`/`unless` take
//! one optional `else`; mixing operators needs parentheses. Names may
//! contain balanced parentheses (`libfoo.so.1()(64bit)`).

use super::evr::{Evr, Op, Range};
use super::model::{Interner, Rich, SimpleDep};
use std::fmt;

/// What is wrong with a rich dependency and where (1-based column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RichError {
    pub column: usize,
    pub message: String,
    pub text: String,
}

impl fmt::Display for RichError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at column {} of rich dependency `{}`",
            self.message, self.column, self.text
        )
    }
}

impl std::error::Error for RichError {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Word {
    And,
    Or,
    If,
    Else,
    Unless,
    With,
    Without,
}

impl Word {
    fn parse(s: &str) -> Option<Word> {
        Some(match s {
            "and" => Word::And,
            "or" => Word::Or,
            "if" => Word::If,
            "else" => Word::Else,
            "unless" => Word::Unless,
            "with" => Word::With,
            "without" => Word::Without,
            _ => return None,
        })
    }
}

/// Parses a whole rich dependency such as `(foo >= 1.2 or bar)`, interning
/// names into `names`. Text after the closing parenthesis is an error.
pub fn parse_rich(text: &str, names: &mut Interner) -> Result<Rich, RichError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        names,
    };
    p.skip_ws();
    if p.peek() != Some(b'(') {
        return Err(p.err("a rich dependency must start with `(`"));
    }
    let r = p.rich()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err(p.err("unexpected text after the closing `)`"));
    }
    Ok(r)
}

struct Parser<'a, 'n> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    names: &'n mut Interner,
}

impl Parser<'_, '_> {
    fn err(&self, message: &str) -> RichError {
        RichError {
            column: self.text[..self.pos.min(self.text.len())].chars().count() + 1,
            message: message.to_string(),
            text: self.text.to_string(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    /// A token up to whitespace or an unbalanced `)`, as rpm's
    /// `skipnonwhiteX`: parentheses inside a name must balance.
    fn token(&mut self) -> &str {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                c if c.is_ascii_whitespace() => break,
                b'(' => depth += 1,
                b')' if depth == 0 => break,
                b')' => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        // Token boundaries are ASCII, so this slice is on char boundaries.
        &self.text[start..self.pos]
    }

    /// Parses `( … )` starting at the `(`.
    fn rich(&mut self) -> Result<Rich, RichError> {
        self.pos += 1; // '('
        let first = self.operand()?;
        let mut chain: Option<Word> = None;
        let mut operands = vec![first];
        // For if/unless: the optional else branch.
        let mut else_branch: Option<Rich> = None;
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.err("missing `)`")),
                Some(b')') => {
                    self.pos += 1;
                    break;
                }
                _ => {}
            }
            let at = self.pos;
            let word = self.token().to_string();
            let Some(op) = Word::parse(&word) else {
                self.pos = at;
                return Err(self.err(&format!(
                    "expected and, or, if, else, unless, with, without or `)`, found `{word}`"
                )));
            };
            match (chain, op) {
                (None, Word::Else) => {
                    self.pos = at;
                    return Err(self.err("`else` without a preceding `if` or `unless`"));
                }
                (Some(Word::If | Word::Unless), Word::Else) if else_branch.is_none() => {
                    else_branch = Some(self.operand()?);
                    continue;
                }
                (None, _) => chain = Some(op),
                (Some(c), op) if c == op && matches!(c, Word::And | Word::Or | Word::With) => {}
                (Some(c), op) if c != op && !(else_branch.is_some() && op == Word::Else) => {
                    self.pos = at;
                    return Err(self.err(&format!(
                        "cannot chain `{word}` after `{}` without parentheses",
                        format!("{c:?}").to_lowercase()
                    )));
                }
                _ => {
                    self.pos = at;
                    return Err(self.err("only and, or and with can be chained"));
                }
            }
            operands.push(self.operand()?);
        }
        let mut it = operands.into_iter();
        Ok(match chain {
            None => it.next().expect("the first operand is always there"),
            Some(Word::And) => Rich::And(it.collect()),
            Some(Word::Or) => Rich::Or(it.collect()),
            Some(Word::With) => Rich::With(it.collect()),
            Some(w) => {
                let (a, b) = (it.next(), it.next());
                let (Some(a), Some(b)) = (a, b) else {
                    unreachable!("a binary operator always has two operands")
                };
                let (a, b) = (Box::new(a), Box::new(b));
                let e = else_branch.map(Box::new);
                match w {
                    Word::If => Rich::If(a, b, e),
                    Word::Unless => Rich::Unless(a, b, e),
                    _ => Rich::Without(a, b),
                }
            }
        })
    }

    /// A nested rich expression or `name [cmp evr]`.
    fn operand(&mut self) -> Result<Rich, RichError> {
        self.skip_ws();
        match self.peek() {
            None => return Err(self.err("missing operand")),
            Some(b'(') => return self.rich(),
            Some(b')') => return Err(self.err("missing operand before `)`")),
            _ => {}
        }
        let at = self.pos;
        let name = self.token().to_string();
        // A name that whitespace ends inside a `(` could not be written
        // back: `(f/(- )` would render as `(f/(-)`, another token.
        if name.matches('(').count() != name.matches(')').count() {
            self.pos = at;
            return Err(self.err(&format!("unbalanced `(` in `{name}`")));
        }
        if Word::parse(&name).is_some() {
            self.pos = at;
            return Err(self.err(&format!("missing operand before `{name}`")));
        }
        // Like rpm, a comparison is a whole whitespace-delimited token
        // (`foo >= 1.0`); `foo>=1.0` is a name.
        let save = self.pos;
        self.skip_ws();
        let sym = self.token().to_string();
        let Some(op) = Op::from_symbol(&sym) else {
            self.pos = save;
            return Ok(Rich::Dep(SimpleDep {
                name: self.names.intern(&name),
                range: None,
            }));
        };
        self.skip_ws();
        let evr_at = self.pos;
        let evr_text = self.token().to_string();
        if evr_text.is_empty() {
            return Err(self.err(&format!("missing version after `{sym}`")));
        }
        let evr = Evr::parse(&evr_text).map_err(|m| {
            self.pos = evr_at;
            self.err(&m)
        })?;
        Ok(Rich::Dep(SimpleDep {
            name: self.names.intern(&name),
            range: Some(Box::new(Range { op, evr })),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::model::{Dep, Pool};

    fn roundtrip(s: &str) -> String {
        let mut pool = Pool::default();
        let r = parse_rich(s, &mut pool.names).unwrap_or_else(|e| panic!("{e}"));
        pool.dep_to_string(&Dep::Rich(Box::new(r)))
    }

    fn error(s: &str) -> RichError {
        parse_rich(s, &mut Interner::default()).unwrap_err()
    }

    #[test]
    fn parses_every_operator() {
        for s in [
            "(foo >= 1.2 or bar)",
            "(a and b and c)",
            "(a or (b and c))",
            "(a if b)",
            "(a if b else c)",
            "(a unless b else (c or d))",
            "(a with b with c)",
            "(a without b)",
            "(libfoo.so.1()(64bit) and kernel(x86-64) = 2:4.18-1.el8)",
            "((a or b) and (c if d else e))",
        ] {
            assert_eq!(roundtrip(s), s);
        }
        // Extra whitespace and a lone operand are accepted, as in rpm.
        assert_eq!(roundtrip("(  foo   >=\t1  or bar )"), "(foo >= 1 or bar)");
        // As in rpm, a comparison must stand apart from the name.
        assert_eq!(roundtrip("(foo>=1 or bar)"), "(foo>=1 or bar)");
        assert_eq!(roundtrip("(foo)"), "foo");
    }

    #[test]
    fn structure() {
        let mut names = Interner::default();
        let r = parse_rich("(a if b else c)", &mut names).unwrap();
        let [a, b, c] = ["a", "b", "c"].map(|n| {
            Box::new(Rich::Dep(SimpleDep {
                name: names.get(n).unwrap(),
                range: None,
            }))
        });
        assert_eq!(r, Rich::If(a, b, Some(c)));
    }

    #[test]
    fn errors_say_what_and_where() {
        let e = error("(a and b or c)");
        assert_eq!(e.column, 10);
        assert!(e.message.contains("cannot chain `or` after `and`"), "{e}");
        let e = error("(a or b");
        assert!(e.message.contains("missing `)`"), "{e}");
        let e = error("(a xor b)");
        assert_eq!(e.column, 4);
        assert!(e.message.contains("found `xor`"), "{e}");
        assert!(error("(a without b without c)")
            .message
            .contains("only and, or and with"));
        assert!(error("(a else b)").message.contains("`else` without"));
        assert!(error("(a if b else c else d)")
            .message
            .contains("only and, or and with"));
        assert!(error("(a >= )").message.contains("missing version"));
        assert!(error("(a =< 1 or b) c")
            .message
            .contains("after the closing"));
        assert!(error("(and b)").message.contains("missing operand"));
        assert!(error("(a >< 1)").message.contains("found `><`"));
        assert!(error("()").message.contains("missing operand"));
        assert!(error("(a >= x:1)").message.contains("invalid epoch"));
        assert!(error("foo").message.contains("must start with `(`"));
        let e = error("(é or b");
        assert_eq!(e.column, 8, "columns count characters");
    }
}
